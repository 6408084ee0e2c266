"""Tests for serving/cli/readers.py: every input format and every bad-input path."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from serving.cli.readers import (
    FieldNames,
    Record,
    RecordError,
    check_inputs,
    input_format,
    read_inputs,
    read_jsonl,
)
from serving.errors import InputError


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    return path


def read_all(names: list[str], **kwargs: object) -> list[Record | RecordError]:
    return list(read_inputs(names, **kwargs))  # type: ignore[arg-type]


class TestJsonl:
    def test_reads_text_and_id_in_order(self, tmp_path: Path) -> None:
        path = write_jsonl(
            tmp_path / "news.jsonl",
            [{"id": "a", "text": "زار ماكرون بيروت"}, {"id": 7, "text": "ب"}],
        )
        assert read_all([str(path)]) == [
            Record(0, "a", "زار ماكرون بيروت"),
            Record(1, "7", "ب"),
        ]

    def test_default_id_is_source_and_line_number(self, tmp_path: Path) -> None:
        path = tmp_path / "news.jsonl"
        path.write_text('{"text": "one"}\n\n{"text": "two"}\n', encoding="utf-8")
        items = read_all([str(path)])
        assert [item.id for item in items] == [f"{path}:1", f"{path}:3"]
        assert [item.index for item in items] == [0, 1]

    def test_bad_lines_become_record_errors_and_reading_goes_on(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.jsonl"
        lines = [
            '{"id": "ok1", "text": "fine"}',
            "{not json",
            '{"id": "m", "title": "no text"}',
            '{"id": "e", "text": "   "}',
            '{"id": "n", "text": 42}',
            '["a", "list"]',
            '{"id": {"x": 1}, "text": "bad id"}',
            '{"id": "ok2", "text": "also fine"}',
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        items = read_all([str(path)])
        assert [type(item).__name__ for item in items] == [
            "Record",
            "RecordError",
            "RecordError",
            "RecordError",
            "RecordError",
            "RecordError",
            "RecordError",
            "Record",
        ]
        errors = {item.id: item.error for item in items if isinstance(item, RecordError)}
        assert "not valid JSON" in errors[f"{path}:2"]
        assert "no 'text' field" in errors["m"]
        assert "is empty" in errors["e"]
        assert "not a string" in errors["n"]
        assert "not an object" in errors[f"{path}:6"]
        assert "must be a string or a number" in errors[f"{path}:7"]
        assert items[-1] == Record(7, "ok2", "also fine")

    def test_a_line_too_long_for_the_limit_is_skipped_without_being_held(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "huge.jsonl"
        with path.open("wb") as out:
            out.write(b'{"id": "huge", "text": "')
            for _ in range(50):
                out.write(b"a" * 1_000_000)
            out.write(b'"}\n{"id": "next", "text": "\xd8\xa8"}\n')
        tracemalloc.start()
        try:
            items = read_all([str(path)], max_chars=100_000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8_000_000  # a 50 MB line, never in memory whole
        assert isinstance(items[0], RecordError)
        assert items[0].id == f"{path}:1"
        assert "longer than" in items[0].error
        assert items[1] == Record(1, "next", "ب")

    def test_a_line_within_the_limit_is_read(self, tmp_path: Path) -> None:
        text = "ب" * 50_000
        path = write_jsonl(tmp_path / "ok.jsonl", [{"text": text}])
        assert read_all([str(path)], max_chars=50_000) == [Record(0, f"{path}:1", text)]

    def test_a_lone_surrogate_is_a_record_error(self, tmp_path: Path) -> None:
        path = tmp_path / "s.jsonl"
        path.write_text('{"text": "ab\\ud800c"}\n{"text": "\\ud83d\\ude00 ok"}\n', encoding="utf-8")
        first, second = read_all([str(path)])
        assert isinstance(first, RecordError)
        assert "lone surrogate (U+D800) at character 2" in first.error
        assert second == Record(1, f"{path}:2", "😀 ok")

    def test_a_line_that_is_not_utf8_is_a_record_error(self, tmp_path: Path) -> None:
        path = tmp_path / "mixed.jsonl"
        path.write_bytes(
            b'{"text": "ok"}\n' + '{"text": "زار"}'.encode("cp1256") + b'\n{"text": "ok"}\n'
        )
        items = read_all([str(path)])
        assert isinstance(items[1], RecordError)
        assert "not valid UTF-8" in items[1].error
        assert isinstance(items[2], Record)

    def test_custom_fields(self, tmp_path: Path) -> None:
        path = write_jsonl(tmp_path / "x.jsonl", [{"doc": "d1", "body": "نص"}])
        items = read_all([str(path)], fields=FieldNames(text="body", id="doc"))
        assert items == [Record(0, "d1", "نص")]

    def test_byte_order_mark_is_dropped(self, tmp_path: Path) -> None:
        path = tmp_path / "bom.jsonl"
        path.write_bytes(b'\xef\xbb\xbf{"text": "x"}\n')
        assert read_all([str(path)]) == [Record(0, f"{path}:1", "x")]

    def test_stdin_reads_json_lines(self) -> None:
        stdin = io.BytesIO('{"text": "من stdin"}\n{"text": ""}\n'.encode())
        items = read_all(["-"], stdin=stdin)
        assert items[0] == Record(0, "<stdin>:1", "من stdin")
        assert isinstance(items[1], RecordError)

    def test_read_jsonl_accepts_text_lines(self) -> None:
        items = list(read_jsonl(['{"text": "a"}\n'], "src", FieldNames()))
        assert items == [Record(0, "src:1", "a")]


class TestTables:
    def test_csv_with_header_and_quoted_newlines(self, tmp_path: Path) -> None:
        path = tmp_path / "news.csv"
        path.write_text('id,text\na,"سطر\nثان"\n,بلا معرف\n', encoding="utf-8")
        assert read_all([str(path)]) == [
            Record(0, "a", "سطر\nثان"),
            Record(1, f"{path}:3", "بلا معرف"),
        ]

    def test_tsv(self, tmp_path: Path) -> None:
        path = tmp_path / "news.tsv"
        path.write_text("text\tid\nزار ماكرون\tx1\n", encoding="utf-8")
        assert read_all([str(path)]) == [Record(0, "x1", "زار ماكرون")]

    def test_empty_cell_and_short_row_are_record_errors(self, tmp_path: Path) -> None:
        path = tmp_path / "gaps.csv"
        path.write_text("id,text\na,\nb\nc,ok\n", encoding="utf-8")
        items = read_all([str(path)])
        assert [type(item).__name__ for item in items] == ["RecordError", "RecordError", "Record"]
        assert "empty" in items[0].error  # type: ignore[union-attr]
        assert "no 'text' field" in items[1].error  # type: ignore[union-attr]

    def test_missing_text_column_is_a_whole_run_error(self, tmp_path: Path) -> None:
        path = tmp_path / "cols.csv"
        path.write_text("id,body\na,b\n", encoding="utf-8")
        with pytest.raises(InputError, match=r"no 'text' column .*--text-field"):
            check_inputs([str(path)])
        with pytest.raises(InputError, match="no 'text' column"):
            read_all([str(path)])

    def test_text_column_named_by_option(self, tmp_path: Path) -> None:
        path = tmp_path / "cols.csv"
        path.write_text("id,body\na,b\n", encoding="utf-8")
        fields = FieldNames(text="body")
        check_inputs([str(path)], fields)
        assert read_all([str(path)], fields=fields) == [Record(0, "a", "b")]

    def test_csv_that_is_not_utf8_is_a_clear_error(self, tmp_path: Path) -> None:
        path = tmp_path / "latin.csv"
        path.write_bytes("text\nزار\n".encode("cp1256"))
        with pytest.raises(InputError, match="not valid UTF-8"):
            read_all([str(path)])

    def test_empty_csv_is_a_clear_error(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.csv"
        path.write_text("", encoding="utf-8")
        with pytest.raises(InputError, match="empty"):
            check_inputs([str(path)])

    def test_cells_longer_than_csvs_default_limit(self, tmp_path: Path) -> None:
        path = tmp_path / "long.csv"
        text = "كلمة " * 40_000  # 200k characters, over csv's 128 KiB default
        path.write_text(f'text\n"{text}"\n', encoding="utf-8")
        assert read_all([str(path)])[0] == Record(0, f"{path}:2", text)

    def test_a_cell_too_long_for_the_limit_stops_with_a_clear_error(self, tmp_path: Path) -> None:
        path = tmp_path / "huge.csv"
        path.write_text("text\n" + "ب" * 2_000_000 + "\n", encoding="utf-8")
        with pytest.raises(InputError, match="has a cell longer than"):
            read_all([str(path)], max_chars=1000)


class TestTextFiles:
    def test_txt_file_is_one_document_named_after_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "story.txt"
        path.write_text("سطر أول\nسطر ثان\n", encoding="utf-8")
        assert read_all([str(path)]) == [Record(0, "story.txt", "سطر أول\nسطر ثان\n")]

    def test_directory_reads_txt_files_in_sorted_order(self, tmp_path: Path) -> None:
        for name, text in [("b.txt", "ب"), ("a.txt", "أ"), ("c.md", "skip"), ("d.txt", "")]:
            (tmp_path / name).write_text(text, encoding="utf-8")
        (tmp_path / "e.txt").write_bytes("زار".encode("cp1256"))
        items = read_all([str(tmp_path)])
        assert [item.id for item in items] == ["a.txt", "b.txt", "d.txt", "e.txt"]
        assert isinstance(items[0], Record)
        assert items[0].text == "أ"
        assert isinstance(items[2], RecordError)
        assert "empty" in items[2].error
        assert isinstance(items[3], RecordError)
        assert "not valid UTF-8" in items[3].error

    def test_every_txt_entry_that_cannot_be_read_is_an_error_line(self, tmp_path: Path) -> None:
        (tmp_path / "a.txt").write_text("أ", encoding="utf-8")
        (tmp_path / "b.txt").symlink_to(tmp_path / "gone.txt")
        os.mkfifo(tmp_path / "c.txt")
        (tmp_path / "d.txt").mkdir()
        (tmp_path / "notes.md").write_text("not a document", encoding="utf-8")
        items = read_all([str(tmp_path)])
        assert [item.id for item in items] == ["a.txt", "b.txt", "c.txt", "d.txt"]
        assert isinstance(items[0], Record)
        errors = [item.error for item in items[1:] if isinstance(item, RecordError)]
        assert len(errors) == 3
        assert "link to nothing" in errors[0]
        assert "FIFO" in errors[1]
        assert "directory" in errors[2]

    def test_a_txt_file_too_large_for_the_limit_is_not_read(self, tmp_path: Path) -> None:
        path = tmp_path / "big.txt"
        path.write_text("ب" * 100, encoding="utf-8")
        [item] = read_all([str(path)], max_chars=20)
        assert isinstance(item, RecordError)
        assert "200 bytes" in item.error
        assert "20 characters" in item.error

    def test_directory_without_txt_files_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="no .txt files"):
            check_inputs([str(tmp_path)])


class TestSeveralInputs:
    def test_indices_run_across_inputs_in_order(self, tmp_path: Path) -> None:
        first = write_jsonl(tmp_path / "1.jsonl", [{"text": "a"}, {"text": "b"}])
        second = tmp_path / "2.txt"
        second.write_text("c", encoding="utf-8")
        items = read_all([str(first), str(second)])
        assert [(item.index, item.text) for item in items] == [(0, "a"), (1, "b"), (2, "c")]  # type: ignore[union-attr]


class TestCheckInputs:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="input not found"):
            check_inputs([str(tmp_path / "nope.jsonl")])

    def test_unknown_format(self, tmp_path: Path) -> None:
        path = tmp_path / "data.parquet"
        path.write_bytes(b"")
        with pytest.raises(InputError, match="cannot tell the format"):
            check_inputs([str(path)])

    def test_stdin_twice(self) -> None:
        with pytest.raises(InputError, match="only once"):
            check_inputs(["-", "-"])

    @pytest.mark.parametrize(
        ("name", "fmt"),
        [
            ("a.jsonl", "jsonl"),
            ("a.NDJSON", "jsonl"),
            ("a.csv", "csv"),
            ("a.tsv", "tsv"),
            ("a.txt", "txt"),
            ("-", "jsonl"),
        ],
    )
    def test_format_from_name(self, name: str, fmt: str) -> None:
        assert input_format(name) == fmt
