"""Input readers for ``khabar predict``: files and stdin -> ``Record | RecordError``.

Every reader is a generator, so a large input is never held in memory, and a bad
record becomes a :class:`RecordError` in its slot instead of ending the run. Whole-run
problems (a missing file, a CSV without the text column, a file that is not UTF-8
where records cannot be told apart) raise :class:`~serving.errors.InputError`.

Memory stays flat whatever the input holds: a record bigger than the per-document
character limit could need is refused without being read whole (a JSON line longer
than :func:`max_record_bytes`, a ``.txt`` file larger than four bytes per allowed
character).

Supported inputs, chosen by name:

- ``*.jsonl`` / ``*.ndjson``: one JSON object per line; ``-`` reads JSON lines from stdin.
- ``*.csv`` / ``*.tsv``: a header row, then one document per row.
- ``*.txt``: the whole file is one document, its id the file name.
- a directory: every ``*.txt`` directly inside it, in sorted order; a ``*.txt`` entry that
  is not a readable regular file (a dangling link, a FIFO, a directory) is an error line.

>>> for item in read_inputs(["news.jsonl"]):  # doctest: +SKIP
...     print(item.index, item.id)
"""

from __future__ import annotations

import csv
import json
import logging
import re
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from serving.errors import InputError
from serving.limits import DEFAULT_MAX_CHARS_PER_DOCUMENT

logger = logging.getLogger(__name__)

STDIN = "-"
DEFAULT_TEXT_FIELD = "text"
DEFAULT_ID_FIELD = "id"
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
CSV_SUFFIXES = frozenset({".csv"})
TSV_SUFFIXES = frozenset({".tsv", ".tab"})
TXT_SUFFIXES = frozenset({".txt"})
# The record formats both engines read, by suffix; each engine adds its own (txt, parquet).
RECORD_FORMATS: dict[str, frozenset[str]] = {
    "jsonl": JSONL_SUFFIXES,
    "csv": CSV_SUFFIXES,
    "tsv": TSV_SUFFIXES,
}
_FORMATS_HINT = ".jsonl, .ndjson, .csv, .tsv, .txt, a directory of .txt files, or - for stdin"
# Excel and Notepad prefix UTF-8 files with a byte-order mark; it is not part of the text.
_BOM = "\ufeff"
# JSON spends at most 12 bytes on one character (a surrogate pair of \uXXXX escapes),
# and the other fields of a record need some room.
_JSON_BYTES_PER_CHAR = 12
_RECORD_OVERHEAD_BYTES = 1024 * 1024
# UTF-8 spends at most 4 bytes on one character.
_UTF8_BYTES_PER_CHAR = 4
_READ_CHUNK = 64 * 1024
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Record:
    """A document to analyse.

    Attributes:
        index: Position in the whole run (all inputs, in order), from 0.
        id: The record's id field, or a stable ``source:line`` id.
        text: The document text, never empty.
    """

    index: int
    id: str
    text: str


@dataclass(frozen=True)
class RecordError:
    """A record that cannot be analysed; it keeps its slot in the output."""

    index: int
    id: str
    error: str


Item = Record | RecordError


@dataclass(frozen=True)
class FieldNames:
    """Which JSON key or CSV column holds the text and which the id."""

    text: str = DEFAULT_TEXT_FIELD
    id: str = DEFAULT_ID_FIELD


DEFAULT_FIELDS = FieldNames()


def max_record_bytes(max_chars: int) -> int:
    """The longest JSON line or CSV cell a record within ``max_chars`` characters can need."""
    return _JSON_BYTES_PER_CHAR * max_chars + _RECORD_OVERHEAD_BYTES


def input_format(name: str) -> str:
    """Name the reader for an input: ``jsonl``, ``csv``, ``tsv``, ``txt`` or ``dir``.

    Raises:
        InputError: The name has no suffix khabar reads.
    """
    if name == STDIN:
        return "jsonl"
    path = Path(name)
    if path.is_dir():
        return "dir"
    fmt = format_by_suffix(name, {**RECORD_FORMATS, "txt": TXT_SUFFIXES})
    if fmt is None:
        raise InputError(f"cannot tell the format of {name}: use {_FORMATS_HINT}")
    return fmt


def format_by_suffix(name: str, formats: Mapping[str, frozenset[str]]) -> str | None:
    """The format whose suffixes hold ``name``'s suffix (any case), or None."""
    suffix = Path(name).suffix.lower()
    return next((fmt for fmt, suffixes in formats.items() if suffix in suffixes), None)


