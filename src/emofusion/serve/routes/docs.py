"""The API docs pages (/docs: Swagger UI, /redoc: ReDoc) with their scripts and styles served by
this service, so that they work on a host without internet access.

FastAPI's built-in pages load Swagger UI and ReDoc from a CDN; `create_app` turns those off
(`docs_url=None, redoc_url=None`) and these routes serve the same pages, the documented way
(https://fastapi.tiangolo.com/how-to/custom-docs-ui-assets/), with the assets that the
`fastapi-offline` package ships (Swagger UI 5, ReDoc 2, a favicon) mounted under ASSETS.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
DOCS, REDOC, OAUTH2_REDIRECT = "/docs", "/redoc", "/docs/oauth2-redirect"
PAGES = frozenset({DOCS, REDOC, OAUTH2_REDIRECT})


def assets_dir() -> Path:
    """swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI) -> None:
    """The docs pages and their assets on `app` (created with docs_url=None, redoc_url=None)."""
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")

    def root(request: Request) -> str:
        return request.scope.get("root_path", "")

    @app.get(DOCS, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=f"{base}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{base}{OAUTH2_REDIRECT}",
            swagger_js_url=f"{base}{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{base}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS}/favicon.png", swagger_ui_parameters=app.swagger_ui_parameters)

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(openapi_url=f"{base}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{base}{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{base}{ASSETS}/favicon.png", with_google_fonts=False)
