"""ServerSettings: the HTTP server's model, threads, limits, timeouts and shutdown.

Read from ``KHABAR_*`` environment variables (``KHABAR_MODEL``, ``KHABAR_THREADS``,
``KHABAR_MAX_TOKENS_PER_DOCUMENT``, ``KHABAR_REQUEST_TIMEOUT_S``, ...: the field name
in capitals after the prefix) so that a container needs no command line; ``khabar
serve`` passes its options on top. The connection settings (header timeout, connection
limit, keep-alive, shutdown grace) are applied by ``khabar serve``'s server
(:mod:`serving.api.server`); the rest by the app itself, whatever server runs it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.limits import (
    DEFAULT_MAX_CHARS_PER_DOCUMENT,
    DEFAULT_MAX_DOCUMENTS_PER_REQUEST,
    DEFAULT_MAX_TOKENS_PER_DOCUMENT,
    DEFAULT_MAX_TOKENS_PER_REQUEST,
    DocumentLimits,
)
from serving.metadata import DEFAULT_MODEL_DIR, MODEL_ENV
from serving.predictor import DEFAULT_BATCH_SIZE

ENV_PREFIX = "KHABAR_"


class ServerSettings(BaseSettings):
    """Everything the API needs besides the model itself; frozen once the app starts."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True
    )

    model_dir: Path = Field(
        default=DEFAULT_MODEL_DIR,
        validation_alias=MODEL_ENV,
        description="Exported model directory (env KHABAR_MODEL).",
    )
    stories: list[Path] = Field(
        default_factory=list,
        description=(
            "Story definition files or directories scored beside the shipped stories "
            '(env KHABAR_STORIES, a JSON list: ["my-stories"]).'
        ),
    )
    threads: int | None = Field(
        default=None, ge=1, description="onnxruntime intra-op threads; default: CPUs, up to 8."
    )
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE,
        ge=1,
        description=(
            "Windows per encoder call; a call holds windows of one document only. "
            "Default 1: each window's answer depends on its own text only."
        ),
    )
    # -- what a request may ask for (413 beyond) --
    max_chars_per_document: int = Field(default=DEFAULT_MAX_CHARS_PER_DOCUMENT, ge=1)
    max_tokens_per_document: int = Field(default=DEFAULT_MAX_TOKENS_PER_DOCUMENT, ge=1)
    max_documents_per_request: int = Field(default=DEFAULT_MAX_DOCUMENTS_PER_REQUEST, ge=1)
    max_tokens_per_request: int = Field(default=DEFAULT_MAX_TOKENS_PER_REQUEST, ge=1)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    # -- load --
    max_queued_requests: int = Field(
        default=64,
        ge=1,
        description="Requests admitted (tokenising, waiting or being analysed) before 429.",
    )
    request_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Longest a request may take once its body is read; then 503 + Retry-After.",
    )
    # -- connections (applied by `khabar serve`; the body timeout by the app) --
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest the body of a request may take to arrive (408)."
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest the request line and headers may take to arrive."
    )
    keep_alive_s: float = Field(
        default=5.0, gt=0, description="How long an idle keep-alive connection is kept open."
    )
    max_connections: int = Field(
        default=256, ge=1, description="Open connections; a request on one more gets 503."
    )
    shutdown_grace_s: float = Field(
        default=25.0,
        ge=0,
        description="After SIGTERM, how long admitted requests may still run; then 503.",
    )
    # -- docs --
    docs: bool = Field(default=True, description="Serve Swagger UI at /docs (assets local).")

    @property
    def document_limits(self) -> DocumentLimits:
        """The per-document limits, as the CLI uses them too."""
        return DocumentLimits(
            max_chars=self.max_chars_per_document, max_tokens=self.max_tokens_per_document
        )
