"""Tests for the InferenceRunner behind POST /v1/analyze: turns, drops, deadlines, shutdown.

Requests run concurrently on one event loop through httpx's ASGI transport, with the
app's own lifespan, so the scheduling is seen as a client sees it. The fake predictor
cuts each document into one encoder "call" per ``batch_size`` words and records the
text of every call in ``predictor.steps``; a gate holds a chosen call until the test
has queued what it wants, so the order of calls does not depend on timing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from khabar_cli.app import app as cli_app
from serving.api.app import begin_shutdown, create_app
from serving.api.runner import InferenceRunner
from serving.api.settings import ServerSettings

WAIT_SECONDS = 5.0


class Gate:
    """Blocks the encoder call number ``at`` (1-based) until ``release`` is set."""

    def __init__(self, at: int = 1, delay_s: float = 0.0) -> None:
        self.at = at
        self.delay_s = delay_s
        self.count = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, text: str) -> None:
        self.count += 1
        if self.count == self.at:
            self.entered.set()
            self.release.wait(WAIT_SECONDS)
        elif self.delay_s:
            time.sleep(self.delay_s)


@asynccontextmanager
async def serve(predictor, **settings: object) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app with its lifespan running, and an async client talking to it in-process."""
    settings.setdefault("batch_size", 4)
    app = create_app(ServerSettings(**settings), predictor=predictor)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://khabar") as client:
            yield client, app


async def wait_until(condition, what: str, seconds: float = WAIT_SECONDS) -> None:
    with anyio.move_on_after(seconds):
        while not condition():
            await anyio.sleep(0.002)
        return
    raise AssertionError(f"timed out waiting for {what}")


def post(client: httpx.AsyncClient, text: str) -> asyncio.Task[httpx.Response]:
    return asyncio.ensure_future(client.post("/v1/analyze", json={"text": text}))


def words(name: str, count: int) -> str:
    return " ".join(f"{name}{i}" for i in range(count))


