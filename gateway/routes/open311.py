"""Open311 GeoReport v2 at ``/open311/v2``: services, service definitions, requests and tokens, in JSON or XML.

The spec's GET methods are public: without a key they answer public fields only (service, status,
status notes, times, a coarse place) and leave out the categories that are private by nature. A
directory API key (``api_key``, or the ``X-API-Key`` header) sees its communities whole and is what
POST requests needs. ``jurisdiction_id`` is the community (``HUISHENG_COMMUNITY`` by default, or the
key's). Every error answers in the spec's format with the spec's statuses (400, 403, 404).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from functools import wraps

from kombu.exceptions import OperationalError
from nameko.exceptions import RemoteError, UnknownService

from gateway.auth import Principal
from gateway.http import (
    API_KEY_HEADER,
    CLIENT_ID_PATTERN,
    CORRELATION_HEADER,
    CORS_HEADERS,
    HTTP_REQUESTS,
    SECURITY_HEADERS,
    BadRequest,
    UpstreamTimeout,
    cors_headers,
    downstream_unavailable,
    http,  # its <path:...> matches a newline too
    idempotency_key,
    query,
    retry_after,
)
from gateway.open311 import FORMATS, comma_list, error_answer, read_form, render, request_arguments
from gateway.openapi import allowed_methods
from kernel.errors import (
    Forbidden,
    NotFound,
    PlatformError,
    ServiceUnavailable,
)
from kernel.logging import get_logger
from kernel.metrics import labelled
from kernel.permissions import allowed, require
from kernel.rpc import RpcTimeout, has_listeners

PREFIX = "/open311/v2"
JURISDICTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
QUERY_FILTERS = ("service_request_id", "service_code", "status")
DATE_FILTERS = ("start_date", "end_date")
RETRY_AFTER_SECONDS = 5
PENDING_NOTICE = "已收到，正在登记；请稍后用 token 查询工单号"
log = get_logger(__name__)


def open311_endpoint(method):
    """Run an Open311 handler, which returns ``(status, kind, payload)``: the answer rendered in the URL's format.

    Every failure answers in the spec's error format (XML when the format itself is unknown); an
    error of ours is a 5xx in that format too, with the story in the log only.
    """

    @wraps(method)
    def wrapper(self, request, *args, **kwargs):
        correlation_id = request.headers.get(CORRELATION_HEADER, "")
        if not CLIENT_ID_PATTERN.fullmatch(correlation_id):
            correlation_id = uuid.uuid4().hex
        self.context.adopt(correlation_id)
        # The catch-all route has no format: answer in the one its path asks for, else XML (the spec's required one).
        fmt = kwargs["fmt"] if "fmt" in kwargs else ("json" if request.path.endswith(".json") else "xml")
        wait = allow = None
        try:
            if fmt not in FORMATS:
                raise NotFound(f"no format {str(fmt)[:20]!r}: use .json or .xml", {"format": ["json or xml"]})
            status, kind, payload = _run(self, method, request, *args, **kwargs)
            content_type, body = render(kind, payload, fmt)
        except PlatformError as error:
            status, content_type, body = error_answer(error, fmt)
            wait = retry_after(error)
            if isinstance(error, MethodNotAllowed):
                allow = ", ".join([*error.allowed, "OPTIONS"])
        headers = {"Content-Type": content_type, CORRELATION_HEADER: correlation_id, **SECURITY_HEADERS}
        if allow is not None:
            headers["Allow"] = allow
        if status in (429, 503, 504):
            headers["Retry-After"] = str(wait or RETRY_AFTER_SECONDS)
        if request.headers.get(API_KEY_HEADER) or "api_key" in request.args:
            headers["Cache-Control"] = "no-store"
        headers.update(cors_headers(self.settings, request))
        labelled(HTTP_REQUESTS, "gateway", method.__name__, str(status)).inc()
        return status, headers, body.decode("utf-8")  # nameko takes text and sends it as UTF-8

    return wrapper


def _run(self, method, request, *args, **kwargs):
    """``method``'s answer; expected failures as :class:`PlatformError`, our own as a logged 500."""
    try:
        return method(self, request, *args, **kwargs)
    except PlatformError:
        raise
    except (UnknownService, OperationalError) as error:
        log.error("gateway.service_down", error=str(error))
        raise ServiceUnavailable("a service this needs is not running", {"service": ["unavailable"]}) from error
    except RpcTimeout as error:
        if has_listeners(self.settings.amqp_uri, error.service) is False:
            raise ServiceUnavailable(f"the {error.service} service is not running", {"service": [error.service]}
                                     ) from error
        raise UpstreamTimeout(str(error)) from error
    except RemoteError as error:
        unavailable = downstream_unavailable(error)
        if unavailable is not None:
            raise unavailable from error
        log.error("gateway.remote_error", exc_type=error.exc_type)
        raise _Internal() from error
    except Exception as error:  # a bug here: still the spec's error shape, and the stack in the log
        log.exception("gateway.unexpected_error", error=type(error).__name__)
        raise _Internal() from error


