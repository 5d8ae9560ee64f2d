"""A ticket's clocks: first response, keep-in-loop (next update) and resolution, their deadlines and thresholds.

Plain Python with no I/O, like the domain: the ticket, its deadline policy (the
catalogue's table, per priority and optionally per category) and the working calendar
go in; the clocks now running, the thresholds crossed and the next time to look come out.

- **first response** runs from receipt until the first staff action the resident can see
  (:attr:`Ticket.first_response_at`; the automatic acknowledgement is no staff action).
- **next update** (keep-in-loop) runs once the resident has heard from staff, from the
  last update they could see, while the ticket is open and not awaiting its callback.
- **resolution** runs from receipt (through bounces, which do not stop it; from the latest
  reopening after a callback said "not fixed") until the ticket is resolved or closed.

Critical tickets (the fast lane) count natural time, day and night; the others working
time on the calendar. Each clock warns at the catalogue's percentages (50 %, 75 %) and is
breached at 100 %; a clock is identified by its name and its start, so a new keep-in-loop
period or a reopening starts a new clock with thresholds of its own.

>>> from datetime import UTC, datetime
>>> from services.tickets.calendar import WorkingCalendar, YearCalendar
>>> from services.tickets.catalogue import Catalogue
>>> from services.tickets.domain import Ticket
>>> catalogue, calendar = Catalogue.load(), WorkingCalendar([YearCalendar.load(2026)])
>>> gas = Ticket.receive("T1", "xingqiao", catalogue.get("gas_smell"), "楼道煤气味", "3号楼", "r1", "resident",
...                      datetime(2026, 12, 5, 14, 0, tzinfo=UTC))
>>> [(c.name, c.due_at.strftime("%H:%M")) for c in running_clocks(gas, catalogue.deadline_policy("critical"), calendar)]
[('first_response', '14:30'), ('resolution', '14:00')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kernel.events import RESIDENT_VISIBLE_TICKET_EVENTS
from services.tickets.calendar import WorkingCalendar
from services.tickets.catalogue import Catalogue, DeadlinePolicy, Duration
from services.tickets.deadlines import policy_of
from services.tickets.domain import DomainEvent, State, Ticket, TicketEventType, to_json_ready

FIRST_RESPONSE, NEXT_UPDATE, RESOLUTION = "first_response", "next_update", "resolution"
CLOCKS: tuple[str, ...] = (FIRST_RESPONSE, NEXT_UPDATE, RESOLUTION)
BREACH = 100
WARNED, BREACHED = "sla.warned", "sla.breached"
NATURAL, WORKING = "natural", "working"

# No clock runs while the ticket awaits its callback (resolved) or once it is closed.
_NO_CLOCKS: frozenset[State] = frozenset({State.RESOLVED, State.CONFIRMED, State.CLOSED_NOT_FIXED})
_STAFF_ROLES = frozenset({"grid_worker", "volunteer", "secretary", "admin", "ops"})
_NATURAL_UNITS = {"minutes": "minutes", "hours": "hours", "days": "days"}


@dataclass(frozen=True)
class Clock:
    """One running clock: ``time_kind`` says whether its percentages are of natural or working time."""

    name: str
    started_at: datetime
    due_at: datetime
    time_kind: str

    def at(self, percent: int, calendar: WorkingCalendar) -> datetime:
        """When ``percent`` of the clock's time is used (100 is ``due_at``).

        >>> from services.tickets.calendar import SHANGHAI, WorkingCalendar
        >>> start = datetime(2026, 12, 4, 16, 30, tzinfo=SHANGHAI)  # a Friday: 1 h today, 1 h on Monday
        >>> clock = Clock("first_response", start, datetime(2026, 12, 7, 9, 30, tzinfo=SHANGHAI), "working")
        >>> clock.at(50, WorkingCalendar()).astimezone(SHANGHAI).strftime("%a %H:%M")
        'Fri 17:30'
        >>> clock.at(75, WorkingCalendar()).astimezone(SHANGHAI).strftime("%a %H:%M")
        'Mon 09:00'
        """
        if percent >= BREACH:
            return self.due_at
        if self.time_kind == NATURAL:
            return self.started_at + (self.due_at - self.started_at) * percent / 100
        used = calendar.working_between(self.started_at, self.due_at) * percent / 100
        return calendar.add_working(self.started_at, used)

    def thresholds(self, calendar: WorkingCalendar, percents: Iterable[int]) -> list[tuple[int, datetime]]:
        """``(percent, when)`` for each percentage, in order."""
        return [(percent, self.at(percent, calendar)) for percent in sorted(percents)]

    def key(self, ticket_id: str, percent: int) -> str:
        """What makes a threshold of this clock once-only: ticket, clock, its start and the percentage.

        >>> Clock("resolution", datetime(2026, 12, 4, tzinfo=UTC), datetime(2026, 12, 5, tzinfo=UTC), "natural"
        ...       ).key("T1", 75)
        'T1|resolution|2026-12-04T00:00:00.000+00:00|75'
        """
        return f"{ticket_id}|{self.name}|{self.started_at.astimezone(UTC).isoformat(timespec='milliseconds')}|{percent}"

    def to_view(self, calendar: WorkingCalendar, percents: Iterable[int]) -> dict[str, Any]:
        """The clock as the API shows it."""
        return {
            "clock": self.name, "time_kind": self.time_kind, "started_at": self.started_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "thresholds": [{"threshold": p, "at": when.isoformat()} for p, when in self.thresholds(calendar, percents)],
        }


@dataclass(frozen=True)
class Crossing:
    """A threshold of a running clock that the time has reached."""

    clock: Clock
    threshold: int
    at: datetime


def due_after(duration: Duration, start: datetime, calendar: WorkingCalendar) -> datetime:
    """The deadline of ``duration`` counted from ``start``, on the clock its unit names.

    >>> from services.tickets.calendar import SHANGHAI, WorkingCalendar, YearCalendar
    >>> calendar = WorkingCalendar([YearCalendar.load(2026)])
    >>> start = datetime(2026, 12, 4, 10, 0, tzinfo=SHANGHAI)
    >>> [due_after(Duration(*d), start, calendar).astimezone(SHANGHAI).strftime("%a %d %H:%M") for d in
    ...  ((30, "minutes"), (2, "working_hours"), (0, "close_of_working_day"), (1, "working_days"))]
    ['Fri 04 10:30', 'Fri 04 12:00', 'Fri 04 17:30', 'Mon 07 10:00']
    """
    unit = duration.unit
    if unit in _NATURAL_UNITS:
        return start + timedelta(**{_NATURAL_UNITS[unit]: duration.amount})
    if unit == "working_hours":
        return calendar.add_working(start, timedelta(hours=duration.amount))
    if unit == "working_days":
        return calendar.add_working_days(start, duration.amount)
    if unit == "close_of_working_day":
        return calendar.close_of_working_day(start, duration.amount)
    raise ValueError(f"unknown duration unit {unit!r}")


def policy_for(catalogue: Catalogue, priority: str, category: str | None = None,
               overrides: Mapping[tuple[str, str], DeadlinePolicy] | None = None) -> DeadlinePolicy:
    """The deadlines of a category × priority: an override an admin set, else the catalogue's for the priority.

    >>> policy_for(Catalogue.load(), "urgent", "房屋设施").first_response
    Duration(amount=2, unit='working_hours')
    """
    if overrides and category is not None and (category, priority) in overrides:
        return overrides[(category, priority)]
    return catalogue.deadline_policy(priority)


def ticket_policy(ticket: Ticket, catalogue: Catalogue) -> DeadlinePolicy:
    """The deadlines a ticket's clocks run on: the row of its category it was given when received
    (services/tickets/deadlines.py), at its priority now; the catalogue's for a ticket received before
    rows were kept. An admin's later change of the table does not move it."""
    return policy_of(ticket.deadlines, ticket.priority, catalogue)


