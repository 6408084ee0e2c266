"""``POST /v1/analyze``: entities and topics for one text or a list of documents.

Limits are checked here, after the schema and before any inference, so an
over-size request costs nothing; inference goes through the app's
:class:`~serving.api.dependencies.InferenceRunner`, never straight to the model,
which may analyse the request in one call with other concurrent requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends

from serving.api.dependencies import InferenceRunner, get_metrics, get_runner, get_settings
from serving.api.routers.metrics import Metrics
from serving.api.settings import ServerSettings
from serving.errors import LimitExceeded
from serving.schemas import (
    AnalyzeRequest,
    AnalyzeResponse,
    DocumentIn,
    DocumentResultOut,
    error_responses,
)

router = APIRouter()

DESCRIPTION = """Send either `{"text": "..."}` or `{"documents": [{"id": "...", "text": "..."}]}`.

A `text` request answers `{"result": {...}}`; a `documents` request answers
`{"results": [...]}` in the order sent. Entity offsets are half-open `[start, end)`
character positions into the text as sent (`text[start:end] == entity.text`).

Limits (server settings): characters per document, documents per request and body
bytes; going over any of them answers 413 with the limit in the message. Concurrent
requests are analysed together for speed, but each gets only its own results; when
too many are waiting, the answer is 429 with a `Retry-After` header."""


@router.post(
    "/analyze",
    summary="Tag entities and topics",
    description=DESCRIPTION,
    response_model=AnalyzeResponse,
    # Only the one of result/results that was set goes out; nested nulls (id) stay.
    response_model_exclude_unset=True,
    responses=error_responses(413, 422, 424, 429, 503),
)
async def analyze(
    body: AnalyzeRequest,
    runner: Annotated[InferenceRunner, Depends(get_runner)],
    settings: Annotated[ServerSettings, Depends(get_settings)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
) -> AnalyzeResponse:
    """Check limits, analyse off the event loop and count documents and tokens."""
    documents = body.to_documents()
    check_limits(documents, settings)
    results = await runner.analyze([d.text for d in documents], [d.id for d in documents])
    metrics.documents.inc(len(results))
    metrics.tokens.inc(sum(result.n_tokens for result in results))
    outputs = [DocumentResultOut.model_validate(result.to_dict()) for result in results]
    if body.text is not None:
        return AnalyzeResponse(result=outputs[0])
    return AnalyzeResponse(results=outputs)


def check_limits(documents: Sequence[DocumentIn], settings: ServerSettings) -> None:
    """Refuse a request over the document-count or per-document character limit.

    Raises:
        LimitExceeded: With the limit and what to change (413).
    """
    if len(documents) > settings.max_documents_per_request:
        raise LimitExceeded(
            f"the request has {len(documents)} documents; the limit is "
            f"{settings.max_documents_per_request} per request: send them in several requests"
        )
    for position, document in enumerate(documents):
        if len(document.text) > settings.max_chars_per_document:
            which = f"document {position}" + (f" (id {document.id!r})" if document.id else "")
            if len(documents) == 1 and document.id is None:
                which = "the text"
            raise LimitExceeded(
                f"{which} has {len(document.text)} characters; the limit is "
                f"{settings.max_chars_per_document} per document: split it into smaller documents"
            )
