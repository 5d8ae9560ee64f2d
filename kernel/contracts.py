"""Request schemas shared by a service and its callers (the gateway validates early with the same one).

Like the event catalogue, these are the contract between processes, so they live
in the kernel: the gateway never imports a service. A schema only its own service loads (Open311's
arguments, the list filters, a volunteer's record period) lives in that service, built with the
field helpers below so that a rule such as an attribute answer's shape is written once.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates, validates_schema

# Every schema refuses a field it does not name (marshmallow's default, RAISE; the API document says
# additionalProperties: false); ViewerSchema alone, an RPC argument, ignores them.


def text_field(maximum: int, minimum: int | None = None, **options: Any) -> fields.String:
    """A string of ``minimum`` to ``maximum`` characters; ``options`` are ``fields.String``'s."""
    return fields.String(validate=validate.Length(min=minimum, max=maximum), **options)


def optional_text(maximum: int, minimum: int | None = None) -> fields.String:
    """A string that may be left out or null (None then), else of ``minimum`` to ``maximum`` characters."""
    return text_field(maximum, minimum, load_default=None, allow_none=True)


def attributes_field(**options: Any) -> fields.Dict:
    """A category's questions, answered (Open311's shape: code -> value, or a list for a multivaluelist)."""
    return fields.Dict(keys=text_field(64, 1), validate=validate.Length(max=64), **options)


# --------------------------------------------------------------------------------------------- tickets
# The tickets service's requests (issue #11).

ATTACHMENT_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp", "image/heic", "application/pdf")
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_ATTACHMENTS_PER_REQUEST = 9


# A photo uploaded to the platform (POST /api/v1/photos answers this address): a path on the API, not a URL.
PHOTO_URL = re.compile(r"^/api/v1/photos/(?P<id>[0-9a-f]{32})\Z")
_HTTPS_URL = validate.URL(schemes={"https"}, error="an https URL, or /api/v1/photos/<id> from POST /api/v1/photos")


def _attachment_url(value: str) -> None:
    """An https URL elsewhere, or the address of a photo uploaded here (``/api/v1/photos/<id>``).

    >>> _attachment_url("/api/v1/photos/" + "a" * 32), _attachment_url("https://img.example.cn/1.jpg")
    (None, None)
    >>> _attachment_url("/api/v1/photos/../tickets")
    Traceback (most recent call last):
    ...
    marshmallow.exceptions.ValidationError: an https URL, or /api/v1/photos/<id> from POST /api/v1/photos
    """
    if not PHOTO_URL.match(value):
        _HTTPS_URL(value)


class AttachmentSchema(Schema):
    """A photo or document by reference: where it is stored (an https URL, or a photo uploaded with
    ``POST /api/v1/photos``), its type and size; never its bytes."""

    url = fields.String(required=True, validate=[validate.Length(max=1000), _attachment_url])
    content_type = fields.String(required=True, validate=validate.OneOf(ATTACHMENT_TYPES))
    size = fields.Integer(required=True, strict=True, validate=validate.Range(1, MAX_ATTACHMENT_BYTES))


def _attachments() -> fields.List:
    return fields.List(fields.Nested(AttachmentSchema), load_default=list,
                       validate=validate.Length(max=MAX_ATTACHMENTS_PER_REQUEST))


def check_answer_shapes(answers: dict) -> None:
    """Attribute answers are values or lists of values, each short: the category's definition checks the rest."""
    for answer in answers.values():
        values = answer if isinstance(answer, list) else [answer]
        if len(values) > 64 or not all(isinstance(item, str | int | float) and not isinstance(item, bool)
                                       and len(str(item)) <= 1000 for item in values):
            raise ValidationError("each attribute is a value or a list of values (1000 characters at most)")


class _Report(Schema):
    """What a report and a patrol's finding both carry: the category, the words, the place, the photos."""

    service_code = text_field(64, 1, required=True)
    description = text_field(4000, 2, required=True)
    address_string = optional_text(300)
    lat = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-90, 90))
    long = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-180, 180))
    # The directory's building code (b09): routing places the ticket in the building's grid.
    building = optional_text(32, 1)
    attachments = _attachments()


