"""InferenceRunner: one worker thread runs every request's encoder calls, in fair turns.

A request's documents are tokenised in the request's own thread and become an
:class:`~serving.predictor.Analysis`: a list of encoder calls, each over windows of
one document (so no request's answer depends on another's text). The worker runs
one call at a time and, before each, picks the request that has had the least
encoder work so far. A request that arrives starts level with the least-served one,
so a small request waits for about one encoder call, not for every call of a large
request that came before it, and two large requests take turns.

Work stops as soon as nobody will read it: a request whose client went away or whose
deadline passed is dropped, and its remaining calls never run. On shutdown,
:meth:`InferenceRunner.drain` refuses new requests, lets the admitted ones run for a
grace period, then fails what is left with 503 and stops the call in progress.

>>> runner = InferenceRunner(max_queued=64)  # doctest: +SKIP
>>> with runner.slot():  # doctest: +SKIP
...     await runner.run(predictor.analysis(predictor.prepare(texts), ids))
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.errors import Overloaded, ServerShuttingDown

logger = logging.getLogger(__name__)

SHUTTING_DOWN = "the server is shutting down; the request was not analysed, retry on another server"
WORKER_STOPPED = "the inference worker stopped; the request was not analysed (see the server log)"
BATCH_WINDOW_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Steps(Protocol):
    """Work cut into encoder calls (``serving.predictor.Analysis`` or a stand-in)."""

    @property
    def done(self) -> bool:
        """Whether every call has run."""
        ...

    @property
    def remaining_batches(self) -> int:
        """Calls still to run."""
        ...

    @property
    def next_cost(self) -> int:
        """Work of the next call (token positions)."""
        ...

    def step(self, run_options: Any = None) -> int:
        """Run the next call; returns its number of windows."""
        ...


def make_run_options() -> Any:
    """Options through which :meth:`InferenceRunner.close` stops an onnxruntime call."""
    try:
        from serving.session import stoppable_run_options

        return stoppable_run_options()
    except ImportError:  # pragma: no cover - onnxruntime is a core dependency
        return None


class RunnerMetrics:
    """Requests in inference, windows per encoder call and work dropped, by reason."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Create the metrics on the app's ``registry``."""
        self.queue_depth = Gauge(
            "khabar_queue_depth",
            "Requests waiting for or in the middle of their encoder calls.",
            registry=registry,
        )
        self.batch_windows = Histogram(
            "khabar_encoder_batch_windows",
            "Windows per encoder call (each call holds windows of one document).",
            buckets=BATCH_WINDOW_BUCKETS,
            registry=registry,
        )
        self.dropped_batches = Counter(
            "khabar_dropped_batches",
            "Encoder calls not run because their request was abandoned, timed out or refused.",
            ["reason"],
            registry=registry,
        )


@dataclass(eq=False)
class _Job:
    steps: Steps
    sequence: int
    served: int
    future: Future[Steps] = field(default_factory=Future)