def last_visible_update(ticket: Ticket) -> datetime | None:
    """The last time staff did something the resident could see (None before the first response).

    A timeline entry counts if a member of staff did it and it is marked for the resident
    (``visibility: "resident"``, a resident-visible comment) or, unmarked, its type is one
    residents are echoed (kernel/events).
    """
    seen = [ticket.first_response_at] if ticket.first_response_at else []
    for entry in ticket.timeline:
        if "visibility" in entry:  # a comment says whom it is for; an internal one is not an update to them
            visible = entry["visibility"] == "resident"
        else:
            visible = entry.get("type") in RESIDENT_VISIBLE_TICKET_EVENTS
        if visible and entry.get("role") in _STAFF_ROLES and isinstance(entry.get("at"), datetime):
            seen.append(entry["at"])
    return max(seen) if seen else None


def _resolution_start(ticket: Ticket) -> datetime:
    reopened = [entry["at"] for entry in ticket.timeline if entry.get("type") == TicketEventType.REOPENED.value]
    return max(reopened) if reopened else ticket.created_at


def running_clocks(ticket: Ticket, policy: DeadlinePolicy, calendar: WorkingCalendar) -> list[Clock]:
    """The clocks running on the ticket now, first response / next update / resolution in that order."""
    if ticket.state in _NO_CLOCKS:
        return []
    kind = WORKING if policy.time_kind == WORKING else NATURAL
    clocks = []
    if ticket.first_response_at is None:
        clocks.append(Clock(FIRST_RESPONSE, ticket.created_at,
                            due_after(policy.first_response, ticket.created_at, calendar), kind))
    else:
        since = last_visible_update(ticket) or ticket.first_response_at
        clocks.append(Clock(NEXT_UPDATE, since, due_after(policy.next_update, since, calendar), kind))
    start = _resolution_start(ticket)
    clocks.append(Clock(RESOLUTION, start, due_after(policy.resolution, start, calendar), kind))
    return clocks


