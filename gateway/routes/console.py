"""The web console (``GET /console`` and its files): the office's daily tool and the residents' page.

The console is a static app in the repository's ``console/`` folder (HTML, CSS and ES modules that
Chromium loads as they are: no build step, nothing fetched from the internet at run time). It talks to
the same API as everyone else, with the bearer token the directory's sign-in gives.

Only files that exist under ``console/`` with a known suffix are served, looked up by their path
relative to that folder (no ``..``, no hidden files); anything else is a problem-details 404. Every
answer carries the gateway's security headers and a Content-Security-Policy that allows this origin
only — no inline script or style, no other host.

>>> content_type("js/app.js")
'text/javascript; charset=utf-8'
>>> content_type("secrets.env") is None
True
>>> safe_name("../pyproject.toml") is None, safe_name("js/.hidden.js") is None, safe_name("js/app.js")
(True, True, 'js/app.js')
>>> read_asset("index.html")[:15], read_asset("nothing.js")
(b'<!doctype html>', None)
"""

from __future__ import annotations

import re
import uuid
from functools import cache
from pathlib import Path

from werkzeug.wrappers import Response

from gateway.http import (
    CORRELATION_HEADER,
    SECURITY_HEADERS,
    http,  # its <path:...> matches a newline too
    problem,
)
from kernel.errors import NotFound

# The app's folder: beside the gateway package, in the checkout as in an installed wheel (package-data).
CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
               "font-src 'self'; connect-src 'self'; manifest-src 'self'; frame-ancestors 'none'; "
               "base-uri 'none'; form-action 'self'")
_NAME = re.compile(r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}/){0,3}[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}\Z")

# For gateway/openapi.py (as VOLUNTEER_OPERATIONS): each handler's description, Operation's keyword arguments.
CONSOLE_OPERATIONS: dict[str, dict] = {
    "console_page": dict(summary="The web console (residents, staff, ops): a static page served locally",
                         tag="documentation", answer={"type": "string"}, auth=False, calls=False),
    "console_asset": dict(summary="A file of the web console (script, style, image, translations)",
                          tag="documentation", answer={"type": "string"}, auth=False, calls=False),
}


def content_type(name: str) -> str | None:
    """The content type a console file is served with, None for a suffix the console does not serve."""
    return TYPES.get(Path(name).suffix.lower())


def safe_name(name: str) -> str | None:
    """``name`` when it can only name a file inside the console's folder, else None (no ``..``, no dot-files)."""
    return name if _NAME.fullmatch(name) and ".." not in name else None


@cache
def read_asset(name: str) -> bytes | None:
    """A console file's bytes, None when there is no such file (cached: the files change only with a release)."""
    path = CONSOLE_DIR / name
    try:
        if not path.resolve().is_relative_to(CONSOLE_DIR.resolve()) or not path.is_file():
            return None
        return path.read_bytes()
    except OSError:
        return None


def _file(name: str) -> Response | tuple[int, dict, str]:
    clean = safe_name(name)
    kind = content_type(clean) if clean else None
    body = read_asset(clean) if kind else None
    if body is None or clean is None or kind is None:
        correlation_id = uuid.uuid4().hex
        status, headers, text = problem(NotFound(f"no file {name[:64]!r} in the console", code="no_such_file"),
                                        correlation_id)
        return status, {**headers, **SECURITY_HEADERS, CORRELATION_HEADER: correlation_id}, text
    headers = {**SECURITY_HEADERS, "Content-Type": kind, "Content-Security-Policy": CONSOLE_CSP,
               # the page itself is re-checked each time so a release is seen at once; its files may be cached
               "Cache-Control": "no-cache" if kind.startswith("text/html") else "public, max-age=300"}
    return Response(body, status=200, headers=headers)


class ConsoleRoutes:
    """The console's page and files; public (the page signs in through the API like any client)."""

    @http("GET", "/console")
    def console_page(self, request):
        return _file("index.html")

    @http("GET", "/console/<path:name>")
    def console_asset(self, request, name):
        return _file(name or "index.html")
