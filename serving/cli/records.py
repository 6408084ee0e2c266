"""Records -> output lines: the local engine's work, which the Ray engine runs per batch.

``predict_records`` analyses records chunk by chunk and writes one JSON line per
record, in order; a bad record, or one over the per-document limits, becomes an
``{id, error}`` line in its slot. ``khabar predict`` runs it over a whole input in one
process; ``--engine ray`` runs it on each batch in its actors, so both give the same
line for the same record.

>>> with open("out.jsonl", "w", encoding="utf-8") as out:  # doctest: +SKIP
...     summary = predict_records(read_inputs(["news.jsonl"]), predictor, out)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import typer

from serving.cli.readers import Item, Record, RecordError
from serving.errors import InferenceError, LimitExceeded
from serving.limits import DocumentLimits, HasTokens
from serving.predictor import DEFAULT_BATCH_SIZE

if TYPE_CHECKING:
    from serving.predictor import DocumentResult

logger = logging.getLogger(__name__)

# Documents handed to the predictor at once: enough to sort windows by length and keep
# padding low, few enough that memory stays flat on inputs of any size.
DEFAULT_CHUNK_SIZE = 64


class Analyzer(Protocol):
    """What ``predict_records`` needs of a predictor (a fake in tests)."""

    def prepare(self, texts: Sequence[str]) -> Sequence[HasTokens]:
        """Tokenise documents (so their tokens can be counted before any encoder call)."""
        ...

    def analyze_prepared(
        self, prepared: Sequence[Any], ids: Sequence[str | None], batch_size: int
    ) -> list[DocumentResult]:
        """Analyse prepared documents, one result per document, in order."""
        ...


@dataclass(frozen=True)
class Summary:
    """How many documents were analysed and how many failed."""

    n_ok: int
    n_failed: int

    @property
    def n_total(self) -> int:
        """All documents read, analysed or not."""
        return self.n_ok + self.n_failed


def exit_if_any_failed(n_failed: int, n_total: int, where: str) -> None:
    """Both engines' rule: any failed record ends the run with exit 1 and one line counting them.

    Args:
        n_failed: Records that became ``{id, error}``.
        n_total: Records read.
        where: Where the failed records' ``error`` fields are, for the user to look.

    Raises:
        typer.Exit: With code 1, after the line, when ``n_failed`` is not 0.
    """
    if n_failed:
        typer.echo(
            f'{n_failed} of {n_total} documents failed ({where} have an "error" field)', err=True
        )
        raise typer.Exit(code=1)


def predict_records(
    records: Iterable[Item],
    predictor: Analyzer,
    out_stream: TextIO,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    limits: DocumentLimits | None = None,
) -> Summary:
    """Analyse records chunk by chunk and write one JSON line per record, in order.

    Args:
        records: Records and record errors, e.g. from :func:`read_inputs`.
        predictor: Anything with ``prepare`` and ``analyze_prepared``.
        out_stream: Text stream for the JSON lines; flushed after every chunk.
        batch_size: Windows per encoder call, passed to the predictor.
        progress: Called with the number of documents finished after each chunk.
        chunk_size: Records read before the predictor runs; bounds memory use.
        limits: Characters and tokens a document may have (default: the API's defaults);
            a record over them is an error line.

    Returns:
        Counts of analysed and failed documents.

    A document onnxruntime fails on gets an error line like a bad record does;
    anything else (Ctrl-C, a bug) propagates, and every chunk written before it
    stays in ``out_stream``.
    """
    limits = limits if limits is not None else DocumentLimits()
    n_ok = n_failed = 0
    for chunk in _chunks(records, chunk_size):
        lines = _analyze_chunk(chunk, predictor, batch_size, limits)
        for line in lines:
            if "error" in line:
                n_failed += 1
            else:
                n_ok += 1
            out_stream.write(json.dumps(line, ensure_ascii=False) + "\n")
        out_stream.flush()
        if progress is not None:
            progress(len(chunk))
    return Summary(n_ok=n_ok, n_failed=n_failed)


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _analyze_chunk(
    chunk: Sequence[Item], predictor: Analyzer, batch_size: int, limits: DocumentLimits
) -> list[dict[str, Any]]:
    """Output objects for one chunk, record errors (and records over limits) in their slots."""
    by_index: dict[int, dict[str, Any]] = {
        item.index: {"id": item.id, "error": item.error}
        for item in chunk
        if isinstance(item, RecordError)
    }
    records = []
    for item in chunk:
        if isinstance(item, Record):
            try:
                limits.check_characters(item.text)
            except LimitExceeded as exc:
                by_index[item.index] = {"id": item.id, "error": str(exc)}
            else:
                records.append(item)
    prepared = predictor.prepare([r.text for r in records]) if records else []
    within: list[tuple[Record, Any]] = []
    for record, item in zip(records, prepared, strict=True):
        try:
            limits.check_tokens(item)
        except LimitExceeded as exc:
            by_index[record.index] = {"id": record.id, "error": str(exc)}
        else:
            within.append((record, item))
    if within:
        by_index.update(_analyze_records(within, predictor, batch_size))
    return [by_index[item.index] for item in chunk]


def _analyze_records(
    records: Sequence[tuple[Record, Any]], predictor: Analyzer, batch_size: int
) -> dict[int, dict[str, Any]]:
    """Analyse prepared records; if the call fails, retry one by one to find the culprit.

    One document that trips onnxruntime should cost an error line, not the other
    63 documents of its chunk.
    """
    try:
        results = predictor.analyze_prepared(
            [item for _, item in records], [r.id for r, _ in records], batch_size
        )
        return {r.index: result.to_dict() for (r, _), result in zip(records, results, strict=True)}
    except InferenceError as exc:
        if len(records) == 1:
            record = records[0][0]
            logger.debug("record %s failed: %s", record.id, exc)
            return {record.index: {"id": record.id, "error": str(exc)}}
        logger.info("a chunk of %d documents failed; retrying one by one", len(records))
    lines: dict[int, dict[str, Any]] = {}
    for pair in records:
        lines.update(_analyze_records([pair], predictor, batch_size))
    return lines
