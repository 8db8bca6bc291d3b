"""What the API serves to a browser besides JSON: the supervisor dashboard (``/dashboard``, issue 10)
and the API docs (``/docs``), with every file they load shipped inside this package.

Offices run on intranets without internet access (SPEC §9), so nothing here loads from a CDN:

- ``static/dashboard/``: the dashboard page (plain HTML, CSS and JavaScript, no build step); it
  logs in through ``POST /api/v1/auth/token`` and reads only ``/api/v1/stats/*`` and ``/api/v1/me``
  with the bearer token, so row visibility (SPEC §1) is the API's, not the page's (docs/dashboard.md);
- ``static/vendor/echarts/5.6.0/``: Apache ECharts' release file ``dist/echarts.min.js`` with its
  LICENSE and NOTICE, from the npm package ``echarts@5.6.0``;
- ``static/vendor/swagger-ui/5.35.0/``: Swagger UI's ``swagger-ui-bundle.js`` and ``swagger-ui.css``
  with its LICENSE, from the npm package ``swagger-ui-dist@5.35.0``, served to ``/docs`` through
  FastAPI's self-hosting recipe (``get_swagger_ui_html``; the app is built with ``docs_url=None``,
  ``redoc_url=None``: ReDoc would need its own bundle and Google fonts, so it is not offered).

The routes are left out of the OpenAPI document (``include_in_schema=False``): they are pages, not
API operations. ``static/vendor/README.md`` says where each vendored file came from.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_URL = "/static"
ECHARTS_VERSION = "5.6.0"
SWAGGER_UI_VERSION = "5.35.0"
SWAGGER_UI = f"{STATIC_URL}/vendor/swagger-ui/{SWAGGER_UI_VERSION}"
DOCS_URL, OAUTH2_REDIRECT_URL = "/docs", "/docs/oauth2-redirect"
#: the dashboard may load nothing from elsewhere (the browser enforces it); ECharts draws on canvas
DASHBOARD_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                 "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

_static = StaticFiles(directory=STATIC_DIR)
router = APIRouter(include_in_schema=False)


@router.get(STATIC_URL + "/{path:path}")
async def static_file(path: str, request: Request) -> Response:
    """A file of ``static/`` (Starlette's StaticFiles: ETag and Last-Modified, no path escapes;
    a missing file is a 404 problem). Vendored files sit under their version and never change,
    so browsers may keep them a year; the dashboard's own files are revalidated on each load."""
    response = await _static.get_response(path, request.scope)
    immutable = path.startswith("vendor/") and response.status_code == 200
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable" if immutable else "no-cache"
    return response


@router.get("/dashboard")
def dashboard() -> FileResponse:
    """The supervisor dashboard page (督办统计, docs/dashboard.md)."""
    return FileResponse(STATIC_DIR / "dashboard" / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache", "Content-Security-Policy": DASHBOARD_CSP})


def add_docs(app) -> None:
    """``/docs`` (Swagger UI from this package's files) and its OAuth2 redirect page, as FastAPI's
    "self-hosting JavaScript and CSS for docs" recipe does; call on an app built with
    ``docs_url=None, redoc_url=None``. Swagger UI's online validator badge is switched off (it would
    load an image from the internet)."""

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} - 接口文档",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js", swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None})

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