class InferenceRunner:
    """Runs the encoder calls of every request in one worker thread, in fair turns.

    Args:
        max_queued: Requests admitted (tokenising, waiting or running) before new ones
            get 429.
        metrics: Where to count, if anywhere.
    """

    def __init__(self, max_queued: int, metrics: RunnerMetrics | None = None) -> None:
        self.max_queued = max_queued
        self.metrics = metrics
        # Touched only on the event loop.
        self._pending = 0
        # Guards everything below; the worker and the event loop both use it.
        self._condition = threading.Condition()
        self._active: list[_Job] = []
        self._running: _Job | None = None
        self._sequence = itertools.count()
        self._draining = False
        self._closed = False
        self._worker: threading.Thread | None = None
        self._drain_timer: threading.Timer | None = None
        self._run_options = make_run_options()

    # -- state ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests admitted and not yet answered."""
        return self._pending

    @property
    def queued(self) -> int:
        """Requests with encoder calls still to run (the one running included)."""
        with self._condition:
            return len(self._active)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the worker stopped)."""
        return self._closed

    @property
    def draining(self) -> bool:
        """Whether new requests are refused (shutdown has begun)."""
        return self._draining or self._closed

    # -- the request side ----------------------------------------------------------

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Admit one request for as long as the block runs (on the event loop).

        Raises:
            ServerShuttingDown: Shutdown has begun (503).
            Overloaded: ``max_queued`` requests are already admitted (429).
        """
        if self.draining:
            raise ServerShuttingDown(SHUTTING_DOWN)
        if self._pending >= self.max_queued:
            raise Overloaded(
                f"{self._pending} requests are already waiting for the model; retry shortly"
            )
        self._pending += 1
        try:
            yield
        finally:
            self._pending -= 1

    async def run(self, steps: Steps) -> Steps:
        """Run every encoder call of ``steps`` in the worker, in turns with other requests.

        Cancelling the awaiting task (client gone, deadline passed) drops the calls
        that have not run yet.

        Returns:
            ``steps``, done.

        Raises:
            ServerShuttingDown: The runner closed before the calls had all run (503).
            InferenceError: onnxruntime failed on one of the calls (424).
        """
        if steps.done:
            return steps
        with self._condition:
            if self._closed:
                raise ServerShuttingDown(SHUTTING_DOWN)
            # Start level with the least-served request: a newcomer goes next, but never
            # jumps further ahead than that.
            start = min((job.served for job in self._active), default=0)
            job = _Job(steps=steps, sequence=next(self._sequence), served=start)
            self._active.append(job)
            self._set_queue_depth()
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name="khabar-inference", daemon=True
                )
                self._worker.start()
            self._condition.notify()
        try:
            return await asyncio.wrap_future(job.future)
        finally:
            if not job.future.done() or job.future.cancelled():
                self._drop(job, "abandoned")

    def drain(self, grace_s: float) -> None:
        """Refuse new requests now; after ``grace_s`` seconds, :meth:`close`.

        Admitted requests go on being analysed during the grace period. Safe to call
        more than once (the first grace period counts).
        """
        with self._condition:
            if self._draining or self._closed:
                return
            self._draining = True
            timer = threading.Timer(grace_s, self.close)
            timer.daemon = True
            timer.name = "khabar-drain"
            self._drain_timer = timer
        logger.info("draining: new requests are refused; closing in %.1f s", grace_s)
        timer.start()

    def close(self) -> None:
        """Fail every request not yet answered with 503 and stop the call in progress.

        Safe to call more than once and from any thread.
        """
        with self._condition:
            if self._closed:
                return
            self._closed = True
            refused = list(self._active)
            self._active.clear()
            self._set_queue_depth()
            if self._run_options is not None:
                self._run_options.terminate = True
            self._condition.notify_all()
            timer = self._drain_timer
        if timer is not None:
            timer.cancel()
        for job in refused:
            self._count_dropped(job, "shutdown")
            _fail(job.future, ServerShuttingDown(SHUTTING_DOWN))
        if refused:
            logger.warning("refused %d unfinished requests with 503 on shutdown", len(refused))

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to stop after :meth:`close`; whether it did."""
        worker = self._worker
        if worker is None:
            return True
        worker.join(timeout)
        return not worker.is_alive()

    # -- the worker side -------------------------------------------------------------

    def _drop(self, job: _Job, reason: str) -> None:
        with self._condition:
            if job not in self._active:
                return
            self._active.remove(job)
            self._set_queue_depth()
        self._count_dropped(job, reason)
        _fail(job.future, ServerShuttingDown(SHUTTING_DOWN))

    def _count_dropped(self, job: _Job, reason: str) -> None:
        if self.metrics is not None:
            remaining = job.steps.remaining_batches
            if remaining:
                self.metrics.dropped_batches.labels(reason=reason).inc(remaining)

    def _next_job(self) -> _Job | None:
        with self._condition:
            while not self._active and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            # Least work so far first; among equals the one nearest its end, then the oldest.
            job = min(self._active, key=lambda j: (j.served, j.steps.remaining_batches, j.sequence))
            self._running = job
            return job

    def _work(self) -> None:
        """Run calls until closed; whatever ends the loop, no request is left waiting."""
        try:
            while (job := self._next_job()) is not None:
                cost = job.steps.next_cost
                try:
                    windows = job.steps.step(self._run_options)
                except Exception as exc:
                    error: BaseException = exc
                    with self._condition:
                        self._running = None
                        if job in self._active:
                            self._active.remove(job)
                            self._set_queue_depth()
                        if self._closed:
                            # close() stopped this call: its 503 may not be set yet.
                            error = ServerShuttingDown(SHUTTING_DOWN)
                    _fail(job.future, error)
                    continue
                if self.metrics is not None:
                    self.metrics.batch_windows.observe(windows)
                with self._condition:
                    self._running = None
                    job.served += cost
                    finished = job.steps.done and job in self._active
                    if finished:
                        self._active.remove(job)
                        self._set_queue_depth()
                if finished:
                    _resolve(job.future, job.steps)
        except BaseException:
            # Logged, not re-raised: the thread's excepthook would only print it again.
            logger.exception("the inference worker stopped")
        finally:
            with self._condition:
                self._closed = True
                stranded = list(self._active)
                self._active.clear()
                self._set_queue_depth()
            for job in stranded:
                _fail(job.future, ServerShuttingDown(WORKER_STOPPED))

    def _set_queue_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._active))


def _resolve(future: Future[Steps], steps: Steps) -> None:
    if future.done():
        return
    try:
        future.set_result(steps)
    except InvalidStateError:  # cancelled in the meantime
        logger.debug("future already resolved", exc_info=True)


def _fail(future: Future[Steps], error: BaseException) -> None:
    """Set ``error`` on a future unless it already has an outcome (or was cancelled)."""
    if future.done():
        return
    try:
        future.set_exception(error)
    except InvalidStateError:  # resolved in the meantime by another thread
        logger.debug("future already resolved", exc_info=True)
