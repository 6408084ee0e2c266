"""Vocabulary trimming: keep the sub-word pieces a corpus uses, rewrite tokenizer and embeddings.

A multilingual vocabulary has 250k pieces; Arabic news needs a small fraction.
Pieces are removed only if the corpus never produces them, and every single
character and special token is kept, so text outside the corpus still tokenises
(into shorter pieces) and never becomes unknown where it was known before. On
the corpus itself the segmentation is unchanged: Unigram's best path and
WordPiece's longest match only ever choose pieces that were kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer

from serving.errors import ConfigError
from serving.metadata import TOKENIZER_NAME, ModelMetadata
from serving.normalise import normalise
from serving.tokenise import load_tokenizer, split_words

if TYPE_CHECKING:
    from training.model import KhabarModel


@dataclass(frozen=True)
class TrimmedVocabulary:
    """The new tokenizer JSON and, for each new id, the old id it came from."""

    tokenizer_json: str
    new_to_old: np.ndarray

    @property
    def size(self) -> int:
        """Number of pieces kept."""
        return int(self.new_to_old.shape[0])


def _is_single_character(piece: str) -> bool:
    core = piece.replace("\u2581", "").removeprefix("##")
    return len(core) <= 1


# Arabic script blocks: Arabic, Supplement, Extended-A/B, Presentation Forms-A/B.
_ARABIC_SCRIPT = re.compile("[\u0600-\u06ff\u0750-\u077f\u0870-\u08ff\ufb50-\ufdff\ufe70-\ufeff]")


def is_arabic_script(piece: str) -> bool:
    """Whether a vocabulary piece holds any Arabic-script letter (kept whatever the corpus).

    News brings names and words no training corpus has seen; with every Arabic piece
    of the base vocabulary kept, new Arabic text tokenises as the base encoder would
    have, instead of falling apart into single characters.
    """
    return bool(_ARABIC_SCRIPT.search(piece))


def used_token_ids(tokenizer: Tokenizer, documents: Iterable[Sequence[str]]) -> set[int]:
    """Ids the tokenizer produces for pre-split documents (words), in batches."""
    used: set[int] = set()
    batch: list[list[str]] = []

    def flush() -> None:
        for encoding in tokenizer.encode_batch(
            batch, is_pretokenized=True, add_special_tokens=False
        ):
            used.update(encoding.ids)
        batch.clear()

    for words in documents:
        if words:
            batch.append(list(words))
        if len(batch) >= 512:
            flush()
    if batch:
        flush()
    return used


def trim_vocabulary(
    tokenizer_json: str, keep_ids: set[int], keep_arabic: bool = True
) -> TrimmedVocabulary:
    """Rewrite a ``tokenizer.json`` to the kept ids (plus single characters and specials).

    Args:
        tokenizer_json: The tokenizer's JSON text.
        keep_ids: Ids to keep (typically :func:`used_token_ids` on the training corpus).
        keep_arabic: Also keep every Arabic-script piece of the base vocabulary.

    Raises:
        ConfigError: The tokenizer model is neither Unigram nor WordPiece.
    """
    data = json.loads(tokenizer_json)
    model = data["model"]
    special_ids = {token["id"] for token in data.get("added_tokens", [])}
    if model["type"] == "Unigram":
        pieces = [piece for piece, _ in model["vocab"]]
    elif model["type"] == "WordPiece":
        pieces = [None] * len(model["vocab"])
        for piece, index in model["vocab"].items():
            pieces[index] = piece
    else:
        raise ConfigError(
            f"vocabulary trimming supports Unigram and WordPiece, not {model['type']}"
        )
    unk_piece = model.get("unk_token")
    keep = set(keep_ids) | special_ids
    for index, piece in enumerate(pieces):
        if piece is None:
            continue
        always = _is_single_character(piece) or piece == unk_piece
        if always or (keep_arabic and is_arabic_script(piece)):
            keep.add(index)
    if model["type"] == "Unigram" and model.get("unk_id") is not None:
        keep.add(model["unk_id"])
    new_to_old = np.array(sorted(i for i in keep if i < len(pieces)), dtype=np.int64)
    old_to_new = {int(old): new for new, old in enumerate(new_to_old)}

    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][old] for old in new_to_old]
        if model.get("unk_id") is not None:
            model["unk_id"] = old_to_new[model["unk_id"]]
    else:
        model["vocab"] = {pieces[old]: new for new, old in enumerate(new_to_old)}
    for token in data.get("added_tokens", []):
        token["id"] = old_to_new[token["id"]]
    _remap_post_processor(data.get("post_processor"), old_to_new)
    return TrimmedVocabulary(json.dumps(data, ensure_ascii=False), new_to_old)


def _remap_post_processor(node: object, old_to_new: dict[int, int]) -> None:
    """Rewrite special-token ids inside (possibly nested) post-processors."""
    if isinstance(node, dict):
        if node.get("type") == "TemplateProcessing":
            for special in node.get("special_tokens", {}).values():
                special["ids"] = [old_to_new[i] for i in special["ids"]]
        for key in ("sep", "cls"):
            value = node.get(key)
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
                value[1] = old_to_new[value[1]]
        for child in node.get("processors", []) or []:
            _remap_post_processor(child, old_to_new)


def check_one_to_one(
    original: Tokenizer,
    trimmed: Tokenizer,
    new_to_old: np.ndarray,
    documents: Iterable[Sequence[str]],
) -> int:
    """Prove on a corpus that trimmed ids map back to exactly the original ids.

    Returns:
        The number of tokens compared.

    Raises:
        AssertionError: Any document tokenises differently.
    """
    compared = 0
    for words in documents:
        if not words:
            continue
        old = original.encode(list(words), is_pretokenized=True, add_special_tokens=False).ids
        new = trimmed.encode(list(words), is_pretokenized=True, add_special_tokens=False).ids
        mapped = new_to_old[np.asarray(new, dtype=np.int64)].tolist() if new else []
        if mapped != old:
            raise AssertionError(f"trimmed tokenizer differs on {' '.join(words)[:80]!r}")
        compared += len(old)
    return compared


def tokens_per_word(tokenizer: Tokenizer, documents: Iterable[Sequence[str]]) -> tuple[float, int]:
    """Sub-word tokens per word over pre-split documents, and the number of words.

    A trimmed vocabulary that drops pieces new text needs shows up here first: the
    same words break into more, shorter pieces.
    """
    documents = [list(words) for words in documents if words]
    words = sum(len(d) for d in documents)
    tokens = 0
    for start in range(0, len(documents), 512):
        batch = documents[start : start + 512]
        encodings = tokenizer.encode_batch(batch, is_pretokenized=True, add_special_tokens=False)
        tokens += sum(len(e.ids) for e in encodings)
    return (tokens / words if words else 0.0), words


def corpus_words(texts: list[str], metadata: ModelMetadata) -> list[list[str]]:
    """Word-split texts exactly as serving will see them (for trimming)."""
    return [[w.text for w in split_words(normalise(t, metadata.normaliser).text)] for t in texts]


def trim_model(
    model: KhabarModel, tokenizer_path: Path, corpus: list[list[str]], output_dir: Path
) -> dict[str, Any]:
    """Trim tokenizer and embedding matrix to the corpus; write the new tokenizer.

    Returns:
        Sizes before/after and how many corpus tokens were compared one-to-one.
    """
    import torch

    original = load_tokenizer(tokenizer_path)
    used = used_token_ids(original, corpus)
    trimmed = trim_vocabulary(tokenizer_path.read_text(encoding="utf-8"), used)
    trimmed_tokenizer = Tokenizer.from_str(trimmed.tokenizer_json)
    compared = check_one_to_one(original, trimmed_tokenizer, trimmed.new_to_old, corpus)
    embeddings = model.encoder.get_input_embeddings()
    old_size = embeddings.weight.shape[0]
    index = torch.from_numpy(trimmed.new_to_old)
    new_embeddings = torch.nn.Embedding(len(index), embeddings.weight.shape[1], padding_idx=None)
    new_embeddings.weight.data = embeddings.weight.data[index].clone()
    model.encoder.set_input_embeddings(new_embeddings)
    model.encoder.config.vocab_size = len(index)
    (output_dir / TOKENIZER_NAME).write_text(trimmed.tokenizer_json, encoding="utf-8")
    return {
        "trimmed": True,
        "original_size": int(old_size),
        "size": trimmed.size,
        "corpus_tokens_checked_one_to_one": compared,
        "new_to_old": trimmed.new_to_old,
    }
