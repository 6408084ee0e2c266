"""Tests for serving/cli/predict.py and khabar_cli/app.py: output, order, errors, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from khabar_cli.app import app, main
from serving.cli.readers import Record, RecordError, read_inputs
from serving.cli.records import Summary, predict_records
from serving.limits import DocumentLimits
from serving.metadata import DEFAULT_MODEL_DIR, sha256_of_file

HAS_SHIPPED_MODEL = (DEFAULT_MODEL_DIR / "khabar.json").is_file()

REPO_ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    return path


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class FlushRecorder(io.StringIO):
    """Keeps what had been written at every flush."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[str] = []

    def flush(self) -> None:
        super().flush()
        self.snapshots.append(self.getvalue())


class TestPredictRecords:
    def test_records_over_the_limits_are_error_lines(self, fake_predictor) -> None:
        items = [
            Record(0, "ok", "زار ماكرون بيروت"),
            Record(1, "chars", "ب" * 31),
            Record(2, "tokens", " ".join(["كلمة"] * 6)),
            Record(3, "last", "Omar"),
        ]
        out = io.StringIO()
        limits = DocumentLimits(max_chars=30, max_tokens=5)
        summary = predict_records(items, fake_predictor, out, limits=limits)
        assert summary == Summary(n_ok=2, n_failed=2)
        lines = json_lines(out.getvalue())
        assert [line["id"] for line in lines] == ["ok", "chars", "tokens", "last"]
        assert "31 characters; the limit is 30 per document" in lines[1]["error"]
        assert "6 tokens; the limit is 5 per document" in lines[2]["error"]
        assert fake_predictor.calls == [["زار ماكرون بيروت", "Omar"]]

    def test_the_limits_come_from_the_options_and_the_environment(
        self, tmp_path: Path, fake_model, monkeypatch
    ) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [{"text": "ب" * 12}, {"text": "a b c"}])
        monkeypatch.setenv("KHABAR_MAX_TOKENS_PER_DOCUMENT", "2")
        result = runner.invoke(app, ["predict", str(source), "--max-chars-per-document", "10"])
        assert result.exit_code == 1
        lines = json_lines(result.stdout)
        assert "12 characters; the limit is 10" in lines[0]["error"]
        assert "3 tokens; the limit is 2" in lines[1]["error"]

    def test_writes_one_line_per_record_in_input_order(self, fake_predictor) -> None:
        items = [
            Record(0, "a", "زار ماكرون بيروت"),
            RecordError(1, "b", "line 2 is not valid JSON"),
            Record(2, "c", "Alice met Bob"),
        ]
        out = io.StringIO()
        summary = predict_records(items, fake_predictor, out, batch_size=4)
        lines = json_lines(out.getvalue())
        assert summary == Summary(n_ok=2, n_failed=1)
        assert [line["id"] for line in lines] == ["a", "b", "c"]
        assert lines[0]["entities"] == [
            {
                "text": "ماكرون",
                "name": "ماكرون",
                "label": "PER",
                "start": 4,
                "end": 10,
                "score": 0.9,
            },
            {
                "text": "بيروت",
                "name": "بيروت",
                "label": "LOC",
                "start": 11,
                "end": 16,
                "score": 0.9,
            },
        ]
        assert [g["mentions"] for g in lines[0]["entity_groups"]] == [[0], [1]]
        assert lines[1] == {"id": "b", "error": "line 2 is not valid JSON"}
        assert [e["text"] for e in lines[2]["entities"]] == ["Alice", "Bob"]
        assert fake_predictor.batch_sizes == [4]

    def test_arabic_is_written_as_is(self, fake_predictor) -> None:
        out = io.StringIO()
        predict_records([Record(0, "a", "ماكرون")], fake_predictor, out)
        assert "ماكرون" in out.getvalue()
        assert "\\u" not in out.getvalue()

    def test_output_is_flushed_after_every_chunk(self, fake_predictor) -> None:
        items = [Record(i, str(i), f"doc {i}") for i in range(5)]
        out = FlushRecorder()
        done: list[int] = []
        predict_records(items, fake_predictor, out, chunk_size=2, progress=done.append)
        assert [len(json_lines(s)) for s in out.snapshots] == [2, 4, 5]
        assert done == [2, 2, 1]
        assert [len(call) for call in fake_predictor.calls] == [2, 2, 1]

    def test_records_reach_the_predictor_in_chunks(self, fake_predictor) -> None:
        items = (Record(i, str(i), "x") for i in range(150))
        predict_records(items, fake_predictor, io.StringIO())
        assert [len(call) for call in fake_predictor.calls] == [64, 64, 22]

    def test_an_interrupted_run_keeps_finished_chunks(self, fake_predictor_cls) -> None:
        predictor = fake_predictor_cls(interrupt_on_call=2)
        out = FlushRecorder()
        items = [Record(i, str(i), "x") for i in range(5)]
        with pytest.raises(KeyboardInterrupt):
            predict_records(items, predictor, out, chunk_size=2)
        assert [line["id"] for line in json_lines(out.getvalue())] == ["0", "1"]

    def test_inference_failure_costs_only_the_failing_document(self, fake_predictor) -> None:
        items = [Record(0, "a", "fine"), Record(1, "b", "BOOM"), Record(2, "c", "fine too")]
        out = io.StringIO()
        summary = predict_records(items, fake_predictor, out)
        lines = json_lines(out.getvalue())
        assert summary == Summary(n_ok=2, n_failed=1)
        assert lines[1] == {"id": "b", "error": "inference failed: fake onnxruntime failure"}
        assert "entities" in lines[0]
        assert "entities" in lines[2]

    def test_chunk_of_only_errors_does_not_call_the_predictor(self, fake_predictor) -> None:
        out = io.StringIO()
        predict_records([RecordError(0, "x", "bad")], fake_predictor, out)
        assert fake_predictor.calls == []
        assert json_lines(out.getvalue()) == [{"id": "x", "error": "bad"}]

    def test_reads_and_predicts_a_mixed_file(self, tmp_path: Path, fake_predictor) -> None:
        path = tmp_path / "in.jsonl"
        path.write_text(
            '{"id": "1", "text": "a"}\nnot json\n{"id": "3", "text": "c"}\n', encoding="utf-8"
        )
        out = io.StringIO()
        summary = predict_records(read_inputs([str(path)]), fake_predictor, out)
        assert summary.n_total == 3
        assert [line["id"] for line in json_lines(out.getvalue())] == ["1", f"{path}:2", "3"]


