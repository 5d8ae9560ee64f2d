"""The request context a worker runs in, and the correlation id that ties a request's work together.

nameko copies a worker's context data into the headers of every RPC call it makes; events carry the id in
their envelope, and the reliable handler puts it back into the context of the worker that handles them.
"""

from __future__ import annotations

import uuid

import structlog
from nameko.extensions import DependencyProvider

CORRELATION_ID = "correlation_id"
IDEMPOTENCY_KEY = "idempotency_key"  # the caller's Idempotency-Key, scoped to the caller (kernel.idempotency)


class RequestContext:
    """The worker's correlation id; the gateway adopts the one a client sent."""

    def __init__(self, worker_ctx):
        # worker_ctx.data, not .context_data: the latter is a copy made on every access.
        self._data = worker_ctx.data
        self._data.setdefault(CORRELATION_ID, uuid.uuid4().hex)

    @property
    def correlation_id(self) -> str:
        return self._data[CORRELATION_ID]

    @property
    def idempotency_key(self) -> str | None:
        """The caller's ``Idempotency-Key``; set, it rides with every call this worker makes."""
        key = self._data.get(IDEMPOTENCY_KEY)
        return key if isinstance(key, str) else None

    @idempotency_key.setter
    def idempotency_key(self, key: str) -> None:
        self._data[IDEMPOTENCY_KEY] = key

    def adopt(self, correlation_id: str) -> None:
        """Carry ``correlation_id`` in every call and event this worker causes, and in its logs."""
        self._data[CORRELATION_ID] = correlation_id
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)


class Context(DependencyProvider):
    """Injects the worker's :class:`RequestContext` and binds its correlation id to every log line."""

    def get_dependency(self, worker_ctx) -> RequestContext:
        return RequestContext(worker_ctx)

    def worker_setup(self, worker_ctx) -> None:
        structlog.contextvars.bind_contextvars(correlation_id=worker_ctx.data.get(CORRELATION_ID),
                                               entrypoint=f"{worker_ctx.service_name}.{worker_ctx.entrypoint.method_name}")

    def worker_teardown(self, worker_ctx) -> None:
        structlog.contextvars.unbind_contextvars("correlation_id", "entrypoint")
