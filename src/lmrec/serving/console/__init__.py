"""The web console (issue 16, item 3): `/ui`, a page of the service itself.

Plain HTML, CSS and JavaScript shipped in this folder (package data; no build step, no CDN):
the page asks for an API key (kept in the tab's sessionStorage) and calls the service's own
API with it: the catalog (`GET /items`), search with explanations, an item with its similar
items, a user's recommendations and history (a click on a recommended item posts a `click`
event and the lists update), the FAQ box when the service answers `/faq`, and, for admin keys,
the engine's state (`/admin/stats`) and request metrics (`/metrics`).

The page is sent with a Content-Security-Policy that allows only the service's own origin:
it loads nothing from anywhere else.
"""

from __future__ import annotations

import html as _html
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["add_console", "CONSOLE_DIR", "ASSETS"]

CONSOLE_DIR = Path(__file__).parent
#: the files served under /ui/assets/
ASSETS = ("console.js", "console.css")

#: the page may load scripts, styles, images and data only from the service itself
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class _Assets(StaticFiles):
    """The console's JS and CSS: only the listed files, revalidated on each load (a new
    version of the service is picked up at once)."""

    async def get_response(self, path: str, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def lookup_path(self, path: str):  # type: ignore[no-untyped-def]
        return super().lookup_path(path) if path in ASSETS else ("", None)


def add_console(app: FastAPI) -> None:
    """`GET /ui` (the page), `/ui/` (redirects to it) and `/ui/assets/*` on `app`; none is in
    the API schema and none needs a key (the page holds no data: it asks the API with the
    user's key)."""
    html = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    app.mount("/ui/assets", _Assets(directory=str(CONSOLE_DIR)), name="console-assets")

    @app.get("/ui", include_in_schema=False)
    async def console(request: Request) -> HTMLResponse:
        root = _html.escape(request.scope.get("root_path", "").rstrip("/"))
        return HTMLResponse(html.replace("__ROOT__", root),
                            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache",
                                     "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    @app.get("/ui/", include_in_schema=False)
    async def console_slash(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '').rstrip('/')}/ui", status_code=307)
