"""What the Ray engine reads: input files, their partitions, and batches sized by tokens.

Each input file is read whole by one Ray task with the local engine's readers
(:mod:`serving.cli.readers`; Parquet through :func:`read_parquet`, which validates rows
with the same rules), so ids, error messages and record order are exactly those of
``--engine local``. A file's records are cut in order into partitions of
``partition_records`` records. A partition is what is written to the output directory
and what ``--resume`` skips; its key names the file's place in the input list and its
own place in the file, so a rerun over the same inputs gives the same keys.

Inside a partition, records are packed into batches of at most ``batch_tokens``
sub-word tokens (and ``batch_records`` records), counted by the model's own
``Predictor.prepare``: every batch is about the same work, so one long article makes
a batch of its own instead of stalling 63 short ones. A record that will be an error
line (a bad record, one over the limits) costs no tokens.

>>> files = resolve_inputs(["archive/"])  # doctest: +SKIP
>>> for partition in read_partitions(files[0], FieldNames(), DocumentLimits(), 1000):
...     ...  # doctest: +SKIP
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from serving.cli.readers import (
    DEFAULT_FIELDS,
    RECORD_FORMATS,
    STDIN,
    FieldNames,
    Item,
    Record,
    RecordError,
    _make_item,
    check_inputs,
    format_by_suffix,
    read_inputs,
)
from serving.errors import InputError, LimitExceeded
from serving.limits import DocumentLimits
from serving.metadata import TOKENIZER_NAME, ModelMetadata
from serving.predictor import Predictor
from serving.tokenise import load_tokenizer

PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
FORMATS_HINT = ".jsonl, .ndjson, .csv, .tsv, .parquet, or a directory or glob of them"
# A partition is the unit written, reported in the manifest and skipped by --resume.
PARTITION_RECORDS = 1000
# About 40 news articles (p50 372 tokens): a few seconds of one core, so scheduling a
# batch costs little beside it, and a slow batch at the end of a run costs little too.
BATCH_TOKENS = 16_384
# As many documents as the local engine hands the predictor at once.
BATCH_RECORDS = 64
_GLOB_CHARACTERS = frozenset("*?[")
_PARQUET_READ_ROWS = 1024


@dataclass(frozen=True)
class InputFile:
    """One file of the run, numbered in the order the run reads them."""

    number: int
    name: str
    format: str


@dataclass(frozen=True)
class Partition:
    """Consecutive records of one file; ``index`` of each item counts within the file."""

    key: str
    file: InputFile
    items: list[Item]


@dataclass(frozen=True)
class Batch:
    """Records of one partition analysed together (one Ray Data block)."""

    partition: Partition
    items: list[Item]

    def to_row(self) -> dict[str, Any]:
        """The batch as one row of plain columns, as it travels between Ray tasks."""
        return {
            "partition": self.partition.key,
            "input": self.partition.file.name,
            "partition_records": len(self.partition.items),
            "indices": [item.index for item in self.items],
            "ids": [item.id for item in self.items],
            "texts": [item.text if isinstance(item, Record) else None for item in self.items],
            "errors": [
                item.error if isinstance(item, RecordError) else None for item in self.items
            ],
        }


def items_of_row(row: dict[str, Any]) -> list[Item]:
    """The records of a row made by :meth:`Batch.to_row`."""
    return [
        Record(index, doc_id, text) if error is None else RecordError(index, doc_id, error)
        for index, doc_id, text, error in zip(
            row["indices"], row["ids"], row["texts"], row["errors"], strict=True
        )
    ]


def file_format(name: str) -> str:
    """``jsonl``, ``csv``, ``tsv`` or ``parquet``, by the file's suffix.

    Raises:
        InputError: The suffix is none the Ray engine reads.
    """
    fmt = format_by_suffix(name, {**RECORD_FORMATS, "parquet": PARQUET_SUFFIXES})
    if fmt is None:
        raise InputError(f"--engine ray cannot read {name}: use {FORMATS_HINT}")
    return fmt


def resolve_inputs(names: Sequence[str], fields: FieldNames = DEFAULT_FIELDS) -> list[InputFile]:
    """Expand directories and globs into files, in order, and check each before any is read.

    A directory stands for the files directly inside it that the engine reads, in sorted
    order; a glob for its matches, sorted.

    Raises:
        InputError: Stdin, a missing input, a glob or directory with nothing to read, a
            file of another format, or a table without the text column.
    """
    paths: list[str] = []
    for name in names:
        if name == STDIN:
            raise InputError("--engine ray reads files, not stdin: write the records to a file")
        if _GLOB_CHARACTERS & set(name) and not Path(name).exists():
            matches = sorted(glob.glob(name))
            if not matches:
                raise InputError(f"no file matches {name}")
            paths += matches
        elif Path(name).is_dir():
            found = sorted(
                str(path) for path in Path(name).iterdir() if path.is_file() and _readable(path)
            )
            if not found:
                raise InputError(f"directory {name} has no file to read ({FORMATS_HINT})")
            paths += found
        else:
            paths.append(name)
    files = [InputFile(number, path, file_format(path)) for number, path in enumerate(paths)]
    for file in files:
        if file.format == "parquet":
            _check_parquet(Path(file.name), fields)
        else:
            check_inputs([file.name], fields)
    return files


def _readable(path: Path) -> bool:
    try:
        file_format(str(path))
    except InputError:
        return False
    return True


def _check_parquet(path: Path, fields: FieldNames) -> None:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(f"input not found: {path}")
    try:
        names = pq.read_schema(path).names
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from exc
    if fields.text not in names:
        shown = ", ".join(repr(name) for name in names[:10])
        raise InputError(
            f"{path} has no {fields.text!r} column (columns: {shown}); "
            "pass --text-field to name the text column"
        )


def read_parquet(path: Path, fields: FieldNames) -> Iterator[Item]:
    """Read a Parquet file one row per document, with the checks of JSON lines and tables.

    Default ids are ``path:row`` with the first row 1.
    """
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    columns = [name for name in (fields.text, fields.id) if name in parquet.schema_arrow.names]
    index = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_READ_ROWS, columns=columns):
        for data in batch.to_pylist():
            item = _make_item(data, f"{path}:{index + 1}", fields, f"row {index + 1}")
            yield replace(item, index=index)
            index += 1


def read_file(file: InputFile, fields: FieldNames, max_chars: int) -> Iterator[Item]:
    """Every record of one file, ``index`` counted within the file."""
    if file.format == "parquet":
        return read_parquet(Path(file.name), fields)
    return read_inputs([file.name], fields, max_chars=max_chars)


def partition_key(file: InputFile, number: int) -> str:
    """A partition's name: the file's place in the run, then the partition's in the file."""
    return f"{file.number:05d}-{number:06d}"


