"""``GET /``: a self-contained page to try khabar on an article in a browser.

One HTML file (``serving/api/page/index.html``) with its CSS and script inline: no
CDN, no web font, nothing fetched but ``POST /v1/analyze``, so it works offline. What
the page needs from the server (display names, the character limit, an example
article) is embedded in it here as JSON, and a Content-Security-Policy with a fresh
nonce lets only the page's own script and style run and only this origin be called.
"""

from __future__ import annotations

import json
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from serving.api.settings import ServerSettings
from serving.errors import KhabarError
from serving.metadata import ModelMetadata

router = APIRouter()

PAGE_DIR = Path(__file__).resolve().parents[1] / "page"
ANALYZE_URL = "/v1/analyze"
KIND_DISPLAY_NAMES = {"section": "قسم", "region": "منطقة", "story": "قصة"}
DEFAULT_ENTITY_TYPES = ("PER", "ORG", "LOC", "MISC")


@lru_cache(maxsize=1)
def _template() -> str:
    return (PAGE_DIR / "index.html").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def example_article() -> str:
    """The example article of the page (written for khabar, not from a corpus)."""
    return (PAGE_DIR / "example.txt").read_text(encoding="utf-8").strip()


def _metadata(request: Request) -> ModelMetadata | None:
    """The model's metadata: from the loaded predictor, else from the model directory."""
    predictor = request.app.state.predictor
    if predictor is not None:
        return predictor.metadata
    settings: ServerSettings = request.app.state.settings
    try:
        return ModelMetadata.load(settings.model_dir)
    except KhabarError:
        return None  # the page still works; labels show instead of display names


def page_config(request: Request) -> dict[str, Any]:
    """What the page script reads: labels and their Arabic names, limits, the example."""
    metadata = _metadata(request)
    settings: ServerSettings = request.app.state.settings
    return {
        "analyze_url": ANALYZE_URL,
        "max_chars": settings.max_chars_per_document,
        "entity_types": list(metadata.entity_types if metadata else DEFAULT_ENTITY_TYPES),
        "entity_display_names": dict(metadata.entity_display_names if metadata else {}),
        "topic_display_names": dict(metadata.topic_display_names if metadata else {}),
        "topic_kinds": dict(metadata.topic_kinds if metadata else {}),
        "kind_display_names": KIND_DISPLAY_NAMES,
        "example": example_article(),
    }


def render_page(config: dict[str, Any], nonce: str) -> str:
    """The page with its config embedded (``<`` escaped, so no text can close the script)."""
    blob = json.dumps(config, ensure_ascii=False).replace("<", "\\u003c")
    return _template().replace("__CONFIG__", blob).replace("__NONCE__", nonce)


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    """The page, with a policy that lets it run its own code and call only this server."""
    nonce = secrets.token_urlsafe(16)
    policy = (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return HTMLResponse(
        render_page(page_config(request), nonce),
        headers={"Content-Security-Policy": policy, "Cache-Control": "no-store"},
    )
