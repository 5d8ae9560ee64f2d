"""The ticket (工单) aggregate: its states, its rules, the events it raises.

Plain Python with no I/O: the current time and the acting person are passed in,
and every change is recorded twice — a timeline entry on the ticket and a
:class:`DomainEvent` in ``pending_events`` that the caller drains with
:meth:`Ticket.pull_events` and stores with the ticket (outbox).

>>> from datetime import datetime, UTC
>>> from services.tickets.catalogue import Service
>>> leak = Service("roof_leak", "房屋漏水", "屋顶漏水", "房屋设施", "urgent")
>>> now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
>>> ticket = Ticket.receive("T1", "xingqiao", leak, "卫生间漏水", "3-2-401", "r1", "resident", now)
>>> secretary = Actor("s1", "secretary")
>>> ticket.dispatch({"kind": "worker", "id": "w1"}, now, secretary)
>>> ticket.state, ticket.status_open311, ticket.version
(<State.DISPATCHED: 'dispatched'>, 'open', 2)
>>> [event.type for event in ticket.pull_events()]
['ticket.received', 'ticket.dispatched']

The life of a ticket (DOMAIN.md)::

    received -> dispatched -> accepted -> in_progress -> resolved -> confirmed
                    ^  bounce (退单) back to received     |  ^           |
                    |                         pause  v  | resume      | callback: not fixed / partly fixed
                    +--------- dispatch ---- reopened <-(paused)       v
    any open state -> closed_not_fixed {not_responsible, no_further_action, duplicate, cancelled}

Rules where DOMAIN.md is silent are decided in the docstrings of the commands
(callbacks: :meth:`Ticket.record_callback`; bounces: :meth:`Ticket.bounce`).
"""

from __future__ import annotations

import copy
import heapq
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from operator import itemgetter
from typing import Any

from kernel.permissions import PERMISSIONS, Grant
from services.tickets.catalogue import PRIORITIES, Service

DEFAULT_ESCALATE_AFTER_BOUNCES = 2
DEFAULT_CALLBACK_ATTEMPTS = 3


class State(StrEnum):
    RECEIVED = "received"  # 受理
    DISPATCHED = "dispatched"  # 派单
    ACCEPTED = "accepted"  # 签收
    IN_PROGRESS = "in_progress"  # 办理
    PAUSED = "paused"  # 延期
    RESOLVED = "resolved"  # 办结 (provisional until the callback)
    CONFIRMED = "confirmed"  # 回访满意
    REOPENED = "reopened"  # 不满意重办
    CLOSED_NOT_FIXED = "closed_not_fixed"  # 转办/无法办理


CLOSED_STATES: frozenset[State] = frozenset({State.CONFIRMED, State.CLOSED_NOT_FIXED})
OPEN_STATES: frozenset[State] = frozenset(State) - CLOSED_STATES

OPEN311_STATUS: dict[str, str] = {
    State.RECEIVED: "open",
    State.DISPATCHED: "open",
    State.ACCEPTED: "open",
    State.IN_PROGRESS: "open",
    State.PAUSED: "open",
    State.RESOLVED: "open",
    State.CONFIRMED: "closed",
    State.REOPENED: "open",
    State.CLOSED_NOT_FIXED: "closed",
}
"""Open311 GeoReport v2 ``status`` of each state (keys are ``State``, equal to their plain strings)."""


class TicketEventType(StrEnum):
    """The types of the events a ticket records (its timeline) and publishes; see kernel.events.CATALOGUE."""

    RECEIVED = "ticket.received"
    DISPATCHED = "ticket.dispatched"
    ACCEPTED = "ticket.accepted"
    STARTED = "ticket.started"
    PAUSED = "ticket.paused"
    RESUMED = "ticket.resumed"
    RESOLVED = "ticket.resolved"
    CALLBACK_RECORDED = "ticket.callback_recorded"
    CONFIRMED = "ticket.confirmed"
    REOPENED = "ticket.reopened"
    CLOSED = "ticket.closed"
    BOUNCED = "ticket.bounced"
    ESCALATED = "ticket.escalated"
    ATTACHED = "ticket.attached"
    COMMENTED = "ticket.commented"
    MERGED = "ticket.merged"
    PLANNED = "ticket.planned"


class Role(StrEnum):
    RESIDENT = "resident"
    GRID_WORKER = "grid_worker"
    VOLUNTEER = "volunteer"
    SECRETARY = "secretary"
    ADMIN = "admin"


SOURCES: frozenset[str] = frozenset({"resident", "phone_in", "walk_in", "patrol", "hotline", "open311", "staff"})
STAFF_ENTERED_SOURCES: frozenset[str] = frozenset({"phone_in", "walk_in", "hotline"})
"""What staff may name as the source of a ticket they enter on a resident's behalf."""
VISIBILITIES: frozenset[str] = frozenset({"internal", "resident"})
MAX_ATTACHMENTS = 20  # per ticket, the report's and the comments' together
ASSIGNEE_KINDS: frozenset[str] = frozenset({"worker", "team", "unit"})
CLOSE_REASONS: frozenset[str] = frozenset({"not_responsible", "no_further_action", "duplicate", "cancelled"})

FIXED, PARTLY_FIXED, NOT_FIXED, CANT_TELL, NO_ANSWER = (
    "fixed", "partly_fixed", "not_fixed", "cant_tell", "no_answer",
)
CALLBACK_OUTCOMES: frozenset[str] = frozenset({FIXED, PARTLY_FIXED, NOT_FIXED, CANT_TELL, NO_ANSWER})
INCONCLUSIVE_OUTCOMES: frozenset[str] = frozenset({CANT_TELL, NO_ANSWER})
SATISFACTION_LEVELS: frozenset[str] = frozenset({"satisfied", "basically_satisfied", "dissatisfied"})

REVIEW_REOPENED_NOT_FIXED = "reopened_not_fixed"
REVIEW_REOPENED_PARTLY_FIXED = "reopened_partly_fixed"
REVIEW_CALLBACK_UNANSWERED = "callback_unanswered"
REVIEW_BOUNCED_REPEATEDLY = "bounced_repeatedly"


# --- who may do what -------------------------------------------------------------------------------

