"""Open311 GeoReport v2: what a stranger, or an integrator's key, sees of a request.

Public: the service, its status and notes, times and a coarse place; a key scoped to its
community (``full``) sees the request whole. The tickets service's Open311 entrypoints load
the request with the schemas at the end of this module, call these and dump; the gateway renders
the answers as JSON or XML.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates, validates_schema

from kernel.contracts import attributes_field, check_answer_shapes, optional_text, text_field
from services.tickets import clocks
from services.tickets.catalogue import Catalogue, Duration, Service, shipped_catalogue
from services.tickets.domain import CLOSED_STATES, OPEN_STATES, Ticket, impersonal_address

CATALOGUE = shipped_catalogue()
OPEN311_NOTES = {
    "received": "已受理", "dispatched": "已派单处理", "accepted": "已签收", "in_progress": "办理中",
    "paused": "延期办理", "resolved": "已办结，待回访", "confirmed": "已办结，回访满意",
    "reopened": "回访未解决，重新办理", "closed_not_fixed": "已关闭",
}
CLOSE_REASON_NOTES = {"not_responsible": "不属本社区职责，已转办", "no_further_action": "无需进一步处理",
                      "duplicate": "重复诉求，已合并", "cancelled": "已撤销"}
UNIT_TEXT = {"minutes": "分钟", "hours": "小时", "days": "天", "working_hours": "个工作小时",
             "working_days": "个工作日"}
NATURAL_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}
COARSE_DECIMALS = 3  # a public lat/long is rounded to ~100 m: the block, not the door


def w3(moment: datetime | None) -> str | None:
    """A datetime in the W3C profile of ISO 8601 that GeoReport v2 requires, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def duration_text(duration: Duration) -> str:
    """A deadline in words.

    >>> duration_text(Duration(30, "minutes")), duration_text(Duration(0, "close_of_working_day"))
    ('30分钟', '当个工作日下班前')
    """
    if duration.unit == "close_of_working_day":
        return "当个工作日下班前" if duration.amount == 0 else f"{duration.amount}个工作日后下班前"
    return f"{duration.amount}{UNIT_TEXT[duration.unit]}"


def service_notice(ticket: Ticket) -> str | None:
    """What the office commits to for this request: the deadlines it was given when received."""
    try:
        policy = clocks.ticket_policy(ticket, CATALOGUE)
    except LookupError:
        return None
    return f"首次响应时限：{duration_text(policy.first_response)}；办结时限：{duration_text(policy.resolution)}"


def expected_at(ticket: Ticket) -> datetime | None:
    """When an open request should be resolved, where the deadline runs on natural time (working time needs
    the working calendar, which this answer does not read)."""
    try:
        resolution = clocks.ticket_policy(ticket, CATALOGUE).resolution
    except LookupError:
        return None
    if not ticket.is_open or resolution.unit not in NATURAL_UNITS:
        return None
    return ticket.created_at + timedelta(seconds=resolution.amount * NATURAL_UNITS[resolution.unit])


def status_notes(ticket: Ticket, full: bool) -> str:
    """The state in words; an integrator's view adds what the office wrote (a pause's reason, the summary)."""
    note = OPEN311_NOTES.get(str(ticket.state), str(ticket.state))
    if str(ticket.state) == "closed_not_fixed" and ticket.close_reason:
        note = f"{note}：{CLOSE_REASON_NOTES.get(ticket.close_reason, ticket.close_reason)}"
    if not full:
        return note
    if str(ticket.state) == "paused":
        reasons = [entry.get("reason") for entry in ticket.timeline if entry.get("type") == "ticket.paused"]
        return f"{note}：{reasons[-1]}" if reasons and reasons[-1] else note
    if str(ticket.state) == "resolved" and ticket.resolution_summary:
        return f"{note}：{ticket.resolution_summary}"
    return note


def open311_view(document: dict, full: bool) -> dict:
    """A ticket as a GeoReport v2 request: public fields only unless ``full`` (a key scoped to its community).

    Public: no description (none is marked public), no reporter, the address cut to the building,
    lat/long rounded to about 100 m, no media and no address id (either may show a door).
    """
    ticket = Ticket.from_document(document)
    service = CATALOGUE.get(ticket.service_code) if ticket.service_code in CATALOGUE else None
    lat, long = ticket.lat, ticket.long
    if not full and lat is not None and long is not None:
        lat, long = round(lat, COARSE_DECIMALS), round(long, COARSE_DECIMALS)
    assignee = ticket.assignee or {}
    return {
        "service_request_id": ticket.id,
        "status": ticket.status_open311,
        "status_notes": status_notes(ticket, full),
        "service_name": service.name if service else ticket.service_code,
        "service_code": ticket.service_code,
        "description": ticket.description if full else None,
        "agency_responsible": assignee.get("id") if assignee.get("kind") == "unit" else None,
        "service_notice": service_notice(ticket),
        "requested_datetime": w3(ticket.created_at),
        "updated_datetime": w3(ticket.updated_at),
        "expected_datetime": w3(expected_at(ticket)),
        "address": ticket.address_string if full else impersonal_address(ticket.address_string),
        "address_id": document.get("address_id") if full else None,
        "zipcode": None,
        "lat": lat,
        "long": long,
        "media_url": document.get("media_url") if full else None,
    }


def open311_services(include_private: bool, catalogue: Catalogue = CATALOGUE) -> list[Service]:
    """The services a caller may see: those private by nature (a door, a person) only for a key."""
    return [service for service in catalogue.all() if include_private or not service.private]


def hidden_codes(full: bool) -> list[str]:
    """The service codes a public read leaves out (none for a key)."""
    return [] if full else [service.code for service in CATALOGUE.all() if service.private]