def read_partitions(
    file: InputFile,
    fields: FieldNames,
    limits: DocumentLimits,
    partition_records: int = PARTITION_RECORDS,
    skip: frozenset[str] = frozenset(),
) -> Iterator[Partition]:
    """The file's partitions in order, leaving out those whose key is in ``skip``."""
    items: list[Item] = []
    number = 0
    for item in read_file(file, fields, limits.max_chars):
        items.append(item)
        if len(items) == partition_records:
            if partition_key(file, number) not in skip:
                yield Partition(partition_key(file, number), file, items)
            items = []
            number += 1
    if items and partition_key(file, number) not in skip:
        yield Partition(partition_key(file, number), file, items)


class TokenCounter:
    """Sub-word tokens per document, counted by the model's own ``Predictor.prepare``.

    Loads the model's metadata and tokenizer only: no ONNX session, so a reading task
    stays small.
    """

    def __init__(self, model_dir: Path, limits: DocumentLimits) -> None:
        """Load ``model_dir``'s metadata and tokenizer (checked against their sha256)."""
        metadata = ModelMetadata.load(model_dir)
        tokenizer = load_tokenizer(metadata.verified_file(model_dir, TOKENIZER_NAME))
        # prepare() reads the metadata and the tokenizer only; the encoder is never run.
        self._predictor = Predictor(metadata, tokenizer, session=None)  # type: ignore[arg-type]
        self.limits = limits

    def __call__(self, items: Sequence[Item]) -> list[int]:
        """Tokens of each item; 0 for one that will be an error line without encoder work."""
        counts = [0] * len(items)
        records = [
            (slot, item)
            for slot, item in enumerate(items)
            if isinstance(item, Record) and len(item.text) <= self.limits.max_chars
        ]
        if not records:
            return counts
        prepared = self._predictor.prepare([record.text for _, record in records])
        for (slot, _), document in zip(records, prepared, strict=True):
            try:
                self.limits.check_tokens(document)
            except LimitExceeded:
                continue
            counts[slot] = document.n_tokens
        return counts


def pack(
    partition: Partition,
    count_tokens: Callable[[Sequence[Item]], list[int]],
    batch_tokens: int = BATCH_TOKENS,
    batch_records: int = BATCH_RECORDS,
) -> Iterator[Batch]:
    """Cut a partition, in order, into batches of at most ``batch_tokens`` tokens.

    A batch also holds at most ``batch_records`` records; a document over
    ``batch_tokens`` on its own is a batch of its own. Tokens are counted
    ``batch_records`` records at a time and each batch is yielded once full, so the
    first batch of a partition is ready long before its last record is tokenised.
    """
    current: list[Item] = []
    tokens = 0
    for start in range(0, len(partition.items), batch_records):
        chunk = partition.items[start : start + batch_records]
        for item, n_tokens in zip(chunk, count_tokens(chunk), strict=True):
            if current and (tokens + n_tokens > batch_tokens or len(current) == batch_records):
                yield Batch(partition, current)
                current, tokens = [], 0
            current.append(item)
            tokens += n_tokens
    if current:
        yield Batch(partition, current)
