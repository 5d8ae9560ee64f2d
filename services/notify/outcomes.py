"""What an echo's transitions tell the rest of the platform: its ``echo.*`` events and its metrics."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

from kernel.envelope import Envelope
from kernel.metrics import LATENCY_BUCKETS, labelled

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


def outcome_event(echo: dict, kind: str, channel: str, at: datetime, reason: str | None = None) -> Envelope:
    """``echo.<kind>`` for the ticket's timeline."""
    return Envelope.new(f"echo.{kind}", {
        "echo_id": echo["_id"], "ticket_id": echo["ticket_id"], "recipient": echo["recipient"], "channel": channel,
        "source_event_id": echo["source_event_id"], "source_event_type": echo["source_event_type"],
        "at": at.isoformat(), "reason": reason,
    }, community=echo["community"], correlation_id=echo.get("correlation_id"))


def outcome_events(echo: dict, kinds: list[str], at: datetime) -> list[Envelope]:
    """The events of what a transition of ``echo`` made true (delivered, read, failed).

    A broadcast's echoes have no ticket to tell: their records and the broadcast's progress are the proof.
    """
    events: list[Envelope] = []
    if echo.get("ticket_id") is None:
        return events
    for kind in kinds:
        if kind == "delivered":
            step = next(s for s in echo["steps"] if s["status"] in ("delivered", "read"))
            events.append(outcome_event(echo, "delivered", step["channel"], at))
        elif kind == "read":
            events.append(outcome_event(echo, "read", "inbox", at))
        elif kind == "failed":
            last = echo["steps"][-1]
            events.append(outcome_event(echo, "failed", last["channel"], at,
                                        reason="every step of the plan failed; the last: " + last["status"]))
    return events


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
