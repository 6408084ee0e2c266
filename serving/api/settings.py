"""ServerSettings: the HTTP server's model, threads, request limits and batching.

Read from ``KHABAR_*`` environment variables (``KHABAR_MODEL``, ``KHABAR_THREADS``,
``KHABAR_MAX_BODY_BYTES``, ``KHABAR_MAX_BATCH_DOCUMENTS``, ``KHABAR_MAX_WAIT_MS``,
...) so that ``uvicorn --factory serving.api.app:app_from_env`` and a container
need no command line; ``khabar serve`` passes its options on top.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.metadata import DEFAULT_MODEL_DIR, MODEL_ENV
from serving.predictor import DEFAULT_BATCH_SIZE

ENV_PREFIX = "KHABAR_"
# Enough documents to fill a few encoder batches; a wait well under a request's own latency.
DEFAULT_MAX_BATCH_DOCUMENTS = 32
DEFAULT_MAX_WAIT_MS = 5.0


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
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, description="Windows per call.")
    max_chars_per_document: int = Field(default=100_000, ge=1)
    max_documents_per_request: int = Field(default=64, ge=1)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    max_queued_requests: int = Field(
        default=64,
        ge=1,
        description=(
            "Requests queued or being analysed before new ones get 429 "
            "(env KHABAR_MAX_QUEUED_REQUESTS)."
        ),
    )
    max_batch_documents: int = Field(
        default=DEFAULT_MAX_BATCH_DOCUMENTS,
        ge=1,
        description=(
            "Documents from concurrent requests merged into one predictor call; a larger "
            "request runs alone, never split (env KHABAR_MAX_BATCH_DOCUMENTS)."
        ),
    )
    max_wait_ms: float = Field(
        default=DEFAULT_MAX_WAIT_MS,
        ge=0,
        le=1000,
        description=(
            "Longest a request waits, in milliseconds, for others to join its predictor call; "
            "0 merges only what is already queued (env KHABAR_MAX_WAIT_MS)."
        ),
    )