def is_hidden(document: dict | None, full: bool) -> bool:
    """Whether a public read may not show this request (a category private by nature)."""
    return document is not None and not full and document.get("service_code") in hidden_codes(full)


def states_of(statuses: Iterable[str] | None) -> list[str] | None:
    """The lifecycle states behind GeoReport's ``open``/``closed`` statuses (None: every state)."""
    if statuses is None:
        return None
    wanted = set(statuses)
    return [str(state) for state in (*OPEN_STATES, *CLOSED_STATES)
            if ("open" if state in OPEN_STATES else "closed") in wanted]


def address_of(request: dict) -> str | None:
    """An Open311 request's address: its text, else its address id read as a building."""
    return request["address_string"] or (f"楼栋 {request['address_id']}" if request["address_id"] else None)


# ------------------------------------------------------------------------------------------ the requests
# The arguments of GeoReport v2 (wiki.open311.org/GeoReport_v2) as the tickets service applies them; the
# gateway reads the form or query string into these names (api_key and jurisdiction_id are its own business)
# and leaves their values to these schemas, which only the tickets service loads: not a kernel contract.

OPEN311_STATUSES: tuple[str, ...] = ("open", "closed")
OPEN311_WINDOW_DAYS = 90  # GET requests: the default span, and the longest one may ask for
OPEN311_MAX_REQUESTS = 1000  # GET requests: the most one answer holds
OPEN311_MAX_IDS = 100  # service_request_id values in one GET requests


class Open311RequestSchema(Schema):
    """``POST /open311/v2/requests``: a location (lat+long, address_string or address_id) and the service's answers.

    The submitter's own details (email, names, phone, device and account ids) are accepted as the
    spec allows and are not kept: a request filed with an API key is the key's, and people are the
    directory's business.

    >>> Open311RequestSchema().load({"service_code": "roof_leak", "address_id": "3"})["attributes"]
    {}
    >>> Open311RequestSchema().load({"service_code": "roof_leak", "lat": 30.2})
    Traceback (most recent call last):
    ...
    marshmallow.exceptions.ValidationError: {'long': ['lat and long go together']}
    """

    service_code = text_field(64, 1, required=True)
    lat = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-90, 90))
    long = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-180, 180))
    address_string = optional_text(300)
    address_id = optional_text(64, 1)
    description = optional_text(4000)
    media_url = fields.Url(load_default=None, allow_none=True, schemes={"http", "https"},
                           validate=validate.Length(max=2000))
    email = optional_text(254)
    device_id = optional_text(128)
    account_id = optional_text(128)
    first_name = optional_text(128)
    last_name = optional_text(128)
    phone = optional_text(64)
    attributes = attributes_field(load_default=dict)

    @validates_schema(skip_on_field_errors=False)
    def _where(self, data, **kwargs):
        if (data.get("lat") is None) != (data.get("long") is None):
            raise ValidationError("lat and long go together", "long")
        if data.get("lat") is None and not data.get("address_string") and not data.get("address_id"):
            raise ValidationError("give lat and long, address_string or address_id", "address_string")

    @validates("attributes")
    def _answers(self, value, **kwargs):
        check_answer_shapes(value)


class Open311QuerySchema(Schema):
    """``GET /open311/v2/requests``: the filters, with the spec's default window of the last 90 days.

    ``service_request_id`` overrides every other argument; otherwise the window is
    ``[start_date, end_date]`` (the most recent 90 days when neither is given, 90 days from or to
    the one given), and may not span more than 90 days.

    >>> query = Open311QuerySchema().load({"status": ["open"]})
    >>> (query["end_date"] - query["start_date"]).days, query["status"]
    (90, ['open'])
    """

    service_request_id = fields.List(text_field(64, 1), load_default=None,
                                     validate=validate.Length(min=1, max=OPEN311_MAX_IDS))
    service_code = fields.List(text_field(64, 1), load_default=None, validate=validate.Length(min=1, max=100))
    status = fields.List(fields.String(validate=validate.OneOf(OPEN311_STATUSES)), load_default=None,
                         validate=validate.Length(min=1, max=2))
    start_date = fields.AwareDateTime(load_default=None, allow_none=True)
    end_date = fields.AwareDateTime(load_default=None, allow_none=True)

    @post_load
    def _window(self, data, **kwargs):
        if data["service_request_id"] is None:
            data["start_date"], data["end_date"] = open311_window(data["start_date"], data["end_date"],
                                                                  datetime.now(UTC))
        return data


def open311_window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The span GET requests searches: GeoReport v2's default of the most recent 90 days, at most 90 days.

    >>> now = datetime(2026, 12, 1, tzinfo=UTC)
    >>> [moment.date().isoformat() for moment in open311_window(None, None, now)]
    ['2026-09-02', '2026-12-01']
    >>> [moment.date().isoformat() for moment in open311_window(datetime(2026, 1, 1, tzinfo=UTC), None, now)]
    ['2026-01-01', '2026-04-01']
    >>> open311_window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC), now)
    Traceback (most recent call last):
    ...
    marshmallow.exceptions.ValidationError: {'end_date': ['may not be more than 90 days after start_date']}
    """
    span = timedelta(days=OPEN311_WINDOW_DAYS)
    if start is None and end is None:
        end = now
    if start is None:
        start = end - span
    elif end is None:
        end = min(start + span, max(now, start))
    if end < start:
        raise ValidationError({"end_date": ["may not be before start_date"]})
    if end - start > span:
        raise ValidationError({"end_date": [f"may not be more than {OPEN311_WINDOW_DAYS} days after start_date"]})
    return start, end
