"""The API document (``GET /openapi.json``) and its documentation page (``GET /docs``), both public.

The page is Swagger UI from the ``swagger-ui-py`` package's files (Swagger UI 5: the first to render
OpenAPI 3.1), served from here: nothing is fetched from the internet at run time, and the page's
Content-Security-Policy allows only this origin's scripts and styles (no inline script).
"""

from __future__ import annotations

import importlib.util
import uuid
from functools import cache
from pathlib import Path

from werkzeug.wrappers import Response

from gateway.http import CORRELATION_HEADER, JSON_CONTENT_TYPE, SECURITY_HEADERS, endpoint, problem
from gateway.openapi import document
from kernel.errors import NotFound
from kernel.web import http

ASSETS = {  # name -> content type; the only files served
    "swagger-ui.css": "text/css; charset=utf-8",
    "index.css": "text/css; charset=utf-8",  # Swagger UI's page styles (its own index.html links them too)
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "init.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Huisheng 回声 API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"><link rel="stylesheet" href="/docs/index.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script><script src="/docs/init.js"></script></body></html>
"""
INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  supportedSubmitMethods: ["get", "post", "put", "delete"], validatorUrl: null});
"""


def swagger_ui_files() -> Path:
    """Where the installed Swagger UI's files are (found without importing the package's web adapters)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed (pyproject.toml lists it)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@cache
def asset(name: str) -> str | bytes:
    """A file of the page: text, or bytes for an image."""
    if name == "init.js":
        return INIT
    path = swagger_ui_files() / name
    return path.read_bytes() if ASSETS[name].startswith("image/") else path.read_text("utf-8")


def _page(status: int, content_type: str, body: str | bytes) -> tuple[int, dict, str] | Response:
    headers = {**SECURITY_HEADERS, "Content-Type": content_type, "Content-Security-Policy": DOCS_CSP,
               "Cache-Control": "public, max-age=3600"}
    if isinstance(body, bytes):  # nameko takes text from a handler's tuple; bytes go as a response of their own
        return Response(body, status=status, headers=headers)
    return status, headers, body


class DocsRoutes:
    """Needs ``limits`` (see GatewayService)."""

    @http("GET", "/openapi.json")
    @endpoint
    def openapi_document(self, request):
        self.limits.check("address", self.client_address(request))
        return 200, document(), {"Content-Type": JSON_CONTENT_TYPE}

    @http("GET", "/favicon.ico")
    def favicon(self, request):
        """Browsers ask for it on any page of the origin: the docs' icon rather than a 404 in every console."""
        return _page(200, ASSETS["favicon-32x32.png"], asset("favicon-32x32.png"))

    @http("GET", "/docs")
    def docs_page(self, request):
        return _page(200, "text/html; charset=utf-8", PAGE)

    @http("GET", "/docs/<string:name>")
    def docs_asset(self, request, name):
        if name not in ASSETS:  # problem details like every other 404, without @endpoint's JSON answer
            correlation_id = uuid.uuid4().hex
            status, headers, body = problem(NotFound(f"no file {name[:64]!r} in the docs", code="no_such_file"),
                                            correlation_id)
            return status, {**headers, **SECURITY_HEADERS, CORRELATION_HEADER: correlation_id}, body
        return _page(200, ASSETS[name], asset(name))
