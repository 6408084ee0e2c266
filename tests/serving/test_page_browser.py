"""The page at ``GET /`` in a real browser: Debian's chromium driven by Playwright.

Skips, saying why, when Playwright or ``/usr/bin/chromium`` is missing (``.ci/run``
installs chromium with apt). The server is a real ``uvicorn`` on a loopback port
with the shipped model; a screenshot of the analysed example article is saved under
``tmp/artifacts/`` (or ``$KHABAR_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.api.app import create_app
from serving.api.routers.page import example_article
from serving.api.settings import ServerSettings
from serving.metadata import DEFAULT_MODEL_DIR
from serving.predictor import Predictor

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_CHARS = 3000
ARTIFACTS = Path(
    os.environ.get("KHABAR_ARTIFACTS", Path(__file__).parents[2] / "tmp" / "artifacts")
)

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"Debian's chromium is not at {CHROMIUM} (apt-get install -y chromium)",
    ),
    pytest.mark.skipif(
        not (DEFAULT_MODEL_DIR / "khabar.json").is_file(),
        reason="no shipped model in models/default",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    import uvicorn

    predictor = Predictor.load(DEFAULT_MODEL_DIR, threads=1)
    app = create_app(ServerSettings(max_chars_per_document=MAX_CHARS), predictor=predictor)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server_url: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ar")
    opened = context.new_page()
    requests: list[str] = []
    opened.on("request", lambda request: requests.append(f"{request.method} {request.url}"))
    opened.requests = requests  # type: ignore[attr-defined]
    opened.goto(server_url + "/")
    yield opened
    context.close()


def test_example_article_is_highlighted_and_grouped(page, server_url: str) -> None:
    html = page.locator("html")
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("ar", "rtl")
    assert page.locator("#text").get_attribute("dir") == "rtl"

    page.get_by_role("button", name="مقال مثال").click()
    page.locator("#results").wait_for(state="visible")
    assert page.locator("#text").input_value() == example_article()

    api = httpx.post(f"{server_url}/v1/analyze", json={"text": example_article()}, timeout=60)
    result = api.json()["result"]
    assert result["entities"], "the shipped model finds no entity in the example article"
    marks = page.locator("#article mark.ent")
    assert marks.all_text_contents() == [entity["text"] for entity in result["entities"]]
    for mark, entity in zip(marks.all(), result["entities"], strict=True):
        assert f"ent-{entity['label']}" in (mark.get_attribute("class") or "")
    assert page.locator("#article").text_content() == example_article()

    # the score shows on focus, reached by keyboard
    marks.first.focus()
    tip = marks.first.get_attribute("data-tip") or ""
    assert f"{round(result['entities'][0]['score'] * 100)}%" in tip

    topics = page.locator("#topics li.chip")
    assert topics.count() == len(result["topics"])
    legend = page.locator("#legend li").all_text_contents()
    assert len(legend) == 4 and all(legend)

    groups = page.locator("#groups button.group")
    assert groups.count() == len(result["entity_groups"])
    first = result["entity_groups"][0]
    groups.first.click()
    assert groups.first.get_attribute("aria-pressed") == "true"
    selected = page.locator("#article mark.ent.selected")
    assert [int(i) for i in selected.evaluate_all("ms => ms.map(m => m.dataset.index)")] == (
        first["mentions"]
    )
    groups.first.press("Enter")  # the same group again, from the keyboard: off
    assert page.locator("#article mark.ent.selected").count() == 0
    groups.first.click()

    toggle = page.locator("#json-toggle")
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.click()
    assert page.locator("#json").is_visible()
    assert toggle.get_attribute("aria-expanded") == "true"
    shown = json.loads(page.locator("#json").inner_text())["result"]
    assert shown["entities"] == result["entities"]
    assert shown["entity_groups"] == result["entity_groups"]
    toggle.click()
    assert page.locator("#json").is_hidden()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-example.png"), full_page=True)
    origin = server_url + "/"
    assert sorted(set(page.requests)) == [f"GET {origin}", f"POST {server_url}/v1/analyze"]


def test_oversized_text_gets_a_clear_message(page) -> None:
    page.locator("#text").fill("خبر عاجل " * (MAX_CHARS // 9 + 10))
    page.locator("#text").press("Control+Enter")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.get_attribute("data-status") == "413"
    assert "أطول" in error.inner_text()
    assert f"{MAX_CHARS}" in error.locator(".detail").inner_text()
    assert page.locator("#results").is_hidden()


def test_empty_text_is_refused_without_a_request(page) -> None:
    page.get_by_role("button", name="حلّل").click()
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.get_attribute("data-status") == "422"
    assert not [r for r in page.requests if r.startswith("POST")]


def test_busy_server_gets_a_clear_message(page) -> None:
    # A full queue cannot be made on demand here; the answer is the server's 429 shape.
    body = json.dumps({"error": "64 requests are already waiting", "error_type": "overloaded"})
    page.route(
        "**/v1/analyze",
        lambda route: route.fulfill(
            status=429, body=body, content_type="application/json", headers={"Retry-After": "2"}
        ),
    )
    page.locator("#text").fill("زار ماكرون بيروت")
    page.get_by_role("button", name="حلّل").click()
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.get_attribute("data-status") == "429"
    assert "مشغول" in error.inner_text() and "2" in error.inner_text()
    assert page.locator("#analyze").is_enabled()