class CreateTicketSchema(_Report):
    """A resident's report, in Open311's names: service_code, description, address_string, lat, long."""

    # The tickets service checks the answers against the category's definition, as it does Open311's. Left
    # out, it answers nothing: a category's required questions are required all the same, with or without
    # ``attributes`` in the body (services/tickets/intake.py).
    attributes = attributes_field()

    @validates("attributes")
    def _answers(self, value, **kwargs):
        check_answer_shapes(value)

    @validates_schema(skip_on_field_errors=False)  # report every problem at once
    def _where(self, data, **kwargs):
        if not data.get("address_string") and (data.get("lat") is None or data.get("long") is None):
            raise ValidationError("give address_string, or both lat and long", "address_string")
        if (data.get("lat") is None) != (data.get("long") is None):
            raise ValidationError("lat and long go together", "long")


# --------------------------------------------------------------------------------------------- the directory
# A phone's format is part of the contract, so its normal form is defined here, where the gateway can use it.

CONSENT_PURPOSES: tuple[str, ...] = ("service_echoes", "sms", "wechat", "broadcasts")
STAFF_ROLES: tuple[str, ...] = ("grid_worker", "secretary", "ops", "admin")
_MOBILE = re.compile(r"(?:\+86|0086|86)?(1[3-9]\d{9})")  # a country code or not, then the 11 digits
CODE_FIELD = fields.String(validate=validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,31}\Z", error="a code like g3"))


class InvalidPhone(ValueError):
    """Not a mainland mobile number."""


def normalise_phone(text: Any) -> str:
    """The 11-digit mainland mobile number in ``text`` (+86/0086/86 and separators allowed).

    >>> normalise_phone("+86 138-0000-1234"), normalise_phone("13800001234")
    ('13800001234', '13800001234')
    >>> normalise_phone("12345678901")
    Traceback (most recent call last):
    ...
    kernel.contracts.InvalidPhone: not a mainland mobile number
    """
    if not isinstance(text, str | int) or isinstance(text, bool):
        raise InvalidPhone("not a mainland mobile number")
    found = _MOBILE.fullmatch(re.sub(r"[\s\-()]", "", str(text).strip()))
    if not found:
        raise InvalidPhone("not a mainland mobile number")
    return found.group(1)


