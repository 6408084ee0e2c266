"""Tests of the benchmark package: its helpers on hand-built numbers, and one quick tiny run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import cli, engines, machine, report, settings, stats, workload


def engine(docs_per_s: float, **extra: Any) -> dict[str, Any]:
    return {
        "status": "ok",
        "batch": {"documents": 40, "docs_per_s": docs_per_s, "tokens_per_s": 100 * docs_per_s},
        "single": {"calls": 10, "p50_ms": 50.0, "p95_ms": 70.0, "p99_ms": 80.0},
        "single_band": None,
        "peak_rss_mb": 300.0,
        "model_mb": 30.0,
        "load_s": 1.0,
        **extra,
    }


def hand_built(**overrides: Any) -> dict[str, Any]:
    engines = {
        settings.TORCH_FP32: engine(
            4.0, accuracy={"entity_micro_f1": 80.0, "topic_micro_f1": 70.0}
        ),
        settings.BERT_BASE: engine(1.0),
        settings.ONNX_FP32: engine(6.0, accuracy={"entity_micro_f1": 80.5}),
        settings.ONNX_INT8: engine(
            10.0,
            accuracy={"entity_micro_f1": 79.9, "topic_micro_f1": 71.0, "section_accuracy": 88.0},
            single_band={"calls": 5, "p50_ms": 90.0, "p95_ms": 99.0, "p99_ms": 99.5},
        ),
        settings.HTTP_INT8: {
            "status": "ok",
            "peak_rss_mb": 450.0,
            "model_mb": 30.0,
            "levels": {
                "1": {"ok": 8, "sent": 8, "errors": 0, "docs_per_s": 5.0, "p50_ms": 40.0},
                "8": {"ok": 8, "sent": 8, "errors": 0, "docs_per_s": 9.0, "p50_ms": 80.0},
            },
        },
    }
    results: dict[str, Any] = {
        "date": "2025-01-02",
        "machine": {"name": "box", "cpu_model": "Test CPU", "cpus": 2, "cpus_usable": 2},
        "settings": {"threads": 2, "batch_size": 16, "seed": 13, "single_calls": 10},
        "versions": {"python": "3.11"},
        "workload": {
            "articles": {
                "documents": 40,
                "words": stats.distribution([10, 20, 400]),
                "tokens": stats.distribution([15, 30, 600]),
                "windows": 50,
                "padding_ratio": 0.125,
                "in_band": 1,
            },
            "sentences": {"documents": 4, "windows": 4},
        },
        "engines": engines,
    }
    results.update(overrides)
    return results


def by_name(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {target["name"]: target for target in found}


class TestPercentiles:
    def test_percentiles_interpolate_linearly(self) -> None:
        assert stats.percentiles([1.0, 2.0, 3.0, 4.0, 5.0]) == {
            "p50": 3.0,
            "p95": pytest.approx(4.8),
            "p99": pytest.approx(4.96),
        }

    def test_percentiles_of_nothing_are_none(self) -> None:
        assert stats.percentiles([]) == {"p50": None, "p95": None, "p99": None}

    def test_distribution_reports_min_p50_p90_max(self) -> None:
        figures = stats.distribution(list(range(1, 11)))
        assert (figures["min"], figures["max"]) == (1.0, 10.0)
        assert figures["p50"] == pytest.approx(5.5)
        assert figures["p90"] == pytest.approx(9.1)


class TestPaddingRatio:
    def test_one_full_batch_has_no_padding(self) -> None:
        assert stats.padding_ratio([[5, 5, 5]]) == 0.0

    def test_padding_counts_cls_and_sep_in_every_row(self) -> None:
        # widths 12 and 4: 2*12 + 1*4 = 28 positions; real (10+2)+(2+2)+(2+2) = 20.
        assert stats.padding_ratio([[10, 2], [2]]) == pytest.approx(8 / 28)

    def test_no_batches_means_no_padding(self) -> None:
        assert stats.padding_ratio([]) == 0.0
        assert stats.padding_ratio([[]]) == 0.0


class TestSampling:
    def test_sample_has_n_items_and_keeps_the_length_mix(self) -> None:
        items = list(range(1000))
        sample = stats.stratified_sample(items, 100, seed=3, length=lambda x: x)
        assert len(sample) == len(set(sample)) == 100
        # Systematic sampling: exactly one item from every tenth of the range.
        assert sorted(x // 10 for x in sample) == list(range(100))

    def test_sample_is_seeded(self) -> None:
        items = [f"{'w ' * n}" for n in range(50)]
        first = stats.stratified_sample(items, 10, seed=1, length=stats.word_count)
        assert first == stats.stratified_sample(items, 10, seed=1, length=stats.word_count)

    def test_asking_for_more_than_there_is_returns_all(self) -> None:
        assert sorted(stats.stratified_sample([3, 1, 2], 10, seed=0, length=lambda x: x)) == [
            1,
            2,
            3,
        ]

    def test_sentences_sample_keeps_corpus_order(self) -> None:
        data = {
            "articles": [{"id": str(i), "text": "w " * i} for i in range(5)],
            "sentences": [{"tokens": [str(i)], "tags": ["O"]} for i in range(20)],
            "sections": ["politics"],
        }
        sample = workload.sample_workload(data, n_articles=3, n_sentences=5, seed=2)
        kept = [int(s["tokens"][0]) for s in sample["sentences"]]
        assert len(kept) == 5 and kept == sorted(kept)
        assert len(sample["articles"]) == 3

    def test_chunks_cover_every_item_once(self) -> None:
        assert list(stats.chunked(list(range(5)), 2)) == [[0, 1], [2, 3], [4]]


class TestTargets:
    def test_targets_pass_and_miss_with_margins(self) -> None:
        found = by_name(stats.targets(hand_built()))
        vs_torch = found["int8 docs/s ≥ 2× torch-fp32"]
        assert vs_torch["value"] == pytest.approx(2.5)
        assert vs_torch["status"] == "PASS"
        assert vs_torch["margin"] == pytest.approx(0.5)
        vs_bert = found["int8 docs/s ≥ 6× bert-base-fp32"]
        assert vs_bert["status"] == "PASS" and vs_bert["value"] == pytest.approx(10.0)
        f1_fp32 = found["int8 entity F1 within 1.0 pt of onnx-fp32"]
        assert f1_fp32["value"] == pytest.approx(0.6) and f1_fp32["status"] == "PASS"
        latency = found["~400-word article p50 ≤ 100 ms"]
        assert latency["value"] == 90.0 and latency["status"] == "PASS"
        assert "350–450" in latency["note"]
        http = found["HTTP c=8 ≥ 85% of in-process int8 docs/s"]
        assert http["value"] == pytest.approx(0.9) and http["status"] == "PASS"
        rss = found["serving peak RSS ≤ 600 MB"]
        assert rss["value"] == 450.0 and rss["margin"] == pytest.approx(150.0)

    def test_a_slow_int8_misses_by_the_shortfall(self) -> None:
        results = hand_built()
        results["engines"][settings.ONNX_INT8]["batch"]["docs_per_s"] = 6.0
        found = by_name(stats.targets(results))
        target = found["int8 docs/s ≥ 2× torch-fp32"]
        assert target["status"] == "MISS"
        assert target["margin"] == pytest.approx(-0.5)
        assert "short" in report._fmt_margin(target)

    def test_an_int8_f1_drop_over_one_point_misses(self) -> None:
        results = hand_built()
        results["engines"][settings.ONNX_INT8]["accuracy"]["entity_micro_f1"] = 78.0
        found = by_name(stats.targets(results))
        assert found["int8 entity F1 within 1.0 pt of torch-fp32"]["status"] == "MISS"

    def test_latency_falls_back_to_all_articles_without_a_400_word_one(self) -> None:
        results = hand_built()
        results["engines"][settings.ONNX_INT8]["single_band"] = None
        target = by_name(stats.targets(results))["~400-word article p50 ≤ 100 ms"]
        assert target["value"] == 50.0
        assert "all single calls" in target["note"]

    def test_skipped_engines_make_targets_not_applicable(self) -> None:
        results = hand_built()
        results["engines"][settings.TORCH_FP32] = {"status": "skipped", "note": "no run"}
        del results["engines"][settings.HTTP_INT8]
        found = by_name(stats.targets(results))
        assert found["int8 docs/s ≥ 2× torch-fp32"]["status"] == "N/A"
        assert found["int8 entity F1 within 1.0 pt of torch-fp32"]["status"] == "N/A"
        assert found["HTTP c=8 ≥ 85% of in-process int8 docs/s"]["status"] == "N/A"
        rss = found["serving peak RSS ≤ 600 MB"]
        assert rss["value"] == 300.0 and "in-process" in rss["note"]

    def test_ratios_use_http_docs_per_s_at_concurrency_8(self) -> None:
        ratios = stats.compute_ratios(hand_built()["engines"])
        assert ratios[settings.ONNX_INT8]["vs_torch_fp32"] == pytest.approx(2.5)
        assert ratios[settings.HTTP_INT8]["vs_bert_base"] == pytest.approx(9.0)
        assert ratios[settings.TORCH_FP32]["vs_torch_fp32"] == pytest.approx(1.0)


class TestRenderMarkdown:
    def test_markdown_has_every_section_and_engine(self) -> None:
        text = report.render_markdown(hand_built())
        for heading in ("## Workload", "## Engines", "## HTTP", "## Targets"):
            assert heading in text
        for name in settings.ENGINES:
            assert f"| {name}" in text
        assert "12.5 %" in text  # padding ratio
        assert "| 2.50× |" in text  # int8 against torch-fp32
        assert "PASS" in text

    def test_bert_base_accuracy_is_never_shown(self) -> None:
        results = hand_built()
        results["engines"][settings.BERT_BASE]["accuracy"] = {"entity_micro_f1": 3.0}
        row = next(
            line
            for line in report.render_markdown(results).splitlines()
            if line.startswith(f"| {settings.BERT_BASE}")
        )
        assert "3.00" not in row and "n/a" in row

    def test_skipped_engines_are_listed_with_their_note(self) -> None:
        results = hand_built()
        results["engines"][settings.TORCH_FP32] = {"status": "skipped", "note": "no run at runs/x"}
        text = report.render_markdown(results)
        assert "no run at runs/x" in text
        assert "| torch-fp32 | skipped |" in text

    def test_the_log_of_speed_experiments_closes_the_report(self) -> None:
        results = hand_built()
        assert "## What was tried" not in report.render_markdown(results)
        results["tried"] = "- static QDQ int8: 1.2x slower, dropped\n"
        text = report.render_markdown(results)
        assert text.rstrip().endswith("- static QDQ int8: 1.2x slower, dropped")
        assert text.index("## Targets") < text.index("## What was tried for speed")

    def test_tables_are_well_formed(self) -> None:
        for line in report.render_markdown(hand_built()).splitlines():
            if line.startswith("|"):
                assert line.endswith("|")


class TestWorkers:
    def test_peak_rss_is_this_process_own(self) -> None:
        assert 0 < machine.peak_rss_mb() <= machine.ru_maxrss_mb() + 1
        assert machine.vmhwm_mb(10**9) is None  # no such process

    def test_saved_epoch_is_the_last_saved_one(self) -> None:
        history = [{"epoch": 1, "saved": True}, {"epoch": 2, "saved": True}, {"epoch": 3}]
        assert stats.saved_epoch(history) == 2
        assert stats.saved_epoch([]) is None

    def test_a_crashing_worker_becomes_an_error_result(self, tmp_path: Path) -> None:
        spec = {"engine": settings.ONNX_INT8, "workload": str(tmp_path / "missing.json")}
        events: list[dict[str, Any]] = []
        result = engines.run_worker(spec, tmp_path, 60, lambda **e: events.append(e))
        assert result["status"] == "error"
        assert "FileNotFoundError" in result["note"]


class TestCommandLine:
    def test_engines_option_keeps_the_canonical_order(self) -> None:
        options = cli.build_parser().parse_args(["--engines", "onnx-int8,torch-fp32"])
        assert options.engines == [settings.TORCH_FP32, settings.ONNX_INT8]

    def test_unknown_engine_is_a_usage_error(self) -> None:
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["--engines", "gpu"])

    def test_quick_fills_small_defaults_and_keeps_given_sizes(self) -> None:
        options = cli.resolve_options(cli.build_parser().parse_args(["--quick", "--articles", "7"]))
        assert options.articles == 7
        assert options.sentences == settings.QUICK["sentences"]
        assert options.time_cap == settings.QUICK["time_cap"]

    def test_machine_names_are_safe_in_file_names(self) -> None:
        assert stats.slug("my box/01 (lab)") == "my-box-01-lab"


@pytest.mark.slow
def test_quick_run_on_the_tiny_model(
    tiny_model_dir: Path,
    tiny_run: Path,
    tiny_data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(
        [
            "--quick",
            "--data",
            str(tiny_data_root),
            "--model",
            str(tiny_model_dir),
            "--run",
            str(tiny_run),
            "--out",
            str(tmp_path / "results"),
            "--machine",
            "tiny",
            "--threads",
            "1",
            "--articles",
            "6",
            "--sentences",
            "4",
            "--single-calls",
            "3",
            "--http-requests",
            "8",
            "--time-cap",
            "5",
            "--no-cache",
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    markdown = next((tmp_path / "results").glob("*-tiny.md"))
    results = json.loads(markdown.with_suffix(".json").read_text(encoding="utf-8"))
    assert markdown.read_text(encoding="utf-8") in printed
    for name in settings.ENGINES:
        assert results["engines"][name]["status"] == "ok", results["engines"][name]
    int8 = results["engines"][settings.ONNX_INT8]
    assert int8["batch"]["documents"] == results["workload"]["articles"]["documents"] > 0
    assert int8["single"]["calls"] == 3
    assert 0 < int8["peak_rss_mb"] < 2000
    assert 0 <= int8["accuracy"]["entity_micro_f1"] <= 100
    assert "topic_micro_f1" in int8["accuracy"]
    assert "accuracy" not in results["engines"][settings.BERT_BASE]
    assert set(results["engines"][settings.HTTP_INT8]["levels"]) == {"1", "8", "32"}
    assert results["engines"][settings.HTTP_INT8]["peak_rss_mb"] > 0
    assert {t["status"] for t in results["targets"]} <= {"PASS", "MISS", "N/A"}
    assert 0 <= results["workload"]["articles"]["padding_ratio"] < 1


class TestLoadMode:
    def test_requests_cycle_three_sentences_to_one_article(self) -> None:
        from benchmarks import load

        workload = {
            "articles": [{"text": f"article {i}"} for i in range(2)],
            "sentences": [{"tokens": ["s", str(i)]} for i in range(7)],
        }
        assert load.load_texts(workload) == [
            "s 0",
            "s 1",
            "s 2",
            "article 0",
            "s 3",
            "s 4",
            "s 5",
            "article 1",
            "s 6",
        ]

    def test_report_shows_the_cost_statuses_percentiles_and_rss(self) -> None:

        results = {
            "date": "2025-01-02",
            "machine": {"name": "box", "cpu_model": "Test CPU", "cpus_usable": 2},
            "settings": {"threads": 2, "batch_size": 16},
            "workload": {"articles": 40, "sentences": 100},
            "independence": {
                "sentences": {
                    "documents": 100,
                    "docs_per_s_one_document_per_batch": 40.0,
                    "docs_per_s_mixed_batches": 50.0,
                    "cost": 0.2,
                    "cpu_ms_per_document": {
                        "one_document_per_batch": 25.0,
                        "mixed_batches": 20.0,
                    },
                    "cpu_cost": 0.25,
                    "answers_that_differ": 30,
                    "entity_lists_that_differ": 3,
                }
            },
            "loopback": {
                "status": "ok",
                "sent": 10,
                "concurrency": 4,
                "statuses": {"200": 9, "429": 1},
                "server_errors": 0,
                "connection_errors": 0,
                "docs_per_s": 3.0,
                "p50_ms": 10.0,
                "p95_ms": 20.0,
                "p99_ms": 30.0,
                "rss_start_mb": 300.0,
                "rss_end_mb": 305.0,
                "peak_rss_mb": 320.0,
                "rss_samples_mb": [[15.0, 300.0], [30.0, 301.0], [45.0, 302.0], [60.0, 303.0]],
            },
            "seconds": 60.0,
        }
        text = report.render_load_markdown(results)
        assert "| sentences (100) | 40.00 | 50.00 | 20.0% | 25.0 / 20.0 | 25.0% | 30 (3) |" in text
        assert "| statuses | 200: 9, 429: 1 |" in text
        assert "| latency p50 / p95 / p99 ms | 10 / 20 / 30 |" in text
        assert "300.0 / 305.0 / 320.0" in text
        assert "300.0, 301.0, 302.0, 303.0, 305.0." in text

    def test_mixed_batches_differ_from_one_document_per_batch_only_in_grouping(
        self, tiny_model_dir: Path
    ) -> None:
        from benchmarks import load
        from serving.predictor import Predictor

        predictor = Predictor.load(tiny_model_dir, threads=1)
        texts = ["زار الرئيس ماكرون بيروت ."] + ["وصل الوفد إلى القاهرة صباح اليوم ."] * 3
        # A batch of one window is the same whichever way the windows are grouped.
        alone = [load.analyze_mixed(predictor, [text], 1)[0] for text in texts]
        assert alone == predictor.analyze(texts, batch_size=1)
        figures = load.independence_cost(predictor, {"sentences": texts}, 4, rounds=1)
        assert figures["sentences"]["documents"] == 4
        assert figures["sentences"]["docs_per_s_mixed_batches"] > 0


def test_quick_load_run_on_the_tiny_model(
    tiny_model_dir: Path,
    tiny_run: Path,
    tiny_data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(
        [
            "--load",
            "--quick",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(tiny_data_root),
            "--out",
            str(tmp_path / "results"),
            "--machine",
            "tiny",
            "--threads",
            "1",
            "--articles",
            "4",
            "--sentences",
            "8",
            "--load-requests",
            "40",
            "--load-concurrency",
            "8",
            "--time-cap",
            "30",
            "--no-cache",
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    raw = next((tmp_path / "results").glob("*-tiny-load.json"))
    results = json.loads(raw.read_text(encoding="utf-8"))
    loop = results["loopback"]
    assert loop["status"] == "ok", loop
    assert loop["sent"] == 40
    assert loop["server_errors"] == 0
    assert loop["statuses"].get("200") == 40
    assert loop["rss_start_mb"] > 0 and loop["rss_end_mb"] > 0
    assert loop["p99_ms"] >= loop["p50_ms"] > 0
    assert set(results["independence"]) == {"articles", "sentences"}
    assert "## Loopback run" in printed


RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@pytest.mark.parametrize("raw", sorted(RESULTS.glob("*.json")), ids=lambda path: path.name)
def test_a_committed_results_file_renders_its_committed_report(raw: Path, tmp_path: Path) -> None:
    from benchmarks.__main__ import main as benchmarks_main

    out = tmp_path / "report.md"
    assert benchmarks_main(["report", str(raw), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == raw.with_suffix(".md").read_text(encoding="utf-8")


def test_an_unreadable_results_file_is_one_error_line(tmp_path: Path, capsys) -> None:
    from benchmarks.__main__ import main as benchmarks_main

    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert benchmarks_main(["report", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error: cannot render")
