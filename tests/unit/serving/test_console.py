"""The web console at /ui (issue 16, item 3): the page and its assets are served by the service,
reference nothing outside it, and `/` leads to it. (The page driven in a browser:
tests/integration/test_console_browser.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lmrec.serving.app import create_app
from lmrec.serving.config import ServiceConfig
from lmrec.serving.console import ASSETS, CONSOLE_DIR


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    # no lifespan, no engine: the console's files need neither (the page asks the API itself)
    return TestClient(create_app(ServiceConfig(engine={"home": tmp_path, "encoder": "fake"})))


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)


def test_root_redirects_to_the_console(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui"
    r = client.get("/ui/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui"


def test_console_page_and_assets_are_served(client: TestClient) -> None:
    r = client.get("/ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "__ROOT__" not in r.text and '<label for="api-key">' in r.text
    refs = _references(r.text)
    assert {"/ui/assets/console.js", "/ui/assets/console.css", "/docs"} <= set(refs)
    for url in refs:
        if url == "data:,":                                     # the empty favicon: no request at all
            continue
        assert url.startswith("/"), url                         # the service's own paths only
        assert client.get(url).status_code == 200, url
    js = client.get("/ui/assets/console.js")
    assert "javascript" in js.headers["content-type"] and "sessionStorage" in js.text
    css = client.get("/ui/assets/console.css")
    assert css.headers["content-type"].startswith("text/css")
    # only the console's files are served from the folder (not its Python module)
    assert client.get("/ui/assets/__init__.py").status_code == 404
    assert client.get("/ui/assets/index.html").status_code == 404


def test_console_page_behind_a_path_prefix(tmp_path: Path) -> None:
    app = create_app(ServiceConfig(engine={"home": tmp_path, "encoder": "fake"}))
    client = TestClient(app, root_path="/shop")
    html = client.get("/ui").text
    assert 'src="/shop/ui/assets/console.js"' in html and 'data-root="/shop"' in html


@pytest.mark.parametrize("name", ["index.html", *ASSETS])
def test_console_files_reference_nothing_outside_the_service(name: str) -> None:
    text = (CONSOLE_DIR / name).read_text(encoding="utf-8")
    assert not re.findall(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", text, flags=re.I), name


def test_console_is_not_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]