class PhoneField(fields.String):
    """A mainland mobile number, loaded normalised (11 digits)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalise_phone(text)
        except InvalidPhone as error:
            raise ValidationError("not a mainland mobile number (1[3-9] and 9 more digits)") from error


class ViewerSchema(Schema):
    """Who is asking, as the gateway authenticated them (an RPC argument, never an HTTP body)."""

    class Meta:
        unknown = EXCLUDE

    subject = text_field(128, 1, required=True)
    role = fields.String(required=True)
    community = fields.String(load_default=None, allow_none=True)
    grids = fields.List(fields.String(), load_default=list)
    teams = fields.List(fields.String(), load_default=list)
    home = fields.String(load_default=None, allow_none=True)  # a resident's home building, from their token


class StaffSchema(Schema):
    """``POST /api/v1/staff`` and ``directory.create_staff``: a staff member or volunteer.

    >>> from kernel.validation import load
    >>> staff = {"name": "张伟", "phone": "+86 138 0000 1001", "roles": ["grid_worker"], "grids": ["g1"]}
    >>> load(StaffSchema(), staff)["phone"]
    '13800001001'
    >>> try:
    ...     load(StaffSchema(), {"name": "张伟", "phone": "123", "roles": ["resident"]})
    ... except Exception as error:
    ...     sorted(error.details)
    ['phone', 'roles']
    """

    name = text_field(32, 1, required=True)
    phone = PhoneField(required=True)
    roles = fields.List(fields.String(validate=validate.OneOf((*STAFF_ROLES, "volunteer"))), required=True,
                        validate=validate.Length(min=1))
    grids = fields.List(CODE_FIELD, load_default=list)
    teams = fields.List(text_field(64, 1), load_default=list)
    email = fields.Email(load_default=None, allow_none=True)
    password = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=10, max=200),
                             load_only=True)

    @validates("grids")
    def _unique(self, value: list[str], **kwargs: Any) -> None:
        if len(set(value)) != len(value):
            raise ValidationError("a grid is listed twice")


class ConsentSchema(Schema):
    """``POST /api/v1/me/consents``: the resident grants or withdraws one purpose."""

    purpose = fields.String(required=True, validate=validate.OneOf(CONSENT_PURPOSES))
    granted = fields.Boolean(required=True)


class ImportSchema(Schema):
    """``directory.import_register``: a spreadsheet of residents, base64."""

    filename = fields.String(required=True, validate=validate.Regexp(r"(?i)^[^/\\]{1,200}\.(csv|xlsx|txt)\Z",
                                                                       error="a .csv or .xlsx file"))
    content_base64 = fields.String(required=True, validate=validate.Length(min=1))


# --------------------------------------------------------------------------------------------- ticket actions

TICKET_SOURCES_BY_STAFF: tuple[str, ...] = ("phone_in", "walk_in", "hotline")


class StaffCreateTicketSchema(CreateTicketSchema):
    """Staff entering a report on a resident's behalf (phone-in, walk-in, the hotline's transfer)."""

    on_behalf_of = optional_text(64, 1)
    source = fields.String(load_default="phone_in", validate=validate.OneOf(TICKET_SOURCES_BY_STAFF))


class TicketActionSchema(Schema):
    """A body that carries nothing: accept, start, resume."""


class DispatchSchema(TicketActionSchema):
    """To whom: a grid worker (``worker``), a volunteer team (``team``) or an outside unit (``unit``)."""

    kind = fields.String(required=True, validate=validate.OneOf(("worker", "team", "unit")))
    id = text_field(64, 1, required=True)


class ReasonSchema(TicketActionSchema):
    """bounce (退单): why it was wrongly dispatched."""

    reason = text_field(500, 1, required=True)


class PauseSchema(ReasonSchema):
    """pause (延期): the reason is echoed to the resident; ``until`` when work is expected to resume."""

    until = fields.AwareDateTime(load_default=None, allow_none=True)


class ResolveSchema(TicketActionSchema):
    summary = text_field(2000, 1, required=True)


class CloseSchema(TicketActionSchema):
    """close (转办/无法办理): a reason from the domain's list and a note."""

    reason = fields.String(required=True, validate=validate.OneOf(
        ("not_responsible", "no_further_action", "duplicate", "cancelled")))
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class MergeSchema(TicketActionSchema):
    """merge: this ticket is a duplicate of ``into`` (the master's id or number)."""

    into = text_field(64, 1, required=True)


class PlanSchema(TicketActionSchema):
    """plan: the dated next step (下一步) and who owns it."""

    note = text_field(1000, 1, required=True)
    owner = text_field(64, 1, required=True)
    due_at = fields.AwareDateTime(required=True)


class CommentSchema(TicketActionSchema):
    """A comment: ``internal`` (staff only) or ``resident`` (residents see it and are echoed)."""

    text = text_field(2000, 1, required=True)
    visibility = fields.String(load_default="internal", validate=validate.OneOf(("internal", "resident")))
    attachments = _attachments()


class CallbackSchema(TicketActionSchema):
    """The callback (回访) answer: a resident's own, or staff recording one (``resident`` says whose)."""

    outcome = fields.String(required=True, validate=validate.OneOf(
        ("fixed", "partly_fixed", "not_fixed", "cant_tell", "no_answer")))
    note = fields.String(load_default="", validate=validate.Length(max=2000))
    satisfaction = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(
        ("satisfied", "basically_satisfied", "dissatisfied")))
    resident = optional_text(64, 1)


class PatrolFindingSchema(_Report):
    """One finding of a patrol round: it becomes a ticket with source ``patrol``."""

    @validates_schema(skip_on_field_errors=False)
    def _where(self, data, **kwargs):
        if not data.get("address_string") and not data.get("building") and data.get("lat") is None:
            raise ValidationError("give building, address_string, or lat and long", "building")
        if (data.get("lat") is None) != (data.get("long") is None):
            raise ValidationError("lat and long go together", "long")


