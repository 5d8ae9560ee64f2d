"""Jepsen-style tallies: what the system acknowledged, and what became of it.

* acknowledged — logical requests answered 201 (each with a ticket id);
* lost — acknowledged, but the ticket is missing, or the reporter has no inbox
  message for it, or (platform) notify holds no delivered echo record of its ``ticket.received`` for the
  reporter (what the ticket's timeline shows as ``echo.delivered``: tickets asks notify for it);
* duplicated effects — more than one ticket for one logical request, more than
  one inbox message per (ticket, source event type, recipient), more than one
  echo record per (ticket, source event type, recipient) in notify;
* recovered — acknowledged in or after the fault, and complete;
* hung — attempts that got no answer within the load generator's timeout;
* silent — (platform) notify's silent-tickets count (``GET /api/v1/reports/silent``) once the proof
  deadline of the last ticket created has passed: a ticket change echoed to nobody and accounted for by
  no reason.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from pymongo.errors import PyMongoError

from tests.chaos.load import Attempt, LogicalRequest
from tests.chaos.systems import Store, System

COLUMNS = ("requests", "acknowledged", "unacked", "lost", "duplicated", "recovered", "retried", "hung", "silent",
           "complete_s", "drain_s")


# The suite's summary: one line per scenario run, single-node and cluster side by side (conftest prints it).
SUMMARY = ("scenario", "system", "broker", "sent", "acknowledged", "lost", "duplicates applied", "silent", "drain_s",
           "test")


def summary_table(rows: list[dict[str, str]]) -> str:
    """``rows`` (each keyed by ``SUMMARY``) as one aligned table."""
    widths = {c: max([len(c)] + [len(row.get(c, "")) for row in rows]) for c in SUMMARY}
    lines = ["  ".join(c.ljust(widths[c]) if c == "scenario" else c.rjust(widths[c]) for c in SUMMARY)]
    for row in rows:
        lines.append("  ".join(row.get(c, "").ljust(widths[c]) if c == "scenario" else row.get(c, "").rjust(widths[c])
                               for c in SUMMARY))
    return "\n".join(lines)


@dataclass
class Tally:
    scenario: str
    system: str
    requests: int = 0
    acknowledged: int = 0
    unacked: int = 0
    lost: int = 0
    duplicated: int = 0
    recovered: int = 0
    retried: int = 0
    hung: int = 0
    silent: int | None = None  # notify's silent-tickets count after the scenario (None: not read)
    proves_echoes: bool = False  # the system runs notify's reconciler: its silent count must be read, and 0
    broker: str = "1 node"  # the RabbitMQ it ran on: "1 node" or "3-node cluster"
    complete_s: float | None = None  # after the load stopped: every acknowledged request complete
    drain_s: float | None = None  # ... and no outbox, consumer queue or retry tier holds anything
    details: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    records: list[LogicalRequest] = field(default_factory=list, repr=False)  # what the load did

    def row(self) -> list[str]:
        silent = "-" if self.silent is None else str(self.silent)
        return [str(getattr(self, name)) for name in COLUMNS[:-3]] + [silent] + [
            "never" if value is None else f"{value:.1f}" for value in (self.complete_s, self.drain_s)]

    def summary(self) -> dict[str, str]:
        """This run's line in the suite's summary table (see ``SUMMARY``)."""
        return {"scenario": self.scenario, "system": self.system, "broker": self.broker,
                "sent": str(self.requests), "acknowledged": str(self.acknowledged), "lost": str(self.lost),
                "duplicates applied": str(self.duplicated), "silent": "-" if self.silent is None else str(self.silent),
                "drain_s": "never" if self.drain_s is None else f"{self.drain_s:.1f}"}

    def render(self) -> str:
        """A small table: the counts, then what they are made of, then notes."""
        widths = [max(len(c), len(v)) for c, v in zip(COLUMNS, self.row(), strict=True)]
        head = "  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths, strict=True))
        body = "  ".join(v.rjust(w) for v, w in zip(self.row(), widths, strict=True))
        lines = [f"== chaos tally: {self.scenario} [{self.system}, RabbitMQ {self.broker}]", head, body]
        if self.details:
            lines.append("   " + ", ".join(f"{k}={v}" for k, v in sorted(self.details.items())))
        lines += [f"   - {note}" for note in self.notes]
        return "\n".join(lines)


def count(scenario: str, system: System, store: Store, requests: list[LogicalRequest], drain: Drain) -> Tally:
    """Check every logical request against what the system stored."""
    tally = Tally(scenario, system.kind, requests=len(requests), complete_s=drain.complete_s,
                  drain_s=drain.drained_s, records=requests, proves_echoes=system.records_echoes,
                  broker=system.broker())
    tally.notes += drain.notes
    acknowledged = [r for r in requests if r.acknowledged]
    tally.acknowledged = len(acknowledged)
    tally.unacked = len(requests) - len(acknowledged)
    tally.retried = sum(1 for r in requests if len(r.attempts) > 1)
    tally.hung = sum(1 for r in requests for a in r.attempts if a.outcome == "timeout")
    tickets = store.tickets_by_key([r.key for r in requests])
    ticket_ids = [doc["_id"] for docs in tickets.values() for doc in docs]
    inbox = store.inbox_by_ticket(ticket_ids)
    records = store.echoes_by_ticket(ticket_ids) if system.records_echoes else None
    _count_duplicates(tally, tickets, inbox, records)
    lost_at = []
    for request in acknowledged:
        missing = _missing(request, tickets, inbox, records)
        if missing:
            tally.lost += 1
            tally.details[f"lost_{missing}"] += 1
            lost_at.append(f"{request.acknowledged_at:.2f}")
        elif request.phase != "before":
            tally.recovered += 1
    if lost_at:
        tally.notes.append(f"lost requests were acknowledged at t={', '.join(lost_at[:12])} s")
    _count_outcomes(tally, requests)
    return tally


def _missing(request: LogicalRequest, tickets: dict, inbox: dict, records: dict | None) -> str | None:
    """What an acknowledged request lacks: ``ticket``, ``inbox``, ``echo`` — or None if complete.

    ``records`` are notify's echo records by ticket (None: the system keeps none to check).
    """
    stored = [doc for doc in tickets.get(request.key, []) if doc["_id"] == request.ticket_id]
    if not stored:
        return "ticket"
    reporter = stored[0].get("reporter") or request.subject
    if not any(m["recipient"] == reporter for m in inbox.get(request.ticket_id, [])):
        return "inbox"
    if records is not None and not _delivered(records.get(request.ticket_id, []), reporter):
        return "echo"
    return None


def _delivered(records: list[dict], recipient: str) -> list[dict]:
    """The records of the ticket's ``ticket.received`` echo to ``recipient`` that say it was delivered."""
    return [record for record in records if record.get("status") == "delivered"
            and record.get("recipient") == recipient and record.get("source_event_type") == "ticket.received"]


