"""The gateway's HTTP plumbing: bounded JSON bodies, one error shape, security headers, CORS.

Every error answers RFC 9457 problem details (``application/problem+json``)::

    {"type": "/problems/validation_failed", "title": "Unprocessable Content", "status": 422,
     "detail": "the request is not valid", "code": "validation_failed", "correlation_id": "…",
     "errors": {"description": ["Missing data for required field."]}}

with the request's correlation id in ``X-Correlation-Id`` too. Hostile input gets a 4xx, never a
5xx, and never ties up a worker: the body is read up to :data:`MAX_BODY_BYTES` (413 beyond), its
nesting is measured before it is parsed (a 5,000-deep array would blow the parser's recursion), and
strings, arrays and objects in it are bounded (:data:`LIMITS`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from kombu.exceptions import OperationalError
from nameko.exceptions import RemoteError, UnknownService
from prometheus_client import Counter
from werkzeug.routing import PathConverter, Rule

from kernel.config import Settings
from kernel.errors import NotFound, PlatformError, ServiceUnavailable, TooManyRequests, ValidationFailed
from kernel.logging import get_logger
from kernel.metrics import labelled
from kernel.pagination import page_limit
from kernel.rpc import RpcTimeout, has_listeners
from kernel.web import HttpEntrypoint

CORRELATION_HEADER = "X-Correlation-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
API_KEY_HEADER = "X-API-Key"
MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
MAX_STRING_CHARS = 10_000
MAX_ARRAY_ITEMS = 1_000
MAX_OBJECT_MEMBERS = 256
MAX_QUERY_VALUE_CHARS = 512
MAX_PATH_VALUE_CHARS = 128  # an id, a code or a name in a path: longer names nothing (404), as the document says
LIMITS = {"body_bytes": MAX_BODY_BYTES, "depth": MAX_JSON_DEPTH, "string_chars": MAX_STRING_CHARS,
          "array_items": MAX_ARRAY_ITEMS, "object_members": MAX_OBJECT_MEMBERS}
RETRY_AFTER_SECONDS = 5
# What a service's own RPC call raised, as nameko names it when it reaches us inside a RemoteError:
# nameko's UnknownService (no instance runs) and kernel.rpc's RpcTimeout (no answer by the deadline).
DOWNSTREAM_DOWN = frozenset({UnknownService.__name__, RpcTimeout.__name__})
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
HTTP_REQUESTS = Counter("huisheng_http_requests_total", "HTTP requests answered, by route and status",
                        ["service", "route", "status"])
PROBLEM_CONTENT_TYPE = "application/problem+json"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
CORS_HEADERS = (f"Authorization, Content-Type, {API_KEY_HEADER}, {IDEMPOTENCY_HEADER}, {CORRELATION_HEADER}, "
                "If-Match")  # If-Match: a ticket's actions send back the ETag they read
CORS_EXPOSED = f"{CORRELATION_HEADER}, Retry-After, ETag"

_DIGITS = re.compile(r"[0-9]{1,6}")
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
log = get_logger(__name__)


# --------------------------------------------------------------------------------------------- routes

class AnyPath(PathConverter):
    """``<path:...>`` that matches every character: werkzeug's stops at a newline (``%0A``), and a path that
    matches no rule gets the web server's HTML 404 instead of problem details."""

    regex = "(?s:[^/].*?)"


class GatewayRule(Rule):
    """A rule whose ``path`` converter is :class:`AnyPath`.

    >>> from werkzeug.routing import Map
    >>> Map([GatewayRule("/api/<path:rest>", endpoint="catch_all")]).bind("gateway").match("/api/v1/x\\ny")
    ('catch_all', {'rest': 'v1/x\\ny'})
    """

    def get_converter(self, variable_name, converter_name, args, kwargs):
        if converter_name == "path":
            return AnyPath(self.map, *args, **kwargs)
        return super().get_converter(variable_name, converter_name, args, kwargs)


class GatewayEntrypoint(HttpEntrypoint):
    """``@http`` for the gateway's routes with a ``<path:...>`` (catch-alls, the console's files)."""

    def get_url_rule(self) -> Rule:
        return GatewayRule(self.url, methods=self.method.split(","))


http = GatewayEntrypoint.decorator


# --------------------------------------------------------------------------------------------- bodies

