"""``Depends`` helpers shared by the routers, and the one door to inference.

Routes never call the predictor themselves: they go through
:class:`InferenceRunner`, which gathers concurrent requests into one
``Predictor.analyze`` call, as text-embeddings-inference's dynamic batching does.
The predictor sorts all windows of a call by length, so many small requests
share well-filled, little-padded encoder batches instead of each paying for its
own half-empty one. One worker thread runs the model: the event loop stays free,
and onnxruntime already spreads one call over all intra-op threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request
from prometheus_client import CollectorRegistry, Gauge, Histogram

from serving.api.settings import DEFAULT_MAX_BATCH_DOCUMENTS, DEFAULT_MAX_WAIT_MS
from serving.errors import ModelLoadError, Overloaded, ServerShuttingDown

if TYPE_CHECKING:
    from serving.api.routers.metrics import Metrics
    from serving.api.settings import ServerSettings
    from serving.predictor import DocumentResult, Predictor

logger = logging.getLogger(__name__)

NOT_LOADED_YET = "the model is still loading; retry when GET /v1/ready returns 200"
SHUTTING_DOWN = "the server is shutting down; the request was not analysed, retry on another server"
WORKER_STOPPED = "the inference worker stopped; the request was not analysed (see the server log)"
# Documents per predictor call; a single request may go over max_batch_documents.
BATCH_DOCUMENT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class BatchingMetrics:
    """How well requests merge: documents per predictor call and requests waiting.

    Registered on the app's own registry beside the request metrics, so
    ``/metrics`` shows them and several apps in one process never collide.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Create the metrics on ``registry``."""
        self.batch_documents = Histogram(
            "khabar_batch_documents",
            "Documents per predictor call, after merging concurrent requests.",
            buckets=BATCH_DOCUMENT_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "khabar_queue_depth",
            "Requests waiting to join a predictor call.",
            registry=registry,
        )


@dataclass(eq=False)
class _Job:
    """One request's documents and where its results go."""

    texts: list[str]
    ids: list[str | None]
    enqueued_at: float
    future: Future[list[DocumentResult]] = field(default_factory=Future)