def _count_duplicates(tally: Tally, tickets: dict, inbox: dict, records: dict | None) -> None:
    for docs in tickets.values():
        if len(docs) > 1:
            tally.duplicated += len(docs) - 1
            tally.details["dup_tickets"] += len(docs) - 1
        for doc in docs:
            per_echo = Counter((m["recipient"], m.get("source_event_type")) for m in inbox.get(doc["_id"], []))
            extra = sum(n - 1 for n in per_echo.values() if n > 1)
            tally.duplicated += extra
            tally.details["dup_inbox"] += extra
            if records is not None:
                extra = _echo_duplicates(records.get(doc["_id"], []))
                tally.duplicated += extra
                tally.details["dup_echo"] += extra
    for key in ("dup_tickets", "dup_inbox", "dup_echo"):
        if not tally.details[key]:
            del tally.details[key]


def _echo_duplicates(records: list[dict]) -> int:
    per_echo = Counter((record.get("recipient"), record.get("source_event_type")) for record in records)
    return sum(n - 1 for n in per_echo.values() if n > 1)


def _count_outcomes(tally: Tally, requests: list[LogicalRequest]) -> None:
    """What the attempts were answered with (201, 503, 504, connection, timeout ...)."""
    outcomes = Counter(a.outcome for r in requests for a in r.attempts)
    tally.notes.append("attempts: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    states = Counter(r.state for r in requests if not r.acknowledged)
    if states:
        tally.notes.append("not acknowledged: " + ", ".join(f"{k}={v}" for k, v in sorted(states.items())))


# ---------------------------------------------------------------------- waiting for the drain


def incomplete(system: System, store: Store, requests: list[LogicalRequest]) -> int:
    """Acknowledged requests whose effects are not all there yet."""
    acknowledged = [r for r in requests if r.acknowledged]
    tickets = store.tickets_by_key([r.key for r in acknowledged])
    ticket_ids = [r.ticket_id for r in acknowledged]
    inbox = store.inbox_by_ticket(ticket_ids)
    records = store.echoes_by_ticket(ticket_ids) if system.records_echoes else None
    return sum(1 for r in acknowledged if _missing(r, tickets, inbox, records))


@dataclass
class Drain:
    complete_s: float | None = None
    drained_s: float | None = None
    notes: list[str] = field(default_factory=list)


STALLED_SECONDS = 10.0


def wait_drained(system: System, store: Store, requests: list[LogicalRequest], timeout: float) -> Drain:
    """Wait until every acknowledged request is complete, no outbox holds an event and every consumer
    queue and retry tier is empty; when each happened (None: not within ``timeout``).

    Gives up early when nothing can move any more: a process is dead, or queues and outboxes have
    been empty for ``STALLED_SECONDS`` while requests stay incomplete (their effects are gone).
    """
    started = time.monotonic()
    drain, state, idle_since = Drain(), {}, None
    while time.monotonic() - started < timeout:
        if system.dead():  # nothing will drain what a dead process holds
            drain.notes.append(f"not drained: {', '.join(system.dead())} not running")
            return drain
        state = _drain_state(system, store, requests)
        if drain.complete_s is None and not state["incomplete"]:
            drain.complete_s = time.monotonic() - started
        if not any(state.values()):
            drain.drained_s = time.monotonic() - started
            return drain
        idle = not state["outbox"] and not state["queues"]
        idle_since = (idle_since or time.monotonic()) if idle else None
        if idle_since and time.monotonic() - idle_since > STALLED_SECONDS:
            drain.notes.append(f"not drained: nothing left in flight for {STALLED_SECONDS:g} s, yet {state}")
            return drain
        time.sleep(1.0)
    drain.notes.append(f"not drained after {timeout:g} s: {state}")
    return drain


def _drain_state(system: System, store: Store, requests: list[LogicalRequest]) -> dict:
    try:
        backlog = {name: n for name, n in system.backlog().items() if n}
    except Exception as error:  # the broker may still be restarting
        backlog = {"broker": repr(error)[:200]}
    try:
        return {"incomplete": incomplete(system, store, requests), "outbox": store.outbox_pending(),
                "queues": backlog}
    except PyMongoError as error:
        # The database may be restarting or too slow to answer (a query timed out at 10 s on a loaded machine):
        # not drained yet, and said so in the notes if it never answers; the final count reads it again.
        return {"incomplete": -1, "outbox": -1, "queues": {**backlog, "database": repr(error)[:200]}}


# ---------------------------------------------------------------------- did the kills land where we wanted?

def crash_evidence(system: System, store: Store, requests: list[LogicalRequest],
                   wall_began: float) -> tuple[Counter, list[str]]:
    """Signs that faults struck between a database write and its acknowledgement:
    ``written_then_unanswered(<outcome>@gw<n>)`` counts tickets stored during an attempt that then
    failed (the process died, the broker went, or the gateway dropped the answer after the write).
    Handlers are covered deterministically by ``tests.chaos.crashpoint`` (exit 137 right after a write).
    """
    evidence: Counter = Counter()
    samples: list[str] = []  # key@t of unanswered attempts, to find in the logs (X-Correlation-Id)
    acknowledged = [r for r in requests if r.acknowledged]
    tickets = store.tickets_by_key([r.key for r in acknowledged])
    for request in acknowledged:
        stored = [d for d in tickets.get(request.key, []) if d["_id"] == request.ticket_id]
        failed = stored and _failed_attempt_during(request, stored[0]["created_at"].timestamp() - wall_began)
        if failed:
            evidence[f"written_then_unanswered({failed.outcome}@gw{failed.gateway + 1})"] += 1
            samples.append(f"{request.key}@{failed.started:.1f}")
    return evidence, samples


def _failed_attempt_during(request: LogicalRequest, written_at: float) -> Attempt | None:
    """The failed attempt in whose time the ticket was written, if any."""
    for attempt in request.attempts:
        if attempt.outcome != "201" and attempt.started - 0.5 <= written_at <= attempt.started + attempt.seconds:
            return attempt
    return None
