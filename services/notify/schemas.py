"""What the notify service answers: its inbox messages as the API shows them."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from kernel.pagination import MAX_LIMIT


class DeliverySchema(Schema):
    status = fields.String()
    requested_at = fields.AwareDateTime()
    delivered_at = fields.AwareDateTime(allow_none=True)


class InboxMessageSchema(Schema):
    id = fields.String(attribute="_id")
    ticket_id = fields.String()
    title = fields.String()
    body = fields.String()
    channel = fields.String()
    source_event_type = fields.String()
    created_at = fields.AwareDateTime()
    read_at = fields.AwareDateTime(allow_none=True)
    delivery = fields.Nested(DeliverySchema)


INBOX_MESSAGES = InboxMessageSchema(many=True)  # built once: building deep-copies the fields


INBOX_MESSAGE = InboxMessageSchema()


class AnswerSchema(Schema):
    """What one attempt came to, as the provider answered (never the address it went to)."""

    at = fields.AwareDateTime()
    status = fields.String()
    code = fields.String(allow_none=True)
    message = fields.String(allow_none=True)
    http_status = fields.Integer(allow_none=True)
    retryable = fields.Boolean(allow_none=True)
    reason = fields.String(allow_none=True)


class StepSchema(Schema):
    """One step of an echo's plan: its delivery record on that channel."""

    channel = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    started_at = fields.AwareDateTime(allow_none=True)
    deadline_at = fields.AwareDateTime(allow_none=True)
    next_attempt_at = fields.AwareDateTime(allow_none=True)
    sent_at = fields.AwareDateTime(allow_none=True)
    delivered_at = fields.AwareDateTime(allow_none=True)
    read_at = fields.AwareDateTime(allow_none=True)
    failed_at = fields.AwareDateTime(allow_none=True)
    provider_id = fields.String(allow_none=True)
    answers = fields.List(fields.Nested(AnswerSchema))


class EchoViewSchema(Schema):
    """An echo as staff see it: whom (a person id), about what, each step, and why it waits if it does."""

    id = fields.String(attribute="_id")
    ticket_id = fields.String()
    recipient = fields.String()
    source_event_type = fields.String()
    status = fields.String()
    current = fields.Integer()
    reason = fields.String(allow_none=True)
    critical = fields.Boolean()
    occurred_at = fields.AwareDateTime()
    not_before = fields.AwareDateTime(allow_none=True)
    proof_due_at = fields.AwareDateTime()
    delivered_at = fields.AwareDateTime(allow_none=True)
    read_at = fields.AwareDateTime(allow_none=True)
    failed_at = fields.AwareDateTime(allow_none=True)
    silent_at = fields.AwareDateTime(allow_none=True)
    steps = fields.List(fields.Nested(StepSchema))


class EchoOutcomesQuerySchema(Schema):
    """What ``echo_outcomes`` is asked: a community and the tickets of one reply (a page at most).

    >>> EchoOutcomesQuerySchema().load({"community": "xingqiao", "ticket_ids": ["T1", "T2"]})["ticket_ids"]
    ['T1', 'T2']
    """

    class Meta:
        unknown = RAISE

    community = fields.String(required=True, validate=validate.Length(min=1, max=64))
    ticket_ids = fields.List(fields.String(validate=validate.Length(min=1, max=128)), required=True,
                             validate=validate.Length(max=MAX_LIMIT))


ECHO_OUTCOMES_QUERY = EchoOutcomesQuerySchema()


class EchoEntrySchema(Schema):
    """An echo's outcome as a ticket's timeline shows it (services/notify/outcomes.py): delivered, failed, read.

    ``event_id`` (``<echo id>:<kind>``) is the same on every read: the timeline shows an entry once.
    """

    type = fields.String()
    at = fields.AwareDateTime()
    event_id = fields.String()
    echo_id = fields.String()
    channel = fields.String()
    recipient = fields.String()
    source_event_type = fields.String()
    reason = fields.String()


ECHO_ENTRIES = EchoEntrySchema(many=True)


class TaskSchema(Schema):
    """A human step: phone or visit the resident (their phone masked; the register has the rest)."""

    id = fields.String(attribute="_id")
    ticket_id = fields.String()
    number = fields.String(allow_none=True)
    recipient = fields.String()
    grid = fields.String(allow_none=True)
    title = fields.String()
    body = fields.String()
    status = fields.String()
    created_at = fields.AwareDateTime()
    done_at = fields.AwareDateTime(allow_none=True)
    done_by = fields.String(allow_none=True)
    note = fields.String(allow_none=True)


ECHO_VIEWS = EchoViewSchema(many=True)
TASKS = TaskSchema(many=True)


class CheckinAnswerSchema(Schema):
    """A resident's answer to the day's health check-in (``POST /api/v1/me/checkins``)."""

    class Meta:
        unknown = RAISE

    status = fields.String(required=True, validate=validate.OneOf(("well", "unwell")))
    temperature = fields.Float(allow_none=True, load_default=None, validate=validate.Range(min=34.0, max=43.0))
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))


CHECKIN_ANSWER = CheckinAnswerSchema()


class CheckinScheduleSchema(Schema):
    """When the daily check-in goes out (``PUT /api/v1/checkins/schedule``): local ``HH:MM``, or null for none."""

    class Meta:
        unknown = RAISE

    at = fields.String(required=True, allow_none=True, validate=validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$"))


CHECKIN_SCHEDULE = CheckinScheduleSchema()
