"""Errors that cross service boundaries intact.

nameko turns an exception raised by an RPC method into a ``RemoteError`` unless
its class is registered; these are registered, so the gateway receives the same
class with the same structured details and can answer 404, 409 or 422 with them.

>>> error = ValidationFailed("the request is not valid", {"description": ["Missing data."]})
>>> error.code, error.status, error.details
('validation_failed', 422, {'description': ['Missing data.']})
"""

from __future__ import annotations

from nameko.exceptions import deserialize_to_instance


class PlatformError(Exception):
    """An expected failure with a stable machine-readable code and an HTTP status."""

    code = "error"
    status = 400

    def __init__(self, message: str = "", details: dict | None = None):
        super().__init__(message or self.default_message(), details or {})

    def default_message(self) -> str:
        return self.code.replace("_", " ")

    @property
    def message(self) -> str:
        return self.args[0]

    @property
    def details(self) -> dict:
        return self.args[1]

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


@deserialize_to_instance
class ValidationFailed(PlatformError):
    code, status = "validation_failed", 422


@deserialize_to_instance
class NotFound(PlatformError):
    code, status = "not_found", 404


@deserialize_to_instance
class Forbidden(PlatformError):
    code, status = "forbidden", 403


@deserialize_to_instance
class Conflict(PlatformError):
    code, status = "conflict", 409
