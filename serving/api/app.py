"""The FastAPI app: routers, model loading in the lifespan, and one error shape.

Every error response, whatever raised it (a :class:`~serving.errors.KhabarError`,
a schema error, an unknown route, an over-size body or a bug), has the body
``{"error": "...", "error_type": "..."}``; the mapping happens here once.

The model loads in the background when the app starts, so ``/v1/health`` answers
at once and ``/v1/ready`` says 503 until the model is there (or why it failed).
Tests and ``khabar serve`` pass a loaded predictor instead. :func:`begin_shutdown`
(called by ``khabar serve`` on SIGTERM) makes ``/v1/ready`` say 503, refuses new
requests and gives admitted ones a grace period; when the app stops, whatever is
still unanswered gets 503 and the encoder call in progress is stopped.

The OpenAPI document says what the server does: exactly one of ``text`` and
``documents``, the configured length and count limits, and every status a route can
answer with the one error schema. Swagger UI at ``/docs`` is served from the
``fastapi-offline`` package's files, never from a CDN.

>>> # uvicorn --factory serving.api.app:app_from_env --port 8000  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api.metrics import UNMATCHED_ROUTE, Metrics
from serving.api.routers import analyze, health, metrics, model, page
from serving.api.runner import InferenceRunner, RunnerMetrics
from serving.api.settings import ServerSettings
from serving.errors import (
    BodyTimeout,
    ClientDisconnected,
    KhabarError,
    LimitExceeded,
)
from serving.predictor import Predictor, load_predictor
from serving.schemas import ErrorBody, describe_limits_in_schema

logger = logging.getLogger(__name__)

API_PREFIX = "/v1"
INTERNAL_ERROR_TYPE = "internal_error"
VALIDATION_ERROR_TYPE = "validation_error"
INTERNAL_ERROR_MESSAGE = "internal server error; the request was not processed (see the server log)"
# Most validation problems shown in one error line; the rest are counted.
MAX_VALIDATION_PROBLEMS = 5
HTTP_ERROR_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: LimitExceeded.error_type,
}
# FastAPI's message when the body cannot be parsed for a reason other than JSON syntax
# (not UTF-8, nested too deeply, a number too long); the cause is chained to it.
FASTAPI_PARSE_ERROR = "There was an error parsing the body"
# Longest the app's shutdown waits for the encoder call in progress to stop; it is asked
# to stop at once, so this is only a bound.
SHUTDOWN_JOIN_SECONDS = 3.0
DOCS_ASSETS_URL = "/docs/assets"

DESCRIPTION = """Arabic news analysis: named entities with exact character spans, and topics.

Every error response has the body `{"error": "...", "error_type": "..."}`."""


def _package_version() -> str:
    try:
        return version("khabar")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(
    settings: ServerSettings | None = None, predictor: Predictor | None = None
) -> FastAPI:
    """Build the app; the model loads at startup unless ``predictor`` is given.

    Args:
        settings: Model directory, threads and limits (default: from ``KHABAR_*``).
        predictor: An already loaded predictor (``khabar serve``, tests); skips loading.

    Returns:
        The FastAPI app, with its own metrics registry.
    """
    settings = settings if settings is not None else ServerSettings()
    app = _new_app(settings)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.runner_metrics = RunnerMetrics(app.state.metrics.registry)
    app.state.predictor = None
    app.state.runner = None
    app.state.load_error = None
    app.state.draining = False
    if predictor is not None:
        _set_predictor(app, predictor)

    app.include_router(analyze.router, prefix=API_PREFIX, tags=["analyze"])
    app.include_router(model.router, prefix=API_PREFIX, tags=["model"])
    app.include_router(health.router, prefix=API_PREFIX, tags=["health"])
    app.include_router(metrics.router, tags=["metrics"])
    app.include_router(page.router)

    app.add_exception_handler(KhabarError, _khabar_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)  # type: ignore[arg-type]
    # Added last runs first: errors and metrics wrap the body limit and everything inside.
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(ErrorsAndMetricsMiddleware, metrics=app.state.metrics, api=app)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    return app


def _new_app(settings: ServerSettings) -> FastAPI:
    """The bare app: Swagger UI from local files when docs are on, no ReDoc page."""
    options: dict[str, Any] = {
        "title": "khabar",
        "version": _package_version(),
        "description": DESCRIPTION,
        "lifespan": _lifespan,
        "redoc_url": None,
    }
    if settings.docs:
        try:
            from fastapi_offline import FastAPIOffline
        except ImportError:
            logger.warning(
                "fastapi-offline is not installed: /docs is off (pip install khabar[serve])"
            )
        else:
            return FastAPIOffline(docs_url="/docs", static_url=DOCS_ASSETS_URL, **options)
    return FastAPI(docs_url=None, **options)


def _openapi(app: FastAPI, settings: ServerSettings) -> dict[str, Any]:
    """FastAPI's document with this server's limits and error statuses written in."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        describe_limits_in_schema(schema, settings)
        app.openapi_schema = schema
    return app.openapi_schema


