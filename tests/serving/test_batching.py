"""Tests for the micro-batching InferenceRunner behind POST /v1/analyze.

Requests run concurrently on one event loop through httpx's ASGI transport, with
the app's own lifespan, so merging, 429, fallback and shutdown are seen as a
client sees them. A gated fake holds its first call until the test has queued
the requests it wants merged, so batch contents do not depend on timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from serving.api.app import create_app
from serving.api.dependencies import InferenceRunner
from serving.api.settings import ServerSettings
from serving.cli.app import app as cli_app

GATE_SECONDS = 5.0


@pytest.fixture
def gated_predictor_cls(fake_predictor_cls):
    class GatedPredictor(fake_predictor_cls):  # type: ignore[misc, valid-type]
        """Blocks its first call until ``release`` is set; later calls run at once."""

        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.entered = threading.Event()
            self.release = threading.Event()

        def analyze(self, texts, ids=None, batch_size=16):
            if not self.entered.is_set():
                self.entered.set()
                self.release.wait(GATE_SECONDS)
            return super().analyze(texts, ids, batch_size)

    return GatedPredictor


@asynccontextmanager
async def serve(predictor, **settings: object) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app with its lifespan running, and an async client talking to it in-process."""
    app = create_app(ServerSettings(**settings), predictor=predictor)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://khabar") as client:
            yield client, app


async def wait_until(condition, what: str, seconds: float = GATE_SECONDS) -> None:
    with anyio.move_on_after(seconds):
        while not condition():
            await anyio.sleep(0.002)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def hold_first_call(client: httpx.AsyncClient, predictor) -> asyncio.Task[httpx.Response]:
    """Start a request and wait until the predictor is busy with it."""
    task = asyncio.ensure_future(client.post("/v1/analyze", json={"text": "Gate"}))
    await wait_until(predictor.entered.is_set, "the first call")
    return task


def documents_of(request: int, count: int) -> list[dict[str, str]]:
    """Documents whose single entity (a capitalised word) names request and position."""
    return [
        {"id": f"r{request}-d{i}", "text": f"زار Name{request}x{i} بيروت"} for i in range(count)
    ]


def assert_own_results(response: httpx.Response, documents: Sequence[dict[str, str]]) -> None:
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [d["id"] for d in documents]
    for result, document in zip(results, documents, strict=True):
        names = [e["text"] for e in result["entities"] if e["label"] == "PER"]
        assert names == [document["text"].split()[1]]