# The table lives in kernel/permissions (one table for every layer); the domain reads its ticket commands.
# A grid worker's grant is IF_GRID: a ticket carries no grid yet, so it reaches every ticket of the
# community (the hook: once tickets have a grid, _authorise checks it against the actor's grids).
AUTHORISATION: dict[str, dict[str, Grant]] = {
    command: PERMISSIONS[f"tickets.{command}"]
    for command in ("dispatch", "accept", "start", "pause", "resume", "resolve", "bounce", "record_callback",
                    "close_not_fixed", "attach_resident", "merge", "comment", "plan")
}
"""Command -> role -> when that role may give it. A role not listed may not give the command."""

ALLOWED_FROM: dict[str, frozenset[State]] = {
    "dispatch": frozenset({State.RECEIVED, State.REOPENED}),
    "accept": frozenset({State.DISPATCHED}),
    "start": frozenset({State.ACCEPTED}),
    "pause": frozenset({State.IN_PROGRESS}),
    "resume": frozenset({State.PAUSED}),
    "resolve": frozenset({State.IN_PROGRESS}),
    "bounce": frozenset({State.DISPATCHED, State.ACCEPTED}),
    "record_callback": frozenset({State.RESOLVED}),
    "close_not_fixed": OPEN_STATES,
    "attach_resident": OPEN_STATES,
    "merge": OPEN_STATES,
    "comment": frozenset(State),
    "plan": OPEN_STATES,
}
"""Command -> the states in which it may be given."""

ACTIONS: dict[str, str] = {
    "dispatch": "dispatch", "accept": "accept", "bounce": "bounce", "start": "start", "pause": "pause",
    "resume": "resume", "resolve": "resolve", "close": "close_not_fixed", "merge": "merge", "plan": "plan",
}
"""The actions of ``POST /tickets/{id}/actions/{action}`` -> the domain command each gives."""


# --- errors ----------------------------------------------------------------------------------------

class DomainError(Exception):
    """A command broke a rule of the domain."""


class InvalidTransition(DomainError):
    """The command is not allowed in the ticket's current state."""

    def __init__(self, current_state: str, command: str) -> None:
        self.current_state = str(current_state)
        self.command = command
        allowed = ", ".join(sorted(ALLOWED_FROM.get(command, ())))
        super().__init__(
            f"cannot {command} a ticket that is {self.current_state} (allowed when: {allowed})"
        )


class NotAllowed(DomainError):
    """The actor's role (or relation to the ticket) does not permit the command."""

    def __init__(self, actor: Actor, command: str, why: str) -> None:
        self.actor = actor
        self.command = command
        super().__init__(f"{actor.role} {actor.subject!r} may not {command}: {why}")


class NotAttached(NotAllowed):
    """A callback answer names a resident who is not attached to the ticket."""


class RequiredFieldMissing(DomainError):
    """A command was given without a value it needs."""

    def __init__(self, command: str, field_name: str) -> None:
        self.command = command
        self.field_name = field_name
        super().__init__(f"{command} needs a non-empty {field_name}")


class ReasonRequired(RequiredFieldMissing):
    """A pause, bounce or close was given without its reason."""

    def __init__(self, command: str, field_name: str = "reason") -> None:
        super().__init__(command, field_name)


class UnknownChoice(DomainError):
    """A value is not one of the allowed choices (close reason, callback outcome, source ...)."""

    def __init__(self, field_name: str, value: Any, allowed: Iterable[str]) -> None:
        self.field_name = field_name
        self.value = value
        super().__init__(f"{field_name} {value!r} is not one of: {', '.join(sorted(allowed))}")


class InvalidAssignee(DomainError):
    """An assignee must be {"kind": "worker"|"team"|"unit", "id": "..."}."""


class InvalidLocation(DomainError):
    """Latitude and longitude go together and must be in range."""


class InvalidTime(DomainError):
    """Times given to the domain must be timezone-aware."""


class RespondentRequired(DomainError):
    """Staff recording a callback on a ticket with several residents must say whose answer it is."""


class CallbackAttemptsExhausted(DomainError):
    """No further unanswered attempt may be recorded for this resident in this round."""


# --- values ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Actor:
    """Who gives a command: an authenticated subject, its role, and (volunteers) its teams."""

    subject: str
    role: str
    teams: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()  # a grid worker's grids: IF_GRID grants reach tickets in them

    def as_payload(self) -> dict[str, str]:
        return {"subject": self.subject, "role": str(self.role)}


@dataclass(frozen=True)
class DomainEvent:
    """Something that happened to a ticket; ``payload`` holds JSON-ready values only."""

    type: str
    payload: dict[str, Any]


def raise_priority(priority: str) -> str:
    """One step up, capped at critical.

    >>> raise_priority("normal"), raise_priority("critical")
    ('urgent', 'critical')
    """
    return PRIORITIES[max(PRIORITIES.index(priority) - 1, 0)]


def to_json_ready(value: Any) -> Any:
    """Datetimes become ISO-8601 UTC strings, enums their values, tuples lists; recursively."""
    if isinstance(value, datetime):
        return _utc(value, "a time").isoformat()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): to_json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_ready(item) for item in value]
    return value


# --- the aggregate ---------------------------------------------------------------------------------