def check_inputs(names: Sequence[str], fields: FieldNames = DEFAULT_FIELDS) -> None:
    """Check every input before any is read, so a typo in the last one fails at once.

    Args:
        names: Input paths as the user gave them; ``-`` is stdin.
        fields: Field names, to check that CSV/TSV headers have the text column.

    Raises:
        InputError: An input is missing, unreadable, of unknown format, a directory
            without ``.txt`` files, or a table without the text column; or stdin is
            named more than once.
    """
    if list(names).count(STDIN) > 1:
        raise InputError("stdin (-) can be read only once; name it once")
    for name in names:
        if name == STDIN:
            continue
        path = Path(name)
        if not path.exists():
            raise InputError(f"input not found: {name}")
        fmt = input_format(name)
        if fmt == "dir":
            if not _txt_files(path):
                raise InputError(f"directory {name} has no .txt files")
        elif fmt in ("csv", "tsv"):
            with _open_text(path) as stream:
                _read_header(csv.reader(stream, dialect=_dialect(fmt)), name, fields)
        else:
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc


def read_inputs(
    names: Sequence[str],
    fields: FieldNames = DEFAULT_FIELDS,
    stdin: BinaryIO | None = None,
    max_chars: int = DEFAULT_MAX_CHARS_PER_DOCUMENT,
) -> Iterator[Item]:
    """Read several inputs in order, numbering records across all of them.

    Args:
        names: Input paths as the user gave them; ``-`` is stdin (JSON lines).
        fields: Which field holds the text and which the id.
        stdin: Byte stream to read for ``-`` (default: the process's stdin).
        max_chars: The per-document character limit; records that cannot be within it
            are refused without being read whole.

    Yields:
        A :class:`Record` or :class:`RecordError` per document, in input order.

    Raises:
        InputError: A whole input cannot be read (see :func:`check_inputs`).
    """
    index = 0
    for name in names:
        for item in _read_one(name, fields, stdin, max_chars):
            if isinstance(item, Record):
                yield Record(index=index, id=item.id, text=item.text)
            else:
                yield RecordError(index=index, id=item.id, error=item.error)
            index += 1


def _read_one(
    name: str, fields: FieldNames, stdin: BinaryIO | None, max_chars: int
) -> Iterator[Item]:
    max_bytes = max_record_bytes(max_chars)
    if name == STDIN:
        stream = stdin if stdin is not None else _stdin_bytes()
        yield from read_jsonl(stream, "<stdin>", fields, max_bytes)
        return
    fmt = input_format(name)
    path = Path(name)
    if fmt == "jsonl":
        try:
            with path.open("rb") as stream:
                yield from read_jsonl(stream, name, fields, max_bytes)
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc
    elif fmt in ("csv", "tsv"):
        yield from read_table(path, fields, "," if fmt == "csv" else "\t", max_bytes)
    elif fmt == "txt":
        yield read_txt(path, max_chars=max_chars)
    else:
        yield from read_directory(path, max_chars)


def _stdin_bytes() -> BinaryIO:
    """Stdin as bytes, so each line is decoded (and can fail) on its own."""
    return getattr(sys.stdin, "buffer", sys.stdin)  # type: ignore[return-value]


def read_jsonl(
    stream: Iterable[bytes],
    source: str,
    fields: FieldNames,
    max_line_bytes: int | None = None,
) -> Iterator[Item]:
    """Read JSON lines; each bad line becomes a :class:`RecordError` and reading goes on.

    Lines are decoded one at a time, so one line in another encoding spoils only
    itself. Blank lines are skipped (they are not documents); ids default to
    ``source:line`` with 1-based line numbers, which stay stable across runs.

    Args:
        stream: Lines of bytes (a file opened in binary mode, or stdin's buffer).
        source: Name used in default ids and messages (the path, or ``<stdin>``).
        fields: Which key holds the text and which the id.
        max_line_bytes: A longer line is an error record, skipped without being held in
            memory (read from streams with ``readline``); ``None``: no limit.

    Yields:
        Items with ``index`` counted within this source.
    """
    index = 0
    for line_number, raw in enumerate(_bounded_lines(stream, max_line_bytes), start=1):
        if raw is None:
            item: Item = RecordError(
                0,
                f"{source}:{line_number}",
                f"line {line_number} is longer than {max_line_bytes} bytes, more than a record "
                "within the per-document character limit can need; it was skipped unread",
            )
        else:
            if isinstance(raw, str):  # a text stream handed in by a caller
                raw = raw.encode("utf-8")
            if not raw.strip():
                continue
            item = _parse_json_line(raw, line_number, source, fields)
        yield _with_index(item, index)
        index += 1


