"""The benchmark workload: the held-out test split of a model's recipe, cached, sampled.

The split is read once through the training recipe (``training.config``) and cached under
``benchmarks/scratch``; a seeded, length-stratified sample of it is what every engine reads.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.settings import CACHE_VERSION, FIGNEWS_SOURCE
from benchmarks.stats import (
    chunked,
    distribution,
    in_band,
    padding_ratio,
    stratified_sample,
    word_count,
)

if TYPE_CHECKING:
    from serving.predictor import Predictor
    from training.config import KhabarConfig


def config_of(
    model_dir: Path, config_path: Path | None, data_root: Path | None = None
) -> KhabarConfig:
    """The recipe whose held-out split is the workload: ``--config`` or the model's own.

    Raises:
        ConfigError: No ``--config`` and the model records no training config.
    """
    from serving.metadata import ModelMetadata
    from training.config import config_of_model

    training = ModelMetadata.load(model_dir).training
    return config_of_model(training, str(model_dir), config_path, data_root=data_root)


def _data_files(config: KhabarConfig) -> list[Path]:
    """The recipe's corpus files under its data root (those found) and its story rules."""
    from training.data.corpora import data_names, expand

    files = [path for name in data_names(config) for path in expand(config, name).values()]
    if config.topics is not None and config.topics.story_rules is not None:
        files.append(config.recipe_path(config.topics.story_rules))
    return files


def cache_key(config: KhabarConfig) -> str:
    """A key that changes with the recipe or with any of its data files."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    digest.update(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    for path in _data_files(config):
        try:
            stat = Path(path).stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        except OSError:
            digest.update(f"{path}:missing".encode())
    return digest.hexdigest()[:16]


def held_out(config: KhabarConfig, cache_dir: Path | None) -> dict[str, Any]:
    """ANT test articles and ANERcorp test sentences of the recipe, as plain data.

    Loading and splitting every corpus takes tens of seconds, more than a quick run
    can spend, so the held-out split is cached under ``cache_dir`` keyed by the recipe
    and its data files' sizes and times.
    """
    path = cache_dir / f"held-out-{cache_key(config)}.json" if cache_dir else None
    if path is not None and path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        data["from_cache"] = True
        return data
    from training.data.corpora import load_corpora

    corpora = load_corpora(config, with_test=True)
    data = {
        "articles": [
            {"id": e.id, "text": e.text, "source": e.source, "labels": e.labels}
            for e in corpora.topic_test
            if e.source != FIGNEWS_SOURCE
        ],
        "sentences": [
            {"tokens": list(s.tokens), "tags": list(s.tags)} for s in corpora.entity_test
        ],
        "sections": config.topics.sections if config.topics is not None else [],
    }
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        scratch.replace(path)
    data["from_cache"] = False
    return data


def sample_workload(
    data: Mapping[str, Any], n_articles: int, n_sentences: int | None, seed: int
) -> dict[str, Any]:
    """The run's documents: stratified articles and (a seeded sample of) sentences."""
    articles = stratified_sample(
        data["articles"], n_articles, seed, length=lambda a: (word_count(a["text"]), a["id"])
    )
    sentences = list(data["sentences"])
    if n_sentences is not None and n_sentences < len(sentences):
        keep = sorted(random.Random(seed).sample(range(len(sentences)), n_sentences))
        sentences = [sentences[i] for i in keep]
    return {"articles": articles, "sentences": sentences, "sections": list(data["sections"])}


def text_predictor(model_dir: Path) -> Predictor:
    """A predictor for the text-side steps only (prepare, batches): no encoder is loaded."""
    from serving.metadata import TOKENIZER_NAME, ModelMetadata
    from serving.predictor import Predictor
    from serving.tokenise import load_tokenizer

    metadata = ModelMetadata.load(model_dir)
    tokenizer = load_tokenizer(model_dir / TOKENIZER_NAME)
    # prepare() and batches() never touch the session.
    return Predictor(metadata, tokenizer, session=None, model_dir=model_dir)  # type: ignore[arg-type]


def workload_stats(
    predictor: Predictor, workload: Mapping[str, Any], batch_size: int, chunk_size: int
) -> dict[str, Any]:
    """Length distributions, window counts and padding ratio of the workload.

    The padding ratio uses the batches the batch phase will run: the same chunks of
    documents, grouped by ``Predictor.batches`` and padded as ``collate`` pads.
    """
    texts = [a["text"] for a in workload["articles"]]
    lengths: list[list[int]] = []
    tokens: list[int] = []
    windows = 0
    for chunk in chunked(texts, chunk_size):
        prepared = predictor.prepare(chunk)
        tokens += [p.encoded.n_tokens for p in prepared]
        windows += sum(len(p.windows) for p in prepared)
        lengths += [[w.length for w in batch] for batch in predictor.batches(prepared, batch_size)]
    words = [word_count(t) for t in texts]
    sentence_texts = [" ".join(s["tokens"]) for s in workload["sentences"]]
    prepared_sentences = predictor.prepare(sentence_texts) if sentence_texts else []
    return {
        "articles": {
            "documents": len(texts),
            "words": distribution(words),
            "tokens": distribution(tokens),
            "total_tokens": int(sum(tokens)),
            "windows": windows,
            "padding_ratio": padding_ratio(lengths),
            "batches": len(lengths),
            "in_band": sum(in_band(w) for w in words),
        },
        "sentences": {
            "documents": len(sentence_texts),
            "words": distribution([len(s["tokens"]) for s in workload["sentences"]]),
            "tokens": distribution([p.encoded.n_tokens for p in prepared_sentences]),
            "windows": sum(len(p.windows) for p in prepared_sentences),
        },
    }


# --------------------------------------------------------------------------- worker side