def assert_error(response: httpx.Response, status: int, error_type: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error", "error_type"}
    assert response.json()["error_type"] == error_type


class TestMerging:
    def test_concurrent_requests_share_predictor_calls(self, fake_predictor) -> None:
        requests = [documents_of(r, 1) for r in range(8)]

        async def scenario() -> tuple[list[httpx.Response], str]:
            async with serve(fake_predictor, max_batch_documents=8, max_wait_ms=1000) as (
                client,
                _,
            ):
                responses = await asyncio.gather(
                    *(client.post("/v1/analyze", json={"documents": d}) for d in requests)
                )
                return list(responses), (await client.get("/metrics")).text

        responses, metrics = anyio.run(scenario)
        for response, documents in zip(responses, requests, strict=True):
            assert_own_results(response, documents)
        assert len(fake_predictor.calls) < len(requests)
        assert sum(len(call) for call in fake_predictor.calls) == 8
        assert f"khabar_batch_documents_count {len(fake_predictor.calls)}.0" in metrics
        assert "khabar_batch_documents_sum 8.0" in metrics
        assert "khabar_queue_depth 0.0" in metrics

    def test_requests_queued_behind_a_call_merge_into_the_next(self, gated_predictor_cls) -> None:
        predictor = gated_predictor_cls()
        requests = [documents_of(r, 1 + r % 3) for r in range(6)]

        async def scenario() -> tuple[httpx.Response, list[httpx.Response]]:
            async with serve(predictor, max_batch_documents=64, max_wait_ms=0) as (client, app):
                first = await hold_first_call(client, predictor)
                tasks = [
                    asyncio.ensure_future(client.post("/v1/analyze", json={"documents": d}))
                    for d in requests
                ]
                await wait_until(lambda: app.state.runner.queued == len(requests), "queued")
                predictor.release.set()
                return await first, list(await asyncio.gather(*tasks))

        first, responses = anyio.run(scenario)
        assert first.json()["result"]["entities"][0]["text"] == "Gate"
        for response, documents in zip(responses, requests, strict=True):
            assert_own_results(response, documents)
        assert len(predictor.calls) == 2
        assert sorted(predictor.calls[1]) == sorted(d["text"] for r in requests for d in r)

    def test_batches_hold_whole_requests_up_to_max_batch_documents(
        self, gated_predictor_cls
    ) -> None:
        predictor = gated_predictor_cls()
        requests = [documents_of(r, 2) for r in range(5)] + [documents_of(5, 6)]

        async def scenario() -> list[httpx.Response]:
            async with serve(predictor, max_batch_documents=4, max_wait_ms=0) as (client, app):
                first = await hold_first_call(client, predictor)
                tasks = [
                    asyncio.ensure_future(client.post("/v1/analyze", json={"documents": d}))
                    for d in requests
                ]
                await wait_until(lambda: app.state.runner.queued == len(requests), "queued")
                predictor.release.set()
                await first
                return list(await asyncio.gather(*tasks))

        responses = anyio.run(scenario)
        for response, documents in zip(responses, requests, strict=True):
            assert_own_results(response, documents)
        text_to_request = {d["text"]: r for r, docs in enumerate(requests) for d in docs}
        merged_calls = predictor.calls[1:]
        for call in merged_calls:
            in_call = {text_to_request[text] for text in call}
            # Whole requests only, and over the limit only for a request that is alone.
            assert sorted(call) == sorted(d["text"] for r in in_call for d in requests[r])
            assert len(call) <= 4 or in_call == {5}
        assert [call for call in merged_calls if len(call) > 4] == [
            [d["text"] for d in requests[5]]
        ]

    def test_a_lone_request_waits_at_most_max_wait_ms(self, fake_predictor) -> None:
        async def scenario() -> httpx.Response:
            async with serve(fake_predictor, max_wait_ms=20) as (client, _):
                with anyio.fail_after(GATE_SECONDS):
                    return await client.post("/v1/analyze", json={"text": "Ali"})

        assert anyio.run(scenario).status_code == 200
        assert fake_predictor.calls == [["Ali"]]


class TestOverloadAndFailures:
    def test_full_queue_is_429_with_json_body_and_retry_after(self, gated_predictor_cls) -> None:
        predictor = gated_predictor_cls()

        async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
            async with serve(predictor, max_queued_requests=2) as (client, app):
                first = await hold_first_call(client, predictor)
                second = asyncio.ensure_future(client.post("/v1/analyze", json={"text": "Omar"}))
                await wait_until(lambda: app.state.runner.pending == 2, "two pending")
                refused = await client.post("/v1/analyze", json={"text": "Ali"})
                predictor.release.set()
                return refused, await first, await second

        refused, first, second = anyio.run(scenario)
        assert_error(refused, 429, "overloaded")
        assert refused.headers["retry-after"] == "1"
        assert first.status_code == second.status_code == 200
        assert second.json()["result"]["entities"][0]["text"] == "Omar"
        assert ["Ali"] not in predictor.calls

    @pytest.mark.parametrize(
        ("poison", "status", "error_type"),
        [("BOOM", 424, "inference_error"), ("CRASH", 500, "internal_error")],
    )
    def test_a_failing_document_fails_only_its_own_request(
        self, gated_predictor_cls, poison: str, status: int, error_type: str
    ) -> None:
        predictor = gated_predictor_cls()
        good = [documents_of(r, 2) for r in range(3)]
        bad = [{"id": "bad", "text": f"Bad {poison}"}]

        async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
            async with serve(predictor, max_wait_ms=0) as (client, app):
                first = await hold_first_call(client, predictor)
                tasks = [
                    asyncio.ensure_future(client.post("/v1/analyze", json={"documents": d}))
                    for d in [good[0], bad, *good[1:]]
                ]
                await wait_until(lambda: app.state.runner.queued == 4, "queued")
                predictor.release.set()
                await first
                responses = list(await asyncio.gather(*tasks))
                return responses[:1] + responses[2:], responses[1]

        ok, failed = anyio.run(scenario)
        assert_error(failed, status, error_type)
        for response, documents in zip(ok, good, strict=True):
            assert_own_results(response, documents)
        merged, *alone = predictor.calls[1:]
        assert len(merged) == 7
        assert sorted(map(len, alone)) == [1, 2, 2, 2]

    def test_a_cancelled_request_never_reaches_the_predictor(self, gated_predictor_cls) -> None:
        predictor = gated_predictor_cls()
        runner = InferenceRunner(predictor, batch_size=4, max_queued=8, max_wait_ms=0)

        async def scenario() -> None:
            first = asyncio.ensure_future(runner.analyze(["Gate"], [None]))
            await wait_until(predictor.entered.is_set, "the first call")
            cancelled = asyncio.ensure_future(runner.analyze(["Omar"], [None]))
            await wait_until(lambda: runner.queued == 1, "queued")
            cancelled.cancel()
            await wait_until(lambda: runner.pending == 1, "cancelled")
            predictor.release.set()
            await first
            assert (await runner.analyze(["Ali"], [None]))[0].entities[0].text == "Ali"

        anyio.run(scenario)
        runner.close()
        assert runner.join(GATE_SECONDS)
        assert predictor.calls == [["Gate"], ["Ali"]]
        assert runner.pending == 0


class TestShutdown:
    def test_closing_refuses_queued_requests_and_finishes_the_running_call(
        self, gated_predictor_cls
    ) -> None:
        predictor = gated_predictor_cls()

        async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
            async with serve(predictor) as (client, app):
                first = await hold_first_call(client, predictor)
                queued = asyncio.ensure_future(client.post("/v1/analyze", json={"text": "Omar"}))
                await wait_until(lambda: app.state.runner.queued == 1, "queued")
                app.state.runner.close()
                refused = await queued
                predictor.release.set()
                late = await client.post("/v1/analyze", json={"text": "Ali"})
                return await first, refused, late

        first, refused, late = anyio.run(scenario)
        assert first.status_code == 200
        assert_error(refused, 503, "shutting_down")
        assert "shutting down" in refused.json()["error"]
        assert_error(late, 503, "shutting_down")
        assert predictor.calls == [["Gate"]]

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
    def test_batching_settings_come_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("KHABAR_MAX_BATCH_DOCUMENTS", "12")
        monkeypatch.setenv("KHABAR_MAX_WAIT_MS", "2.5")
        settings = ServerSettings()
        assert (settings.max_batch_documents, settings.max_wait_ms) == (12, 2.5)
        assert settings.max_queued_requests == 64

    def test_defaults(self) -> None:
        settings = ServerSettings()
        assert (settings.max_batch_documents, settings.max_wait_ms) == (32, 5.0)

    def test_serve_passes_the_batching_options(
        self, tmp_path: Path, fake_predictor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: dict[str, object] = {}
        monkeypatch.setattr(
            "serving.cli.app.load_predictor", lambda model_dir, threads, stories=(): fake_predictor
        )
        monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: calls.update(app=app, **kwargs))
        options = ["--max-batch-documents", "8", "--max-wait-ms", "2", "--max-queued-requests", "9"]
        result = CliRunner().invoke(cli_app, ["serve", "--model", str(tmp_path), *options])
        assert result.exit_code == 0, result.output
        app = calls["app"]
        settings = app.state.settings  # type: ignore[attr-defined]
        assert (settings.max_batch_documents, settings.max_wait_ms) == (8, 2.0)
        runner = app.state.runner  # type: ignore[attr-defined]
        assert (runner.max_batch_documents, runner.max_wait_seconds, runner.max_queued) == (
            8,
            0.002,
            9,
        )