class _Internal(PlatformError):
    code = "internal_error"
    status = 500
    title = "Internal Server Error"

    def __init__(self) -> None:
        super().__init__("something went wrong on our side; try again later")


class Open311Routes:
    """Needs ``auth``, ``limits``, ``settings``, ``context``, ``tickets`` (see GatewayService)."""

    # --- who is asking, and about which community ----------------------------------------------------

    def open311_caller(self, request, api_key: str | None) -> Principal | None:
        """The key's principal (``api_key`` or ``X-API-Key``), None without one; 403 for a wrong or revoked key."""
        self.limits.check("address", self.client_address(request))
        key = api_key or request.headers.get(API_KEY_HEADER)
        if not key:
            return None
        try:
            caller = self.auth.by_key(key)  # the same verification as X-API-Key (directory.verify_api_key)
        except PlatformError as error:
            if error.status != 401:
                raise
            raise Forbidden("Invalid api_key received", {"api_key": [error.code]}, code="api_key_invalid") from error
        self.limits.check("caller", caller.subject)
        return caller

    def open311_scope(self, jurisdiction: str | None, caller: Principal | None) -> tuple[str, bool]:
        """``(community, whole)``: a key sees its own communities whole; anyone else sees public fields."""
        if jurisdiction is not None and not JURISDICTION.fullmatch(jurisdiction):
            raise BadRequest("jurisdiction_id is not valid", {"jurisdiction_id": ["letters, digits and ._-"]})
        if caller is not None and allowed("open311.read_scoped", caller.role):
            community = jurisdiction or caller.community
            if community in _communities(caller):
                return community, True
        return jurisdiction or self.settings.community, False

    # --- services ------------------------------------------------------------------------------------

    @http("GET", f"{PREFIX}/services.<string:fmt>")
    @open311_endpoint
    def open311_services(self, request, fmt):
        caller = self.open311_caller(request, query(request, "api_key"))
        _, whole = self.open311_scope(query(request, "jurisdiction_id"), caller)
        return 200, "services", self.tickets.open311_services(include_private=whole)

    @http("GET", f"{PREFIX}/services/<string:service_code>.<string:fmt>")
    @open311_endpoint
    def open311_service_definition(self, request, service_code, fmt):
        caller = self.open311_caller(request, query(request, "api_key"))
        _, whole = self.open311_scope(query(request, "jurisdiction_id"), caller)
        return 200, "service_definition", self.tickets.open311_service_definition(service_code, include_private=whole)

    # --- requests ------------------------------------------------------------------------------------

    @http("POST", f"{PREFIX}/requests.<string:fmt>")
    @open311_endpoint
    def open311_create_request(self, request, fmt):
        self.limits.check("address", self.client_address(request))
        data, own = request_arguments(read_form(request))
        caller = self.open311_caller(request, own.get("api_key") or query(request, "api_key"))
        if caller is None:
            raise Forbidden("an api_key is required to create a request", {"api_key": ["missing"]},
                            code="api_key_missing")
        require("open311.create", caller.role)
        community = own.get("jurisdiction_id") or query(request, "jurisdiction_id") or caller.community
        if community not in _communities(caller):
            raise Forbidden(f"this api_key may not file requests in {community[:64]}",
                            {"jurisdiction_id": ["not one of the key's communities"]})
        token = _token(caller.subject, idempotency_key(request))
        try:
            created = self.tickets.open311_create(community, caller.subject, data, token)
        except RpcTimeout as error:
            if has_listeners(self.settings.amqp_uri, error.service) is False:
                raise
            # It may still be stored: the client follows the token (GET tokens/{token}), as the spec's batch type does.
            log.warning("open311.create_pending", token=token)
            return 202, "accepted", [{"token": token, "service_notice": PENDING_NOTICE, "account_id": None}]
        return 201, "created", [created]

    @http("GET", f"{PREFIX}/requests.<string:fmt>")
    @open311_endpoint
    def open311_list_requests(self, request, fmt):
        caller = self.open311_caller(request, query(request, "api_key"))
        community, whole = self.open311_scope(query(request, "jurisdiction_id"), caller)
        filters: dict = {name: value for name in QUERY_FILTERS if (value := comma_list(query(request, name)))}
        for name in DATE_FILTERS:
            if value := query(request, name):
                # An unencoded "+08:00" arrives as " 08:00": the offset's sign is the only "+" a date has.
                filters[name] = value.replace(" ", "+")
        return 200, "requests", self.tickets.open311_requests(community, filters, full=whole)

    @http("GET", f"{PREFIX}/requests/<string:service_request_id>.<string:fmt>")
    @open311_endpoint
    def open311_get_request(self, request, service_request_id, fmt):
        caller = self.open311_caller(request, query(request, "api_key"))
        community, whole = self.open311_scope(query(request, "jurisdiction_id"), caller)
        return 200, "requests", [self.tickets.open311_request(community, service_request_id[:128], full=whole)]

    @http("GET", f"{PREFIX}/tokens/<string:token>.<string:fmt>")
    @open311_endpoint
    def open311_token(self, request, token, fmt):
        caller = self.open311_caller(request, query(request, "api_key"))
        community, _ = self.open311_scope(query(request, "jurisdiction_id"), caller)
        return 200, "token", [self.tickets.open311_token(community, token[:128])]

    @http("GET,POST,PUT,PATCH,DELETE", "/open311/<path:rest>")
    @open311_endpoint
    def open311_no_such_route(self, request, rest):
        """Any other Open311 path or method: 404 (or 405 with ``Allow``) in the spec's error format."""
        allowed = allowed_methods(request.path)
        if allowed:
            raise MethodNotAllowed(f"{request.path[:200]} answers {', '.join(allowed)}", allowed)
        raise NotFound(f"no route {request.method} {request.path[:200]}", {"path": ["no such resource"]})

    @http("OPTIONS", "/open311/<path:rest>")
    def open311_options(self, request, rest):
        """OPTIONS: the methods the path serves in ``Allow`` (the catch-all's methods are not the path's)."""
        allowed = allowed_methods(request.path)
        correlation_id = uuid.uuid4().hex
        headers = {CORRELATION_HEADER: correlation_id, **SECURITY_HEADERS, **cors_headers(self.settings, request)}
        if not allowed:
            fmt = "json" if request.path.endswith(".json") else "xml"
            status, content_type, body = error_answer(NotFound(f"no route {request.path[:200]}"), fmt)
            return status, {**headers, "Content-Type": content_type}, body.decode("utf-8")
        allow = ", ".join([*allowed, "OPTIONS"])
        if request.headers.get("Origin") is not None and "Access-Control-Allow-Origin" in headers:
            headers |= {"Access-Control-Allow-Methods": allow, "Access-Control-Allow-Headers": CORS_HEADERS,
                        "Access-Control-Max-Age": "600"}
        return 204, {**headers, "Allow": allow}, ""


class MethodNotAllowed(PlatformError):
    """A known Open311 path asked with a method it does not serve: 405 with ``Allow`` (RFC 9110)."""

    code, status, title = "method_not_allowed", 405, "Method Not Allowed"

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message, {"method": [f"use {', '.join(allowed)}"]})
        self.allowed = allowed


def _communities(caller: Principal) -> tuple[str, ...]:
    return caller.communities or (caller.community,)


def _token(subject: str, key: str | None) -> str:
    """A new request's token: random, or derived from the caller's Idempotency-Key so that a retry finds it.

    >>> _token("key:hotline", "k-1") == _token("key:hotline", "k-1") != _token("key:other", "k-1")
    True
    >>> len(_token("key:hotline", None))
    32
    """
    if key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{subject}\n{key}".encode()).hexdigest()[:32]