def _bounded_lines(stream: Iterable[bytes], max_bytes: int | None) -> Iterator[bytes | None]:
    """The stream's lines; ``None`` in place of a line over ``max_bytes``, never held whole."""
    readline = getattr(stream, "readline", None)
    if max_bytes is None or readline is None:
        yield from stream
        return
    while True:
        line = readline(max_bytes + 1)
        if not line:
            return
        if line.endswith(b"\n") or len(line) <= max_bytes:
            yield line
            continue
        # Too long: drop the rest of the line a chunk at a time.
        while not line.endswith(b"\n"):
            line = readline(_READ_CHUNK)
            if not line:
                break
        yield None


def _parse_json_line(raw: bytes, line_number: int, source: str, fields: FieldNames) -> Item:
    default_id = f"{source}:{line_number}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return RecordError(0, default_id, f"line {line_number} is not valid UTF-8")
    if line_number == 1:
        line = line.removeprefix(_BOM)
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return RecordError(0, default_id, f"line {line_number} is not valid JSON: {exc.msg}")
    if not isinstance(data, dict):
        return RecordError(
            0, default_id, f"line {line_number} is a JSON {type(data).__name__}, not an object"
        )
    return _make_item(data, default_id, fields, f"line {line_number}")


def _make_item(data: dict[str, object], default_id: str, fields: FieldNames, where: str) -> Item:
    """Validate one record's id and text; shared by JSON lines and tables."""
    raw_id = data.get(fields.id)
    if raw_id is None or raw_id == "":
        doc_id = default_id
    elif isinstance(raw_id, str):
        doc_id = raw_id
    elif isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
        doc_id = str(raw_id)
    else:
        return RecordError(0, default_id, f"{where}: {fields.id!r} must be a string or a number")
    if fields.text not in data or data[fields.text] is None:
        return RecordError(0, doc_id, f"{where} has no {fields.text!r} field")
    text = data[fields.text]
    if not isinstance(text, str):
        return RecordError(
            0, doc_id, f"{where}: {fields.text!r} is a {_json_type(text)}, not a string"
        )
    if not text.strip():
        return RecordError(0, doc_id, f"{where}: {fields.text!r} is empty")
    surrogate = _LONE_SURROGATE.search(text)
    if surrogate is not None:
        # JSON can spell half of a UTF-16 pair ("\ud800"); it is not a character.
        return RecordError(
            0,
            doc_id,
            f"{where}: {fields.text!r} has a lone surrogate (U+{ord(surrogate.group()):04X}) at "
            f"character {surrogate.start()}, which is not valid Unicode",
        )
    return Record(0, doc_id, text)


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", list: "list", dict: "object"}
    return names.get(type(value), type(value).__name__)


def read_table(
    path: Path,
    fields: FieldNames,
    delimiter: str = ",",
    max_cell_bytes: int = max_record_bytes(DEFAULT_MAX_CHARS_PER_DOCUMENT),
) -> Iterator[Item]:
    """Read a CSV or TSV file with a header row; one document per row.

    Args:
        path: The file.
        fields: Which column holds the text and which the id (the id column is optional).
        delimiter: ``,`` for CSV, a tab for TSV.
        max_cell_bytes: csv's cell limit; a longer cell stops the read with an error.

    Yields:
        Items with ``index`` counted within this file; default ids are ``path:row``
        with the header as row 1, which is the line number when no cell spans lines.

    Raises:
        InputError: The file is not UTF-8, has no header or lacks the text column.
    """
    name = str(path)
    fmt = "csv" if delimiter == "," else "tsv"
    # The limit is process-wide in the csv module; each table is read under its own.
    csv.field_size_limit(max_cell_bytes)
    try:
        with _open_text(path) as stream:
            reader = csv.reader(stream, dialect=_dialect(fmt))
            header = _read_header(reader, name, fields)
            text_column = header.index(fields.text)
            id_column = header.index(fields.id) if fields.id in header else None
            for index, row in enumerate(reader):
                row_number = index + 2
                default_id = f"{name}:{row_number}"
                data: dict[str, object] = {}
                if text_column < len(row):
                    data[fields.text] = row[text_column]
                if id_column is not None and id_column < len(row):
                    data[fields.id] = row[id_column]
                yield _with_index(_make_item(data, default_id, fields, f"row {row_number}"), index)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{name} is not valid UTF-8 (byte {exc.start}); save it as UTF-8 and retry"
        ) from exc
    except csv.Error as exc:
        if "field limit" in str(exc):
            # A cell cannot be skipped safely (a quoted one spans lines), so the file stops.
            raise InputError(
                f"{name} has a cell longer than {max_cell_bytes} bytes, more than a document "
                "within the per-document character limit can need: split that document"
            ) from exc
        raise InputError(f"{name} is not a readable {fmt.upper()} file: {exc}") from exc


