"""``GET /`` without a browser: one self-contained HTML page that calls only /v1/analyze."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.api.routers.page import example_article, render_page
from serving.api.settings import ServerSettings


def get_page(predictor, **settings: object):
    app = create_app(ServerSettings(**settings), predictor=predictor)  # type: ignore[arg-type]
    with TestClient(app) as client:
        return client.get("/")


def embedded_config(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="config">(.*?)</script>', html, re.S)
    assert match is not None
    return json.loads(match.group(1))


def test_page_is_arabic_rtl_html_with_a_strict_policy(fake_predictor) -> None:
    response = get_page(fake_predictor)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="ar" dir="rtl">' in html
    policy = response.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)  # type: ignore[union-attr]
    assert f'<script nonce="{nonce}">' in html and f'<style nonce="{nonce}">' in html
    assert "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert "__NONCE__" not in html and "__CONFIG__" not in html


def test_page_loads_nothing_from_elsewhere(fake_predictor) -> None:
    html = get_page(fake_predictor).text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    assert re.findall(r"fetch\(([^,]+),", html) == ["config.analyze_url"]
    assert embedded_config(html)["analyze_url"] == "/v1/analyze"


def test_page_embeds_display_names_limit_and_example(fake_predictor) -> None:
    config = embedded_config(get_page(fake_predictor, max_chars_per_document=1234).text)
    assert config["max_chars"] == 1234
    assert config["entity_types"] == ["PER", "LOC"]
    assert config["entity_display_names"]["PER"] == "شخص"
    assert config["topic_display_names"] == {"politics": "سياسة", "sports": "رياضة"}
    assert config["example"] == example_article()
    assert "\n" in config["example"]  # a title line, then the body


def test_a_nonce_is_fresh_per_request(fake_predictor) -> None:
    app = create_app(ServerSettings(), predictor=fake_predictor)
    with TestClient(app) as client:
        first = client.get("/").headers["content-security-policy"]
        second = client.get("/").headers["content-security-policy"]
    assert first != second


def test_config_cannot_close_the_script() -> None:
    html = render_page({"example": "</script><script>alert(1)</script>"}, "n")
    config = embedded_config(html)
    assert config["example"] == "</script><script>alert(1)</script>"
    assert "alert(1)</script>" not in html


def test_page_is_not_in_the_api_schema(fake_predictor) -> None:
    app = create_app(ServerSettings(), predictor=fake_predictor)
    with TestClient(app) as client:
        assert "/" not in client.get("/openapi.json").json()["paths"]
