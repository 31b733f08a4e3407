"""The API docs work offline: /docs and /redoc reference only assets the service serves itself
(issue 16, item 3); / leads to them (or to the console when there is one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lmrec.serving.app import create_app
from lmrec.serving.config import ServiceConfig


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    # not entered as a context manager: no lifespan, no engine; the docs need neither
    return TestClient(create_app(ServiceConfig(engine={"home": tmp_path, "encoder": "fake"})))


def _references(html: str) -> list[str]:
    """Every URL the page loads: src= / href= attributes and the `url:` of the spec."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    refs += re.findall(r"""\burl:\s*["']([^"']+)["']""", html)
    refs += re.findall(r"""spec-url\s*=\s*["']([^"']+)["']""", html)
    return refs


@pytest.mark.parametrize("page, needed", [("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}),
                                          ("/redoc", {"redoc.standalone.js"})])
def test_docs_pages_load_only_local_assets(client: TestClient, page: str, needed: set[str]) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    refs = _references(r.text)
    assert refs, r.text
    external = [u for u in refs if re.match(r"^(https?:)?//", u)]
    assert external == [], external
    assert "cdn.jsdelivr.net" not in r.text and "fonts.googleapis.com" not in r.text
    assert "/openapi.json" in refs
    if page == "/docs":
        assert '"validatorUrl": null' in r.text          # no badge fetched from validator.swagger.io
    assert needed <= {u.rsplit("/", 1)[-1] for u in refs}
    for url in refs:
        asset = client.get(url)
        assert asset.status_code == 200, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"] and len(asset.content) > 100_000
        if url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css") and len(asset.content) > 10_000


def test_root_redirects_to_the_docs_or_the_console(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui"          # the service's console
    client.app.router.routes[:] = [r for r in client.app.router.routes if getattr(r, "path", None) not in ("/ui", "/ui/")]
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/docs"        # an app without one


def test_docs_assets_are_not_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p in ("/", "/docs", "/redoc") or p.startswith("/static")]
