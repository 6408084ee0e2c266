"""``khabar predict --engine ray`` on a local Ray (2 CPUs) against ``--engine local``.

300 ANT articles, read from the data root, with the shipped model: every id gets the
same record from both engines (scores within 1e-4), bad records are error rows in both
and the job goes on, and ``--resume`` recomputes only partitions that are not complete.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from khabar_cli.app import app
from serving.errors import InputError
from serving.metadata import DEFAULT_MODEL_DIR
from tests.corpora import require_corpora

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "khabar.json").is_file(), reason="no shipped model in models/default"
)

ANT_SHARD = "topics/ant-v2.1/ant-v2.1-020.jsonl"
N_ARTICLES = 300
TOLERANCE = 1e-4
BAD_RECORDS = [
    '{"id": "no-text", "title": "x"}',
    '{"id": "empty", "text": "   "}',
    '{"id": "not-a-string", "text": 42}',
    "this line is not JSON",
]
runner = CliRunner()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three JSON-lines files: two halves of the articles, and a few of them among bad records."""
    shard = require_corpora(ANT_SHARD) / ANT_SHARD
    articles = []
    with shard.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            text = f"{record['title']}\n{record['text']}"
            articles.append(json.dumps({"id": record["id"], "text": text}, ensure_ascii=False))
            if len(articles) == N_ARTICLES:
                break
    assert len(articles) == N_ARTICLES
    directory = tmp_path_factory.mktemp("inputs")
    half = (N_ARTICLES - 2) // 2
    parts = {
        "a.jsonl": articles[:half],
        "b.jsonl": articles[half:-2],
        "c.jsonl": [articles[-2], *BAD_RECORDS, articles[-1]],
    }
    for name, rows in parts.items():
        (directory / name).write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return directory


def records(paths: list[Path]) -> list[dict[str, Any]]:
    return [
        json.loads(line) for path in paths for line in path.read_text(encoding="utf-8").splitlines()
    ]


def assert_close(ray_value: Any, local_value: Any, where: str) -> None:
    """Equal, but for floats within TOLERANCE."""
    if isinstance(local_value, float) and isinstance(ray_value, int | float):
        assert abs(ray_value - local_value) <= TOLERANCE, where
    elif isinstance(local_value, dict):
        assert isinstance(ray_value, dict) and ray_value.keys() == local_value.keys(), where
        for key in local_value:
            assert_close(ray_value[key], local_value[key], f"{where}.{key}")
    elif isinstance(local_value, list):
        assert isinstance(ray_value, list) and len(ray_value) == len(local_value), where
        for index, (a, b) in enumerate(zip(ray_value, local_value, strict=True)):
            assert_close(a, b, f"{where}[{index}]")
    else:
        assert ray_value == local_value, where


@pytest.fixture(scope="module")
def local_records(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("local") / "local.jsonl"
    files = [str(path) for path in sorted(inputs.glob("*.jsonl"))]
    result = runner.invoke(app, ["predict", *files, "-o", str(out), "--threads", "2"])
    assert result.exit_code == 1, result.output
    return records([out])


@pytest.fixture(scope="module")
def ray_run(ray_cluster: Any, inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("ray") / "out"
    result = runner.invoke(
        app, ["predict", "--engine", "ray", str(inputs), "-o", str(out), "--actors", "2"]
    )
    return out, result


def partition_files(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.jsonl"))


def test_every_id_gets_the_local_engines_record(ray_run, local_records) -> None:
    out, result = ray_run
    ray_records = records(partition_files(out))
    assert [r["id"] for r in ray_records] == [r["id"] for r in local_records]
    analysed = [r for r in local_records if "error" not in r]
    assert len(analysed) == N_ARTICLES
    assert sum(len(r["entities"]) for r in analysed) > N_ARTICLES  # the model found entities
    for ray_record, local_record in zip(ray_records, local_records, strict=True):
        assert_close(ray_record, local_record, ray_record["id"])


def test_bad_records_are_error_rows_and_the_job_goes_on(ray_run, local_records) -> None:
    out, result = ray_run
    errors = {r["id"]: r["error"] for r in records(partition_files(out)) if "error" in r}
    assert set(errors) >= {"no-text", "empty", "not-a-string"}
    assert errors == {r["id"]: r["error"] for r in local_records if "error" in r}
    assert len(errors) == len(BAD_RECORDS)
    # The local engine's rules: exit 1 and one line counting the failures.
    assert result.exit_code == 1, result.output
    total = N_ARTICLES + len(BAD_RECORDS)
    assert f"{len(BAD_RECORDS)} of {total} documents failed" in result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["records"], manifest["failed"]) == (total, len(BAD_RECORDS))
    assert len(manifest["partitions"]) == 3


def test_resume_recomputes_only_incomplete_partitions(ray_run, inputs: Path) -> None:
    out, _ = ray_run
    before = {
        path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in partition_files(out)
    }
    refused = runner.invoke(app, ["predict", "--engine", "ray", str(inputs), "-o", str(out)])
    # app.main turns the InputError into one `error:` line and exit 1.
    assert isinstance(refused.exception, InputError)
    assert "pass --resume" in str(refused.exception)

    # One partition lost (a crash before its rename, or removed): only it is recomputed.
    lost = out / "part-00002-000000.jsonl"
    lost.unlink()
    resumed = runner.invoke(
        app,
        ["predict", "--engine", "ray", str(inputs), "-o", str(out), "--actors", "1", "--resume"],
    )
    assert resumed.exit_code == 1, resumed.output
    after = {
        path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in partition_files(out)
    }
    assert after.keys() == before.keys()
    for name, (mtime, content) in after.items():
        assert content == before[name][1], name
        if name != lost.name:
            assert mtime == before[name][0], f"{name} was rewritten"

    # Nothing left to do: no partition is written again.
    again = runner.invoke(
        app,
        ["predict", "--engine", "ray", str(inputs), "-o", str(out), "--actors", "1", "--resume"],
    )
    assert again.exit_code == 1, again.output
    assert {p.name: p.stat().st_mtime_ns for p in partition_files(out)} == {
        name: mtime for name, (mtime, _) in after.items()
    }


def test_parquet_partitions_hold_the_same_records(ray_cluster, inputs, ray_run, tmp_path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out, _ = ray_run
    expected = {r["id"]: r for r in records([out / "part-00002-000000.jsonl"])}
    result = runner.invoke(
        app,
        [
            "predict",
            "--engine",
            "ray",
            str(inputs / "c.jsonl"),
            "-o",
            str(tmp_path / "pq"),
            "--format",
            "parquet",
            "--actors",
            "1",
        ],
    )
    assert result.exit_code == 1, result.output
    rows = pq.read_table(tmp_path / "pq" / "part-00000-000000.parquet").to_pylist()
    assert [row["id"] for row in rows] == list(expected)
    for row in rows:
        row = {key: value for key, value in row.items() if value is not None}
        if "topic_scores" in row:
            row["topic_scores"] = dict(row["topic_scores"])
        assert row == expected[row["id"]]