class PatrolSchema(Schema):
    """A patrol round (巡查): its grid and time, what was checked, what was found (an empty list is a round too)."""

    grid = text_field(32, 1, required=True)
    started_at = fields.AwareDateTime(required=True)
    ended_at = fields.AwareDateTime(load_default=None, allow_none=True)
    checked = fields.List(text_field(200, 1), required=True, validate=validate.Length(min=1, max=100))
    findings = fields.List(fields.Nested(PatrolFindingSchema), load_default=list, validate=validate.Length(max=50))


class CalendarDaySchema(Schema):
    """One day of a year's working calendar: ``{"date": "YYYY-MM-DD", "name": "春节"}``."""

    date = fields.String(required=True, validate=validate.Regexp(r"^\d{4}-\d{2}-\d{2}$", error="a date YYYY-MM-DD"))
    name = fields.String(load_default="", validate=validate.Length(max=50))


CALENDAR_YEARS: tuple[int, int] = (2000, 2100)  # the years an admin may load a working calendar for
# The platform's time zone: every date people see (a ticket's number, a report's day, a volunteer's week) is one here.
SHANGHAI = ZoneInfo("Asia/Shanghai")


class CalendarSchema(Schema):
    """PUT /api/v1/calendar/{year}: the year's public holidays (days off) and make-up working days (调休).

    The tickets service checks the rest: every date in the year, none both a holiday and a working
    day, each make-up working day a Saturday or Sunday.
    """

    year = fields.Integer(load_default=None, allow_none=True, strict=True)
    source = fields.String(load_default="", validate=validate.Length(max=300))
    holidays = fields.List(fields.Nested(CalendarDaySchema), required=True, validate=validate.Length(max=366))
    workdays = fields.List(fields.Nested(CalendarDaySchema), required=True, validate=validate.Length(max=366))


# ----------------------------------------------------------------------------------------- volunteers
# The volunteers service's requests (issue #13). Skill codes and slot rules are checked by the service
# (services/volunteers/domain.py), which owns their list.
_SLOT_START = r"^([01]\d|2[0-3]):[0-5]\d\Z"
_SLOT_END = r"^(([01]\d|2[0-3]):[0-5]\d|24:00)\Z"  # a slot may end at midnight

class SlotSchema(Schema):
    """A weekly slot: ``day`` 0 (Monday) to 6, ``start``/``end`` ``HH:MM`` local; an end before the start runs
    past midnight."""

    day = fields.Integer(required=True, strict=True, validate=validate.Range(0, 6))
    start = fields.String(required=True, validate=validate.Regexp(_SLOT_START))
    end = fields.String(required=True, validate=validate.Regexp(_SLOT_END))


class AvailabilityExceptionSchema(Schema):
    """A date off (``available: false``) or extra hours on a date (``available: true`` with start and end)."""

    date = fields.Date(required=True)
    available = fields.Boolean(load_default=False)
    start = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(_SLOT_START))
    end = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(_SLOT_END))

    @validates_schema
    def _hours_when_available(self, data: dict, **kwargs: Any) -> None:
        if data.get("available") and not (data.get("start") and data.get("end")):
            raise ValidationError("extra hours need start and end", "start")


class VolunteerSchema(Schema):
    """``POST /api/v1/volunteers``: register a volunteer (a person new to the directory is added there).

    >>> from kernel.validation import load
    >>> load(VolunteerSchema(), {"name": "李四", "phone": "13800001234", "skills": ["plumbing"]})["status"]
    'active'
    """

    name = text_field(32, 1, required=True)
    phone = PhoneField(required=True)
    grid = optional_text(32)
    skills = fields.List(text_field(32), load_default=list, validate=validate.Length(max=20))
    teams = fields.List(text_field(64), load_default=list, validate=validate.Length(max=10))
    party_member = fields.Boolean(load_default=False)
    partner_unit = optional_text(100)
    availability = fields.List(fields.Nested(SlotSchema), load_default=list, validate=validate.Length(max=50))
    exceptions = fields.List(fields.Nested(AvailabilityExceptionSchema), load_default=list,
                             validate=validate.Length(max=100))
    status = fields.String(load_default="active", validate=validate.OneOf(("active", "paused")))