def json_body(request) -> Any:
    """The body as JSON within :data:`LIMITS`: 413 when too big, 400 when not JSON, 422 when too large inside."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes", {"body": [f"max {MAX_BODY_BYTES}"]})
    raw = request.stream.read(MAX_BODY_BYTES + 1)  # a chunked body has no length to trust
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes", {"body": [f"max {MAX_BODY_BYTES}"]})
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """Parse ``raw`` JSON text within :data:`LIMITS`.

    >>> parse_json(b'{"a": [1, "\\\\u5174"]}')
    {'a': [1, '兴']}
    >>> parse_json(b"[" * 5000 + b"]" * 5000)
    Traceback (most recent call last):
    ...
    gateway.http.BadRequest: ('the body is nested deeper than 32 levels', {'body': ['max depth 32']}, 'body_too_deep')
    """
    if _depth(raw) > MAX_JSON_DEPTH:
        raise BadRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels",
                         {"body": [f"max depth {MAX_JSON_DEPTH}"]}, code="body_too_deep")
    try:
        body = json.loads(raw.decode("utf-8") if raw else "", parse_constant=_no_constant)
        # JSON may escape a lone surrogate ("\ud800"): valid JSON, but no UTF-8 text can carry it on.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError) as error:
        # ValueError includes JSONDecodeError and ints of more digits than Python converts
        raise BadRequest("the body is not valid JSON text", {"body": [str(error)[:200]]}) from error
    problems: dict[str, list[str]] = {}
    _check_sizes(body, "", problems)
    if problems:
        raise ValidationFailed("the body is larger than the limits allow", problems)
    return body


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw``, strings left out (they may hold brackets)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", raw)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _check_sizes(value: Any, path: str, problems: dict[str, list[str]]) -> None:
    if len(problems) >= 10:
        return
    where = path or "body"
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        problems[where] = [f"longer than {MAX_STRING_CHARS} characters"]
    elif isinstance(value, list):
        if len(value) > MAX_ARRAY_ITEMS:
            problems[where] = [f"more than {MAX_ARRAY_ITEMS} items"]
            return
        for index, item in enumerate(value):
            _check_sizes(item, f"{path}[{index}]", problems)
    elif isinstance(value, dict):
        if len(value) > MAX_OBJECT_MEMBERS:
            problems[where] = [f"more than {MAX_OBJECT_MEMBERS} members"]
            return
        for key, item in value.items():
            if len(key) > 128:
                problems[where] = ["a member name is longer than 128 characters"]
                return
            _check_sizes(item, f"{path}.{key}" if path else key, problems)


def idempotency_key(request) -> str | None:
    """The client's ``Idempotency-Key``: retrying a POST with it never has a second effect."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not CLIENT_ID_PATTERN.fullmatch(key):
        raise BadRequest(f"{IDEMPOTENCY_HEADER} must be 1-128 letters, digits or ._:-",
                         {IDEMPOTENCY_HEADER: ["invalid"]})
    return key


def query(request, name: str) -> str | None:
    """One query parameter, bounded in size (422 on ``name`` beyond :data:`MAX_QUERY_VALUE_CHARS`)."""
    values = request.args.getlist(name)
    if not values:
        return None
    if len(values) > 1 or len(values[0]) > MAX_QUERY_VALUE_CHARS:
        raise ValidationFailed("the request is not valid", {name: ["give it once, at most 512 characters"]})
    return values[0]


def paging(request) -> tuple[str | None, int]:
    """``cursor`` and ``limit`` of a list request (limit 1..100, default 20; 422 otherwise).

    The document says ``limit`` is an integer: ASCII digits, nothing else (not empty, no spaces, no "²").
    """
    limit = query(request, "limit")
    if limit is not None and not _DIGITS.fullmatch(limit):
        raise ValidationFailed("the request is not valid", {"limit": ["must be a whole number from 1 to 100"]})
    return query(request, "cursor"), page_limit(limit)


# -------------------------------------------------------------------------------------------- answers

# Errors of the HTTP edge alone: no service raises them.
class BadRequest(PlatformError):
    code, status, title = "bad_request", 400, "Bad Request"


class PayloadTooLarge(PlatformError):
    code, status, title = "payload_too_large", 413, "Content Too Large"


class UnsupportedMediaType(PlatformError):
    code, status, title = "unsupported_media_type", 415, "Unsupported Media Type"


class UpstreamTimeout(PlatformError):
    code, status, title = "upstream_timeout", 504, "Gateway Timeout"


def problem_details(error: PlatformError, correlation_id: str | None = None) -> dict:
    """The RFC 9457 problem details of ``error`` (``errors`` carries the per-field details)."""
    details = {"type": f"/problems/{error.code}", "title": error.title, "status": error.status,
               "detail": error.message, "code": error.code, "correlation_id": correlation_id}
    if error.details:
        details["errors"] = error.details
    return details


def retry_after(error: PlatformError) -> int | None:
    """A TooManyRequests' own ``details["retry_after"]`` (seconds) for its ``Retry-After`` header, else None."""
    value = error.details.get("retry_after") if isinstance(error, TooManyRequests) else None
    return int(value) if isinstance(value, int | float) and value >= 0 else None


def problem(error: PlatformError, correlation_id: str) -> tuple[int, dict, str]:
    """An error as a problem-details answer (status, headers, body)."""
    headers = {"Content-Type": f"{PROBLEM_CONTENT_TYPE}; charset=utf-8"}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="huisheng"'
    if error.status in (429, 503, 504):
        seconds = retry_after(error)
        headers["Retry-After"] = str(seconds if seconds is not None else RETRY_AFTER_SECONDS)
    return error.status, headers, json.dumps(problem_details(error, correlation_id), ensure_ascii=False, default=str)


