"""Errors that cross service boundaries intact, and their HTTP face: RFC 9457 problem details.

nameko turns an exception raised by an RPC method into a ``RemoteError`` unless
its class is registered; these are registered, so the gateway receives the same
class with the same structured details and can answer 401, 404, 409, 412, 422 or 429 with them.

>>> error = ValidationFailed("the request is not valid", {"description": ["Missing data."]})
>>> error.code, error.status, error.details
('validation_failed', 422, {'description': ['Missing data.']})

A subclass's code is its default; an instance may name a more precise one (it travels with it):

>>> wrong = Unauthorized("wrong phone or code", code="invalid_credentials")
>>> wrong.code, wrong.status
('invalid_credentials', 401)
>>> problem = wrong.to_problem("c-1")
>>> problem["type"], problem["title"], problem["status"], problem["correlation_id"]
('/problems/invalid_credentials', 'Unauthorized', 401, 'c-1')
"""

from __future__ import annotations

from typing import Any

from nameko.exceptions import deserialize_to_instance

PROBLEM_CONTENT_TYPE = "application/problem+json"


class PlatformError(Exception):
    """An expected failure with a stable machine-readable code and an HTTP status."""

    code = "error"
    status = 400
    title = "Bad Request"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # nameko re-raises a registered class in the caller, details and all, instead of a RemoteError.
        super().__init_subclass__(**kwargs)
        deserialize_to_instance(cls)

    def __init__(self, message: str = "", details: dict | None = None, code: str | None = None):
        args: tuple = (message or self.code.replace("_", " "), details or {})
        if code and code != type(self).code:
            self.code = code  # an instance's own, more precise code; it rides in args over RPC
            args += (code,)
        super().__init__(*args)

    @property
    def message(self) -> str:
        return self.args[0]

    @property
    def details(self) -> dict:
        return self.args[1]

    def to_problem(self, correlation_id: str | None = None) -> dict:
        """The RFC 9457 problem details of this error (``errors`` carries the per-field details)."""
        problem = {"type": f"/problems/{self.code}", "title": self.title, "status": self.status,
                   "detail": self.message, "code": self.code, "correlation_id": correlation_id}
        if self.details:
            problem["errors"] = self.details
        return problem


class BadRequest(PlatformError):
    code, status, title = "bad_request", 400, "Bad Request"


class Unauthorized(PlatformError):
    code, status, title = "unauthorized", 401, "Unauthorized"


class Forbidden(PlatformError):
    code, status, title = "forbidden", 403, "Forbidden"


class NotFound(PlatformError):
    code, status, title = "not_found", 404, "Not Found"


class Conflict(PlatformError):
    code, status, title = "conflict", 409, "Conflict"


class PreconditionFailed(PlatformError):
    """A write's ``If-Match`` names a version that is no longer current: reload, then retry (RFC 9110, 412).

    Not a 409: a 409 says the state does not allow the change, whereas this says the client's copy is stale.
    ``details["version"]`` is the current version (RPC carries it as text: :attr:`current_version` reads it back).

    >>> error = PreconditionFailed("reload it", {"version": "4", "expected": "3"}, code="stale_version")
    >>> error.status, error.code, error.current_version
    (412, 'stale_version', 4)
    """

    code, status, title = "precondition_failed", 412, "Precondition Failed"

    @property
    def current_version(self) -> int | None:
        value = self.details.get("version")
        try:
            return int(value) if value is not None and not isinstance(value, bool) else None
        except (TypeError, ValueError):
            return None


class PayloadTooLarge(PlatformError):
    code, status, title = "payload_too_large", 413, "Content Too Large"


class UnsupportedMediaType(PlatformError):
    code, status, title = "unsupported_media_type", 415, "Unsupported Media Type"


class ValidationFailed(PlatformError):
    code, status, title = "validation_failed", 422, "Unprocessable Content"


class TooManyRequests(PlatformError):
    """Slow down; ``details["retry_after"]`` (seconds), when given, becomes the ``Retry-After`` header."""

    code, status, title = "too_many_requests", 429, "Too Many Requests"

    @property
    def retry_after(self) -> int | None:
        value = self.details.get("retry_after")
        return int(value) if isinstance(value, int | float) and value >= 0 else None


class ServiceUnavailable(PlatformError):
    code, status, title = "service_unavailable", 503, "Service Unavailable"


class UpstreamTimeout(PlatformError):
    code, status, title = "upstream_timeout", 504, "Gateway Timeout"
