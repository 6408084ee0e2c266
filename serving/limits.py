"""Limits on the work one document or one request may ask for, shared by the API and the CLI.

Characters are a poor measure of work: 100,000 characters of Arabic prose are about
29,000 sub-word tokens, but 100,000 characters without a space are about one token
each, four times the encoder work. So a document is checked twice: its characters
before anything is done (cheap, and it bounds tokenisation), then its tokens once
tokenised, before any encoder call. Over a limit is a
:class:`~serving.errors.LimitExceeded` naming the numbers: a 413 in the API, an error
record in the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from serving.errors import LimitExceeded

DEFAULT_MAX_CHARS_PER_DOCUMENT = 100_000
# Above the ~29,000 tokens of 100,000 characters of news prose, so ordinary text meets
# the character limit first; far below the ~100,000 tokens of 100,000 unspaced characters.
DEFAULT_MAX_TOKENS_PER_DOCUMENT = 40_000
DEFAULT_MAX_DOCUMENTS_PER_REQUEST = 64
# About 700 encoder windows: some 25 s of two CPU cores for one request.
DEFAULT_MAX_TOKENS_PER_REQUEST = 131_072


class HasTokens(Protocol):
    """A tokenised document (``serving.predictor.Prepared`` or a stand-in)."""

    @property
    def n_tokens(self) -> int:
        """Sub-word tokens of the document."""
        ...


@dataclass(frozen=True)
class DocumentLimits:
    """What one document may hold."""

    max_chars: int = DEFAULT_MAX_CHARS_PER_DOCUMENT
    max_tokens: int = DEFAULT_MAX_TOKENS_PER_DOCUMENT

    def check_characters(self, text: str, name: str = "the text") -> None:
        """Refuse a text over the character limit.

        Raises:
            LimitExceeded: Naming the document, its length and the limit.
        """
        if len(text) > self.max_chars:
            raise LimitExceeded(
                f"{name} has {len(text)} characters; the limit is {self.max_chars} per "
                "document: split it into smaller documents"
            )

    def check_tokens(self, document: HasTokens, name: str = "the text") -> None:
        """Refuse a tokenised document over the token limit.

        Raises:
            LimitExceeded: Naming the document, its tokens and the limit.
        """
        if document.n_tokens > self.max_tokens:
            raise LimitExceeded(
                f"{name} has {document.n_tokens} tokens; the limit is {self.max_tokens} per "
                "document (text without spaces, or in a script the model barely knows, takes "
                "about one token per character): split it into smaller documents"
            )


def document_name(position: int, doc_id: str | None, alone: bool = False) -> str:
    """How an error message names a document: ``the text`` or ``document 3 (id 'x')``."""
    if alone and doc_id is None:
        return "the text"
    return f"document {position}" + (f" (id {doc_id!r})" if doc_id else "")


def check_request_tokens(documents: Sequence[HasTokens], max_tokens: int) -> None:
    """Refuse a request whose documents hold more tokens in all than ``max_tokens``.

    Raises:
        LimitExceeded: With the total and the limit.
    """
    total = sum(document.n_tokens for document in documents)
    if total > max_tokens:
        raise LimitExceeded(
            f"the request has {total} tokens in all; the limit is {max_tokens} per request: "
            "send its documents in several requests"
        )
