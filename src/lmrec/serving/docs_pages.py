"""The API documentation pages, served with local assets so they work offline.

FastAPI's default `/docs` and `/redoc` load Swagger UI and ReDoc from a CDN: without the
internet the page is blank. Here the same pages load the JavaScript and CSS from the service
itself, under `/static/docs/`. The files come from the `fastapi-offline` package (MIT; it ships
the `swagger-ui-dist` and ReDoc builds, whose own licences are in the bundles' headers), a
dependency of `lmrec[serve]`.

`/` redirects to the web console when the app has one (`/ui`), else to `/docs`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["add_docs_pages", "docs_assets_dir", "STATIC_DOCS"]

log = logging.getLogger("lmrec.service")

#: where the documentation assets are served
STATIC_DOCS = "/static/docs"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def docs_assets_dir() -> Path | None:
    """The folder holding the Swagger UI and ReDoc builds (None when fastapi-offline is not
    installed, or incomplete)."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if all((folder / name).is_file() for name in ASSETS) else None


def add_docs_pages(app: FastAPI) -> None:
    """`/docs` (Swagger UI), `/docs/oauth2-redirect`, `/redoc` and `/` on `app`, which must
    have been created with `docs_url=None, redoc_url=None`. Without the asset package the
    pages fall back to FastAPI's CDN-loaded ones (and say so in the log)."""
    assets = docs_assets_dir()
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    if assets is not None:
        app.mount(STATIC_DOCS, StaticFiles(directory=str(assets)), name="docs-assets")
    else:
        log.warning("fastapi-offline is not installed: /docs and /redoc load their assets from a CDN "
                    "(pip install 'lmrec[serve]' to serve them locally)")

    def local(request: Request, name: str) -> str | None:
        return f"{request.scope.get('root_path', '')}{STATIC_DOCS}/{name}" if assets is not None else None

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        kwargs = {}
        if assets is not None:
            kwargs = {"swagger_js_url": local(request, "swagger-ui-bundle.js"),
                      "swagger_css_url": local(request, "swagger-ui.css"),
                      "swagger_favicon_url": local(request, "favicon.png")}
        return get_swagger_ui_html(openapi_url=f"{root}{openapi_url}", title=f"{title} - API docs",
                                   oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
                                   # no validator badge: it would send the spec to validator.swagger.io
                                   swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
                                   **kwargs)

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        kwargs = {}
        if assets is not None:
            kwargs = {"redoc_js_url": local(request, "redoc.standalone.js"),
                      "redoc_favicon_url": local(request, "favicon.png")}
        return get_redoc_html(openapi_url=f"{root}{openapi_url}", title=f"{title} - API reference",
                              with_google_fonts=assets is None, **kwargs)

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> RedirectResponse:
        """The console when the app serves one, else the API docs."""
        has_ui = any(getattr(r, "path", None) in ("/ui", "/ui/") for r in request.app.routes)
        return RedirectResponse(f"{request.scope.get('root_path', '')}{'/ui' if has_ui else '/docs'}",
                                status_code=307)