@dataclass
class Ticket:
    """One resident request and everything that happened to it.

    ``version`` grows by one with every command, so a repository saves with a
    filter on the version it loaded. ``callbacks`` holds every callback attempt
    ({resident, outcome, note, satisfaction, at, by, round, attempt}); ``round``
    counts resolutions, so answers to an earlier resolution do not count again.

    ``side_entries`` are what other services did about the ticket (a volunteer's task steps), as the
    repository found them: they are not changes of the ticket, so they are recorded apart from it (one
    record per event) and never written into its document. ``echoes`` are the outcomes of the echoes sent
    about it (``echo.delivered``, ``echo.failed``, ``echo.read``): notify's records, which the service
    attaches when it shows the ticket to a caller (services/tickets/timeline.py). :attr:`history` shows
    both on the timeline.
    """

    id: str
    community: str
    service_code: str
    category: str
    priority: str
    description: str
    address_string: str | None
    source: str
    reporter: str | None
    created_at: datetime
    updated_at: datetime
    state: State = State.RECEIVED
    lat: float | None = None
    long: float | None = None
    attached_residents: list[str] = field(default_factory=list)
    assignee: dict[str, str] | None = None
    priority_raises: int = 0
    bounce_count: int = 0
    reopen_count: int = 0
    callback_round: int = 0
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    review_flags: list[str] = field(default_factory=list)
    first_response_at: datetime | None = None
    resolution_summary: str | None = None
    close_reason: str | None = None
    anonymised_at: datetime | None = None  # when the retention rule anonymised the whole ticket
    number: str | None = None  # the short number read over the phone (services/tickets/numbers.py)
    grid: str | None = None  # where it is (directory.route of its building); None: not placed
    building: str | None = None  # the directory's building code
    suggested_owner: str | None = None  # the grid's worker, proposed at intake for the dispatch
    merged_into: str | None = None  # the master ticket this duplicate was merged into
    patrol_id: str | None = None  # the patrol round whose finding this ticket is
    escalated_at: datetime | None = None  # when it was last escalated to the secretary (吹哨)
    due_at: datetime | None = None  # the resolution deadline (the clocks set it); ``overdue`` lists read it
    response_due_at: datetime | None = None  # the first-response deadline, set at intake (the 响应率 counts it)
    deadlines: dict[str, Any] | None = None  # its category's deadline row when received (deadlines.py)
    callback_due_at: datetime | None = None  # when the callback (回访) is due: set on resolve, cleared once it settles
    comments: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)  # {url, content_type, size, by, at}
    attributes: dict[str, Any] = field(default_factory=dict)  # answers to the category's questions (intake.py)
    next_step: dict[str, Any] | None = None  # {note, owner, due_at, by, at}: the dated next step
    version: int = 0
    timeline: list[dict[str, Any]] = field(default_factory=list)
    pending_events: list[DomainEvent] = field(default_factory=list, repr=False, compare=False)
    side_entries: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)
    echoes: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)

    # --- creation ---------------------------------------------------------------------------------

    @classmethod
    def receive(
        cls,
        id: str,
        community: str,
        service: Service,
        description: str,
        address_string: str | None,
        reporter: str | None,
        source: str,
        now: datetime,
        lat: float | None = None,
        long: float | None = None,
        attached_residents: Iterable[str] | None = None,
        *,
        number: str | None = None,
        grid: str | None = None,
        building: str | None = None,
        suggested_owner: str | None = None,
        attachments: Iterable[Mapping[str, Any]] = (),
        attributes: Mapping[str, Any] | None = None,
        patrol_id: str | None = None,
    ) -> Ticket:
        """A new ticket in ``received``, with the service's category and default priority.

        The reporter is the first attached resident; a patrol finding may have no reporter.
        ``grid``, ``building`` and ``suggested_owner`` come from routing (directory.route).
        """
        now = _utc(now)
        _require_text("receive", "id", id)
        _require_text("receive", "community", community)
        _require_text("receive", "description", description)
        _require_choice("source", source, SOURCES)
        _check_location(address_string, lat, long)
        ticket = cls(
            id=id, community=community, service_code=service.code, category=service.category,
            priority=service.default_priority, description=description.strip(),
            address_string=address_string, source=source, reporter=reporter,
            created_at=now, updated_at=now, lat=lat, long=long,
            attached_residents=_ordered_residents(reporter, attached_residents or ()),
            number=number, grid=grid, building=building, suggested_owner=suggested_owner, patrol_id=patrol_id,
            attributes=dict(attributes or {}),
        )
        ticket._add_attachments(attachments, now, reporter)
        ticket._touch(now)
        ticket._record(TicketEventType.RECEIVED, now, None, {"source": source}, ticket._received_payload())
        return ticket

    # --- commands ---------------------------------------------------------------------------------

    def dispatch(self, assignee: Mapping[str, str], now: datetime, actor: Actor) -> None:
        """Hand the ticket to a worker, a volunteer team or a unit (派单); from received or reopened."""
        now = self._begin("dispatch", now, actor)
        chosen = _valid_assignee(assignee)
        previous = self.state
        self._change(now, actor, State.DISPATCHED)
        self.assignee = chosen
        self._record(TicketEventType.DISPATCHED, now, actor, {"previous_state": previous.value})

    def accept(self, now: datetime, actor: Actor) -> None:
        """The assignee signs for the ticket (签收)."""
        now = self._begin("accept", now, actor)
        self._change(now, actor, State.ACCEPTED)
        self._record(TicketEventType.ACCEPTED, now, actor, {})

    def start(self, now: datetime, actor: Actor) -> None:
        """Work begins (办理)."""
        now = self._begin("start", now, actor)
        self._change(now, actor, State.IN_PROGRESS)
        self._record(TicketEventType.STARTED, now, actor, {})

    def pause(self, reason: str, now: datetime, actor: Actor, *, until: datetime | None = None) -> None:
        """Pause work with a reason the resident is told (延期); ``until`` is the expected resumption."""
        now = self._begin("pause", now, actor)
        _require_reason("pause", reason)
        expected = _utc(until, "until") if until is not None else None
        self._change(now, actor, State.PAUSED)
        self._record(TicketEventType.PAUSED, now, actor, {"reason": reason.strip(), "until": expected})

    def resume(self, now: datetime, actor: Actor) -> None:
        """Work goes on after a pause."""
        now = self._begin("resume", now, actor)
        self._change(now, actor, State.IN_PROGRESS)
        self._record(TicketEventType.RESUMED, now, actor, {})

    def resolve(self, summary: str, now: datetime, actor: Actor) -> None:
        """Staff say the work is done (办结): provisional until the residents are called back."""
        now = self._begin("resolve", now, actor)
        _require_reason("resolve", summary, "summary")
        self._change(now, actor, State.RESOLVED)
        self.callback_round += 1
        self.resolution_summary = summary.strip()
        self._record(TicketEventType.RESOLVED, now, actor, {
            "summary": self.resolution_summary, "callback_round": self.callback_round,
        })

    def schedule_callback(self, due_at: datetime) -> None:
        """When the residents are to be called back (回访): the service sets it on resolve, from the calendar."""
        self.callback_due_at = _utc(due_at, "due_at")

    def bounce(
        self, reason: str, now: datetime, actor: Actor, *,
        escalate_after: int = DEFAULT_ESCALATE_AFTER_BOUNCES,
    ) -> None:
        """Hand a wrongly dispatched ticket back (退单): an event, not a state.

        The ticket returns to ``received`` without an assignee and ``bounce_count``
        grows; the clock keeps running from receipt. From the ``escalate_after``-th
        bounce on, every bounce also raises ``ticket.escalated`` (吹哨) so the lead
        hears each time, and the ticket is flagged for the weekly review.
        """
        now = self._begin("bounce", now, actor)
        _require_reason("bounce", reason)
        if escalate_after < 1:
            raise DomainError("escalate_after must be at least 1")
        previous, bounced_from = self.state, self.assignee
        self._change(now, actor, State.RECEIVED)
        self.assignee = None
        self.bounce_count += 1
        self._record(TicketEventType.BOUNCED, now, actor, {
            "reason": reason.strip(), "bounce_count": self.bounce_count,
            "bounced_assignee": bounced_from, "previous_state": previous.value,
        })
        if self.bounce_count >= escalate_after:
            self._flag_for_review(REVIEW_BOUNCED_REPEATEDLY)
            self.escalated_at = now
            self._record(TicketEventType.ESCALATED, now, actor, {
                "reason": "bounced", "bounce_count": self.bounce_count, "threshold": escalate_after,
                "to_role": Role.SECRETARY.value,
            })

    def record_callback(
        self, outcome: str, note: str | None, now: datetime, actor: Actor, *,
        resident: str | None = None, satisfaction: str | None = None,
        max_attempts: int = DEFAULT_CALLBACK_ATTEMPTS,
    ) -> None:
        """Record one callback (回访) answer of one attached resident, in ``resolved``.

        ``resident`` is whose answer it is: a resident may answer only for
        themselves; staff may leave it out when exactly one resident is attached,
        and leave it None for a ticket nobody is attached to (a patrol finding:
        the answer is then the on-site check). Outcomes:

        - ``not_fixed``: reopened at once, priority raised one step (capped at
          critical), ``reopen_count`` + 1, flagged for the weekly review.
        - ``partly_fixed``: reopened at once at the same priority (the resident
          is not satisfied, but it is not a failure to act), ``reopen_count`` + 1,
          flagged for the weekly review.
        - ``fixed``: that resident is settled. Every attached resident gets their
          own callback, so the ticket is ``confirmed`` once every one of them is
          settled and at least one said fixed.
        - ``cant_tell`` / ``no_answer``: an attempt is recorded and the ticket
          stays resolved. After ``max_attempts`` such attempts the resident is
          settled as unreachable and no further unanswered attempt is accepted
          (a late real answer still is). If every resident ends unreachable the
          ticket stays ``resolved`` — nobody confirmed the fix, so it is not
          closed as fixed — and is flagged ``callback_unanswered`` for the
          weekly review, where the lead decides (e.g. close_not_fixed with
          ``no_further_action``).

        ``satisfaction`` (满意/基本满意/不满意) is optional and only recorded, for the 满意率.
        """
        now = _utc(now)
        respondent = self._default_respondent(actor, resident)
        self._check("record_callback", actor, respondent)
        _require_choice("outcome", outcome, CALLBACK_OUTCOMES)
        if satisfaction is not None:
            _require_choice("satisfaction", satisfaction, SATISFACTION_LEVELS)
        self._require_expected_respondent(actor, respondent)
        attempt = self._next_attempt(respondent, outcome, max_attempts)
        self._touch(now, actor)
        self.callbacks.append({
            "resident": respondent, "outcome": outcome, "note": note or "", "satisfaction": satisfaction,
            "at": now, "by": actor.subject, "round": self.callback_round, "attempt": attempt,
        })
        self._record(TicketEventType.CALLBACK_RECORDED, now, actor, {
            "resident": respondent, "outcome": outcome, "note": note or "", "satisfaction": satisfaction,
            "attempt": attempt, "callback_round": self.callback_round,
            "pending_respondents": self._respondents_in(max_attempts, "pending"),
        })
        self._follow_callback(outcome, note or "", now, actor, max_attempts)

    def close_not_fixed(
        self, reason: str, note: str | None, now: datetime, actor: Actor, *, duplicate_of: str | None = None,
    ) -> None:
        """Close without a fix (转办/无法办理), with a sub-reason from ``CLOSE_REASONS``.

        ``duplicate_of`` optionally names the master ticket when the reason is ``duplicate``.
        """
        now = self._begin("close_not_fixed", now, actor)
        _require_reason("close_not_fixed", reason)
        _require_choice("reason", reason, CLOSE_REASONS)
        self._change(now, actor, State.CLOSED_NOT_FIXED)
        self.close_reason = reason
        details = {"reason": reason, "note": note or ""}
        if duplicate_of is not None:
            details["duplicate_of"] = duplicate_of
        self._record(TicketEventType.CLOSED, now, actor, details)

    def attach_resident(self, resident_id: str, now: datetime, actor: Actor) -> None:
        """Attach another reporter of the same problem: they get their own echoes and callback.

        Attaching someone already attached changes nothing and raises no event
        (safe to repeat when a message is redelivered).
        """
        now = _utc(now)
        _require_text("attach_resident", "resident_id", resident_id)
        self._check("attach_resident", actor, resident_id)
        if resident_id in self.attached_residents:
            return
        self._touch(now, actor)
        self.attached_residents.append(resident_id)
        self._record(TicketEventType.ATTACHED, now, actor, {"resident": resident_id})

    def comment(
        self, text: str, visibility: str, now: datetime, actor: Actor, *,
        attachments: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """A note on the ticket, ``internal`` (staff only) or ``resident`` (residents see it; notify echoes it).

        A resident's comment is always resident-visible. Only a resident-visible comment of staff
        counts as a first response (the resident can see it). Returns the comment as stored.
        """
        now = _utc(now)
        _require_text("comment", "text", text)
        _require_choice("visibility", visibility, VISIBILITIES)
        self._check("comment", actor, actor.subject if actor.role == Role.RESIDENT else None)
        if actor.role == Role.RESIDENT:
            if actor.subject not in self.attached_residents:
                raise NotAllowed(actor, "comment", "a resident comments only on their own tickets")
            visibility = "resident"
        self._touch(now, actor if visibility == "resident" else None)
        stored = self._add_attachments(attachments, now, actor.subject)
        entry = {"id": f"c{len(self.comments) + 1}", "text": text.strip(), "visibility": visibility,
                 "by": actor.subject, "role": str(actor.role), "at": now, "attachments": stored}
        self.comments.append(entry)
        self._record(TicketEventType.COMMENTED, now, actor, {
            "comment_id": entry["id"], "visibility": visibility, "text": entry["text"],
            "attachments": len(stored),
        })
        return entry

    def plan(self, note: str, owner: str, due_at: datetime, now: datetime, actor: Actor) -> None:
        """The dated next step (下一步) with its owner: what 日清 asks of every open ticket. Internal."""
        now = _utc(now)
        self._check("plan", actor)
        _require_text("plan", "note", note)
        _require_text("plan", "owner", owner)
        due = _utc(due_at, "due_at")
        self._touch(now)
        self.next_step = {"note": note.strip(), "owner": owner, "due_at": due, "by": actor.subject, "at": now}
        self._record(TicketEventType.PLANNED, now, actor, {"note": note.strip(), "owner": owner, "due_at": due})

    def check_merge_target(self, duplicate: Ticket, actor: Actor) -> None:
        """Whether this ticket may become the master of ``duplicate`` (the actor may merge both, it is open)."""
        self._check("merge", actor)
        if duplicate.id == self.id:
            raise DomainError("a ticket cannot be merged into itself")
        if duplicate.community != self.community:
            raise DomainError("tickets of two communities cannot be merged")
        if self.merged_into is not None:
            raise DomainError(f"ticket {self.id} was itself merged into {self.merged_into}: merge into that one")

    def merge_into(self, master: Ticket, now: datetime, actor: Actor) -> None:
        """Close this ticket as a duplicate of ``master`` (合并): the first half of a merge.

        The ticket closes (``closed_not_fixed``, reason ``duplicate``) with ``merged_into`` set, and
        raises ``ticket.merged`` carrying its residents; the master then takes them with
        :meth:`absorb` — at once, and again by the handler of ``ticket.merged`` (converging events:
        see ``TicketsService.merge``). Views of a merged ticket show the master's status.
        """
        now = self._begin("merge", now, actor)
        master.check_merge_target(self, actor)
        self._change(now, actor, State.CLOSED_NOT_FIXED)
        self.close_reason = "duplicate"
        self.merged_into = master.id
        self._record(TicketEventType.MERGED, now, actor, {"master_id": master.id, "master_number": master.number})

    def absorb(self, duplicate_id: str, residents: Iterable[str], now: datetime, actor: Actor) -> list[str]:
        """The master's half of a merge: every resident of the duplicate attached, each once; who was new.

        Authorised when the merge was (:meth:`merge_into` checks both tickets), and allowed in any
        state, so a redelivered ``ticket.merged`` always converges. Repeating it changes nothing.
        """
        now = _utc(now)
        added = [who for who in dict.fromkeys(residents) if who and who not in self.attached_residents]
        for resident in added:
            self._touch(now)
            self.attached_residents.append(resident)
            self._record(TicketEventType.ATTACHED, now, actor, {"resident": resident, "merged_from": duplicate_id})
        return added

    def allowed_actions(self, actor: Actor) -> list[str]:
        """The actions (``ACTIONS``' names) ``actor`` may give now, in the ticket's state.

        >>> from services.tickets.catalogue import Service
        >>> leak = Service("roof_leak", "房屋漏水", "屋顶漏水", "房屋设施", "urgent")
        >>> now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
        >>> ticket = Ticket.receive("T1", "xingqiao", leak, "卫生间漏水", "3-2-401", "r1", "resident", now)
        >>> ticket.allowed_actions(Actor("s1", "secretary"))
        ['dispatch', 'close', 'merge', 'plan']
        >>> ticket.allowed_actions(Actor("r1", "resident"))
        []
        """
        allowed = []
        for action, command in ACTIONS.items():
            try:
                self._check(command, actor)
            except DomainError:
                continue
            allowed.append(action)
        return allowed

    def may(self, command: str, actor: Actor) -> bool:
        """Whether ``actor``'s role and relation to the ticket permit ``command`` (whatever the state)."""
        try:
            self._authorise(command, actor, actor.subject if actor.role == Role.RESIDENT else None)
        except NotAllowed:
            return False
        return True

    def _add_attachments(self, attachments: Iterable[Mapping[str, Any]], now: datetime,
                         by: str | None) -> list[dict[str, Any]]:
        """References (URL, type, size) only: the request schema checks their limits; here their number."""
        added = [{"url": item["url"], "content_type": item["content_type"], "size": int(item["size"]),
                  "by": by, "at": now} for item in attachments]
        if len(self.attachments) + len(added) > MAX_ATTACHMENTS:
            raise DomainError(f"a ticket holds at most {MAX_ATTACHMENTS} attachments")
        self.attachments.extend(added)
        return [dict(item) for item in added]

    # --- personal data (PIPL) ----------------------------------------------------------------------

    @property
    def people(self) -> list[str]:
        """Every resident id the ticket names (reporter, attached, callback respondents), each once."""
        named = [self.reporter, *self.attached_residents, *(entry.get("resident") for entry in self.callbacks)]
        return list(dict.fromkeys(who for who in named if who))

    def anonymise(self, pseudonyms: Mapping[str, str], now: datetime, *, whole: bool = False) -> bool:
        """Erase personal data while the ticket keeps counting: True if anything changed.

        ``pseudonyms`` maps each resident to erase to an id that links to nobody (the caller
        makes a fresh one per ticket, so two anonymised tickets cannot be tied together).
        Each such resident's id is replaced wherever the ticket names them, and their free
        text (callback notes, and the description if they reported the ticket) becomes
        :data:`ERASED_NOTE`. If the reporter is erased, or ``whole`` is set (the retention rule:
        every person on a closed ticket), the address keeps only its building
        (:func:`impersonal_address`) and lat/long go. State, category, priority, times,
        assignee and the timeline's entries stay, so the ticket keeps counting in the rates.
        A second call with the same residents finds nothing to change (idempotent).
        ``updated_at`` does not move (it dates the ticket's own history); ``version`` does,
        so a concurrent save from an older read fails instead of writing the data back.
        """
        now = _utc(now)
        before = self.to_document()
        erased = {who: pseudonym for who, pseudonym in pseudonyms.items() if who and who in self._mentions()}
        notes = {entry["note"] for entry in self.callbacks if entry.get("resident") in erased and entry.get("note")}
        if whole or self.reporter in erased:
            self.description = ERASED_NOTE
            self.address_string = impersonal_address(self.address_string)
            self.lat = self.long = None
            self.attributes = {}  # a text answer may say anything the description did
        if whole:
            notes |= {entry["note"] for entry in self.callbacks if entry.get("note")}
        for entry in self.callbacks:
            if entry.get("note") in notes:
                entry["note"] = ERASED_NOTE
        self.reporter = erased.get(self.reporter, self.reporter)
        self.attached_residents = [erased.get(who, who) for who in self.attached_residents]
        self.callbacks = [_renamed(entry, erased) for entry in self.callbacks]
        self.attachments = [_renamed(entry, erased) for entry in self.attachments]  # who uploaded a photo
        texts = {entry["text"] for entry in self.comments
                 if entry.get("by") in erased or (whole and entry.get("role") == Role.RESIDENT)}
        self.comments = [_renamed({**entry, "text": ERASED_NOTE} if entry["text"] in texts else entry, erased)
                         for entry in self.comments]
        self.timeline = [{**entry, "text": ERASED_NOTE} if entry.get("text") in texts else entry
                         for entry in self.timeline]
        self.timeline = [_renamed(_without_notes(entry, notes), erased) for entry in self.timeline]
        if whole and self.anonymised_at is None:
            self.anonymised_at = now
        changed = self.to_document() != before
        if changed:
            self.version += 1
        return changed

    def _mentions(self) -> set[str]:
        named = set(self.people)
        for entry in self.timeline:
            named.update(value for key, value in entry.items() if key in _PERSON_KEYS and isinstance(value, str))
        return named

    def pull_events(self) -> list[DomainEvent]:
        """The events raised since the last call, oldest first; the list is emptied."""
        events, self.pending_events = self.pending_events, []
        return events

    # --- views ------------------------------------------------------------------------------------

    @property
    def status_open311(self) -> str:
        return OPEN311_STATUS[self.state]

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def is_fast_lane(self) -> bool:
        """Critical tickets run on the fast lane (minute-level natural-time deadlines)."""
        return self.priority == PRIORITIES[0]

    @property
    def flagged_for_review(self) -> bool:
        return bool(self.review_flags)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The timeline as people see it: the ticket's own entries, its side entries and its echoes, in time
        order (``at``).

        The timeline keeps its own order; each side entry or echo goes after the entries that are
        not later than it (an echo follows what it echoes, even within the same millisecond).
        An entry the timeline holds already (an echo recorded in the document before echoes had
        records of their own) shows once.

        >>> from services.tickets.catalogue import Service
        >>> leak = Service("roof_leak", "房屋漏水", "屋顶漏水", "房屋设施", "urgent")
        >>> now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
        >>> ticket = Ticket.receive("T1", "xingqiao", leak, "卫生间漏水", "3-2-401", "r1", "resident", now)
        >>> ticket.echoes = [{"type": "echo.delivered", "at": now, "event_id": "e1"}]
        >>> [entry["type"] for entry in ticket.history], len(ticket.timeline)
        (['ticket.received', 'echo.delivered'], 1)
        """
        recorded = {entry["event_id"] for entry in self.timeline if "event_id" in entry}
        apart = sorted((entry for entry in [*self.side_entries, *self.echoes]
                        if entry.get("event_id") not in recorded), key=_AT)
        return list(heapq.merge(self.timeline, apart, key=_AT))

    # --- persistence mapping ----------------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        """A plain dict for the repository: ``_id`` is the ticket id, datetimes stay datetimes.

        ``side_entries`` and ``echoes`` stay out: a ticket saved after one neither copies it into its
        timeline nor loses it (it has its own record).
        """
        document = {name: _copied(getattr(self, name)) for name in _DOCUMENT_FIELDS}
        document["state"] = self.state.value
        return {"_id": self.id, **document}

    @classmethod
    def from_document(cls, document: Mapping[str, Any], side_entries: Iterable[Mapping[str, Any]] = ()) -> Ticket:
        """The ticket a document describes; naive datetimes (as pymongo returns them) are read as UTC.

        Keys the ticket does not know (an outbox, for example) are ignored. ``side_entries``
        are the ticket's records apart from the document (see :attr:`history`).
        """
        known = [name for name in _DOCUMENT_FIELDS if name in document]
        values = {name: _aware(_copied(document[name])) for name in known}
        values["state"] = State(document["state"])
        return cls(id=document["_id"], side_entries=[_aware(dict(entry)) for entry in side_entries], **values)

    # --- internals --------------------------------------------------------------------------------

    def _begin(self, command: str, now: datetime, actor: Actor) -> datetime:
        checked_now = _utc(now)
        self._check(command, actor)
        return checked_now

    def _check(self, command: str, actor: Actor, resident: str | None = None) -> None:
        self._authorise(command, actor, resident)
        if self.state not in ALLOWED_FROM[command]:
            raise InvalidTransition(self.state, command)

    def _authorise(self, command: str, actor: Actor, resident: str | None) -> None:
        grant = AUTHORISATION[command].get(actor.role)
        if grant is None:
            raise NotAllowed(actor, command, f"the role {actor.role!r} may not")
        if grant is Grant.IF_GRID and self.grid is not None and self.grid not in actor.grids:
            raise NotAllowed(actor, command, f"the ticket is in grid {self.grid}, not one of theirs")
        if grant is Grant.IF_ASSIGNED and not self._is_assigned_to(actor):
            raise NotAllowed(actor, command, "the ticket is not dispatched to them or their team")
        if grant is Grant.IF_SELF and resident != actor.subject:
            raise NotAllowed(actor, command, "a resident may only act for themselves")

    def _is_assigned_to(self, actor: Actor) -> bool:
        if self.assignee is None:
            return False
        kind, assignee_id = self.assignee["kind"], self.assignee["id"]
        return (kind == "team" and assignee_id in actor.teams) or (
            kind == "worker" and assignee_id == actor.subject
        )

    def _touch(self, now: datetime, actor: Actor | None = None) -> None:
        self.version += 1
        self.updated_at = now
        if actor is not None and actor.role != Role.RESIDENT and self.first_response_at is None:
            self.first_response_at = now

    def _change(self, now: datetime, actor: Actor, state: State) -> None:
        self._touch(now, actor)
        self.state = state

    def _record(
        self, event_type: TicketEventType, now: datetime, actor: Actor | None,
        details: dict[str, Any], payload: dict[str, Any] | None = None,
    ) -> None:
        self.timeline.append({
            "type": event_type.value, "at": now, "state": self.state.value,
            "by": actor.subject if actor else None, "role": str(actor.role) if actor else None,
            **copy.deepcopy(details),
        })
        payload = payload if payload is not None else {**self._common_payload(now, actor), **details}
        self.pending_events.append(DomainEvent(event_type.value, to_json_ready(payload)))

    def _common_payload(self, now: datetime, actor: Actor | None) -> dict[str, Any]:
        return {
            "ticket_id": self.id, "number": self.number, "grid": self.grid,
            "community": self.community, "state": self.state,
            "service_code": self.service_code, "category": self.category, "priority": self.priority,
            "attached_residents": list(self.attached_residents), "assignee": self.assignee,
            "version": self.version, "occurred_at": now,
            "actor": actor.as_payload() if actor else None,
        }

    def _received_payload(self) -> dict[str, Any]:
        """Exactly the keys of ticket.received v3 in kernel/events.py (its schema rejects others)."""
        return {
            "ticket_id": self.id, "state": self.state, "service_code": self.service_code,
            "category": self.category, "priority": self.priority, "reporter": self.reporter,
            "attached_residents": list(self.attached_residents), "description": self.description,
            "address_string": self.address_string, "lat": self.lat, "long": self.long,
            "source": self.source, "created_at": self.created_at,
            "number": self.number, "grid": self.grid, "building": self.building,
        }

    def _flag_for_review(self, flag: str) -> None:
        if flag not in self.review_flags:
            self.review_flags.append(flag)

    # --- callbacks --------------------------------------------------------------------------------

    def _default_respondent(self, actor: Actor, resident: str | None) -> str | None:
        if resident is not None:
            return resident
        if actor.role == Role.RESIDENT:
            return actor.subject
        return self.attached_residents[0] if len(self.attached_residents) == 1 else None

    def _require_expected_respondent(self, actor: Actor, respondent: str | None) -> None:
        if respondent is None and self.attached_residents:
            raise RespondentRequired(
                f"ticket {self.id} has {len(self.attached_residents)} attached residents; say whose answer"
            )
        if respondent is not None and respondent not in self.attached_residents:
            raise NotAttached(actor, "record_callback", f"{respondent!r} is not attached to ticket {self.id}")

    def _answers_of(self, respondent: str | None) -> list[dict[str, Any]]:
        return [entry for entry in self.callbacks
                if entry["round"] == self.callback_round and entry["resident"] == respondent]

    def _next_attempt(self, respondent: str | None, outcome: str, max_attempts: int) -> int:
        answers = self._answers_of(respondent)
        unanswered = sum(entry["outcome"] in INCONCLUSIVE_OUTCOMES for entry in answers)
        if outcome in INCONCLUSIVE_OUTCOMES and unanswered >= max_attempts:
            raise CallbackAttemptsExhausted(
                f"{max_attempts} unanswered callback attempts already recorded for {respondent!r}"
            )
        return len(answers) + 1

    def _respondent_status(self, respondent: str | None, max_attempts: int) -> str:
        answers = self._answers_of(respondent)
        if any(entry["outcome"] == FIXED for entry in answers):
            return "fixed"
        unanswered = sum(entry["outcome"] in INCONCLUSIVE_OUTCOMES for entry in answers)
        return "unreachable" if unanswered >= max_attempts else "pending"

    def _respondents_in(self, max_attempts: int, status: str) -> list[str | None]:
        expected = self.attached_residents or [None]
        return [who for who in expected if self._respondent_status(who, max_attempts) == status]

    def _follow_callback(
        self, outcome: str, note: str, now: datetime, actor: Actor, max_attempts: int,
    ) -> None:
        if outcome in (NOT_FIXED, PARTLY_FIXED):
            self._reopen(outcome, note, now, actor)
        elif not self._respondents_in(max_attempts, "pending"):
            self._settle_callbacks(now, actor, max_attempts)

    def _reopen(self, outcome: str, note: str, now: datetime, actor: Actor) -> None:
        previous = self.priority
        if outcome == NOT_FIXED:
            self.priority = raise_priority(self.priority)
        self.priority_raises += int(self.priority != previous)
        self.reopen_count += 1
        self.state = State.REOPENED
        self.callback_due_at = None  # the round's callback is over: the next resolve schedules another
        self._flag_for_review(f"reopened_{outcome}")
        self._record(TicketEventType.REOPENED, now, actor, {
            "outcome": outcome, "note": note, "previous_priority": previous,
            "priority_raised": self.priority != previous, "reopen_count": self.reopen_count,
        })

    def _settle_callbacks(self, now: datetime, actor: Actor, max_attempts: int) -> None:
        fixed_by = self._respondents_in(max_attempts, "fixed")
        if not fixed_by:
            self._flag_for_review(REVIEW_CALLBACK_UNANSWERED)
            return
        self.state = State.CONFIRMED
        self.callback_due_at = None
        self._record(TicketEventType.CONFIRMED, now, actor, {
            "callback_round": self.callback_round, "fixed_by": fixed_by,
            "unreachable": self._respondents_in(max_attempts, "unreachable"),
        })


ERASED_NOTE = "（该内容已按个人信息保护要求删除）"
"""What replaces free text an erased resident wrote (PIPL: the text goes, the record stays)."""

# Keys under which a timeline entry or an event payload names a person, directly or in a list.
_PERSON_KEYS = frozenset({"by", "resident", "reporter", "subject"})
_PEOPLE_KEYS = frozenset({"attached_residents", "fixed_by", "unreachable", "pending_respondents"})
_BUILDING = re.compile(r"^(.*?(?:\d+|[一二三四五六七八九十百]+)\s*(?:号楼|号院|栋|幢|座|楼))")
_UNIT_ROOM = re.compile(r"^\s*(\d+)\s*[-－]\s*\d+\s*[-－]\s*\d+")


def impersonal_address(address: str | None) -> str | None:
    """An address cut to the building: no unit, no room (rooms identify households).

    >>> impersonal_address("兴乔小区3号楼2单元401"), impersonal_address("3-2-401")
    ('兴乔小区3号楼', '3号楼')
    >>> impersonal_address("体育场街道5幢1单元302室"), impersonal_address("兴乔小区3号楼")
    ('体育场街道5幢', '兴乔小区3号楼')
    >>> impersonal_address("张大爷家门口"), impersonal_address(None)
    ('（地址已隐去）', None)
    """
    if address is None:
        return None
    building = _BUILDING.match(address)
    if building:
        return building.group(1).strip()
    unit_room = _UNIT_ROOM.match(address)
    if unit_room:
        return f"{unit_room.group(1)}号楼"
    return ADDRESS_REMOVED


ADDRESS_REMOVED = "（地址已隐去）"


def anonymised_payload(payload: Mapping[str, Any], pseudonyms: Mapping[str, str], *, whole: bool = False
                       ) -> dict[str, Any]:
    """An event payload of the ticket with the same rule as :meth:`Ticket.anonymise` (for its outbox).

    >>> payload = anonymised_payload({"reporter": "p-1", "attached_residents": ["p-1", "p-2"],
    ...     "description": "漏水", "address_string": "3-2-401", "lat": 30.1, "long": 120.1}, {"p-1": "anon-x"})
    >>> payload["reporter"], payload["attached_residents"], payload["address_string"], payload["lat"]
    ('anon-x', ['anon-x', 'p-2'], '3号楼', None)
    >>> payload["description"] == ERASED_NOTE
    True
    """
    result = _renamed(dict(payload), pseudonyms)
    if isinstance(result.get("actor"), Mapping):
        result["actor"] = _renamed(dict(result["actor"]), pseudonyms)
    if whole or payload.get("reporter") in pseudonyms:
        if "description" in result:
            result["description"] = ERASED_NOTE
        if "address_string" in result:
            result["address_string"] = impersonal_address(result["address_string"])
        for key in ("lat", "long"):
            if key in result:
                result[key] = None
    if "note" in result and result["note"] and (whole or payload.get("resident") in pseudonyms):
        result["note"] = ERASED_NOTE
    return result


def _renamed(entry: Mapping[str, Any], pseudonyms: Mapping[str, str]) -> dict[str, Any]:
    renamed = dict(entry)
    for key, value in entry.items():
        if key in _PERSON_KEYS and isinstance(value, str):
            renamed[key] = pseudonyms.get(value, value)
        elif key in _PEOPLE_KEYS and isinstance(value, list):
            renamed[key] = [pseudonyms.get(who, who) if isinstance(who, str) else who for who in value]
    return renamed


def _without_notes(entry: Mapping[str, Any], notes: set[str]) -> dict[str, Any]:
    if entry.get("note") in notes:
        return {**entry, "note": ERASED_NOTE}
    return dict(entry)


_DOCUMENT_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(Ticket) if f.name not in ("id", "pending_events", "side_entries", "echoes")
)
_AT = itemgetter("at")


# --- helpers ---------------------------------------------------------------------------------------

def _utc(moment: datetime, what: str = "now") -> datetime:
    """Aware UTC at millisecond precision (what MongoDB keeps), so documents round-trip exactly."""
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidTime(f"{what} must be a timezone-aware datetime, not {moment!r}")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _aware(value: Any) -> Any:
    """Naive datetimes (pymongo's default) read as UTC, recursively through lists and dicts."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, dict):
        return {key: _aware(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_aware(item) for item in value]
    return value


def _require_text(command: str, field_name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise RequiredFieldMissing(command, field_name)


def _require_reason(command: str, value: Any, field_name: str = "reason") -> None:
    if not isinstance(value, str) or not value.strip():
        raise ReasonRequired(command, field_name)


def _require_choice(field_name: str, value: Any, allowed: Iterable[str]) -> None:
    if value not in allowed:
        raise UnknownChoice(field_name, value, allowed)


def _check_location(address_string: str | None, lat: float | None, long: float | None) -> None:
    if (lat is None) != (long is None):
        raise InvalidLocation("lat and long go together")
    if lat is not None and not (-90 <= lat <= 90 and -180 <= long <= 180):
        raise InvalidLocation(f"lat {lat}, long {long} is not a place on Earth")
    if lat is None and not (address_string and address_string.strip()):
        raise RequiredFieldMissing("receive", "address_string (or lat and long)")


def _valid_assignee(assignee: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(assignee, Mapping) or assignee.get("kind") not in ASSIGNEE_KINDS:
        raise InvalidAssignee(f"assignee kind must be one of {sorted(ASSIGNEE_KINDS)}, got {assignee!r}")
    if not isinstance(assignee.get("id"), str) or not assignee["id"].strip():
        raise InvalidAssignee(f"assignee needs a non-empty id, got {assignee!r}")
    return {"kind": assignee["kind"], "id": assignee["id"]}


def _ordered_residents(reporter: str | None, others: Iterable[str]) -> list[str]:
    """Reporter first, then the others, each once."""
    return list(dict.fromkeys(resident for resident in (reporter, *others) if resident))


def _copied(value: Any) -> Any:
    """A copy that shares nothing mutable with ``value``; strings, numbers and datetimes are shared as they are.

    >>> flags, state = ["reopened"], "received"
    >>> _copied(flags) is flags, _copied(flags) == flags, _copied(state) is state
    (False, True, True)
    """
    if isinstance(value, dict):  # a ticket's data is plain (dicts, lists, sets of scalars): no deepcopy's memo
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return set(value) if isinstance(value, set) else value
