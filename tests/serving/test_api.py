"""Tests for serving/api: routes, limits, the one error shape, readiness and metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.api.app import app_from_env, create_app, describe_validation_errors
from serving.api.runner import InferenceRunner
from serving.api.settings import ServerSettings
from serving.errors import Overloaded

TEXT = "زار الرئيس ماكرون بيروت"


def make_client(predictor, **settings: object) -> TestClient:
    app = create_app(ServerSettings(**settings), predictor=predictor)  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(fake_predictor) -> Iterator[TestClient]:
    with make_client(
        fake_predictor, max_chars_per_document=100, max_documents_per_request=3, max_body_bytes=2000
    ) as test_client:
        yield test_client


def assert_error(response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_type"}
    assert body["error_type"] == error_type
    assert "Traceback" not in body["error"]
    return body["error"]


class TestAnalyze:
    def test_text_gives_one_result_with_exact_spans(self, client: TestClient) -> None:
        response = client.post("/v1/analyze", json={"text": TEXT})
        assert response.status_code == 200
        result = response.json()["result"]
        assert "results" not in response.json()
        assert result["id"] is None
        for entity in result["entities"]:
            assert TEXT[entity["start"] : entity["end"]] == entity["text"]
        assert [e["label"] for e in result["entities"]] == ["PER", "LOC"]
        assert result["topics"] == [{"label": "politics", "score": 0.9}]
        assert set(result["topic_scores"]) == {"politics", "sports"}

    def test_entities_have_clean_names_and_groups(self, client: TestClient) -> None:
        text = "زار ماكرون بيروت، وقال ماكرون إن لبيروت مكانة"
        result = client.post("/v1/analyze", json={"text": text}).json()["result"]
        names = [entity["name"] for entity in result["entities"]]
        assert names == ["ماكرون", "بيروت", "ماكرون"]
        groups = result["entity_groups"]
        assert [(g["name"], g["mentions"], g["count"]) for g in groups] == [
            ("ماكرون", [0, 2], 2),
            ("بيروت", [1], 1),
        ]
        assert sum(g["salience"] for g in groups) == pytest.approx(1.0)

    def test_openapi_documents_names_and_groups(self, client: TestClient) -> None:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        assert "name" in schemas["EntityOut"]["required"]
        assert "entity_groups" in schemas["DocumentResultOut"]["properties"]
        group = schemas["EntityGroupOut"]["properties"]
        assert set(group) == {"name", "label", "mentions", "count", "first", "salience"}

    def test_documents_give_results_in_order(self, client: TestClient, fake_predictor) -> None:
        documents = [{"id": "b", "text": "Omar"}, {"text": "مباراة"}, {"id": "a", "text": TEXT}]
        response = client.post("/v1/analyze", json={"documents": documents})
        assert response.status_code == 200
        results = response.json()["results"]
        assert [r["id"] for r in results] == ["b", None, "a"]
        assert results[1]["topics"][0]["label"] == "sports"
        assert fake_predictor.calls == [["Omar", "مباراة", TEXT]]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"text": ""}, "text"),
            ({"text": "   "}, "text"),
            ({}, "either"),
            ({"text": "a", "documents": [{"text": "b"}]}, "either"),
            ({"documents": []}, "documents"),
            ({"documents": [{"id": "x"}]}, "documents[0].text"),
            ({"documents": [{"text": ""}]}, "documents[0].text"),
            ({"txt": "a"}, "txt"),
            ({"text": 5}, "text"),
        ],
    )
    def test_schema_errors_are_422_naming_the_field(
        self, client: TestClient, body: dict[str, object], field: str
    ) -> None:
        error = assert_error(client.post("/v1/analyze", json=body), 422, "validation_error")
        assert field in error

    def test_invalid_json_is_422(self, client: TestClient) -> None:
        response = client.post(
            "/v1/analyze", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert "not valid JSON" in assert_error(response, 422, "validation_error")

    def test_missing_body_is_422(self, client: TestClient) -> None:
        response = client.post("/v1/analyze")
        assert '{"text"' in assert_error(response, 422, "validation_error")

    def test_inference_error_is_424(self, client: TestClient) -> None:
        assert_error(client.post("/v1/analyze", json={"text": "BOOM"}), 424, "inference_error")

    def test_a_bug_is_500_without_details(self, client: TestClient) -> None:
        error = assert_error(
            client.post("/v1/analyze", json={"text": "CRASH"}), 500, "internal_error"
        )
        assert "fake bug" not in error


class TestLimits:
    def test_too_many_characters_is_413(self, client: TestClient) -> None:
        error = assert_error(
            client.post("/v1/analyze", json={"text": "a" * 101}), 413, "limit_exceeded"
        )
        assert "101 characters" in error
        assert "100 per document" in error

    def test_too_many_characters_names_the_document(self, client: TestClient) -> None:
        documents = [{"id": "ok", "text": "a"}, {"id": "long", "text": "a" * 101}]
        error = assert_error(
            client.post("/v1/analyze", json={"documents": documents}), 413, "limit_exceeded"
        )
        assert "document 1 (id 'long')" in error

    def test_too_many_documents_is_413(self, client: TestClient, fake_predictor) -> None:
        documents = [{"text": "a"}] * 4
        error = assert_error(
            client.post("/v1/analyze", json={"documents": documents}), 413, "limit_exceeded"
        )
        assert "4 documents" in error
        assert "3 per request" in error
        assert fake_predictor.calls == []

    def test_body_over_content_length_limit_is_413(self, client: TestClient) -> None:
        body = '{"text": "' + "a" * 3000 + '"}'
        response = client.post(
            "/v1/analyze", content=body, headers={"content-type": "application/json"}
        )
        assert "2000 bytes" in assert_error(response, 413, "limit_exceeded")

    def test_body_over_limit_without_content_length_is_413(self, client: TestClient) -> None:
        def chunks() -> Iterator[bytes]:
            yield b'{"text": "'
            for _ in range(30):
                yield b"a" * 100
            yield b'"}'

        response = client.post(
            "/v1/analyze", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "more than 2000 bytes" in assert_error(response, 413, "limit_exceeded")

    def test_body_under_the_limit_passes_through(self, client: TestClient) -> None:
        def chunks() -> Iterator[bytes]:
            yield b'{"text": '
            yield '"زار ماكرون"}'.encode()

        response = client.post(
            "/v1/analyze", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 200
        assert response.json()["result"]["entities"][0]["text"] == "ماكرون"


class TestHealthAndModel:
    def test_health_and_ready(self, client: TestClient) -> None:
        assert client.get("/v1/health").json() == {"status": "ok"}
        assert client.get("/v1/ready").json() == {"status": "ready"}

    def test_model_info(self, client: TestClient) -> None:
        info = client.get("/v1/model").json()
        assert info["name"] == "fake-khabar"
        assert info["entity_types"] == [
            {"label": "PER", "display_name": "شخص"},
            {"label": "LOC", "display_name": "مكان"},
        ]
        assert info["topics"][0] == {
            "label": "politics",
            "display_name": "سياسة",
            "kind": "section",
            "threshold": 0.5,
            "source": "model",
        }
        assert info["base_encoder"] == {"name": "fake-encoder"}
        assert info["metrics"] == {"ner": {"f1": 0.9}}
        assert info["versions"] == {"khabar": "0.1.0"}
        assert info["threads"] == 1

    def test_not_ready_while_loading(self, tmp_path: Path) -> None:
        # Without the lifespan nothing loads: the state of a server still loading.
        client = TestClient(create_app(ServerSettings(model_dir=tmp_path)))
        assert client.get("/v1/health").status_code == 200
        assert "still loading" in assert_error(client.get("/v1/ready"), 503, "model_load_error")
        assert_error(client.post("/v1/analyze", json={"text": "a"}), 503, "model_load_error")
        assert_error(client.get("/v1/model"), 503, "model_load_error")

    def test_failed_load_keeps_serving_and_says_why(self, tmp_path: Path) -> None:
        missing = tmp_path / "no-model"
        with TestClient(create_app(ServerSettings(model_dir=missing))) as client:
            error = ""
            for _ in range(200):
                response = client.get("/v1/ready")
                error = assert_error(response, 503, "model_load_error")
                if "failed to load" in error:
                    break
                time.sleep(0.01)
            assert f"model directory not found: {missing}" in error
            assert client.get("/v1/health").status_code == 200

    def test_model_loads_in_the_lifespan(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_predictor
    ) -> None:
        monkeypatch.setattr(
            "serving.api.app.load_predictor", lambda model_dir, threads, stories=(): fake_predictor
        )
        with TestClient(create_app(ServerSettings(model_dir=tmp_path))) as client:
            for _ in range(200):
                if client.get("/v1/ready").status_code == 200:
                    break
                time.sleep(0.01)
            assert client.get("/v1/ready").json() == {"status": "ready"}
            assert client.post("/v1/analyze", json={"text": "Ali"}).status_code == 200

    def test_app_from_env_reads_khabar_settings(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("KHABAR_MODEL", str(tmp_path))
        monkeypatch.setenv("KHABAR_MAX_DOCUMENTS_PER_REQUEST", "7")
        monkeypatch.setenv("KHABAR_MAX_TOKENS_PER_DOCUMENT", "500")
        monkeypatch.setenv("KHABAR_MAX_TOKENS_PER_REQUEST", "900")
        monkeypatch.setenv("KHABAR_REQUEST_TIMEOUT_S", "7.5")
        monkeypatch.setenv("KHABAR_SHUTDOWN_GRACE_S", "3")
        monkeypatch.setenv("KHABAR_MAX_CONNECTIONS", "9")
        settings = app_from_env().state.settings
        assert settings.model_dir == tmp_path
        assert settings.max_documents_per_request == 7
        assert (settings.max_tokens_per_document, settings.max_tokens_per_request) == (500, 900)
        assert (settings.request_timeout_s, settings.shutdown_grace_s) == (7.5, 3.0)
        assert settings.max_connections == 9


class TestErrorsAndDocs:
    def test_unknown_route_is_404_json(self, client: TestClient) -> None:
        assert "/docs" in assert_error(client.get("/v2/nothing"), 404, "not_found")

    def test_wrong_method_is_405_json(self, client: TestClient) -> None:
        assert "POST" in assert_error(client.get("/v1/analyze"), 405, "method_not_allowed")

    def test_docs_and_openapi(self, client: TestClient) -> None:
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
        analyze = schema["paths"]["/v1/analyze"]["post"]
        assert {"413", "422", "503"} <= set(analyze["responses"])
        error_ref = analyze["responses"]["413"]["content"]["application/json"]["schema"]["$ref"]
        assert error_ref.endswith("/ErrorBody")
        assert "examples" in schema["components"]["schemas"]["AnalyzeRequest"]

    def test_validation_errors_read_as_one_line(self) -> None:
        errors = [
            {"loc": ("body", "documents", i, "text"), "msg": "Field required", "type": "missing"}
            for i in range(7)
        ]
        message = describe_validation_errors(errors)
        assert message.startswith("documents[0].text: Field required; documents[1].text")
        assert message.endswith("and 2 more")


class TestMetrics:
    def test_metrics_count_requests_documents_tokens_and_errors(self, client: TestClient) -> None:
        client.post("/v1/analyze", json={"documents": [{"text": "Ali met Omar"}, {"text": "x"}]})
        client.post("/v1/analyze", json={"text": "a" * 101})
        client.post("/v1/analyze", json={"text": ""})
        text = client.get("/metrics").text
        assert (
            'khabar_http_requests_total{method="POST",route="/v1/analyze",status="200"} 1.0' in text
        )
        assert (
            'khabar_http_requests_total{method="POST",route="/v1/analyze",status="413"} 1.0' in text
        )
        assert "khabar_documents_total 2.0" in text
        assert "khabar_tokens_total 4.0" in text
        assert 'khabar_errors_total{error_type="limit_exceeded"} 1.0' in text
        assert 'khabar_errors_total{error_type="validation_error"} 1.0' in text
        assert 'khabar_http_request_duration_seconds_count{route="/v1/analyze"} 3.0' in text

    def test_each_app_has_its_own_registry(self, fake_predictor) -> None:
        with make_client(fake_predictor) as first, make_client(fake_predictor) as second:
            first.post("/v1/analyze", json={"text": "a"})
            assert "khabar_documents_total 1.0" in first.get("/metrics").text
            assert "khabar_documents_total 0.0" in second.get("/metrics").text


class TestInferenceRunner:
    def test_slots_beyond_max_queued_are_overloaded(self) -> None:
        runner = InferenceRunner(max_queued=1)
        with runner.slot():
            assert runner.pending == 1
            with pytest.raises(Overloaded), runner.slot():
                pass
        assert runner.pending == 0
        with runner.slot():
            pass

    def test_overloaded_is_429_with_retry_after(self, client: TestClient, monkeypatch) -> None:
        def refuse():
            raise Overloaded("queue full; retry shortly")

        monkeypatch.setattr(client.app.state.runner, "slot", refuse)  # type: ignore[attr-defined]
        response = client.post("/v1/analyze", json={"text": "a"})
        assert_error(response, 429, "overloaded")
        assert response.headers["retry-after"] == "1"


@pytest.mark.slow
def test_api_with_the_tiny_exported_model(tiny_model_dir: Path) -> None:
    app = create_app(ServerSettings(model_dir=tiny_model_dir, threads=1))
    with TestClient(app) as client:
        for _ in range(500):
            if client.get("/v1/ready").status_code == 200:
                break
            time.sleep(0.02)
        assert client.get("/v1/ready").json() == {"status": "ready"}
        response = client.post("/v1/analyze", json={"documents": [{"id": "a", "text": TEXT}]})
        assert response.status_code == 200
        result = response.json()["results"][0]
        for entity in result["entities"]:
            assert TEXT[entity["start"] : entity["end"]] == entity["text"]
        assert result["warnings"] == []
        info = client.get("/v1/model").json()
        assert {t["label"] for t in info["entity_types"]} >= {"PER", "LOC"}
        assert set(result["topic_scores"]) == {t["label"] for t in info["topics"]}
        assert "khabar_tokens_total" in client.get("/metrics").text