def assert_error(response: httpx.Response, status: int, error_type: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error", "error_type"}
    assert response.json()["error_type"] == error_type


class TestTurns:
    def test_a_small_request_runs_after_one_call_of_a_large_one(self, fake_predictor) -> None:
        gate = fake_predictor.on_step = Gate(at=3)
        big, small = words("Big", 40), "Ali"

        async def scenario() -> tuple[httpx.Response, httpx.Response]:
            async with serve(fake_predictor) as (client, app):
                large = post(client, big)
                await wait_until(gate.entered.is_set, "the large request's third call")
                little = post(client, small)
                await wait_until(lambda: app.state.runner.queued == 2, "both queued")
                gate.release.set()
                return await large, await little

        large, little = anyio.run(scenario)
        assert large.status_code == little.status_code == 200
        assert little.json()["result"]["entities"][0]["text"] == "Ali"
        # Calls 1-3 are the large request's; the small one goes right after the third.
        assert fake_predictor.steps[:4] == [big, big, big, small]
        assert fake_predictor.steps.count(big) == 10

    def test_two_large_requests_take_turns(self, fake_predictor) -> None:
        gate = fake_predictor.on_step = Gate(at=1)
        first, second = words("One", 24), words("Two", 24)

        async def scenario() -> list[httpx.Response]:
            async with serve(fake_predictor) as (client, app):
                a = post(client, first)
                await wait_until(gate.entered.is_set, "the first call")
                b = post(client, second)
                await wait_until(lambda: app.state.runner.queued == 2, "both queued")
                gate.release.set()
                return [await a, await b]

        responses = anyio.run(scenario)
        assert [r.status_code for r in responses] == [200, 200]
        assert fake_predictor.steps == [first, second] * 6

    def test_each_request_gets_its_own_results(self, fake_predictor) -> None:
        fake_predictor.on_step = Gate(at=0, delay_s=0.001)
        requests = [
            [{"id": f"r{r}-d{i}", "text": f"زار Name{r}x{i} بيروت"} for i in range(1 + r % 3)]
            for r in range(8)
        ]

        async def scenario() -> list[httpx.Response]:
            async with serve(fake_predictor) as (client, _):
                return list(
                    await asyncio.gather(
                        *(client.post("/v1/analyze", json={"documents": d}) for d in requests)
                    )
                )

        for response, documents in zip(anyio.run(scenario), requests, strict=True):
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            assert [r["id"] for r in results] == [d["id"] for d in documents]
            for result, document in zip(results, documents, strict=True):
                names = [e["text"] for e in result["entities"] if e["label"] == "PER"]
                assert names == [document["text"].split()[1]]

    @pytest.mark.parametrize(
        ("poison", "status", "error_type"),
        [("BOOM", 424, "inference_error"), ("CRASH", 500, "internal_error")],
    )
    def test_a_failing_document_fails_only_its_own_request(
        self, fake_predictor, poison: str, status: int, error_type: str
    ) -> None:
        gate = fake_predictor.on_step = Gate(at=1)

        async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
            async with serve(fake_predictor) as (client, app):
                first = post(client, words("Gate", 6))
                await wait_until(gate.entered.is_set, "the first call")
                bad = post(client, f"Bad {poison}")
                good = post(client, "Omar")
                await wait_until(lambda: app.state.runner.queued == 3, "queued")
                gate.release.set()
                return await first, await bad, await good

        first, bad, good = anyio.run(scenario)
        assert_error(bad, status, error_type)
        assert first.status_code == good.status_code == 200
        assert good.json()["result"]["entities"][0]["text"] == "Omar"


class TestDroppedWork:
    def test_a_cancelled_request_runs_no_more_calls(self, fake_predictor) -> None:
        gate = fake_predictor.on_step = Gate(at=2)
        runner = InferenceRunner(max_queued=8)
        long_text = words("Long", 40)

        async def scenario() -> None:
            analysis = fake_predictor.analysis(fake_predictor.prepare([long_text]), [None], 4)
            task = asyncio.ensure_future(runner.run(analysis))
            await wait_until(gate.entered.is_set, "the second call")
            task.cancel()
            await wait_until(lambda: runner.queued == 0, "dropped")
            gate.release.set()
            done = fake_predictor.analysis(fake_predictor.prepare(["Ali"]), [None], 4)
            await runner.run(done)
            assert done.done

        anyio.run(scenario)
        runner.close()
        assert runner.join(WAIT_SECONDS)
        assert fake_predictor.steps == [long_text, long_text, "Ali"]

    def test_past_its_deadline_a_request_is_503_with_retry_after(self, fake_predictor) -> None:
        fake_predictor.on_step = Gate(at=0, delay_s=0.05)
        long_text = words("Slow", 400)

        async def scenario() -> tuple[httpx.Response, str]:
            async with serve(fake_predictor, request_timeout_s=0.3) as (client, app):
                response = await client.post("/v1/analyze", json={"text": long_text})
                await wait_until(lambda: app.state.runner.queued == 0, "dropped")
                steps = len(fake_predictor.steps)
                await anyio.sleep(0.2)
                assert len(fake_predictor.steps) == steps  # nothing more ran
                return response, (await client.get("/metrics")).text

        response, metrics = anyio.run(scenario)
        assert_error(response, 503, "timeout")
        assert response.headers["retry-after"] == "5"
        assert "within 0.3 s" in response.json()["error"]
        assert len(fake_predictor.steps) < 100
        assert 'khabar_dropped_batches_total{reason="abandoned"}' in metrics


class TestShutdown:
    def test_drain_refuses_new_work_and_ends_admitted_work_after_the_grace(
        self, fake_predictor
    ) -> None:
        fake_predictor.on_step = Gate(at=0, delay_s=0.02)
        long_text = words("Long", 800)

        async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response, float]:
            async with serve(fake_predictor) as (client, app):
                admitted = post(client, long_text)
                await wait_until(lambda: len(fake_predictor.steps) > 0, "the first call")
                started = time.monotonic()
                begin_shutdown(app, grace_s=0.3)
                ready = await client.get("/v1/ready")
                late = await client.post("/v1/analyze", json={"text": "Ali"})
                refused = await admitted
                return ready, late, refused, time.monotonic() - started

        ready, late, refused, seconds = anyio.run(scenario)
        assert_error(ready, 503, "shutting_down")
        assert_error(late, 503, "shutting_down")
        assert_error(refused, 503, "shutting_down")
        assert "shutting down" in refused.json()["error"]
        assert 0.25 < seconds < 3
        assert fake_predictor.steps.count(long_text) < 200
        assert "Ali" not in fake_predictor.steps

    def test_a_request_that_ends_within_the_grace_is_answered(self, fake_predictor) -> None:
        fake_predictor.on_step = Gate(at=0, delay_s=0.01)

        async def scenario() -> httpx.Response:
            async with serve(fake_predictor) as (client, app):
                admitted = post(client, words("Short", 8))
                await wait_until(lambda: len(fake_predictor.steps) > 0, "the first call")
                begin_shutdown(app, grace_s=5)
                return await admitted

        assert anyio.run(scenario).status_code == 200

    def test_the_lifespan_stops_the_worker_and_a_restart_gets_a_new_one(
        self, fake_predictor
    ) -> None:
        app = create_app(ServerSettings(), predictor=fake_predictor)  # type: ignore[arg-type]

        async def run_once() -> InferenceRunner:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://k") as client:
                    response = await client.post("/v1/analyze", json={"text": "Ali"})
                    assert response.status_code == 200
                    return app.state.runner

        first = anyio.run(run_once)
        assert first.closed
        assert first.join(0)
        second = anyio.run(run_once)
        assert second is not first
        assert second.join(0)


