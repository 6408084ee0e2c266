"""``Depends`` helpers shared by the routers, and the one door to inference.

Routes never call the predictor themselves: they go through
:class:`InferenceRunner`, which runs ``Predictor.analyze`` in a worker thread so
the event loop stays free, lets one call use the CPUs at a time (onnxruntime
already spreads one call over all intra-op threads), and turns a full queue into
429. A dynamic micro-batching queue can replace it behind the same ``analyze``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from fastapi import Request

from serving.errors import ModelLoadError, Overloaded

if TYPE_CHECKING:
    from serving.api.routers.metrics import Metrics
    from serving.api.settings import ServerSettings
    from serving.predictor import DocumentResult, Predictor

logger = logging.getLogger(__name__)

NOT_LOADED_YET = "the model is still loading; retry when GET /v1/ready returns 200"


class InferenceRunner:
    """Runs a predictor off the event loop, one call at a time, with a bounded queue."""

    def __init__(self, predictor: Predictor, batch_size: int, max_queued: int) -> None:
        """Wrap ``predictor``; ``max_queued`` counts the running call too."""
        self.predictor = predictor
        self.batch_size = batch_size
        self.max_queued = max_queued
        self._pending = 0
        # Created on first use: an anyio limiter belongs to the running event loop.
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def pending(self) -> int:
        """Calls running or waiting for the model."""
        return self._pending

    async def analyze(
        self, texts: Sequence[str], ids: Sequence[str | None]
    ) -> list[DocumentResult]:
        """Analyse documents in a worker thread.

        Raises:
            Overloaded: ``max_queued`` calls are already running or waiting.
            InferenceError: onnxruntime failed on the batch.
        """
        if self._pending >= self.max_queued:
            raise Overloaded(
                f"{self._pending} requests are already waiting for the model; retry shortly"
            )
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        self._pending += 1
        try:
            return await anyio.to_thread.run_sync(
                partial(self.predictor.analyze, list(texts), list(ids), batch_size=self.batch_size),
                limiter=self._limiter,
            )
        finally:
            self._pending -= 1


def get_settings(request: Request) -> ServerSettings:
    """The app's settings."""
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    return request.app.state.metrics


def get_predictor(request: Request) -> Predictor:
    """The loaded predictor.

    Raises:
        ModelLoadError: The model is still loading or failed to load (503).
    """
    predictor = request.app.state.predictor
    if predictor is None:
        raise ModelLoadError(model_not_ready_message(request))
    return predictor


def get_runner(request: Request) -> InferenceRunner:
    """The inference runner of the loaded predictor.

    Raises:
        ModelLoadError: The model is still loading or failed to load (503).
    """
    runner = request.app.state.runner
    if runner is None:
        raise ModelLoadError(model_not_ready_message(request))
    return runner


def model_not_ready_message(request: Request) -> str:
    """Why there is no model: the load error if loading failed, else still loading."""
    load_error = request.app.state.load_error
    if load_error:
        return f"the model failed to load: {load_error}"
    return NOT_LOADED_YET
