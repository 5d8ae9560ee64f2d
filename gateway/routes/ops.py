"""Operations at a glance over HTTP (issue #15): the queues and the outboxes that ``huisheng ops`` shows.

``GET /api/v1/ops/overview`` answers what ``huisheng ops queues --json`` and ``huisheng ops outbox --json``
print, from the same kernel helpers (:func:`kernel.cli.ops.queues_report`, :func:`kernel.cli.ops.outbox_report`),
so the console's ops page and the command line never disagree. Each half is looked at on its own: when the
broker's management API or the database does not answer, that half says why (``{"error": ...}``) and the
other is still shown — the page exists for the moment something is wrong.
"""

from __future__ import annotations

from gateway.http import endpoint
from kernel.logging import get_logger
from kernel.web import http

log = get_logger(__name__)

# For gateway/openapi.py (as VOLUNTEER_OPERATIONS): each handler's description, Operation's keyword arguments.
OPS_OPERATIONS: dict[str, dict] = {
    "ops_overview": dict(
        summary="Queues (depth, consumers, dead letters) and outbox lag, as `huisheng ops` shows them",
        tag="operations", action="ops.read", calls=False,
        answer={"type": "object", "required": ["queues", "outbox"], "properties": {
            "queues": {"type": "object", "description": "`huisheng ops queues --json`, or {healthy: false, error}"},
            "outbox": {"type": "object", "description": "`huisheng ops outbox --json`, or {healthy: false, error}"},
        }}),
}


def queues_overview(settings) -> dict:
    """``huisheng ops queues --json``'s report, or why the management API could not give it."""
    from kernel.cli.management import ManagementError
    from kernel.cli.ops import queues_report

    try:
        return queues_report(settings)
    except ManagementError as error:
        log.warning("ops.queues_unavailable", error=str(error)[:300])
        return {"healthy": False, "error": str(error)}


def outbox_overview(settings) -> dict:
    """``huisheng ops outbox --json``'s report, or why the database could not give it."""
    from kernel.cli.ops import DEFAULT_MAX_LAG, OpsError, outbox_report

    try:
        return outbox_report(settings, DEFAULT_MAX_LAG)
    except OpsError as error:
        log.warning("ops.outbox_unavailable", error=str(error)[:300])
        return {"healthy": False, "error": str(error)}


class OpsRoutes:
    """Needs ``caller`` and ``settings`` (see GatewayService)."""

    @http("GET", "/api/v1/ops/overview")
    @endpoint
    def ops_overview(self, request):
        """Ops and admins: the queues and the outboxes; each half answers, or says why it cannot."""
        self.caller(request, "ops.read")
        return 200, {"queues": queues_overview(self.settings), "outbox": outbox_overview(self.settings)}
