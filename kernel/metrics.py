"""Prometheus metrics every process exposes on ``/metrics``.

Metrics are module-level (one registry per process); labels say which service,
entrypoint or subscription a sample belongs to, so a service built on the kernel
reports all of these without code of its own.

>>> HANDLED.labels(subscription="notify.ticket_events", outcome="ok").inc()
>>> from prometheus_client import generate_latest
>>> b"huisheng_events_handled_total" in generate_latest()
True
"""

from __future__ import annotations

import time

from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

WORKERS = Histogram("huisheng_worker_seconds", "Time a worker took, by entrypoint and outcome",
                    ["service", "entrypoint", "outcome"], buckets=LATENCY_BUCKETS)
HANDLED = Counter("huisheng_events_handled_total",
                  "Event deliveries by outcome: ok, retried, dead_lettered, duplicate, busy, requeued",
                  ["subscription", "outcome"])
PUBLISHED = Counter("huisheng_outbox_published_total", "Events the relay published", ["service", "collection"])
PUBLISH_FAILURES = Counter("huisheng_outbox_publish_failures_total", "Relay publish attempts that failed", ["service"])
OUTBOX_LAG = Histogram("huisheng_outbox_lag_seconds", "From an event's write to its confirmed publication",
                       ["service"], buckets=LATENCY_BUCKETS)
OUTBOX_PENDING = Gauge("huisheng_outbox_pending_documents", "Documents with unpublished events",
                       ["service", "collection"])
OUTBOX_OLDEST = Gauge("huisheng_outbox_oldest_seconds", "Age of the oldest unpublished event",
                      ["service", "collection"])
GROUP_COMMIT_SIZE = Histogram("huisheng_group_commit_writes",
                              "Writes sent to the database in one statement, by kind of write",
                              ["write"], buckets=(1, 2, 4, 8, 16, 32, 64, 128))


_CHILDREN: dict[tuple, object] = {}


def labelled(metric, *values: str):
    """``metric.labels(*values)`` (values in the order of its label names), found once.

    prometheus-client validates and locks on every ``labels`` call: 1.5 % of a busy
    service's CPU. The child it returns is the same each time, so it is remembered.

    >>> labelled(HANDLED, "notify.ticket_events", "ok") is HANDLED.labels("notify.ticket_events", "ok")
    True
    """
    key = (id(metric), values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


class WorkerMetrics(DependencyProvider):
    """Times every worker of the service it is declared on (see :class:`kernel.health.HealthEndpoints`)."""

    def __init__(self, **kwargs):
        self._started: dict = {}
        super().__init__(**kwargs)

    def get_dependency(self, worker_ctx) -> None:
        return None

    def worker_setup(self, worker_ctx) -> None:
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None) -> None:
        started = self._started.pop(worker_ctx, None)
        if started is None:
            return
        labelled(WORKERS, worker_ctx.service_name, worker_ctx.entrypoint.method_name,
                 "error" if exc_info else "ok").observe(time.perf_counter() - started)