def begin_shutdown(app: FastAPI, grace_s: float) -> None:
    """Stop taking work, and give admitted requests ``grace_s`` seconds to finish.

    ``/v1/ready`` and new requests get 503 at once; admitted requests still unanswered
    after ``grace_s`` get 503 too. Call on the event loop.
    """
    app.state.draining = True
    runner: InferenceRunner | None = app.state.runner
    if runner is not None:
        runner.drain(grace_s)


def app_from_env() -> FastAPI:
    """App factory for ASGI servers: ``uvicorn --factory serving.api.app:app_from_env``."""
    return create_app(ServerSettings())


def _set_predictor(app: FastAPI, predictor: Predictor) -> None:
    settings: ServerSettings = app.state.settings
    app.state.predictor = predictor
    app.state.runner = InferenceRunner(
        max_queued=settings.max_queued_requests, metrics=app.state.runner_metrics
    )
    app.state.load_error = None
    if app.state.draining:
        app.state.runner.close()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model in the background unless one was injected; stop inference at the end."""
    try:
        if app.state.predictor is not None:
            if app.state.runner is None or app.state.runner.closed:  # the app starts again
                app.state.draining = False
                _set_predictor(app, app.state.predictor)
            yield
        else:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_load_model, app)
                yield
                tasks.cancel_scope.cancel()
    finally:
        await _stop_runner(app)


async def _stop_runner(app: FastAPI) -> None:
    """Refuse unanswered requests, stop the encoder call and wait (off the loop) for it."""
    runner: InferenceRunner | None = app.state.runner
    if runner is None:
        return
    runner.close()
    with anyio.CancelScope(shield=True):
        stopped = await anyio.to_thread.run_sync(runner.join, SHUTDOWN_JOIN_SECONDS)
    if not stopped:
        logger.warning(
            "the encoder call in progress did not stop within %s s; not waiting for it",
            SHUTDOWN_JOIN_SECONDS,
        )


async def _load_model(app: FastAPI) -> None:
    """Load the model in a thread; a failure is kept for ``/v1/ready`` instead of crashing."""
    settings: ServerSettings = app.state.settings
    logger.info("loading model from %s", settings.model_dir)
    try:
        predictor = await anyio.to_thread.run_sync(
            lambda: load_predictor(settings.model_dir, settings.threads, settings.stories),
            abandon_on_cancel=True,
        )
    except KhabarError as exc:
        logger.error("model failed to load: %s", exc)
        app.state.load_error = str(exc)
    except Exception as exc:  # a bug in loading must still leave the server answering
        logger.exception("model failed to load")
        app.state.load_error = f"unexpected {type(exc).__name__}: {exc}"
    else:
        _set_predictor(app, predictor)
        logger.info("model %s ready", predictor.metadata.name)


# -- one error shape ------------------------------------------------------------


def error_response(
    request: Request,
    status: int,
    message: str,
    error_type: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The JSON error response every path uses; also counts the error by type."""
    request.app.state.metrics.errors.labels(error_type=error_type).inc()
    body = ErrorBody(error=message, error_type=error_type).model_dump()
    return JSONResponse(status_code=status, content=body, headers=headers)


async def _khabar_error_handler(request: Request, exc: KhabarError) -> JSONResponse:
    if isinstance(exc, ClientDisconnected):
        logger.info("%s %s: %s", request.method, request.url.path, exc)
    return error_response(
        request, exc.http_status, str(exc), exc.error_type, exc.http_headers() or None
    )


async def _validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(
        request, 422, describe_validation_errors(exc.errors()), VALIDATION_ERROR_TYPE
    )


async def _http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    if status == 400 and exc.detail == FASTAPI_PARSE_ERROR:
        # Every body that is not JSON gets the same status as a JSON syntax error.
        return error_response(
            request, 422, describe_parse_error(exc.__cause__), VALIDATION_ERROR_TYPE
        )
    if status == 404:
        message = f"no such endpoint: {request.url.path} (the API is described at /docs)"
    elif status == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    else:
        message = str(exc.detail)
    error_type = HTTP_ERROR_TYPES.get(status, f"http_{status}")
    return error_response(request, status, message, error_type, exc.headers)


def describe_parse_error(cause: BaseException | None) -> str:
    """Why a body could not be read as JSON, for the reasons FastAPI does not describe."""
    if isinstance(cause, UnicodeDecodeError):
        reason = f"it is not UTF-8 at byte {cause.start}"
    elif isinstance(cause, RecursionError):
        reason = "it is nested too deeply"
    elif isinstance(cause, ValueError) and "digits" in str(cause):
        reason = "a number in it has too many digits"
    else:
        reason = f"{type(cause).__name__}" if cause is not None else "it cannot be parsed"
    return f"the body is not valid JSON ({reason})"


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """Pydantic's errors as one readable line naming each field, e.g. ``documents[0].text``."""
    problems = [_describe_problem(error) for error in errors]
    if not problems:
        return "the request does not match the schema (see /docs)"
    shown = "; ".join(problems[:MAX_VALIDATION_PROBLEMS])
    hidden = len(problems) - MAX_VALIDATION_PROBLEMS
    return shown + (f"; and {hidden} more" if hidden > 0 else "")