class OfferAnswerSchema(Schema):
    """A volunteer's answer to an offer: ``accept`` or ``decline``."""

    answer = fields.String(required=True, validate=validate.OneOf(("accept", "decline")))


class CheckInSchema(Schema):
    """A check-in: the resident's 6-digit code (a volunteer), or a staff member's confirmation (no code)."""

    code = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(r"^\d{6}\Z"))


class ManualHoursSchema(Schema):
    """``POST /api/v1/volunteers/{id}/hours``: hours served outside a task (capped; kept apart as "manual")."""

    minutes = fields.Integer(required=True, strict=True, validate=validate.Range(1, 24 * 60))
    date = fields.Date(required=True)
    reason = text_field(300, 2, required=True)


class HoursCorrectionSchema(Schema):
    """A correction of a task's credit or a manual entry, by ``delta_minutes``, with a reason; nothing is deleted."""

    target = text_field(100, 1, required=True)
    delta_minutes = fields.Integer(required=True, strict=True, validate=validate.Range(-24 * 60, 24 * 60))
    reason = text_field(300, 2, required=True)


class RatingSchema(Schema):
    """A resident's rating of the help they had (1-5); it goes to the volunteer's record, not to 满意率."""

    rating = fields.Integer(required=True, strict=True, validate=validate.Range(1, 5))
    comment = optional_text(500)


class WishSchema(Schema):
    """``POST /api/v1/wishes``: a resident's 微心愿."""

    title = text_field(60, 2, required=True)
    description = fields.String(load_default="", validate=validate.Length(max=1000))
    skill = optional_text(32)


# --------------------------------------------------------------------------------------------- notify
# The notify service's requests (issue #12).

ECHO_CHANNELS: tuple[str, ...] = ("inbox", "sms", "wechat", "email", "webhook")
"""Channels a person may choose, in order; the human step (a grid worker's call) always ends the plan."""
_CLOCK = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")


class QuietHoursSchema(Schema):
    """Local times (``HH:MM``, the community's time zone); the span may cross midnight (22:00-07:00)."""

    start = fields.String(required=True, validate=validate.Regexp(_CLOCK, error="a time as HH:MM"))
    end = fields.String(required=True, validate=validate.Regexp(_CLOCK, error="a time as HH:MM"))


class DigestSchema(Schema):
    """One digest a day at a local time: non-critical echoes on push channels wait for it."""

    at = fields.String(required=True, validate=validate.Regexp(_CLOCK, error="a time as HH:MM"))


class PreferencesSchema(Schema):
    """``PUT /api/v1/me/preferences``: channels in order, quiet hours, a daily digest, a webhook receiver."""

    channels = fields.List(fields.String(validate=validate.OneOf(ECHO_CHANNELS)), required=True,
                           validate=validate.Length(min=1, max=len(ECHO_CHANNELS)))
    quiet_hours = fields.Nested(QuietHoursSchema, load_default=None, allow_none=True)
    digest = fields.Nested(DigestSchema, load_default=None, allow_none=True)
    webhook_url = fields.Url(load_default=None, allow_none=True, schemes={"https", "http"}, require_tld=False,
                             validate=validate.Length(max=500))

    @validates("channels")
    def _once_each(self, value: list[str], **kwargs: Any) -> None:
        if len(set(value)) != len(value):
            raise ValidationError("a channel is listed twice")

    @validates_schema
    def _webhook_needs_a_url(self, data: dict, **kwargs: Any) -> None:
        if "webhook" in data.get("channels", ()) and not data.get("webhook_url"):
            raise ValidationError("the webhook channel needs a webhook_url", "webhook_url")


class TaskDoneSchema(Schema):
    """``POST /api/v1/echo-tasks/{id}/done``: the grid worker phoned or visited; what they noted."""

    note = optional_text(500)


class BroadcastSchema(Schema):
    """``POST /api/v1/broadcasts``: a notice to a segment (``directory.segment``'s spec: grid, building, ages,
    flags ...); an empty segment is the whole community."""

    title = text_field(40, 2, required=True)
    body = text_field(1000, 2, required=True)
    segment = fields.Dict(load_default=dict)
    critical = fields.Boolean(load_default=False)
