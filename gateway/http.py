"""The gateway's HTTP plumbing: JSON bodies, bearer tokens, and one shape for every error.

Every error answers ``{"error": {"code": ..., "message": ..., "details": ...}}``
with the request's correlation id in ``X-Correlation-Id``.
"""

from __future__ import annotations

import json
import re
import uuid
from functools import wraps

from kombu.exceptions import OperationalError
from nameko.exceptions import UnknownService

from kernel.auth import AuthError, Principal, token_from_header, verify_token
from kernel.config import Settings
from kernel.errors import Forbidden, PlatformError
from kernel.health import json_response
from kernel.logging import get_logger
from kernel.metrics import HTTP_REQUESTS, labelled
from kernel.rpc import RpcTimeout, has_listeners

CORRELATION_HEADER = "X-Correlation-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = 5
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
log = get_logger(__name__)


class BadRequest(PlatformError):
    code, status = "bad_request", 400


class Unauthorized(PlatformError):
    code, status = "unauthorized", 401


class ServiceUnavailable(PlatformError):
    code, status = "service_unavailable", 503


class UpstreamTimeout(PlatformError):
    code, status = "upstream_timeout", 504


def json_body(request) -> object:
    """The request body as JSON, or :class:`BadRequest`."""
    if request.content_length and request.content_length > MAX_BODY_BYTES:
        raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw or b"")
        # JSON may escape a lone surrogate ("\ud800"): valid JSON, but no UTF-8 text can carry it on.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
        return body
    except (json.JSONDecodeError, UnicodeError) as error:
        raise BadRequest("the body is not valid JSON text", {"body": [str(error)]}) from error


def idempotency_key(request) -> str | None:
    """The client's ``Idempotency-Key``: retrying a POST with it never creates a second ticket."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not CLIENT_ID_PATTERN.fullmatch(key):
        raise BadRequest(f"{IDEMPOTENCY_HEADER} must be 1-128 letters, digits or ._:-",
                         {IDEMPOTENCY_HEADER: ["invalid"]})
    return key


def principal(request, settings: Settings, roles: frozenset[str] | None = None) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; optionally limited to ``roles``."""
    try:
        caller = verify_token(settings, token_from_header(request.headers.get("Authorization")))
    except AuthError as error:
        raise Unauthorized(error.message, {"token": [error.code]}) from error
    if roles is not None and caller.role not in roles:
        raise Forbidden(f"the role {caller.role} may not do this")
    return caller


def endpoint(method):
    """Run a gateway handler: correlation id in, JSON out, every failure as a structured error."""

    @wraps(method)
    def wrapper(self, request, *args, **kwargs):
        status, body, headers = _answer(self, method, request, *args, **kwargs)
        labelled(HTTP_REQUESTS, "gateway", method.__name__, str(status)).inc()
        return json_response(status, body, headers)

    return wrapper


def _answer(self, method, request, *args, **kwargs) -> tuple[int, object, dict]:
    """Run ``method``; every expected failure becomes a status and an error body."""
    correlation_id = request.headers.get(CORRELATION_HEADER, "")
    if not CLIENT_ID_PATTERN.fullmatch(correlation_id):
        correlation_id = uuid.uuid4().hex
    self.context.adopt(correlation_id)
    headers = {CORRELATION_HEADER: correlation_id}
    retry_later = {**headers, "Retry-After": str(RETRY_AFTER_SECONDS)}
    try:
        status, body = method(self, request, *args, **kwargs)
    except PlatformError as error:
        return error.status, {"error": error.to_dict()}, headers
    except (UnknownService, OperationalError) as error:
        # OperationalError: the broker refused the request (a full queue nacks it) or is unreachable.
        log.error("gateway.service_down", error=str(error))
        failure = ServiceUnavailable("a service this needs is not running", {"service": [str(error)]})
        return failure.status, {"error": failure.to_dict()}, retry_later
    except RpcTimeout as error:
        if has_listeners(self.settings.amqp_uri, error.service) is False:
            log.error("gateway.service_down", service=error.service)
            failure = ServiceUnavailable(f"the {error.service} service is not running",
                                         {"service": [error.service]})
        else:
            log.error("gateway.upstream_timeout", error=str(error))
            failure = UpstreamTimeout(str(error))
        return failure.status, {"error": failure.to_dict()}, retry_later
    return status, body, headers
