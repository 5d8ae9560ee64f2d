"""The request context a worker runs in: who asked, for which community, under which correlation id.

nameko copies a worker's ``context_data`` into the headers of every RPC call it
makes, so a correlation id set by the gateway reaches every service it calls;
events carry it in their envelope, and the reliable handler puts it back into the
context of the worker that handles them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from nameko.extensions import DependencyProvider

CORRELATION_ID = "correlation_id"


@dataclass(frozen=True)
class RequestContext:
    correlation_id: str


class Context(DependencyProvider):
    """Injects the worker's :class:`RequestContext` and binds it to every log line."""

    def worker_setup(self, worker_ctx) -> None:
        data = worker_ctx.context_data
        data.setdefault(CORRELATION_ID, uuid.uuid4().hex)
        structlog.contextvars.bind_contextvars(
            correlation_id=data[CORRELATION_ID],
            entrypoint=f"{worker_ctx.service_name}.{worker_ctx.entrypoint.method_name}",
        )

    def get_dependency(self, worker_ctx) -> RequestContext:
        data = worker_ctx.context_data
        return RequestContext(correlation_id=data.setdefault(CORRELATION_ID, uuid.uuid4().hex))

    def worker_teardown(self, worker_ctx) -> None:
        structlog.contextvars.unbind_contextvars("correlation_id", "entrypoint")
