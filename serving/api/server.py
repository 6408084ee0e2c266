"""``khabar serve``'s HTTP server: uvicorn with bounded shutdown and connection hygiene.

uvicorn on its own waits for every request in flight when it is told to stop, holds a
connection whose client never finishes its headers for ever, and has no connection
limit that answers in JSON. This module adds, on top of the app's own body timeout
and per-request deadline:

- **Bounded shutdown.** On SIGTERM (or SIGINT) the server stops accepting connections,
  ``/v1/ready`` answers 503, new requests on open connections get 503, and admitted
  requests may run for ``shutdown_grace_s`` seconds. Then whatever is still unanswered
  gets a 503 JSON body, the encoder call in progress is stopped, and the process exits,
  within ``shutdown_grace_s + 5`` seconds of the signal.
- **Header timeout.** A connection that has not sent a complete request line and
  headers within ``header_timeout_s`` (from when it opened, or from its previous
  response) gets 408 and is closed.
- **Connection limit.** Beyond ``max_connections`` open connections, a request is
  answered at once with 503 ``too_many_connections`` and ``Retry-After``, and its
  connection is closed.

>>> run_server(create_app(settings, predictor), settings, "127.0.0.1", 8000)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from serving.api.app import begin_shutdown
from serving.api.settings import ServerSettings
from serving.errors import BodyTimeout, TooManyConnections
from serving.schemas import ErrorBody

logger = logging.getLogger(__name__)

# After the grace period, time for the 503 answers to go out before uvicorn cancels
# what is left; the app's own shutdown then waits at most 3 s for the encoder to stop.
FLUSH_SECONDS = 1.5
MALFORMED_HINT = "(the request is not valid HTTP/1.1)"


def _json_error(error: type[TooManyConnections] | type[BodyTimeout], message: str) -> bytes:
    return json.dumps(
        ErrorBody(error=message, error_type=error.error_type).model_dump(), ensure_ascii=False
    ).encode("utf-8")


class KhabarH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a JSON connection limit."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout_s: float,
        max_connections: int,
    ) -> None:
        """Set up as uvicorn does, with the two extra limits."""
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        self._header_timer: asyncio.TimerHandle | None = None
        self.app = self._limit_connections(self.app)

    # -- header timeout --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's headers."""
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        """Start the clock again for the next request's headers on this connection."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        """Close a connection still without complete headers; 408 if it sent part of them."""
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return  # closed already, or its request is in (the app times the body)
        if self.cycle is not None and not self.cycle.response_complete:
            return
        if self.conn.trailing_data[0]:
            body = _json_error(
                BodyTimeout,
                f"the request headers did not arrive within {self.header_timeout_s:g} s",
            )
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """Answer a request that is not valid HTTP in the one error shape, then close."""
        body = json.dumps(
            ErrorBody(error=f"{msg} {MALFORMED_HINT}", error_type="bad_request").model_dump()
        ).encode("utf-8")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            output = self.conn.send(
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
            )
            output += self.conn.send(h11.Data(data=body)) or b""
            output += self.conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:  # the connection is past the point of answering
            self.transport.close()
            return
        self.transport.write(output or b"")
        self.transport.close()

    # -- connection limit ------------------------------------------------------------

    def _limit_connections(self, app: Any) -> Any:
        connections = self.connections
        limit = self.max_connections
        body = _json_error(
            TooManyConnections,
            f"the server already holds its limit of {limit} connections; retry shortly",
        )

        async def limited(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and len(connections) > limit:
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(TooManyConnections.retry_after).encode()),
                    (b"connection", b"close"),
                ]
                await send(
                    {
                        "type": "http.response.start",
                        "status": TooManyConnections.http_status,
                        "headers": headers,
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
            await app(scope, receive, send)

        return limited


class KhabarServer(uvicorn.Server):
    """uvicorn's server that tells the app to drain before it stops accepting."""

    def __init__(self, config: uvicorn.Config, grace_s: float) -> None:
        """Serve ``config``; on a stop signal, admitted requests get ``grace_s`` seconds."""
        super().__init__(config)
        self.grace_s = grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Begin the app's drain, then uvicorn's shutdown (bounded by the config)."""
        app = self.config.app
        try:
            begin_shutdown(app, self.grace_s)
        except Exception:  # never let a bug here keep the process from stopping
            logger.exception("could not begin the app's drain")
        await super().shutdown(sockets)


def server_config(
    app: Any, settings: ServerSettings, host: str, port: int, log_level: str
) -> uvicorn.Config:
    """The uvicorn configuration of ``khabar serve`` for ``app`` and ``settings``."""
    protocol = functools.partial(
        KhabarH11Protocol,
        header_timeout_s=settings.header_timeout_s,
        max_connections=settings.max_connections,
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol,  # type: ignore[arg-type]
        timeout_keep_alive=int(max(1, round(settings.keep_alive_s))),
        timeout_graceful_shutdown=int(settings.shutdown_grace_s + FLUSH_SECONDS + 0.999),
        lifespan="on",
    )


def run_server(
    app: Any, settings: ServerSettings, host: str, port: int, log_level: str = "info"
) -> None:
    """Serve ``app`` until a stop signal, then drain and exit within the grace period + 5 s."""
    config = server_config(app, settings, host, port, log_level)
    KhabarServer(config, grace_s=settings.shutdown_grace_s).run()
