"""The catalogue of events: every type, its versions, its payload schema, its consumers.

The one place that says what may be published and who listens; publishers validate against it, consumers
validate and upcast (docs/architecture.md, "The event envelope and catalogue").

>>> wire = {"ticket_id": "T1", "state": "received", "reporter": "r1", "service_code": "roof_leak",
...         "category": "房屋设施", "priority": "normal", "description": "漏水", "address_string": "3-2-401",
...         "source": "resident", "created_at": "2026-11-26T08:00:00+00:00"}
>>> version, payload = upcast("ticket.received", 1, wire)
>>> version, payload["attached_residents"], payload["number"]
(3, ['r1'], None)
>>> subscription("notify.ticket_events").queue
'huisheng.notify.ticket_events'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from marshmallow import INCLUDE, Schema, fields, validate

from kernel.envelope import Envelope, MalformedEvent

__all__ = ["CATALOGUE", "SUBSCRIPTIONS", "EventType", "Subscription", "UnknownEventType", "current_version",
           "subscription", "upcast", "validate_incoming", "validate_outgoing"]

TICKET_STATES = (
    "received", "dispatched", "accepted", "in_progress", "paused", "resolved",
    "confirmed", "reopened", "closed_not_fixed",
)


class UnknownEventType(MalformedEvent):
    """An event type (or version) the catalogue does not know."""


# --- payload schemas -------------------------------------------------------------------------------
# A payload with a key its schema does not name is refused (marshmallow's default), except a ticket
# transition's, which adds details of its own.

class TicketEventPayload(Schema):
    """What every ticket event carries; transitions add their own details (reason, assignee ...)."""

    class Meta:
        unknown = INCLUDE

    ticket_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(TICKET_STATES))
    attached_residents = fields.List(fields.String(), required=True)


class TicketReceivedV1(Schema):
    """Version 1 had a single reporter and no list of attached residents."""

    ticket_id = fields.String(required=True)
    state = fields.String(required=True)
    service_code = fields.String(required=True)
    category = fields.String(required=True)
    priority = fields.String(required=True)
    description = fields.String(required=True)
    address_string = fields.String(load_default=None, allow_none=True)
    lat = fields.Float(load_default=None, allow_none=True)
    long = fields.Float(load_default=None, allow_none=True)
    source = fields.String(required=True)
    reporter = fields.String(allow_none=True, load_default=None)
    created_at = fields.String(required=True)


class TicketReceivedV2(TicketReceivedV1):
    """Version 2: every resident attached to the ticket gets echoes (duplicates attach reporters)."""

    attached_residents = fields.List(fields.String(), required=True)


class TicketReceivedV3(TicketReceivedV2):
    """Version 3: the short number read over the phone, and where routing placed it (grid, building)."""

    number = fields.String(required=True, allow_none=True)
    grid = fields.String(required=True, allow_none=True)
    building = fields.String(required=True, allow_none=True)


class PatrolRecordedV1(Schema):
    """A grid worker's round (巡查): what was checked, and the tickets its findings became (none is fine)."""

    patrol_id = fields.String(required=True)
    grid = fields.String(required=True)
    worker = fields.String(required=True)
    started_at = fields.String(required=True)
    ended_at = fields.String(load_default=None, allow_none=True)
    checked = fields.List(fields.String(), required=True)
    findings = fields.Integer(required=True)
    ticket_ids = fields.List(fields.String(), required=True)


class TicketSilentV1(Schema):
    """A resident-relevant ticket change whose echo was neither delivered nor accounted for in time."""

    ticket_id = fields.String(required=True)
    echo_id = fields.String(required=True)
    recipient = fields.String(required=True)
    source_event_id = fields.String(required=True)
    source_event_type = fields.String(required=True)
    occurred_at = fields.String(required=True)
    proof_due_at = fields.String(required=True)
    status = fields.String(required=True)
    channel = fields.String(required=True)


class BroadcastRequestedV1(Schema):
    """Staff asked for a notice to a segment of the community; notify fans it out in batches."""

    broadcast_id = fields.String(required=True)
    segment = fields.Dict(required=True)
    critical = fields.Boolean(required=True)