class InferenceRunner:
    """Runs a predictor in one worker thread, merging concurrent requests into one call.

    A request waits on a queue; the worker takes the oldest one, adds queued
    requests until ``max_batch_documents`` is reached or ``max_wait_ms`` has
    passed since the oldest arrived, runs the predictor once and hands each
    request its own slice of the results. The wait counts from arrival, so a
    busy server, whose queue has filled while the last call ran, adds no wait.
    A request is never split: one larger than ``max_batch_documents`` runs alone.

    Results are awaited through :func:`asyncio.wrap_future`, so the runner needs
    the asyncio event loop that uvicorn and FastAPI's test client use.

    >>> runner = InferenceRunner(predictor, batch_size=16, max_queued=64)  # doctest: +SKIP
    >>> results = await runner.analyze(["زار ماكرون بيروت"], [None])  # doctest: +SKIP
    """

    def __init__(
        self,
        predictor: Predictor,
        batch_size: int,
        max_queued: int,
        max_batch_documents: int = DEFAULT_MAX_BATCH_DOCUMENTS,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        metrics: BatchingMetrics | None = None,
    ) -> None:
        """Wrap ``predictor``; the worker thread starts with the first request.

        Args:
            predictor: Anything with ``Predictor.analyze``'s signature.
            batch_size: Windows per encoder call, passed on to the predictor.
            max_queued: Requests waiting or being analysed before new ones get 429.
            max_batch_documents: Documents gathered into one predictor call.
            max_wait_ms: Longest a request waits for others to join its call.
            metrics: Where to record batch sizes and queue depth, if anywhere.
        """
        self.predictor = predictor
        self.batch_size = batch_size
        self.max_queued = max_queued
        self.max_batch_documents = max_batch_documents
        self.max_wait_seconds = max_wait_ms / 1000
        self.metrics = metrics
        # Touched only on the event loop, like the old one-call-at-a-time counter.
        self._pending = 0
        # Guards the queue, the running batch, the closed flag and the worker.
        self._condition = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._running: list[_Job] = []
        self._closed = False
        self._worker: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Requests waiting in the queue or being analysed."""
        return self._pending

    @property
    def queued(self) -> int:
        """Requests waiting in the queue, not yet taken into a predictor call."""
        with self._condition:
            return len(self._queue)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the worker stopped)."""
        return self._closed

    async def analyze(
        self, texts: Sequence[str], ids: Sequence[str | None]
    ) -> list[DocumentResult]:
        """Analyse one request's documents, possibly in one call with other requests.

        Args:
            texts: The request's documents.
            ids: One id (or ``None``) per document, echoed in the results.

        Returns:
            One result per text, in order; never another request's.

        Raises:
            Overloaded: ``max_queued`` requests are already waiting or running (429).
            ServerShuttingDown: The runner was closed before the request ran (503).
            InferenceError: onnxruntime failed on this request's documents (424).
        """
        if self._closed:
            raise ServerShuttingDown(SHUTTING_DOWN)
        if self._pending >= self.max_queued:
            raise Overloaded(
                f"{self._pending} requests are already waiting for the model; retry shortly"
            )
        if not texts:
            return []
        job = _Job(texts=list(texts), ids=list(ids), enqueued_at=time.monotonic())
        self._pending += 1
        try:
            self._enqueue(job)
            return await asyncio.wrap_future(job.future)
        finally:
            self._pending -= 1

    def close(self) -> None:
        """Stop taking work and refuse what is still queued; the running call finishes.

        Safe to call more than once and from any thread. Queued requests fail
        with :class:`ServerShuttingDown` instead of waiting for a worker that
        will not come back to them.
        """
        with self._condition:
            self._closed = True
            refused = list(self._queue)
            self._queue.clear()
            self._set_queue_depth()
            self._condition.notify_all()
        for job in refused:
            _fail(job.future, ServerShuttingDown(SHUTTING_DOWN))

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to finish its running call after :meth:`close`.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            Whether the worker has stopped (or never started).
        """
        worker = self._worker
        if worker is None:
            return True
        worker.join(timeout)
        return not worker.is_alive()

    # -- the worker side -----------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
        with self._condition:
            if self._closed:
                raise ServerShuttingDown(SHUTTING_DOWN)
            self._queue.append(job)
            self._set_queue_depth()
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name="khabar-inference", daemon=True
                )
                self._worker.start()
            self._condition.notify()

    def _work(self) -> None:
        """Take batches until closed; whatever ends the loop, no request is left waiting."""
        try:
            while (batch := self._next_batch()) is not None:
                self._run_batch(batch)
        except BaseException:
            # Logged, not re-raised: the thread's excepthook would only print it again.
            logger.exception("the inference worker stopped")
        finally:
            with self._condition:
                self._closed = True
                stranded = self._running + list(self._queue)
                self._running = []
                self._queue.clear()
                self._set_queue_depth()
            for job in stranded:
                _fail(job.future, ServerShuttingDown(WORKER_STOPPED))

    def _next_batch(self) -> list[_Job] | None:
        """Wait for a request, then gather more until the batch is full or the wait is over.

        Returns:
            The requests of the next predictor call, or ``None`` once closed.
        """
        with self._condition:
            first: _Job | None = None
            while first is None:
                while not self._queue and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return None
                candidate = self._queue.popleft()
                # False when the client's task was cancelled while it waited.
                if candidate.future.set_running_or_notify_cancel():
                    first = candidate
            batch = [first]
            documents = len(first.texts)
            deadline = first.enqueued_at + self.max_wait_seconds
            while documents < self.max_batch_documents:
                if self._queue:
                    if documents + len(self._queue[0].texts) > self.max_batch_documents:
                        break
                    job = self._queue.popleft()
                    if job.future.set_running_or_notify_cancel():
                        batch.append(job)
                        documents += len(job.texts)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._condition.wait(remaining)
            self._running = batch
            self._set_queue_depth()
            return batch

    def _run_batch(self, batch: list[_Job]) -> None:
        """Run one predictor call for the batch and give each request its own results.

        If the merged call fails, each request runs on its own, so a document that
        breaks the model fails only the request that sent it.
        """
        try:
            results = self._call_predictor(
                [text for job in batch for text in job.texts],
                [doc_id for job in batch for doc_id in job.ids],
            )
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0].future, exc)
            else:
                logger.warning(
                    "a call merging %d requests failed (%s: %s); running them one by one",
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                for job in batch:
                    try:
                        job.future.set_result(self._call_predictor(job.texts, job.ids))
                    except Exception as job_exc:
                        _fail(job.future, job_exc)
        else:
            start = 0
            for job in batch:
                end = start + len(job.texts)
                job.future.set_result(results[start:end])
                start = end
        with self._condition:
            self._running = []

    def _call_predictor(self, texts: list[str], ids: list[str | None]) -> list[DocumentResult]:
        if self.metrics is not None:
            self.metrics.batch_documents.observe(len(texts))
        results = self.predictor.analyze(texts, ids, batch_size=self.batch_size)
        # Slicing a short or long answer would hand one request another's results.
        if len(results) != len(texts):
            raise RuntimeError(
                f"the predictor returned {len(results)} results for {len(texts)} documents"
            )
        return results

    def _set_queue_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._queue))


def _fail(future: Future[list[DocumentResult]], error: BaseException) -> None:
    """Set ``error`` on a future unless it already has an outcome (or was cancelled)."""
    if future.done():
        return
    try:
        future.set_exception(error)
    except InvalidStateError:  # resolved in the meantime by another thread
        logger.debug("future already resolved", exc_info=True)


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
