"""The Ray engine's parts that need no cluster: inputs, partitions, packing, output directory.

The pipeline on a local Ray, against the local engine, is in ``test_ray_engine.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from serving.cli.readers import FieldNames, Record, RecordError
from serving.errors import InputError
from serving.limits import DocumentLimits
from serving.ray_batch.inputs import (
    Batch,
    InputFile,
    Partition,
    items_of_row,
    pack,
    read_partitions,
    resolve_inputs,
)
from serving.ray_batch.output import MANIFEST_NAME, OutputDir, write_parquet

REPO = Path(__file__).resolve().parents[2]
FIELDS = FieldNames()
LIMITS = DocumentLimits()


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
        encoding="utf-8",
    )
    return path


def job(**changes: object) -> dict[str, object]:
    return {"inputs": ["a.jsonl"], "format": "jsonl", "partition_records": 2, **changes}


class TestInputs:
    def test_directories_and_globs_expand_in_sorted_order(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        data.mkdir()
        for name in ("b.jsonl", "a.csv", "notes.md", "c.ndjson"):
            (data / name).write_text("text\nزار ماكرون بيروت\n", encoding="utf-8")
        (data / "a.csv").write_text("id,text\n1,زار ماكرون بيروت\n", encoding="utf-8")
        files = resolve_inputs([str(data), str(data / "*.jsonl")])
        assert [(Path(f.name).name, f.format) for f in files] == [
            ("a.csv", "csv"),
            ("b.jsonl", "jsonl"),
            ("c.ndjson", "jsonl"),
            ("b.jsonl", "jsonl"),
        ]
        assert [f.number for f in files] == [0, 1, 2, 3]

    @pytest.mark.parametrize(
        ("name", "message"),
        [
            ("-", "not stdin"),
            ("missing.jsonl", "input not found"),
            ("nothing-*.jsonl", "no file matches"),
            ("notes.md", "cannot read"),
        ],
    )
    def test_bad_inputs_are_one_line(self, tmp_path: Path, name: str, message: str) -> None:
        (tmp_path / "notes.md").write_text("x", encoding="utf-8")
        with pytest.raises(InputError, match=message):
            resolve_inputs([name if name == "-" else str(tmp_path / name)])

    def test_a_table_without_the_text_column_is_refused_before_reading(
        self, tmp_path: Path
    ) -> None:
        table = tmp_path / "t.csv"
        table.write_text("id,body\n1,x\n", encoding="utf-8")
        with pytest.raises(InputError, match="no 'text' column"):
            resolve_inputs([str(table)])

    def test_partitions_cut_a_file_in_order_and_skip_complete_ones(self, tmp_path: Path) -> None:
        path = write_jsonl(tmp_path / "a.jsonl", [{"id": str(i), "text": "نص"} for i in range(5)])
        file = InputFile(3, str(path), "jsonl")
        parts = list(read_partitions(file, FIELDS, LIMITS, partition_records=2))
        assert [p.key for p in parts] == ["00003-000000", "00003-000001", "00003-000002"]
        assert [[item.id for item in p.items] for p in parts] == [["0", "1"], ["2", "3"], ["4"]]
        assert [item.index for item in parts[1].items] == [2, 3]
        kept = read_partitions(file, FIELDS, LIMITS, 2, skip=frozenset({"00003-000001"}))
        assert [p.key for p in kept] == ["00003-000000", "00003-000002"]

    def test_parquet_rows_are_checked_like_json_lines(self, tmp_path: Path) -> None:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        path = tmp_path / "a.parquet"
        table = pa.table(
            {"id": ["ok", None, "empty", "none"], "text": ["زار ماكرون بيروت", "نص", " ", None]}
        )
        pq.write_table(table, path)
        [file] = resolve_inputs([str(path)])
        [partition] = read_partitions(file, FIELDS, LIMITS)
        items = partition.items
        assert items[0] == Record(0, "ok", "زار ماكرون بيروت")
        assert items[1] == Record(1, f"{path}:2", "نص")
        assert items[2] == RecordError(2, "empty", "row 3: 'text' is empty")
        assert items[3] == RecordError(3, "none", "row 4 has no 'text' field")


class TestPacking:
    @staticmethod
    def partition(tokens: list[int]) -> tuple[Partition, dict[str, int]]:
        items = [Record(i, f"d{i}", "نص") for i in range(len(tokens))]
        file = InputFile(0, "a.jsonl", "jsonl")
        return Partition("00000-000000", file, list(items)), {
            f"d{i}": n for i, n in enumerate(tokens)
        }

    def test_batches_are_sized_by_tokens_and_keep_record_order(self) -> None:
        partition, tokens = self.partition([300, 300, 300, 5000, 100, 100, 100])
        batches = list(
            pack(partition, lambda items: [tokens[i.id] for i in items], batch_tokens=1000)
        )
        assert [[item.id for item in b.items] for b in batches] == [
            ["d0", "d1", "d2"],
            ["d3"],  # over the budget on its own: a batch of its own
            ["d4", "d5", "d6"],
        ]

    def test_batches_hold_a_bounded_number_of_records(self) -> None:
        partition, tokens = self.partition([0] * 5)
        batches = list(pack(partition, lambda items: [0] * len(items), batch_records=2))
        assert [len(b.items) for b in batches] == [2, 2, 1]

    def test_a_batch_travels_as_one_row_and_back(self) -> None:
        file = InputFile(0, "a.jsonl", "jsonl")
        items = [Record(0, "a", "نص"), RecordError(1, "b", "line 2 is not valid JSON")]
        row = Batch(Partition("00000-000000", file, items), items).to_row()
        assert json.loads(json.dumps(row)) == row
        assert row["partition_records"] == 2
        assert items_of_row(row) == items


class TestOutputDir:
    def test_partitions_and_manifest(self, tmp_path: Path) -> None:
        out = OutputDir.open(tmp_path / "out", job(), resume=False)
        lines = ['{"id": "a", "entities": []}', '{"id": "b", "error": "bad"}']
        path = out.write_partition("00000-000000", "a.jsonl", lines, n_failed=1)
        assert path.read_text(encoding="utf-8").splitlines() == lines
        manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text(encoding="utf-8"))
        assert manifest["job"] == job()
        assert (manifest["records"], manifest["ok"], manifest["failed"]) == (2, 1, 1)
        assert manifest["partitions"]["00000-000000"]["file"] == path.name
        assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]

    def test_resume_trusts_listed_partitions_whose_file_is_there(self, tmp_path: Path) -> None:
        out = OutputDir.open(tmp_path, job(), resume=False)
        out.write_partition("00000-000000", "a.jsonl", ['{"id": "a"}'], n_failed=0)
        out.write_partition("00000-000001", "a.jsonl", ['{"id": "b"}'], n_failed=0)
        (tmp_path / "part-00000-000001.jsonl").unlink()
        again = OutputDir.open(tmp_path, job(), resume=True)
        assert again.complete() == {"00000-000000"}
        assert again.counts().n_total == 1

    def test_an_earlier_run_is_not_overwritten_or_mixed(self, tmp_path: Path) -> None:
        OutputDir.open(tmp_path, job(), resume=False).write_partition("k", "a", ["{}"], 0)
        with pytest.raises(InputError, match="pass --resume"):
            OutputDir.open(tmp_path, job(), resume=False)
        with pytest.raises(InputError, match="other inputs"):
            OutputDir.open(tmp_path, job(inputs=["b.jsonl"]), resume=True)
        other = tmp_path / "other"
        other.mkdir()
        (other / "x.txt").write_text("x", encoding="utf-8")
        with pytest.raises(InputError, match="not empty"):
            OutputDir.open(other, job(), resume=True)

    def test_parquet_holds_the_json_records(self, tmp_path: Path) -> None:
        pq = pytest.importorskip("pyarrow.parquet")
        record = {
            "id": "a",
            "entities": [
                {
                    "text": "بباريس",
                    "name": "باريس",
                    "label": "LOC",
                    "start": 3,
                    "end": 9,
                    "score": 0.95,
                }
            ],
            "entity_groups": [
                {
                    "name": "باريس",
                    "label": "LOC",
                    "mentions": [0],
                    "count": 1,
                    "first": 3,
                    "salience": 1.0,
                }
            ],
            "topics": [{"label": "politics", "score": 0.97}],
            "topic_scores": {"politics": 0.97, "economy": 0.02},
            "warnings": [],
        }
        error = {"id": "b", "error": "line 2 is not valid JSON"}
        path = tmp_path / "p.parquet"
        write_parquet(path, [json.dumps(record), json.dumps(error)])
        rows = pq.read_table(path).to_pylist()
        rows[0]["topic_scores"] = dict(rows[0]["topic_scores"])
        assert rows[0] == {**record, "error": None}
        assert {k: v for k, v in rows[1].items() if v is not None} == error

    def test_a_result_field_the_schema_lacks_is_an_error_not_dropped(self, tmp_path: Path) -> None:
        pytest.importorskip("pyarrow")
        with pytest.raises(ValueError, match="new_field"):
            write_parquet(tmp_path / "p.parquet", [json.dumps({"id": "a", "new_field": 1})])


BLOCK_RAY = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"ray", "pyarrow"}:
                raise ImportError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    from khabar_cli.app import main
    main(sys.argv[1:])
    """
)


def test_without_ray_the_engine_says_what_to_install(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "زار ماكرون بيروت"}])
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_RAY,
            "predict",
            "--engine",
            "ray",
            str(source),
            "-o",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "pip install 'khabar[ray]'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_ray_options_belong_to_the_ray_engine(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from khabar_cli.app import app

    source = write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "زار ماكرون بيروت"}])
    result = CliRunner().invoke(app, ["predict", str(source), "--actors", "2"])
    assert result.exit_code == 2
    assert "--actors" in result.output


@pytest.mark.parametrize(
    ("extra", "flag"),
    [([], "--output"), (["-o", "out", "--threads", "2"], "--threads")],
)
def test_the_ray_engine_needs_an_output_directory_and_its_own_threads(
    tmp_path: Path, extra: list[str], flag: str
) -> None:
    from typer.testing import CliRunner

    from khabar_cli.app import app

    source = write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "زار ماكرون بيروت"}])
    result = CliRunner().invoke(app, ["predict", "--engine", "ray", str(source), *extra])
    assert result.exit_code == 2
    assert flag in result.output