class TestSettings:
    def test_defaults(self) -> None:
        settings = ServerSettings()
        assert settings.max_tokens_per_document == 40_000
        assert settings.max_tokens_per_request == 131_072
        assert (settings.request_timeout_s, settings.shutdown_grace_s) == (60.0, 25.0)
        assert (settings.header_timeout_s, settings.body_timeout_s) == (10.0, 30.0)
        assert settings.max_connections == 256

    def test_serve_passes_its_options_to_the_server(
        self, tmp_path: Path, fake_predictor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: dict[str, object] = {}
        monkeypatch.setattr(
            "khabar_cli.app.load_predictor", lambda model_dir, threads, stories=(): fake_predictor
        )
        monkeypatch.setattr(
            "serving.api.server.run_server",
            lambda app, settings, host, port, log_level: calls.update(app=app, settings=settings),
        )
        monkeypatch.setenv("KHABAR_MAX_CONNECTIONS", "17")
        options = [
            "--max-tokens-per-document",
            "99",
            "--max-tokens-per-request",
            "199",
            "--request-timeout-s",
            "4",
            "--shutdown-grace-s",
            "2",
            "--header-timeout-s",
            "3",
            "--no-docs",
        ]
        result = CliRunner().invoke(cli_app, ["serve", "--model", str(tmp_path), *options])
        assert result.exit_code == 0, result.output
        settings = calls["settings"]
        assert settings.max_tokens_per_document == 99  # type: ignore[attr-defined]
        assert settings.max_tokens_per_request == 199  # type: ignore[attr-defined]
        assert settings.request_timeout_s == 4.0  # type: ignore[attr-defined]
        assert settings.shutdown_grace_s == 2.0  # type: ignore[attr-defined]
        assert settings.header_timeout_s == 3.0  # type: ignore[attr-defined]
        assert settings.max_connections == 17  # type: ignore[attr-defined]
        assert settings.docs is False  # type: ignore[attr-defined]
        assert calls["app"].state.runner is not None  # type: ignore[attr-defined]
