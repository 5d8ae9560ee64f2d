"""``/health`` (alive), ``/ready`` (broker and database answer) and ``/metrics`` for every process.

A service gets both by inheriting :class:`HealthEndpoints`; the gateway sets
``health = Health(database=False)`` since it owns no database.
"""

from __future__ import annotations

import json
import time

from kombu import Connection
from nameko.extensions import DependencyProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kernel.config import settings_of
from kernel.metrics import WorkerMetrics
from kernel.mongo import MongoClientProvider
from kernel.web import http

CACHE_SECONDS = 1.0


class Health(DependencyProvider):
    """Checks what a process needs to do its work; results are cached for a second."""

    mongo = MongoClientProvider()

    def __init__(self, database: bool = True, **kwargs):
        self.database = database
        self._cached: tuple[float, dict] | None = None
        super().__init__(**kwargs)

    def get_dependency(self, worker_ctx) -> Health:
        return self

    def readiness(self) -> dict[str, str]:
        if self._cached and time.monotonic() - self._cached[0] < CACHE_SECONDS:
            return self._cached[1]
        checks = {"broker": self._check(self._broker)}
        if self.database:
            checks["database"] = self._check(self._database)
        self._cached = (time.monotonic(), checks)
        return checks

    @staticmethod
    def _check(probe) -> str:
        try:
            probe()
            return "ok"
        except Exception as error:
            return f"unavailable: {type(error).__name__}: {error}"[:300]

    def _broker(self) -> None:
        with Connection(settings_of(self.container.config).amqp_uri, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)

    def _database(self) -> None:
        self.mongo.db.command("ping")


def json_response(status: int, body):
    """A nameko http response tuple with a JSON body."""
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(body, ensure_ascii=False)


class HealthEndpoints:
    health = Health()
    worker_metrics = WorkerMetrics()

    @http("GET", "/health")
    def health_check(self, request):
        return json_response(200, {"status": "ok", "service": self.name})

    @http("GET", "/ready")
    def readiness_check(self, request):
        checks = self.health.readiness()
        ready = all(value == "ok" for value in checks.values())
        return json_response(200 if ready else 503,
                             {"status": "ready" if ready else "not_ready", "checks": checks})

    @http("GET", "/metrics")
    def metrics_exposition(self, request):
        return 200, {"Content-Type": CONTENT_TYPE_LATEST}, generate_latest().decode("utf-8")  # nameko's http wants text