class TestPredictCommand:
    def test_jsonl_to_output_file(self, tmp_path: Path, fake_model) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [{"id": "x", "text": "زار ماكرون"}])
        out = tmp_path / "out.jsonl"
        result = runner.invoke(app, ["predict", str(source), "-o", str(out), "--batch-size", "8"])
        assert result.exit_code == 0, result.output
        lines = json_lines(out.read_text(encoding="utf-8"))
        assert lines[0]["id"] == "x"
        assert lines[0]["entities"][0]["text"] == "ماكرون"
        assert "analysed 1 documents" in result.stderr
        assert fake_model.batch_sizes == [8]

    def test_writes_to_stdout_by_default_and_reads_several_inputs(
        self, tmp_path: Path, fake_model
    ) -> None:
        first = write_jsonl(tmp_path / "a.jsonl", [{"text": "one"}])
        second = tmp_path / "b.csv"
        second.write_text("id,text\nc1,two\n", encoding="utf-8")
        third = tmp_path / "c.txt"
        third.write_text("three", encoding="utf-8")
        result = runner.invoke(app, ["predict", str(first), str(second), str(third), "--quiet"])
        assert result.exit_code == 0, result.output
        assert [line["id"] for line in json_lines(result.stdout)] == [f"{first}:1", "c1", "c.txt"]
        assert result.stderr == ""

    def test_reads_stdin(self, fake_model) -> None:
        result = runner.invoke(app, ["predict", "-", "-q"], input='{"id": "s", "text": "Ali"}\n')
        assert result.exit_code == 0, result.output
        assert json_lines(result.stdout)[0]["entities"][0]["text"] == "Ali"

    def test_custom_fields(self, tmp_path: Path, fake_model) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [{"key": "k", "body": "Omar"}])
        result = runner.invoke(
            app, ["predict", str(source), "--text-field", "body", "--id-field", "key", "-q"]
        )
        assert result.exit_code == 0, result.output
        assert json_lines(result.stdout)[0]["id"] == "k"

    def test_failed_records_give_exit_1_and_a_summary_line(
        self, tmp_path: Path, fake_model
    ) -> None:
        path = tmp_path / "in.jsonl"
        path.write_text('{"text": "a"}\n{bad\n{"text": ""}\n{"text": "b"}\n', encoding="utf-8")
        result = runner.invoke(app, ["predict", str(path), "-q"])
        assert result.exit_code == 1
        assert len(json_lines(result.stdout)) == 4
        assert result.stderr.startswith("2 of 4 documents failed")

    def test_text_prints_tables(self, fake_model) -> None:
        result = runner.invoke(app, ["predict", "--text", "زار الرئيس ماكرون بيروت"])
        assert result.exit_code == 0, result.output
        for expected in (
            "Entities",
            "ماكرون",
            "PER",
            "11-17",
            "بيروت",
            "LOC",
            "Topics",
            "سياسة",
            "0.900",
        ):
            assert expected in result.stdout
        assert not result.stdout.lstrip().startswith("{")
        groups_at = result.stdout.index("Entity groups")
        assert groups_at < result.stdout.index("Entities") < result.stdout.index("Topics")

    def test_text_with_inputs_is_a_usage_error(self, tmp_path: Path, fake_model) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
        result = runner.invoke(app, ["predict", str(source), "--text", "x"])
        assert result.exit_code == 2

    def test_no_input_is_a_usage_error(self, fake_model) -> None:
        result = runner.invoke(app, ["predict"])
        assert result.exit_code == 2
        assert "INPUT" in result.output

    def test_output_that_is_also_an_input_is_refused(self, tmp_path: Path, fake_model) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
        result = runner.invoke(app, ["predict", str(source), "-o", str(source)])
        assert result.exit_code == 2
        assert json_lines(source.read_text(encoding="utf-8")) == [{"text": "a"}]


