"""``--stories`` on predict and serve, ``khabar stories check``, ``GET /v1/stories``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from khabar_cli.app import app
from serving.api.app import create_app
from serving.api.settings import ServerSettings
from serving.metadata import DEFAULT_MODEL_DIR
from serving.stories.encoder import DEFAULT_STORY_ENCODER_DIR, ENCODER_INFO

ROOT = Path(__file__).resolve().parents[2]
SUDAN = ROOT / "examples" / "stories"
runner = CliRunner()
needs_models = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "khabar.json").is_file()
    or not (DEFAULT_STORY_ENCODER_DIR / ENCODER_INFO).is_file(),
    reason="needs models/default and models/story-encoder",
)


def _bad_story(tmp_path: Path) -> Path:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "sudan_war.yaml").write_text(
        "name: sudan_war\ndisplay_names: {ar: السودان}\n", encoding="utf-8"
    )
    return bad


def test_bad_definition_fails_predict_with_one_line(tmp_path: Path) -> None:
    bad = _bad_story(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "khabar_cli.app", "predict", "--stories", str(bad), "--text", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "sudan_war.yaml" in lines[0] and "field " in lines[0]


def test_bad_definition_fails_serve_before_the_port_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr("serving.api.server.run_server", lambda *a, **k: started.append(a))
    result = runner.invoke(app, ["serve", "--stories", str(_bad_story(tmp_path))])
    assert result.exit_code != 0 and not started
    assert "field display_names" in str(result.exception) + result.output


def test_stories_check_validates_and_names_the_field(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stories", "check", str(_bad_story(tmp_path) / "sudan_war.yaml")])
    assert result.exit_code != 0
    assert "display_names" in str(result.exception)


@needs_models
def test_stories_check_without_data(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["stories", "check", str(SUDAN / "sudan_war.yaml"), "--data", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "valid story 'sudan_war'" in result.output
    assert "nothing to rank" in result.output


@needs_models
def test_predict_picks_up_a_new_story_file() -> None:
    text = "تجددت المعارك بين الجيش السوداني وقوات الدعم السريع في الخرطوم ودارفور"
    result = runner.invoke(
        app,
        ["predict", "--stories", str(SUDAN), "-q", "-"],
        input=json.dumps({"id": "a", "text": text}) + "\n",
    )
    assert result.exit_code == 0, result.output
    [line] = [json.loads(x) for x in result.output.splitlines() if x.startswith("{")]
    assert "sudan_war" in line["topic_scores"]
    assert "russia_ukraine" in line["topic_scores"]
    assert "sudan_war" in {topic["label"] for topic in line["topics"]}


@needs_models
def test_api_lists_stories_and_kinds() -> None:
    settings = ServerSettings(model_dir=DEFAULT_MODEL_DIR, threads=1, stories=[SUDAN])
    with TestClient(create_app(settings)) as client:
        for _ in range(1200):
            if client.get("/v1/ready").status_code == 200:
                break
            time.sleep(0.05)
        stories = client.get("/v1/stories").json()["stories"]
        by_label = {story["label"]: story for story in stories}
        assert {"russia_ukraine", "middle_east_conflict", "sudan_war"} <= set(by_label)
        assert by_label["sudan_war"]["calibrated_on"] is None
        assert by_label["russia_ukraine"]["replaces_model_head"] is True
        assert by_label["russia_ukraine"]["exclude_sections"] == ["sport"]
        assert by_label["sudan_war"]["exclude_sections"] == []
        topics = {t["label"]: t for t in client.get("/v1/model").json()["topics"]}
        assert topics["sudan_war"]["kind"] == "story"
        assert topics["sudan_war"]["source"] == "definition"
        assert topics["politics"]["source"] == "model"
        body = client.post("/v1/analyze", json={"text": "قصفت قوات الدعم السريع الفاشر"}).json()
        assert "sudan_war" in body["result"]["topic_scores"]


@needs_models
def test_api_answers_as_analyze_does_with_names_groups_and_stories() -> None:
    """The server's step-wise path (prepare, fair steps, results) gives analyze()'s answer."""
    from serving.predictor import load_predictor

    predictor = load_predictor(DEFAULT_MODEL_DIR, 1, [SUDAN])
    texts = [
        "قصفت قوات الدعم السريع مدينة الفاشر في دارفور، وقال الجيش السوداني في الخرطوم إن "
        "الهجوم صُدّ. وأكد قائد الجيش السوداني أن القوات ستبقى في الفاشر.",
        "Rapid Support Forces shelled El Fasher",
    ]
    expected = [result.to_dict() for result in predictor.analyze(texts, ["a", "b"])]
    assert "sudan_war" in expected[0]["topic_scores"] and expected[1]["warnings"]
    assert expected[0]["entity_groups"]
    settings = ServerSettings(model_dir=DEFAULT_MODEL_DIR, threads=1, stories=[SUDAN])
    with TestClient(create_app(settings, predictor)) as client:
        body = client.post(
            "/v1/analyze",
            json={"documents": [{"id": i, "text": t} for i, t in zip("ab", texts, strict=True)]},
        ).json()
    assert body["results"] == expected