class ResidentErasedV1(Schema):
    """A resident asked to be forgotten; consumers erase or anonymise what they hold about them."""

    resident_id = fields.String(required=True, validate=validate.Length(min=1))
    erased_at = fields.String(required=True)


class SlaThresholdV1(Schema):
    """A ticket's clock reached a threshold: a warning (50 %, 75 %) or its deadline (100 %, a breach)."""

    ticket_id = fields.String(required=True)
    clock = fields.String(required=True, validate=validate.OneOf(("first_response", "next_update", "resolution")))
    threshold = fields.Integer(required=True, strict=True, validate=validate.Range(1, 100))
    due_at = fields.String(required=True)
    started_at = fields.String(required=True)
    threshold_at = fields.String(required=True)
    time_kind = fields.String(required=True, validate=validate.OneOf(("natural", "working")))
    priority = fields.String(required=True)
    category = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(TICKET_STATES))
    assignee = fields.Dict(load_default=None, allow_none=True)


class VolunteerRegisteredV1(Schema):
    """A person joined the volunteer registry (or changed their registration); no name or phone travels."""

    volunteer_id = fields.String(required=True)
    grid = fields.String(required=True, allow_none=True)
    teams = fields.List(fields.String(), required=True)
    skills = fields.List(fields.String(), required=True)
    party_member = fields.Boolean(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("active", "paused")))
    at = fields.String(required=True)


class VolunteerTaskV1(Schema):
    """One step of a volunteer task (a ticket's or a 微心愿's): offered, accepted, declined, checked in or out.

    ``ticket_id`` is what residents' echoes and the ticket's timeline file it under: the ticket's id, or the
    wish's for a wish (``subject`` says which). ``reason`` is a decline's (``declined``/``timed_out``);
    ``check_in_code`` goes to the resident with the acceptance and nowhere else.
    """

    assignment_id = fields.String(required=True)
    subject = fields.String(required=True, validate=validate.OneOf(("ticket", "wish")))
    ticket_id = fields.String(required=True)
    number = fields.String(load_default=None, allow_none=True)
    volunteer_id = fields.String(required=True)
    team = fields.String(load_default=None, allow_none=True)
    attached_residents = fields.List(fields.String(), required=True)
    at = fields.String(required=True)
    reasons = fields.List(fields.String(), load_default=list)
    reason = fields.String(load_default=None, allow_none=True)
    check_in_code = fields.String(load_default=None, allow_none=True)
    minutes = fields.Integer(load_default=None, allow_none=True)
    auto_closed = fields.Boolean(load_default=False)
    confirmed_by = fields.String(load_default=None, allow_none=True)


class WishV1(Schema):
    """A resident's 微心愿: published, claimed, fulfilled (``ticket_id`` is the wish's id, for echoes)."""

    wish_id = fields.String(required=True)
    ticket_id = fields.String(required=True)
    resident = fields.String(required=True)
    attached_residents = fields.List(fields.String(), required=True)
    title = fields.String(required=True)
    skill = fields.String(load_default=None, allow_none=True)
    grid = fields.String(load_default=None, allow_none=True)
    volunteer_id = fields.String(load_default=None, allow_none=True)
    at = fields.String(required=True)


# --- the catalogue ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventType:
    """One event type: its schema per version and how to lift each old version one step up."""

    name: str
    schemas: dict[int, type[Schema]]
    upcasters: dict[int, Callable[[dict], dict]]  # from version n to n + 1
    description: str = ""

    @property
    def current(self) -> int:
        return max(self.schemas)


def _v1_to_v2_attached(payload: dict) -> dict:
    reporter = payload.get("reporter")
    return {**payload, "attached_residents": [reporter] if reporter else []}


def _v2_to_v3_placed(payload: dict) -> dict:
    return {"number": None, "grid": None, "building": None, **payload}