class TestMain:
    """``main()`` turns errors into one line and an exit code."""

    def run_main(self, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        captured = capsys.readouterr()
        return int(exit_info.value.code or 0), captured.out, captured.err

    def test_missing_input_file_is_one_line_and_exit_1(
        self, tmp_path: Path, fake_model, capsys
    ) -> None:
        code, out, err = self.run_main(["predict", str(tmp_path / "nope.jsonl")], capsys)
        assert code == 1
        assert err == f"error: input not found: {tmp_path / 'nope.jsonl'}\n"
        assert fake_model.calls == []

    def test_missing_text_column_is_one_line(self, tmp_path: Path, fake_model, capsys) -> None:
        path = tmp_path / "in.csv"
        path.write_text("id,body\n1,x\n", encoding="utf-8")
        code, _, err = self.run_main(["predict", str(path)], capsys)
        assert code == 1
        assert err.startswith("error: ")
        assert "no 'text' column" in err
        assert err.count("\n") == 1

    def test_missing_model_dir_exits_3(self, tmp_path: Path, capsys) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
        code, out, err = self.run_main(
            ["predict", str(source), "--model", str(tmp_path / "no-model")], capsys
        )
        assert code == 3
        assert err.startswith("error: model directory not found")
        assert err.count("\n") == 1
        assert out == ""

    def test_interrupt_exits_130_and_keeps_finished_output(
        self, tmp_path: Path, fake_predictor_cls, monkeypatch, capsys
    ) -> None:
        predictor = fake_predictor_cls(interrupt_on_call=2)
        monkeypatch.setattr("serving.cli.predict.load_predictor", lambda *a, **k: predictor)
        source = write_jsonl(tmp_path / "in.jsonl", [{"text": f"doc {i}"} for i in range(70)])
        out_path = tmp_path / "out.jsonl"
        code, _, err = self.run_main(["predict", str(source), "-o", str(out_path)], capsys)
        assert code == 130
        assert err == "error: interrupted\n"
        assert len(json_lines(out_path.read_text(encoding="utf-8"))) == 64

    def test_usage_errors_keep_exit_2(self, capsys) -> None:
        code, _, err = self.run_main(["predict", "--batch-size", "0", "x.jsonl"], capsys)
        assert code == 2
        assert "batch-size" in err

    def test_unexpected_errors_are_one_line_without_traceback(
        self, tmp_path: Path, fake_predictor_cls, monkeypatch, capsys
    ) -> None:
        monkeypatch.delenv("KHABAR_DEBUG", raising=False)
        predictor = fake_predictor_cls()
        monkeypatch.setattr("serving.cli.predict.load_predictor", lambda *a, **k: predictor)
        code, _, err = self.run_main(["predict", "--text", "CRASH"], capsys)
        assert code == 1
        assert err.startswith("error: unexpected RuntimeError: fake bug")
        assert "Traceback" not in err

    def test_help_lists_the_commands(self, capsys) -> None:
        code, out, _ = self.run_main(["--help"], capsys)
        assert code == 0
        assert "predict" in out
        assert "serve" in out


class TestServeCommand:
    def test_serve_loads_the_model_then_runs_the_server_with_the_limits(
        self, tmp_path: Path, fake_predictor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: dict[str, object] = {}
        monkeypatch.setattr(
            "khabar_cli.app.load_predictor", lambda model_dir, threads, stories=(): fake_predictor
        )
        monkeypatch.setattr(
            "serving.api.server.run_server",
            lambda app, settings, host, port, log_level: calls.update(
                app=app, host=host, port=port
            ),
        )
        monkeypatch.setenv("KHABAR_MAX_BODY_BYTES", "1234")
        result = runner.invoke(
            app,
            [
                "serve",
                "--port",
                "9999",
                "--model",
                str(tmp_path),
                "--max-documents-per-request",
                "5",
            ],
        )
        assert result.exit_code == 0, result.output
        assert calls["port"] == 9999
        assert calls["host"] == "127.0.0.1"
        state = calls["app"].state  # type: ignore[attr-defined]
        assert state.predictor is fake_predictor
        assert state.settings.model_dir == tmp_path
        assert state.settings.max_documents_per_request == 5
        assert state.settings.max_body_bytes == 1234

    def test_serve_with_a_missing_model_exits_3(self, tmp_path: Path, capsys) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--model", str(tmp_path / "none")])
        assert exit_info.value.code == 3
        assert capsys.readouterr().err.startswith("error: model directory not found")


@pytest.mark.skipif(not HAS_SHIPPED_MODEL, reason="no shipped model in models/default")
def test_output_closed_early_ends_quietly_with_status_0(tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "in.jsonl", [{"text": f"زار الرئيس ماكرون بيروت {i}"} for i in range(300)]
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "khabar_cli.app", "predict", str(source), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()  # like `| head -1`: read a line, then go away
    process.stdout.close()
    try:
        code = process.wait(timeout=120)
    finally:
        process.kill()
    assert json.loads(first)["id"].endswith(":1")
    assert code == 0
    assert process.stderr.read() == b""


@pytest.mark.skipif(not HAS_SHIPPED_MODEL, reason="no shipped model in models/default")
@pytest.mark.parametrize("command", ["predict", "serve"])
@pytest.mark.parametrize(
    ("sum_recorded", "expected"),
    [
        # The sha256 in khabar.json catches the truncated file before it is read ...
        ("as shipped", "lexical_head.npz: corrupt or changed"),
        # ... and a file whose sum was recorded corrupt still fails to load, in one line.
        ("of the corrupt file", "error: cannot read lexical topic head"),
    ],
)
def test_a_corrupt_lexical_head_is_a_model_load_error(
    tmp_path: Path, command: str, sum_recorded: str, expected: str, capsys
) -> None:
    broken = tmp_path / "model"
    broken.mkdir()
    for path in DEFAULT_MODEL_DIR.iterdir():
        (broken / path.name).symlink_to(path)
    head = broken / "lexical_head.npz"
    data = head.read_bytes()
    head.unlink()
    head.write_bytes(data[: len(data) // 2])
    if sum_recorded == "of the corrupt file":
        metadata_path = broken / "khabar.json"
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        metadata_path.unlink()
        metadata["file_sha256"]["lexical_head.npz"] = sha256_of_file(head)
        metadata_path.write_text(json.dumps(metadata), encoding="utf-8")
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    args = [command, "--model", str(broken)] + ([str(source)] if command == "predict" else [])
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err
    assert err.count("\n") == 1


def test_missing_model_from_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("KHABAR_DEBUG", None)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "khabar_cli.app",
            "predict",
            str(source),
            "--model",
            str(tmp_path / "none"),
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 3
    assert completed.stdout == ""
    assert completed.stderr.startswith("error: model directory not found")
    assert completed.stderr.count("\n") == 1
    assert "Traceback" not in completed.stderr


@pytest.mark.slow
def test_predict_with_the_tiny_exported_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    texts = ["زار الرئيس ماكرون بيروت .", "فاز نادي الأهلي بكأس أفريقيا ."]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n"
            for i, t in enumerate(texts)
        )
        + "{broken\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    result = runner.invoke(
        app,
        ["predict", str(source), "-o", str(out), "--model", str(tiny_model_dir), "--threads", "1"],
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("1 of 3 documents failed")
    lines = json_lines(out.read_text(encoding="utf-8"))
    assert [line["id"] for line in lines] == ["0", "1", f"{source}:3"]
    for text, line in zip(texts, lines, strict=False):
        assert set(line) == {
            "id",
            "entities",
            "entity_groups",
            "topics",
            "topic_scores",
            "warnings",
        }
        for entity in line["entities"]:
            assert text[entity["start"] : entity["end"]] == entity["text"]
        grouped = sorted(i for group in line["entity_groups"] for i in group["mentions"])
        assert grouped == list(range(len(line["entities"])))
    assert "error" in lines[2]
