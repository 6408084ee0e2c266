"""The KhabarError family: every failure a user can cause or meet, mapped once.

Core code raises these and knows nothing of HTTP or exit codes beyond the two
class attributes; the CLI's ``main()`` and the API's exception handlers read them.
"""

from __future__ import annotations


class KhabarError(Exception):
    """Base class: a failure that is reported to the user as one readable line."""

    exit_code: int = 1
    http_status: int = 500
    error_type: str = "khabar_error"
    # Seconds a client should wait before retrying (the Retry-After header), if it should.
    retry_after: int | None = None
    # Whether the server closes the connection after answering (the rest of the body, if
    # any, will never be read).
    close_connection: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def http_headers(self) -> dict[str, str]:
        """Headers an HTTP error response of this kind carries."""
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.close_connection:
            headers["Connection"] = "close"
        return headers


class ConfigError(KhabarError):
    """A bad YAML config, an unknown label or an impossible combination of settings."""

    exit_code = 2
    http_status = 500
    error_type = "config_error"


class ParityError(KhabarError):
    """An exported ONNX graph's outputs differ from the torch model's beyond the tolerance."""

    exit_code = 2
    http_status = 500
    error_type = "parity_error"


class DataError(KhabarError):
    """A corpus file is missing or malformed; the message names the file and line."""

    exit_code = 2
    http_status = 500
    error_type = "data_error"


class ModelLoadError(KhabarError):
    """The model directory is missing, incomplete or corrupt."""

    exit_code = 3
    http_status = 503
    error_type = "model_load_error"


class InputError(KhabarError):
    """A record or request body cannot be analysed as it stands."""

    exit_code = 1
    http_status = 422
    error_type = "input_error"


class LimitExceeded(KhabarError):
    """Too many characters, documents or bytes for the configured limits."""

    exit_code = 1
    http_status = 413
    error_type = "limit_exceeded"


class Overloaded(KhabarError):
    """The server's work queue is full; the client should retry later."""

    exit_code = 1
    http_status = 429
    error_type = "overloaded"
    retry_after = 1


class ServerShuttingDown(KhabarError):
    """The server stopped taking work; queued requests are refused, not left hanging."""

    exit_code = 1
    http_status = 503
    error_type = "shutting_down"
    retry_after = 1


class DeadlineExceeded(KhabarError):
    """A request was not answered within the server's per-request deadline; its work stops."""

    exit_code = 1
    http_status = 503
    error_type = "timeout"
    retry_after = 5


class TooManyConnections(KhabarError):
    """The server holds as many connections as it is configured to; retry shortly."""

    exit_code = 1
    http_status = 503
    error_type = "too_many_connections"
    retry_after = 1
    close_connection = True


class BodyTimeout(KhabarError):
    """The client did not send the request body in time; the connection is closed."""

    exit_code = 1
    http_status = 408
    error_type = "request_timeout"
    close_connection = True


class ClientDisconnected(KhabarError):
    """The client went away before its answer was ready: nothing is sent, 499 is counted."""

    exit_code = 1
    # nginx's "client closed request": never sent (there is nobody to send it to), only
    # counted, so that abandoned requests are not mistaken for server errors.
    http_status = 499
    error_type = "client_disconnected"


class InferenceError(KhabarError):
    """ONNX Runtime failed on input that passed validation."""

    exit_code = 1
    http_status = 424
    error_type = "inference_error"


class MissingExtraError(KhabarError):
    """A command needs an optional dependency group that is not installed."""

    exit_code = 2
    http_status = 500
    error_type = "missing_extra"