# Every type but ticket.received has one version: its schema and what it means.
_ONE_VERSION: dict[str, tuple[type[Schema], str]] = {
    "ticket.dispatched": (TicketEventPayload, "handed to a grid worker, a volunteer team or a unit (派单)"),
    "ticket.accepted": (TicketEventPayload, "the assignee signed for it (签收)"),
    "ticket.started": (TicketEventPayload, "work began (办理)"),
    "ticket.paused": (TicketEventPayload, "paused with a reason the resident is told (延期)"),
    "ticket.resumed": (TicketEventPayload, "work resumed after a pause"),
    "ticket.resolved": (TicketEventPayload, "staff say it is done; provisional until the callback (办结)"),
    "ticket.confirmed": (TicketEventPayload, "the resident confirmed the fix at callback (回访满意)"),
    "ticket.reopened": (TicketEventPayload, "the resident said not fixed; priority raised (不满意重办)"),
    "ticket.closed": (TicketEventPayload, "closed without a fix, with a reason (转办/无法办理)"),
    "ticket.bounced": (TicketEventPayload, "handed back as wrongly dispatched (退单); the clock keeps running"),
    "ticket.escalated": (TicketEventPayload, "escalated after repeated bounces (吹哨)"),
    "ticket.attached": (TicketEventPayload, "another resident reported the same problem and was attached"),
    "ticket.callback_recorded": (TicketEventPayload, "a callback attempt was recorded"),
    "ticket.commented": (TicketEventPayload,
                         "a comment, internal or resident-visible (resident-visible ones are echoed)"),
    "ticket.merged": (TicketEventPayload,
                      "closed as a duplicate of a master ticket, which takes its residents (合并)"),
    "ticket.planned": (TicketEventPayload, "a dated next step with its owner was set (日清)"),
    "sla.warned": (SlaThresholdV1, "a ticket's first-response, keep-in-loop or resolution clock used a warning "
                                   "share of its time (50 %, 75 %)"),
    "sla.breached": (SlaThresholdV1, "a ticket's clock passed its deadline (100 %)"),
    "ticket.silent": (TicketSilentV1, "notify's reconciler found a ticket change whose echo was not delivered, "
                                      "nor a reason recorded, in time"),
    "broadcast.requested": (BroadcastRequestedV1,
                            "staff asked for a notice to a segment (a grid, a building, residents over 60 ...)"),
    "patrol.recorded": (PatrolRecordedV1, "a grid worker recorded a patrol round (巡查)"),
    "resident.erased": (ResidentErasedV1, "a resident asked to be forgotten; their personal data is erased"),
    "volunteer.registered": (VolunteerRegisteredV1, "a person joined the volunteer registry (志愿者注册)"),
    "volunteer.offered": (VolunteerTaskV1, "a volunteer was asked to take a task, with the reasons they were chosen"),
    "volunteer.accepted": (VolunteerTaskV1, "the volunteer took the task and is on the way (志愿者接单)"),
    "volunteer.declined": (VolunteerTaskV1,
                           "the volunteer declined, or the offer timed out; the next candidate is asked"),
    "volunteer.checked_in": (VolunteerTaskV1, "the volunteer arrived (the resident's code, or a staff confirmation)"),
    "volunteer.checked_out": (VolunteerTaskV1, "the volunteer finished; the minutes credited (capped; marked if "
                                               "closed automatically)"),
    "wish.published": (WishV1, "a resident's small wish was published (微心愿)"),
    "wish.claimed": (WishV1, "a volunteer claimed the wish (认领)"),
    "wish.fulfilled": (WishV1, "the volunteer fulfilled the wish (圆梦)"),
}

CATALOGUE: dict[str, EventType] = {
    "ticket.received": EventType(
        "ticket.received", {1: TicketReceivedV1, 2: TicketReceivedV2, 3: TicketReceivedV3},
        {1: _v1_to_v2_attached, 2: _v2_to_v3_placed}, "a request was received (受理)",
    ),
    **{name: EventType(name, {1: schema}, {}, description) for name, (schema, description) in _ONE_VERSION.items()},
}


def _event_type(name: str) -> EventType:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownEventType(f"unknown event type {name!r}") from None


def current_version(name: str) -> int:
    return _event_type(name).current


def _validated(event_type: EventType, version: int, payload: dict) -> dict:
    schema_cls = event_type.schemas.get(version)
    if schema_cls is None:
        raise UnknownEventType(f"{event_type.name} has no version {version}")
    errors = _instance(schema_cls).validate(payload)
    if errors:
        raise MalformedEvent(f"{event_type.name} v{version} payload is invalid", errors)
    return payload


@cache
def _instance(schema_cls: type[Schema]) -> Schema:
    """One instance per schema: building one deep-copies its fields, which cost more than validating."""
    return schema_cls()


