"""The web console driven in a real browser (issue 16, item 3): the service runs on a free port
(fake encoder, the demo shop's catalog and 200 shoppers, a trained default pipeline, an admin
key) and Debian's headless `chromium`, driven by Playwright, uses /ui as a person would: a wrong
key, the right key, the catalog, a search, an item's similar items, the FAQ box, a user's
recommendations and history, a click on a recommended item (posted as a `click` event: the
history shows it and the recommendations are ranked again) and the status page.

Skipped with the reason when chromium or the playwright package is missing (`apt-get install
chromium`; `pip install 'lmrec[test]'`; never `playwright install`: the system browser is used).
Screenshots go to a temporary folder, or to $LMREC_CONSOLE_SCREENSHOTS when set (that is how
docs/img/console-*.png are made)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The service on a free port: {"url", "admin", "read", "engine"}."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the console's browser test needs it")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install 'lmrec[test]'); it drives chromium here")
    pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'lmrec[serve]')")
    import uvicorn

    from lmrec.serving.app import create_app
    from lmrec.serving.auth import create_api_key
    from lmrec.serving.config import ServiceConfig
    from lmrec.serving.demo import seed_demo
    from lmrec.serving.engine import Engine, EngineConfig
    from lmrec.serving.faq import seed_demo_faq

    home = tmp_path_factory.mktemp("console") / "home"
    seed_demo_faq(home)
    engine = Engine.open(EngineConfig(home=home, store_url=f"sqlite:///{home.parent}/lmrec.db", encoder="fake",
                                      index="flat"))
    try:
        seed_demo(engine, n_users=200, end=1_700_000_000.0)
        engine.train()                       # the service's default pipeline (serve-default.toml)
        keys = {scope: create_api_key(engine.store, f"console-{scope}", [scope])[0] for scope in ("read", "admin")}
        app = create_app(ServiceConfig(engine=engine.config, rate_limit_rps=0.0, auth_failure_rps=0.0), engine=engine)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, name="console-test-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
            time.sleep(0.05)
        try:
            yield {"url": f"http://127.0.0.1:{port}", "engine": engine, **keys}
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    finally:
        engine.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LMREC_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(service: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
            # the page must load nothing from outside the service
            outside: list[str] = []
            context.on("request", lambda r: outside.append(r.url) if not r.url.startswith(service["url"]) else None)
            p = context.new_page()
            errors: list[str] = []
            p.on("pageerror", lambda e: errors.append(str(e)))
            # the page keeps to its own Content-Security-Policy (a violation is logged, not thrown)
            p.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
            p.set_default_timeout(30_000)
            yield p
            assert outside == [] and errors == [], (outside, errors)
        finally:
            browser.close()


def _shot(page: Any, path: Path) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path))


def _user_with_history(service: dict[str, Any]) -> str:
    import httpx

    h = {"Authorization": f"Bearer {service['read']}"}
    users = httpx.get(f"{service['url']}/users", params={"limit": 5}, headers=h).json()["users"]
    return users[0]["user_id"]


def test_console_end_to_end(service: dict[str, Any], page: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    page.goto(service["url"] + "/")
    assert page.url.endswith("/ui")                                # / leads to the console
    expect(page.get_by_label("API key")).to_be_visible()
    page.get_by_role("tab", name="Catalog & search").focus()               # the tabs work from the keyboard
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="User")).to_be_focused()
    expect(page.get_by_role("tab", name="User")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#panel-shop")).to_be_visible()

    # a key that is not valid: a readable message, not a status code
    page.get_by_label("API key").fill("lmr_nope_nope")
    page.get_by_role("button", name="Use key").click()
    expect(page.get_by_role("alert")).to_contain_text("This key is not valid")
    assert page.evaluate("sessionStorage.length") == 0                  # a refused key is not kept

    # the admin key: the catalog's first page, titles not ids
    page.get_by_label("API key").fill(service["admin"])
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-state")).to_have_text("key ok (admin)")
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(page.locator("#results li")).to_have_count(20)
    expect(page.locator("#catalog-count")).to_have_text("320 items")
    first_title = service["engine"].get_item(page.locator("#results li").first.get_attribute("data-item")).title
    expect(page.locator("#results li").first).to_contain_text(first_title)
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#results-note")).to_contain_text("Page 2 of 16")

    # search with explanations; an item's fields and similar items; the FAQ box
    page.get_by_label("Search the catalog").fill("trail running shoe")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#results-title")).to_have_text("Search: trail running shoe")
    expect(page.locator("#results li").first.locator(".why")).to_contain_text("via")
    assert page.locator("#results li .why", has_text="matched:").count() > 0
    page.get_by_label("Search the catalog").fill("跑步鞋")                  # Chinese, same box
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#results-title")).to_have_text("Search: 跑步鞋")
    expect(page.locator("#results li").first.locator(".why")).to_contain_text("matched: ")
    assert any("跑步鞋" in t for t in page.locator("#results li .title").all_inner_texts())
    page.get_by_label("Search the catalog").fill("trail running shoe")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#results-title")).to_have_text("Search: trail running shoe")
    page.locator("#results li .title").first.click()
    expect(page.locator("#similar li")).to_have_count(8)
    expect(page.locator("#item-detail h3")).not_to_be_empty()
    expect(page.locator("#faq-box")).to_be_visible()
    page.get_by_label("Ask a question").fill("How long does shipping take?")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#faq-answer p").first).not_to_be_empty()
    _shot(page, shots / "console-shop.png")

    # a user's recommendations (with explanations) and history
    user = _user_with_history(service)
    page.get_by_role("tab", name="User").click()
    expect(page.locator("#panel-shop")).to_be_hidden()
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#recs li")).to_have_count(10)
    expect(page.locator("#recs li .why").first).not_to_be_empty()
    note = page.locator("#history-note")
    expect(note).to_contain_text("events, newest first")
    before = int(note.inner_text().split()[0].replace(",", ""))
    n_events = service["engine"].store.count_events(user)
    assert before == n_events

    # a click on a recommended item: posted as an event, the history and the list update
    ranking = page.locator("#recs").get_attribute("data-ranking-id")
    assert ranking
    target = page.locator("#recs li").first
    item_id = target.get_attribute("data-item")
    title = target.locator(".title").inner_text()
    target.locator(".title").click()
    expect(page.locator("#recs-note")).to_contain_text(f"Recorded a click on {title}")
    expect(note).to_contain_text(f"{before + 1} events")
    newest = page.locator("#history li").first
    expect(newest).to_have_attribute("data-item", item_id)
    expect(newest).to_contain_text("click")
    expect(newest).to_contain_text(title)
    assert service["engine"].store.count_events(user) == n_events + 1
    expect(page.locator("#recs")).not_to_have_attribute("data-ranking-id", ranking)   # ranked again
    expect(page.locator("#recs li")).to_have_count(10)
    _shot(page, shots / "console-user.png")
    # older events, a page at a time
    shown = min(30, n_events + 1)
    expect(page.locator("#history li")).to_have_count(shown)
    if n_events + 1 > 30:
        page.get_by_role("button", name="Older events").click()
        expect(page.locator("#history li")).to_have_count(min(60, n_events + 1))
        seqs = [int(s) for s in page.locator("#history li").evaluate_all("els => els.map(e => e.dataset.seq)")]
        assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)

    # the status page: the engine's counters for an admin key
    page.get_by_role("tab", name="Status").click()
    expect(page.locator("#panel-user")).to_be_hidden()
    expect(page.locator("#status-cards .stat").first).to_contain_text("Items")
    expect(page.locator("#status-cards")).to_contain_text("320")
    expect(page.locator("#routes")).to_contain_text("/recommend/{user_id}")
    expect(page.locator("#stages")).to_contain_text("recommend")
    expect(page.locator("#experiment-note")).to_contain_text("No experiment")
    served = service["engine"].model_version
    page.get_by_role("button", name="Train a new version").click()         # POST /admin/train, wait=false
    expect(page.locator("#status-note")).to_contain_text("Training started")
    deadline = time.monotonic() + 60
    while service["engine"].model_version == served:
        assert time.monotonic() < deadline, "the training started from the console did not finish"
        time.sleep(0.2)
    page.get_by_role("button", name="Serve the latest version").click()    # POST /admin/reload
    expect(page.locator("#status-note")).to_contain_text(f"Now serving {service['engine'].model_version}")
    expect(page.locator("#status-cards")).to_contain_text(service["engine"].model_version)
    _shot(page, shots / "console-status.png")
    assert all((shots / f"console-{n}.png").stat().st_size > 10_000 for n in ("shop", "user", "status"))


def test_console_read_key_sees_no_status_and_cannot_post(service: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(service["url"] + "/ui")
    page.get_by_label("API key").fill(service["read"])
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-state")).to_have_text("key ok")
    page.get_by_role("tab", name="Status").click()
    expect(page.locator("#status-note")).to_contain_text("need a key with the admin scope")
    # a click needs the write scope: the 403 is a sentence, and nothing is stored
    user = _user_with_history(service)
    n_events = service["engine"].store.count_events(user)
    page.get_by_role("tab", name="User").click()
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#recs li")).to_have_count(10)
    page.locator("#recs li .title").first.click()
    expect(page.get_by_role("alert")).to_contain_text("This key may not do that")
    expect(page.get_by_role("alert")).to_contain_text("'write' scope")
    assert service["engine"].store.count_events(user) == n_events
