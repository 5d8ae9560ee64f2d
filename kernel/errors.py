"""Errors that cross service boundaries intact, with the HTTP status the gateway answers them with.

nameko turns an exception raised by an RPC method into a ``RemoteError`` unless
its class is registered; these are registered, so the gateway receives the same
class with the same structured details and answers them as RFC 9457 problem details (gateway/http.py).

>>> error = ValidationFailed("the request is not valid", {"description": ["Missing data."]})
>>> error.code, error.status, error.details
('validation_failed', 422, {'description': ['Missing data.']})

A subclass's code is its default; an instance may name a more precise one (it travels with it):

>>> wrong = Unauthorized("wrong phone or code", code="invalid_credentials")
>>> wrong.code, wrong.status, wrong.title
('invalid_credentials', 401, 'Unauthorized')
"""

from __future__ import annotations

from typing import Any

from nameko.exceptions import deserialize_to_instance


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
    ``details["version"]`` is the current version.
    """

    code, status, title = "precondition_failed", 412, "Precondition Failed"


class ValidationFailed(PlatformError):
    code, status, title = "validation_failed", 422, "Unprocessable Content"


class TooManyRequests(PlatformError):
    """Slow down; ``details["retry_after"]`` (seconds), when given, becomes the ``Retry-After`` header."""

    code, status, title = "too_many_requests", 429, "Too Many Requests"


class ServiceUnavailable(PlatformError):
    code, status, title = "service_unavailable", 503, "Service Unavailable"