def upcast(name: str, version: int, payload: dict) -> tuple[int, dict]:
    """Lift a payload of an older version to the current one, validating each step."""
    event_type = _event_type(name)
    _validated(event_type, version, payload)
    while version < event_type.current:
        payload = event_type.upcasters[version](payload)
        version += 1
        _validated(event_type, version, payload)
    return version, payload


def validate_outgoing(envelope: Envelope) -> Envelope:
    """Publishers call this before an event is stored: current version, valid payload."""
    event_type = _event_type(envelope.type)
    if envelope.version != event_type.current:
        raise MalformedEvent(
            f"{envelope.type} must be published at version {event_type.current}, not {envelope.version}"
        )
    _validated(event_type, envelope.version, envelope.payload)
    return envelope


def validate_incoming(envelope: Envelope) -> Envelope:
    """Consumers call this on receipt: a valid payload, upcast to the current version."""
    version, payload = upcast(envelope.type, envelope.version, envelope.payload)
    return envelope if version == envelope.version else envelope.with_payload(payload, version)


# --- who listens -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Subscription:
    """A consumer: one durable queue of one service, bound to the event types it handles."""

    name: str  # "<service>.<purpose>"
    event_types: tuple[str, ...]
    description: str = ""

    @property
    def service(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def queue(self) -> str:
        return f"huisheng.{self.name}"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"


RESIDENT_VISIBLE_TICKET_EVENTS = (
    "ticket.received", "ticket.dispatched", "ticket.accepted", "ticket.started", "ticket.paused",
    "ticket.resumed", "ticket.resolved", "ticket.confirmed", "ticket.reopened", "ticket.closed",
    "ticket.attached", "ticket.commented",
)

# What residents hear of their volunteers (notify's templates carry the words).
RESIDENT_VISIBLE_VOLUNTEER_EVENTS = (
    "volunteer.accepted", "volunteer.checked_in", "volunteer.checked_out", "wish.claimed", "wish.fulfilled",
)

SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription("notify.ticket_events", RESIDENT_VISIBLE_TICKET_EVENTS + RESIDENT_VISIBLE_VOLUNTEER_EVENTS,
                 "echo every change a resident should know about to every attached resident"),
    Subscription("tickets.erasures", ("resident.erased",),
                 "anonymise the erased resident in every ticket they reported or are attached to"),
    Subscription("tickets.merges", ("ticket.merged",),
                 "the master of a merge takes the duplicate's residents (converges a merge cut short by a crash)"),
    Subscription("notify.staff_events", ("ticket.dispatched", "sla.warned", "sla.breached"),
                 "tell the grid worker a ticket is dispatched to, and of its deadline warnings and breaches"),
    Subscription("notify.broadcasts", ("broadcast.requested",), "fan a broadcast out to its segment in batches, "
                 "on a queue of its own so ticket echoes are not held back"),
    Subscription("notify.erasures", ("resident.erased",), "remove the erased resident's inbox messages"),
    Subscription("volunteers.erasures", ("resident.erased",),
                 "anonymise the erased person in volunteer tasks and 微心愿; an erased volunteer leaves the registry"),
    Subscription("volunteers.dispatches", ("ticket.dispatched",),
                 "a ticket dispatched to a volunteer team: propose volunteers and offer it to the best one"),
    Subscription("tickets.volunteer_events", ("volunteer.offered", "volunteer.accepted", "volunteer.declined",
                                              "volunteer.checked_in", "volunteer.checked_out"),
                 "show each step of a ticket's volunteer task on its timeline"),
)


def subscription(name: str) -> Subscription:
    for candidate in SUBSCRIPTIONS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no subscription named {name!r}")


def _check_catalogue() -> None:
    for sub in SUBSCRIPTIONS:
        unknown = [t for t in sub.event_types if t not in CATALOGUE]
        if unknown:
            raise UnknownEventType(f"subscription {sub.name} names unknown event types {unknown}")
    for event_type in CATALOGUE.values():
        missing = [v for v in range(1, event_type.current) if v not in event_type.upcasters]
        if missing:
            raise UnknownEventType(f"{event_type.name} has no upcaster from versions {missing}")


_check_catalogue()
