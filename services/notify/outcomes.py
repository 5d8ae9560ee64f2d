"""What an echo's records tell: its ticket's timeline entries (tickets asks for them when it shows a ticket:
``NotifyService.echo_outcomes``) and notify's metrics.

notify publishes no event of an echo's outcome: its records are the truth, and tickets reads them at
read time rather than keeping a copy of every outcome (docs/architecture.md, "Echo records").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from kernel.metrics import LATENCY_BUCKETS, labelled
from services.notify.fallback import DONE

# notify's own metrics, on every process's /metrics beside kernel.metrics's.
ECHO_LATENCY = Histogram("huisheng_echo_latency_seconds",
                         "From a ticket change to its echo being delivered, by channel", ["channel"],
                         buckets=LATENCY_BUCKETS)
ECHO_STAGE_BUCKETS = (0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
ECHO_STAGE_LATENCY = Histogram("huisheng_echo_stage_seconds",
                               "From a ticket change to each stage of its echo (sent, delivered, read), by channel",
                               ["channel", "stage"], buckets=ECHO_STAGE_BUCKETS)
SILENT_TICKETS = Gauge("huisheng_silent_tickets", "Tickets with a resident-relevant change whose echo was neither "
                       "delivered nor accounted for in time")
ECHOES = Counter("huisheng_echoes_total", "Echoes by channel and outcome (delivered, failed)", ["channel", "outcome"])


# What an echo's record shows on its ticket's timeline (the entries tickets showed when notify told it by events).
DELIVERED, FAILED, READ = "echo.delivered", "echo.failed", "echo.read"
FAILED_REASON = "every step of the plan failed; the last: "


def timeline_entries(echo: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What an echo's record (an ``echoes`` document, or the one its inbox message carries) shows on its
    ticket's timeline: ``echo.failed`` when every step of its plan failed, ``echo.delivered`` when a step
    delivered it (a late receipt may deliver a failed echo: both show), ``echo.read`` when its inbox message
    was read. Nothing for a broadcast's echo (no ticket).

    Each entry's ``event_id`` is ``<echo id>:<kind>``: the same on every read, so the ticket's timeline
    shows it once (:attr:`services.tickets.domain.Ticket.history`).

    >>> from datetime import UTC, datetime
    >>> t0, t1 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC), datetime(2026, 12, 6, 8, 5, tzinfo=UTC)
    >>> echo = {"_id": "e1:r1", "ticket_id": "T1", "recipient": "r1", "source_event_type": "ticket.received",
    ...         "status": "delivered", "delivered_at": t0, "read_at": t1, "failed_at": None,
    ...         "steps": [{"channel": "inbox", "status": "read", "delivered_at": t0}]}
    >>> [(entry["type"], entry["channel"], entry["event_id"]) for entry in timeline_entries(echo)]
    [('echo.delivered', 'inbox', 'e1:r1:delivered'), ('echo.read', 'inbox', 'e1:r1:read')]
    """
    if echo.get("ticket_id") is None:
        return []
    entries = []
    steps = echo["steps"]
    if echo.get("failed_at"):
        last = steps[-1]
        # a receipt that came after the last step's deadline delivered the step that had expired
        status = "expired" if last["status"] in DONE else last["status"]
        entries.append(_entry(echo, FAILED, last["channel"], echo["failed_at"], FAILED_REASON + status))
    if echo["status"] == "delivered":
        step = next((step for step in steps if step["status"] in DONE), steps[echo.get("current", 0)])
        entries.append(_entry(echo, DELIVERED, step["channel"], step.get("delivered_at") or echo["delivered_at"]))
    if echo.get("read_at"):
        entries.append(_entry(echo, READ, "inbox", echo["read_at"]))
    return entries


def _entry(echo: Mapping[str, Any], kind: str, channel: str, at: datetime, reason: str | None = None
           ) -> dict[str, Any]:
    entry = {"type": kind, "at": at, "event_id": f"{echo['_id']}:{kind.removeprefix('echo.')}",
             "echo_id": echo["_id"], "channel": channel, "recipient": echo["recipient"],
             "source_event_type": echo["source_event_type"]}
    if reason:
        entry["reason"] = reason
    return entry


def by_ticket(ticket_ids: Iterable[str], echoes: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each of ``ticket_ids`` (every one, if only with ``[]``) with the timeline entries of its ``echoes``,
    oldest first.

    >>> by_ticket(["T1", "T2"], [])
    {'T1': [], 'T2': []}
    """
    found: dict[str, list[dict[str, Any]]] = {ticket_id: [] for ticket_id in ticket_ids}
    for echo in echoes:
        if echo.get("ticket_id") in found:
            found[echo["ticket_id"]] += timeline_entries(echo)
    for entries in found.values():
        entries.sort(key=lambda entry: entry["at"])
    return found


def template_of(echo: dict) -> str:
    """Which text an echo has: its event type's, or ``staff:<type>`` (echoes stored before carry none)."""
    return echo.get("template") or echo["source_event_type"]


def observe(echo: dict, kinds: list[str]) -> None:
    """Metrics of what just happened to an echo."""
    for kind in kinds:
        if kind == "failed":
            labelled(ECHOES, echo["steps"][-1]["channel"], "failed").inc()
    for step in echo["steps"]:
        if "delivered" in kinds and step["status"] in ("delivered", "read") and step.get("delivered_at"):
            seconds = (step["delivered_at"] - echo["occurred_at"]).total_seconds()
            labelled(ECHOES, step["channel"], "delivered").inc()
            labelled(ECHO_LATENCY, step["channel"]).observe(max(seconds, 0.0))
            labelled(ECHO_STAGE_LATENCY, step["channel"], "delivered").observe(max(seconds, 0.0))
            break
    if "read" in kinds and echo.get("read_at"):
        labelled(ECHO_STAGE_LATENCY, "inbox", "read").observe(
            max((echo["read_at"] - echo["occurred_at"]).total_seconds(), 0.0))