def crossings(clocks: Iterable[Clock], calendar: WorkingCalendar, now: datetime,
              percents: Iterable[int]) -> list[Crossing]:
    """Every threshold of the clocks that ``now`` has reached, earliest first."""
    reached = [Crossing(clock, percent, at) for clock in clocks
               for percent, at in clock.thresholds(calendar, percents) if at <= now]
    return sorted(reached, key=lambda crossing: (crossing.at, crossing.threshold))


def next_check(clocks: Iterable[Clock], calendar: WorkingCalendar, now: datetime,
               percents: Iterable[int]) -> datetime | None:
    """The earliest threshold still ahead of ``now`` (None: nothing to wait for).

    A clock's thresholds never come earlier as the percentage grows, so each clock is asked only up to
    its first one ahead: at intake that is one working-time sum per clock, not one per threshold.
    """
    ordered = sorted(percents)
    firsts = (next((at for at in (clock.at(percent, calendar) for percent in ordered) if at > now), None)
              for clock in clocks)
    return min((at for at in firsts if at is not None), default=None)


def percents_of(catalogue: Catalogue) -> tuple[int, ...]:
    """The warning percentages of the catalogue and the breach.

    >>> percents_of(Catalogue.load())
    (50, 75, 100)
    """
    return (*catalogue.warnings_at_percent, BREACH)


def sla_event(ticket: Ticket, crossing: Crossing) -> DomainEvent:
    """``sla.warned`` (a warning percentage) or ``sla.breached`` (100 %) for one crossing."""
    clock = crossing.clock
    payload = {
        "ticket_id": ticket.id, "clock": clock.name, "threshold": crossing.threshold,
        "due_at": clock.due_at, "started_at": clock.started_at, "threshold_at": crossing.at,
        "time_kind": clock.time_kind, "priority": ticket.priority, "category": ticket.category,
        "state": ticket.state, "assignee": ticket.assignee,
    }
    return DomainEvent(BREACHED if crossing.threshold >= BREACH else WARNED, to_json_ready(payload))


def escalate_at_intake(ticket: Ticket, now: datetime) -> None:
    """The fast lane: a critical ticket is escalated (吹哨) to the secretary as it is received.

    The escalation is the platform's (no actor): it goes on the timeline and into the
    ticket's pending events, so it is stored with the ticket in the same write.

    >>> from services.tickets.catalogue import Catalogue
    >>> gas = Ticket.receive("T1", "xingqiao", Catalogue.load().get("gas_smell"), "煤气味", "3号楼", "r1",
    ...                      "resident", datetime(2026, 12, 5, 14, 0, tzinfo=UTC))
    >>> escalate_at_intake(gas, gas.created_at)
    >>> [event.type for event in gas.pull_events()], gas.timeline[-1]["to"]
    (['ticket.received', 'ticket.escalated'], 'secretary')
    """
    details = {"reason": "fast_lane", "to": "secretary", "service_code": ticket.service_code}
    ticket.timeline.append({"type": TicketEventType.ESCALATED.value, "at": now, "state": ticket.state.value,
                            "by": None, "role": None, **details})
    payload = {
        "ticket_id": ticket.id, "community": ticket.community, "state": ticket.state,
        "category": ticket.category, "priority": ticket.priority,
        "attached_residents": list(ticket.attached_residents), "assignee": ticket.assignee,
        "version": ticket.version, "occurred_at": now, "actor": None, **details,
    }
    ticket.pending_events.append(DomainEvent(TicketEventType.ESCALATED.value, to_json_ready(payload)))


def at_intake(ticket: Ticket) -> bool:
    """What the clocks do to a ticket just received: a fast-lane ticket is escalated at once; True if it was.

    >>> from services.tickets.catalogue import Catalogue
    >>> leak = Ticket.receive("T2", "xingqiao", Catalogue.load().get("roof_leak"), "漏水", "3号楼", "r1",
    ...                       "resident", datetime(2026, 12, 5, 14, 0, tzinfo=UTC))
    >>> at_intake(leak), [event.type for event in leak.pull_events()]
    (False, ['ticket.received'])
    """
    if not ticket.is_fast_lane:
        return False
    escalate_at_intake(ticket, ticket.created_at)
    return True