def _describe_problem(error: Any) -> str:
    loc = tuple(error.get("loc", ()))
    kind = error.get("type", "")
    if loc[:1] == ("body",):
        loc = loc[1:]
    if kind == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "")
        return f"the body is not valid JSON ({detail})" if detail else "the body is not valid JSON"
    if kind == "missing" and not loc:
        return 'the request needs a JSON body: {"text": "..."} or {"documents": [...]}'
    if kind in ("model_attributes_type", "model_type", "dict_type") and not loc:
        return (
            "the body must be a JSON object sent as application/json: "
            '{"text": "..."} or {"documents": [...]}'
        )
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(
        "."
    )
    return f"{where}: {message}" if where else message


# -- middleware -------------------------------------------------------------------


class ErrorsAndMetricsMiddleware:
    """Counts every request by route template and status, and turns stray errors into JSON.

    Sits outside the body limit and the routers, so a 413 from the body check and
    an unexpected exception are counted and answered in the same shape as the rest.
    A bug answers 500 with no traceback in the body; the traceback goes to the log.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, api: FastAPI) -> None:
        """Wrap ``app``; ``api``'s routes name requests by template, not by raw path."""
        self.app = app
        self.metrics = metrics
        self.api = api
        self._templates: list[tuple[re.Pattern[str], str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, answering errors that escaped the handlers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_and_watch(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception as exc:
            if response_started:  # too late for an error body; let the server drop it
                logger.exception("error after the response started: %s", scope.get("path"))
                raise
            headers: dict[str, str] = {}
            if isinstance(exc, KhabarError):
                status, message, error_type = exc.http_status, str(exc), exc.error_type
                headers = exc.http_headers()
                if isinstance(exc, ClientDisconnected):
                    logger.info("%s %s: %s", scope.get("method"), scope.get("path"), exc)
            else:
                logger.exception(
                    "unexpected error on %s %s", scope.get("method"), scope.get("path")
                )
                status, message, error_type = 500, INTERNAL_ERROR_MESSAGE, INTERNAL_ERROR_TYPE
            self.metrics.errors.labels(error_type=error_type).inc()
            # To a client that went away this goes nowhere (servers drop it); it still
            # puts the request's status, 499, in the metrics.
            await _send_json(
                send,
                status,
                ErrorBody(error=message, error_type=error_type).model_dump(),
                headers,
            )
        finally:
            self.metrics.observe_request(
                self._route_template(scope),
                scope.get("method", ""),
                status,
                time.perf_counter() - started,
            )

    def _route_template(self, scope: Scope) -> str:
        """The route's path template, so metrics get one series per route, not per URL."""
        if self._templates is None:
            self._templates = _route_templates(self.api)
        path = scope.get("path", "")
        for pattern, template in self._templates:
            if pattern.match(path):
                return template
        return UNMATCHED_ROUTE


def _route_templates(api: FastAPI) -> list[tuple[re.Pattern[str], str]]:
    """Every path template the app serves, from its OpenAPI paths and its plain routes.

    Read from public data rather than from ``scope["route"]``: included routers
    may put the route there without its prefix, and the body limit answers before
    any routing happens.
    """
    try:
        paths = set(api.openapi().get("paths", {}))
    except Exception:  # a schema bug must not break every request's metrics
        logger.exception("cannot build the OpenAPI schema; metrics use plain routes only")
        paths = set()
    paths.update(
        path for route in api.routes if isinstance(path := getattr(route, "path", None), str)
    )
    return [(compile_path(path)[0], path) for path in sorted(paths)]


class BodyLimitMiddleware:
    """Refuses bodies over ``max_body_bytes`` (413) or slower than ``body_timeout_s`` (408).

    Content-Length is checked first so an honest large request is refused before
    it is read; the bytes are counted too, since chunked requests have no length
    and a client may understate it. The whole body must arrive within
    ``body_timeout_s`` seconds, so a client that stalls mid-body is answered and its
    connection closed instead of being held forever. A client that goes away
    mid-body is a :class:`~serving.errors.ClientDisconnected` (499), not a 500.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float = 30.0) -> None:
        """Wrap ``app`` with a body limit in bytes and a time limit in seconds."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the body up to the limit, then replay it to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large(int(declared))
        chunks: list[bytes] = []
        size = 0
        deadline = anyio.current_time() + self.body_timeout_s
        while True:
            message: Message | None = None
            with anyio.move_on_after(deadline - anyio.current_time()):
                message = await receive()
            if message is None:
                raise BodyTimeout(
                    f"the request body did not arrive within {self.body_timeout_s:g} s "
                    f"({size} bytes received); the connection is closed"
                )
            if message["type"] != "http.request":
                raise ClientDisconnected("the client went away while sending the request body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large(size, at_least=True)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int, at_least: bool = False) -> LimitExceeded:
        amount = f"more than {self.max_body_bytes}" if at_least else str(size)
        return LimitExceeded(
            f"the request body has {amount} bytes; the limit is {self.max_body_bytes} bytes: "
            "send fewer or shorter documents per request"
        )


async def _send_json(
    send: Send, status: int, content: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    raw_headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in (headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