def _read_header(reader: Iterator[list[str]], name: str, fields: FieldNames) -> list[str]:
    """The header row, checked for the text column.

    Raises:
        InputError: The file is empty, not UTF-8, or has no text column.
    """
    try:
        header = next(reader, None)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{name} is not valid UTF-8 (byte {exc.start}); save it as UTF-8 and retry"
        ) from exc
    if header is None:
        raise InputError(f"{name} is empty; it needs a header row with a {fields.text!r} column")
    header = [column.strip() for column in header]
    if fields.text not in header:
        shown = ", ".join(repr(column) for column in header[:10])
        raise InputError(
            f"{name} has no {fields.text!r} column (columns: {shown}); "
            f"pass --text-field to name the text column"
        )
    return header


def read_txt(
    path: Path, doc_id: str | None = None, max_chars: int = DEFAULT_MAX_CHARS_PER_DOCUMENT
) -> Item:
    """Read a whole ``.txt`` file as one document, its id the file name.

    A file that is not UTF-8, is empty, is not a regular file or is too large for
    ``max_chars`` characters is a :class:`RecordError`, not a whole-run error, because
    in a directory it is one document among many.
    """
    doc_id = doc_id or path.name
    problem = _not_a_readable_file(path)
    if problem is not None:
        return RecordError(0, doc_id, f"{path} {problem}; skipped")
    try:
        size = path.stat().st_size
        max_bytes = _UTF8_BYTES_PER_CHAR * max_chars + len(_BOM.encode("utf-8"))
        if size > max_bytes:
            return RecordError(
                0,
                doc_id,
                f"{path} has {size} bytes, more than {max_chars} characters can take "
                f"(the limit per document): split it into smaller documents",
            )
        text = path.read_bytes().decode("utf-8").removeprefix(_BOM)
    except UnicodeDecodeError as exc:
        return RecordError(0, doc_id, f"{path} is not valid UTF-8 (byte {exc.start})")
    except OSError as exc:
        return RecordError(0, doc_id, f"cannot read {path}: {exc.strerror or exc}")
    if not text.strip():
        return RecordError(0, doc_id, f"{path} is empty")
    return Record(0, doc_id, text)


def read_directory(path: Path, max_chars: int = DEFAULT_MAX_CHARS_PER_DOCUMENT) -> Iterator[Item]:
    """Read every ``*.txt`` entry directly inside ``path``, in sorted order, one document each.

    An entry named ``*.txt`` that is not a readable regular file (a dangling link, a
    FIFO, a socket, a directory) is an error line in its slot, not skipped in silence.
    """
    for index, entry in enumerate(_txt_files(path)):
        yield _with_index(read_txt(entry, max_chars=max_chars), index)


def _txt_files(path: Path) -> list[Path]:
    """Every entry of ``path`` named ``*.txt``, whatever it is, in sorted order."""
    return sorted(p for p in path.iterdir() if p.suffix.lower() in TXT_SUFFIXES)


def _not_a_readable_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a document without blocking, or ``None``."""
    try:
        mode = path.stat().st_mode  # follows links
    except FileNotFoundError:
        return "is a link to nothing" if path.is_symlink() else "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    return "is a device, not a file"


def _open_text(path: Path) -> TextIO:
    """Open a table for reading; ``utf-8-sig`` drops a byte-order mark from the header."""
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _dialect(fmt: str) -> type[csv.Dialect]:
    return csv.excel if fmt == "csv" else csv.excel_tab


def _with_index(item: Item, index: int) -> Item:
    if isinstance(item, Record):
        return Record(index, item.id, item.text)
    return RecordError(index, item.id, item.error)
