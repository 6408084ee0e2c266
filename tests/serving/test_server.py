"""``khabar serve``'s server over real sockets: 499s, timeouts and the connection limit.

Each test runs :class:`~serving.api.server.KhabarServer` in a thread on a free
loopback port with the fake predictor, and talks to it with raw sockets where a
well-behaved client library would not misbehave the way the test needs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from serving.api.app import create_app
from serving.api.server import KhabarServer, server_config
from serving.api.settings import ServerSettings

WAIT_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(predictor, **settings: object) -> Iterator[tuple[str, int]]:
    """The server with ``settings`` in a thread; yields its base URL and port."""
    settings.setdefault("batch_size", 4)
    server_settings = ServerSettings(**settings)  # type: ignore[arg-type]
    app = create_app(server_settings, predictor=predictor)
    port = free_port()
    config = server_config(app, server_settings, "127.0.0.1", port, "warning")
    server = KhabarServer(config, grace_s=server_settings.shutdown_grace_s)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the server to start")
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(WAIT_SECONDS)


def wait_for(condition: Callable[[], object], what: str, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS)
    return sock


def post_head(length: int) -> bytes:
    return (
        "POST /v1/analyze HTTP/1.1\r\nhost: khabar\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    """Status, headers and JSON body of one response (the server closes or sizes it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, json.loads(body) if body else {}


def count_of(base_url: str, status: str) -> float:
    text = httpx.get(f"{base_url}/metrics").text
    prefix = f'khabar_http_requests_total{{method="POST",route="/v1/analyze",status="{status}"}}'
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


class TestClientDisconnects:
    def test_a_client_gone_mid_analysis_is_499_and_its_work_stops(self, fake_predictor) -> None:
        fake_predictor.on_step = lambda text: time.sleep(0.02)
        body = json.dumps({"text": " ".join(f"w{i}" for i in range(2000))}).encode()
        with running_server(fake_predictor) as (base_url, port):
            sock = connect(port)
            sock.sendall(post_head(len(body)) + body)
            wait_for(lambda: len(fake_predictor.steps) >= 3, "the analysis to start")
            sock.close()
            wait_for(lambda: count_of(base_url, "499") == 1, "a 499 in the metrics")
            steps = len(fake_predictor.steps)
            time.sleep(0.3)
            assert len(fake_predictor.steps) <= steps + 1  # at most the call under way
            assert count_of(base_url, "500") == 0
            metrics = httpx.get(f"{base_url}/metrics").text
            assert 'khabar_errors_total{error_type="client_disconnected"} 1.0' in metrics
            assert httpx.post(f"{base_url}/v1/analyze", json={"text": "Ali"}).status_code == 200

    def test_uploads_abandoned_mid_body_are_499_not_500(self, fake_predictor) -> None:
        with running_server(fake_predictor) as (base_url, port):
            for _ in range(5):
                sock = connect(port)
                sock.sendall(post_head(1000) + b'{"text": "abc')
                time.sleep(0.05)
                sock.close()
            wait_for(lambda: count_of(base_url, "499") == 5, "five 499s")
            assert count_of(base_url, "500") == 0
            assert fake_predictor.steps == []


class TestSlowClients:
    def test_headers_that_never_finish_get_408_and_the_connection_closes(
        self, fake_predictor
    ) -> None:
        with running_server(fake_predictor, header_timeout_s=0.3) as (_, port):
            sock = connect(port)
            sock.sendall(b"POST /v1/analyze HTTP/1.1\r\nhost: kha")
            started = time.monotonic()
            status, headers, body = read_response(sock)
            assert status == 408
            assert headers["connection"] == "close"
            assert body["error_type"] == "request_timeout"
            assert sock.recv(10) == b""  # closed
            assert time.monotonic() - started < 5
            idle = connect(port)  # sends nothing at all: closed without a word
            assert idle.recv(10) == b""

    def test_a_body_that_stalls_gets_408_json(self, fake_predictor) -> None:
        with running_server(fake_predictor, body_timeout_s=0.3) as (base_url, port):
            sock = connect(port)
            sock.sendall(post_head(100) + b'{"text": "')
            status, headers, body = read_response(sock)
            assert status == 408
            assert headers["connection"] == "close"
            assert set(body) == {"error", "error_type"}
            assert "did not arrive within 0.3 s" in str(body["error"])
            assert count_of(base_url, "408") == 1

    def test_beyond_the_connection_limit_requests_get_503_json(self, fake_predictor) -> None:
        with running_server(fake_predictor, max_connections=2, header_timeout_s=5) as (_, port):
            held = [connect(port) for _ in range(2)]
            answer: tuple[int, dict[str, str], dict[str, object]] | None = None
            for _ in range(100):  # until the server has registered the held connections
                extra = connect(port)
                extra.sendall(b"GET /v1/health HTTP/1.1\r\nhost: khabar\r\n\r\n")
                answer = read_response(extra)
                extra.close()
                if answer[0] != 200:
                    break
                time.sleep(0.05)
            assert answer is not None
            status, headers, body = answer
            assert status == 503
            assert headers["retry-after"] == "1"
            assert headers["connection"] == "close"
            assert body["error_type"] == "too_many_connections"
            assert "limit of 2 connections" in str(body["error"])
            for sock in held:
                sock.close()
            with httpx.Client() as client:
                for _ in range(100):
                    if client.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200:
                        break
                    time.sleep(0.05)
                assert client.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200


@pytest.mark.parametrize("path", ["/v1/health", "/docs"])
def test_the_server_answers_ordinary_requests(fake_predictor, path: str) -> None:
    with running_server(fake_predictor) as (base_url, _):
        response = httpx.get(f"{base_url}{path}")
        assert response.status_code == 200


def test_a_request_that_is_not_http_gets_400_json(fake_predictor) -> None:
    with running_server(fake_predictor) as (_, port):
        sock = connect(port)
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nhost: k\x00hal\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 400
        assert headers["connection"] == "close"
        assert body["error_type"] == "bad_request"
