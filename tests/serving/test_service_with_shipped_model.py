"""Properties of the service that need the real int8 model: batch mates, fairness, SIGTERM.

The shipped int8 graph quantises activations with one scale per tensor, so these are
the properties a fake model cannot show: a document's answer must not move with the
documents analysed beside it, and the encoder's real cost is what a small request
must not wait behind.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.api.settings import ServerSettings
from serving.cli.readers import Record
from serving.cli.records import predict_records
from serving.metadata import DEFAULT_MODEL_DIR
from serving.predictor import DEFAULT_BATCH_SIZE, Predictor
from tests import tiny
from tests.serving.test_server import free_port, running_server, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "khabar.json").is_file(), reason="no shipped model in models/default"
)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load(DEFAULT_MODEL_DIR, threads=2)


def sixteen_documents() -> list[str]:
    """16 Arabic documents of 17 to 380 tokens: one to three windows, all lengths different."""
    examples = [
        json.loads(line)["text"]
        for line in (REPO_ROOT / "examples" / "articles.jsonl").read_text("utf-8").splitlines()
    ]
    documents = []
    for i in range(16):
        article = tiny.ARTICLES[i % len(tiny.ARTICLES)]
        parts = [article["title"], article["text"]]
        parts += [examples[(i + k) % len(examples)] for k in range(i % 4)]
        documents.append(" ".join(parts * (3 if i % 5 == 4 else 1)))
    return documents


def unspaced(characters: int, seed: int) -> str:
    """Arabic letters without a space: close to one token per character."""
    rng = random.Random(seed)
    letters = [chr(code) for code in range(0x0628, 0x063B)]
    return "".join(rng.choice(letters) for _ in range(characters))


class TestBatchMates:
    def test_16_documents_alone_and_in_one_api_request_agree(self, predictor) -> None:
        documents = sixteen_documents()
        app = create_app(ServerSettings(), predictor=predictor)
        with TestClient(app) as client:
            together = client.post(
                "/v1/analyze",
                json={"documents": [{"id": str(i), "text": t} for i, t in enumerate(documents)]},
            ).json()["results"]
            alone = [
                client.post("/v1/analyze", json={"documents": [{"id": str(i), "text": t}]}).json()[
                    "results"
                ][0]
                for i, t in enumerate(documents)
            ]
        assert [r["entities"] for r in together] == [r["entities"] for r in alone]
        assert [r["topic_scores"] for r in together] == [r["topic_scores"] for r in alone]
        assert together == alone
        assert sum(len(r["entities"]) for r in alone) > 16

    def test_concurrent_requests_do_not_change_each_others_answers(self, predictor) -> None:
        documents = sixteen_documents()
        app = create_app(ServerSettings(), predictor=predictor)
        with TestClient(app) as client:
            alone = [client.post("/v1/analyze", json={"text": t}).json() for t in documents]
            answers: list[Any] = [None] * len(documents)

            def send(index: int) -> None:
                answers[index] = client.post("/v1/analyze", json={"text": documents[index]}).json()

            threads = [threading.Thread(target=send, args=(i,)) for i in range(len(documents))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
        assert answers == alone

    def test_16_documents_alone_and_in_one_cli_chunk_agree_with_the_api(self, predictor) -> None:
        documents = sixteen_documents()
        records = [Record(i, str(i), text) for i, text in enumerate(documents)]

        def lines(chunk_size: int, batch_size: int) -> list[dict[str, Any]]:
            out = io.StringIO()
            predict_records(records, predictor, out, batch_size=batch_size, chunk_size=chunk_size)
            return [json.loads(line) for line in out.getvalue().splitlines()]

        together = lines(chunk_size=64, batch_size=DEFAULT_BATCH_SIZE)
        assert together == lines(chunk_size=1, batch_size=DEFAULT_BATCH_SIZE)
        assert together == lines(chunk_size=5, batch_size=DEFAULT_BATCH_SIZE)
        # Several windows per call: chunking still changes nothing.
        assert lines(chunk_size=64, batch_size=16) == lines(chunk_size=1, batch_size=16)
        app = create_app(ServerSettings(), predictor=predictor)
        with TestClient(app) as client:
            api = client.post(
                "/v1/analyze",
                json={"documents": [{"id": str(i), "text": t} for i, t in enumerate(documents)]},
            ).json()["results"]
        assert together == api


class TestFairness:
    def test_a_small_request_is_fast_beside_two_huge_documents(self, predictor) -> None:
        huge = json.dumps(
            {"documents": [{"text": unspaced(100_000, seed)} for seed in (1, 2)]}
        ).encode()
        settings = {
            "batch_size": 4,
            "max_tokens_per_document": 200_000,
            "max_tokens_per_request": 400_000,
        }
        latencies = []
        with (
            running_server(predictor, **settings) as (base_url, port),
            httpx.Client(base_url=base_url, timeout=60) as client,
        ):
            client.post("/v1/analyze", json={"text": "زار الرئيس ماكرون بيروت"})  # warm
            abandoned = send_raw(port, huge)
            analysed = send_raw(port, huge)
            wait_for(lambda: queue_depth(client) == 2, "both huge requests in the encoder")
            for _ in range(3):
                started = time.perf_counter()
                response = client.post(
                    "/v1/analyze", json={"text": "زار الرئيس الفرنسي ماكرون بيروت أمس"}
                )
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200
            abandoned.close()
            wait_for(lambda: queue_depth(client) == 1, "the abandoned request dropped")
            started = time.perf_counter()
            assert client.post("/v1/analyze", json={"text": "فاز الأهلي"}).status_code == 200
            latencies.append(time.perf_counter() - started)
            analysed.close()
            wait_for(lambda: queue_depth(client) == 0, "the other one dropped too")
            metrics = client.get("/metrics").text
        assert max(latencies) < 2.0, latencies
        assert 'status="499"} 2.0' in metrics


def send_raw(port: int, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/analyze HTTP/1.1\r\nhost: khabar\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def queue_depth(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("khabar_queue_depth "):
            return float(line.split()[1])
    return -1.0


class TestShutdown:
    def test_sigterm_during_long_requests_exits_within_the_grace_and_answers_503(
        self, tmp_path: Path
    ) -> None:
        grace = 2.0
        port = free_port()
        log = (tmp_path / "server.log").open("w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "khabar_cli.app",
                "serve",
                "--port",
                str(port),
                "--threads",
                "1",
                "--batch-size",
                "4",
                "--shutdown-grace-s",
                str(grace),
                "--max-tokens-per-document",
                "200000",
                "--max-tokens-per-request",
                "400000",
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base_url, process)
            long_request = {"documents": [{"text": unspaced(60_000, seed)} for seed in (3, 4)]}
            answers: list[httpx.Response | Exception] = []

            def send() -> None:
                try:
                    answers.append(
                        httpx.post(f"{base_url}/v1/analyze", json=long_request, timeout=60)
                    )
                except Exception as exc:  # recorded, asserted below
                    answers.append(exc)

            senders = [threading.Thread(target=send) for _ in range(2)]
            for sender in senders:
                sender.start()
            with httpx.Client(base_url=base_url) as client:
                wait_for(lambda: queue_depth(client) == 2, "both requests in the encoder", 60)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=grace + 30)
            exited_after = time.monotonic() - signalled
            for sender in senders:
                sender.join(30)
        finally:
            process.kill()
            log.close()
        assert exited_after < grace + 5, exited_after
        assert len(answers) == 2
        for answer in answers:
            assert isinstance(answer, httpx.Response), answer
            assert answer.status_code == 503
            assert answer.json()["error_type"] == "shutting_down"
            assert answer.headers["retry-after"] == "1"


def wait_ready(base_url: str, process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited before it was ready"
        try:
            if httpx.get(f"{base_url}/v1/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server was not ready in time")
