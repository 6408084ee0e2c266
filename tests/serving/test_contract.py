"""The OpenAPI document against the server: what it declares, and a bounded schemathesis run.

The run drives ``khabar serve``'s server (in a thread, on loopback) through every
schemathesis phase with every check. The model is the shipped model's tokenizer and
metadata with a cheap scripted encoder, so each case exercises the real text path
(normalising, tokenising, windows, decoding, spans) in milliseconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.api.settings import ServerSettings
from serving.metadata import DEFAULT_MODEL_DIR, TOKENIZER_NAME, ModelMetadata
from serving.predictor import Predictor
from serving.session import ENTITY_OUTPUT, TOPIC_OUTPUT
from serving.tokenise import load_tokenizer
from tests.serving.test_server import running_server

HAS_SHIPPED_MODEL = (DEFAULT_MODEL_DIR / "khabar.json").is_file()
# Small limits keep generated bodies small; the schema states them, so they are honest.
LIMITS = {
    "max_chars_per_document": 400,
    "max_documents_per_request": 4,
    "max_body_bytes": 64 * 1024,
    # Tokens cannot be said in the schema: high enough that no schema-valid request meets them.
    "max_tokens_per_document": 4 * 400,
    "max_tokens_per_request": 4 * 4 * 400,
}
MIN_CASES = 300
CONFIG = Path(__file__).with_name("schemathesis.toml")


class CheapSession:
    """An encoder stand-in: every token O, fixed topic logits, no time spent."""

    threads = 1

    def __init__(self, n_tags: int, n_topics: int) -> None:
        self.n_tags, self.n_topics = n_tags, n_topics

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        entity = np.zeros(input_ids.shape + (self.n_tags,), dtype=np.float32)
        entity[..., 0] = 5.0
        topics = np.tile(np.linspace(-3, 3, self.n_topics, dtype=np.float32), (len(input_ids), 1))
        return {ENTITY_OUTPUT: entity, TOPIC_OUTPUT: topics}


@pytest.fixture(scope="module")
def cheap_predictor() -> Predictor:
    if not HAS_SHIPPED_MODEL:
        pytest.skip("no shipped model in models/default")
    metadata = ModelMetadata.load(DEFAULT_MODEL_DIR)
    tokenizer = load_tokenizer(DEFAULT_MODEL_DIR / TOKENIZER_NAME)
    session = CheapSession(len(metadata.entity_tags), len(metadata.topic_labels))
    return Predictor(metadata, tokenizer, session)  # type: ignore[arg-type]


def openapi(predictor: Any, **settings: Any) -> dict[str, Any]:
    app = create_app(ServerSettings(**settings), predictor=predictor)
    with TestClient(app) as client:
        return client.get("/openapi.json").json()


class TestDocument:
    def test_exactly_one_of_text_and_documents_with_the_limits(self, fake_predictor) -> None:
        schema = openapi(fake_predictor, max_chars_per_document=123, max_documents_per_request=7)
        request = schema["components"]["schemas"]["AnalyzeRequest"]
        assert request["oneOf"] == [{"required": ["text"]}, {"required": ["documents"]}]
        assert request["additionalProperties"] is False
        assert request["properties"]["text"]["maxLength"] == 123
        assert request["properties"]["documents"]["maxItems"] == 7
        document = schema["components"]["schemas"]["DocumentIn"]
        assert document["properties"]["text"]["maxLength"] == 123
        assert "pattern" in document["properties"]["text"]

    def test_every_route_documents_its_error_statuses_with_the_error_schema(
        self, fake_predictor
    ) -> None:
        schema = openapi(fake_predictor)
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                statuses = set(operation["responses"])
                assert {"408", "413", "500", "503"} <= statuses, (path, method)
                for status, response in operation["responses"].items():
                    if status.startswith(("4", "5")):
                        ref = response["content"]["application/json"]["schema"]["$ref"]
                        assert ref.endswith("/ErrorBody"), (path, method, status)
        analyze = schema["paths"]["/v1/analyze"]["post"]["responses"]
        assert {"200", "408", "413", "422", "424", "429", "500", "503"} == set(analyze)

    def test_a_null_text_is_refused_like_the_schema_says(self, fake_predictor) -> None:
        app = create_app(ServerSettings(), predictor=fake_predictor)
        with TestClient(app) as client:
            response = client.post(
                "/v1/analyze", json={"text": None, "documents": [{"text": "Ali"}]}
            )
        assert response.status_code == 422
        assert '"text" is null' in response.json()["error"]

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b'{"text": "\xff\xfe"}', "not UTF-8 at byte"),
            (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
            (b'{"text": ' + b"9" * 5000 + b"}", "too many digits"),
            (b'{"text": "a",}', "not valid JSON"),
            (b"[1, 2]", "must be a JSON object"),
        ],
    )
    def test_bodies_that_are_not_json_objects_are_all_422(
        self, fake_predictor, body: bytes, reason: str
    ) -> None:
        app = create_app(ServerSettings(max_body_bytes=1_000_000), predictor=fake_predictor)
        with TestClient(app) as client:
            response = client.post(
                "/v1/analyze", content=body, headers={"content-type": "application/json"}
            )
        assert response.status_code == 422, response.text
        assert response.json()["error_type"] == "validation_error"
        assert reason in response.json()["error"]

    def test_docs_are_served_from_local_files(self, fake_predictor) -> None:
        app = create_app(ServerSettings(), predictor=fake_predictor)
        with TestClient(app) as client:
            page = client.get("/docs").text
            assert "cdn" not in page.lower()
            assert "/docs/assets/swagger-ui-bundle.js" in page
            assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
            assert client.get("/docs/assets/swagger-ui.css").status_code == 200
            assert client.get("/redoc").status_code == 404

    def test_docs_can_be_switched_off(self, fake_predictor) -> None:
        app = create_app(ServerSettings(docs=False), predictor=fake_predictor)
        with TestClient(app) as client:
            assert client.get("/docs").status_code == 404
            assert client.get("/openapi.json").status_code == 200


def test_schemathesis_finds_nothing_in_every_phase(cheap_predictor, tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    report = tmp_path / "report.json"
    with running_server(cheap_predictor, **LIMITS) as (base_url, _):
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(CONFIG),
                "--no-color",
                "run",
                f"{base_url}/openapi.json",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "300",
                "--seed",
                "12",
                "--workers",
                "2",
                "--request-timeout",
                "30",
                "--report",
                "json",
                "--report-json-path",
                str(report),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    data = json.loads(report.read_text(encoding="utf-8"))
    cases = data["test_cases"]
    assert cases["generated"] >= MIN_CASES, output[-3000:]
    assert cases["with_failures"] == cases["errored"] == 0
    phases = {name: phase["status"] for name, phase in data["phases"].items()}
    assert phases["examples"] == phases["coverage"] == phases["fuzzing"] == "success"
    # Stateful testing follows links between operations; this API has none to follow.
    assert phases["stateful"] in ("success", "skip")