def endpoint(method: Callable) -> Callable:
    """Run a gateway handler: correlation id in, JSON out, every failure as problem details, headers on all."""

    @wraps(method)
    def wrapper(self, request, *args, **kwargs):
        correlation_id = request.headers.get(CORRELATION_HEADER, "")
        if not CLIENT_ID_PATTERN.fullmatch(correlation_id):
            correlation_id = uuid.uuid4().hex
        self.context.adopt(correlation_id)
        try:
            _check_path_values(kwargs)
            status, headers, body = _answer(self, method, request, *args, **kwargs)
        except PlatformError as error:
            status, headers, body = problem(error, correlation_id)
        headers[CORRELATION_HEADER] = correlation_id
        headers.update(SECURITY_HEADERS)
        if request.headers.get("Authorization") or request.headers.get(API_KEY_HEADER):
            headers["Cache-Control"] = "no-store"
        headers.update(cors_headers(self.settings, request))
        labelled(HTTP_REQUESTS, "gateway", method.__name__, str(status)).inc()
        return status, headers, body

    return wrapper


def _check_path_values(values: dict[str, Any]) -> None:
    """404 for a path value longer than any id: the services need not each bound what they look up.

    >>> _check_path_values({"ticket_id": "T-1"})
    >>> _check_path_values({"ticket_id": "x" * 129})
    Traceback (most recent call last):
    ...
    kernel.errors.NotFound: ('no such resource', {'ticket_id': ['at most 128 characters']})
    """
    for name, value in values.items():
        if name != "rest" and isinstance(value, str) and len(value) > MAX_PATH_VALUE_CHARS:  # rest: a catch-all's
            raise NotFound("no such resource", {name: [f"at most {MAX_PATH_VALUE_CHARS} characters"]})


def cors_headers(settings: Settings, request) -> dict[str, str]:
    """CORS is closed unless the origin is one of ``CORS_ORIGINS``: then it may call, with credentials."""
    origin = request.headers.get("Origin")
    if not origin or origin not in settings.cors_origins:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Allow-Credentials": "true",
            "Access-Control-Expose-Headers": CORS_EXPOSED}


def _answer(self, method, request, *args, **kwargs) -> tuple[int, dict, str]:
    """Run ``method``; every expected failure becomes a :class:`PlatformError` for :func:`problem`."""
    try:
        result = method(self, request, *args, **kwargs)
    except PlatformError:
        raise
    except (UnknownService, OperationalError) as error:
        # OperationalError: the broker refused the request (a full queue nacks it) or is unreachable.
        log.error("gateway.service_down", error=str(error))
        raise ServiceUnavailable("a service this needs is not running", {"service": [str(error)[:200]]}) from error
    except RpcTimeout as error:
        if has_listeners(self.settings.amqp_uri, error.service) is False:
            log.error("gateway.service_down", service=error.service)
            raise ServiceUnavailable(f"the {error.service} service is not running",
                                     {"service": [error.service]}) from error
        log.error("gateway.upstream_timeout", error=str(error))
        raise UpstreamTimeout(str(error)) from error
    except RemoteError as error:
        unavailable = downstream_unavailable(error)
        if unavailable is not None:
            log.error("gateway.downstream_down", exc_type=error.exc_type, error=str(error.value)[:200])
            raise unavailable from error
        # a service failed in a way it did not expect: its log has the story, the client gets no internals
        log.error("gateway.remote_error", exc_type=error.exc_type)
        return _internal()
    except Exception as error:  # a bug here: still one answer shape, and the stack in the log
        log.exception("gateway.unexpected_error", error=type(error).__name__)
        return _internal()
    status, body = result[0], result[1]
    headers = dict(result[2]) if len(result) > 2 else {}
    if status == 204:
        return status, headers, ""
    headers.setdefault("Content-Type", JSON_CONTENT_TYPE)
    return status, headers, json.dumps(body, ensure_ascii=False, default=str)


def downstream_unavailable(error: RemoteError) -> ServiceUnavailable | None:
    """A 503 for a service that is up but whose own call found nobody or no answer (a RemoteError carrying
    UnknownService or RpcTimeout): "try again later", as when the service called is down, not a bug of ours.

    >>> downstream_unavailable(RemoteError("UnknownService", "Unknown service `directory`")).status
    503
    >>> downstream_unavailable(RemoteError("KeyError", "'grid'")) is None
    True
    """
    if error.exc_type not in DOWNSTREAM_DOWN:
        return None
    return ServiceUnavailable("a service this needs is not running or not answering",
                              {"service": [str(error.value)[:200]]})


def _internal() -> tuple[int, dict, str]:
    body = {"type": "/problems/internal_error", "title": "Internal Server Error", "status": 500,
            "detail": "something went wrong on our side", "code": "internal_error"}
    return 500, {"Content-Type": f"{PROBLEM_CONTENT_TYPE}; charset=utf-8"}, json.dumps(body)
