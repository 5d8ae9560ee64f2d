"""What goes in and out of the tickets service: marshmallow schemas, Open311 names where they overlap."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from kernel.contracts import CreateTicketSchema, ViewerSchema, text_field  # one viewer schema: the contracts'
from kernel.events import TICKET_STATES

__all__ = ["CreateTicketSchema", "TicketFiltersSchema", "TicketSchema", "ViewerSchema"]


class TicketFiltersSchema(Schema):
    """Staff's list: ``GET /api/v1/tickets?state=&grid=&category=&owner=&source=&overdue=``.

    Only this service loads it (the gateway passes the query string on), so it is not a kernel contract.

    >>> TicketFiltersSchema().load({"state": "paused", "overdue": "true"})
    {'state': 'paused', 'overdue': True}
    """

    state = fields.String(validate=validate.OneOf(TICKET_STATES))
    grid = text_field(32, 1)
    category = text_field(64, 1)
    owner = text_field(64, 1)
    source = fields.String(validate=validate.OneOf(
        ("resident", "phone_in", "walk_in", "patrol", "hotline", "open311", "staff")))
    overdue = fields.Boolean()


class TimelineEntrySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    type = fields.String()
    at = fields.AwareDateTime()
    state = fields.String()
    channel = fields.String()
    recipient = fields.String()
    reason = fields.String()
    source_event_type = fields.String()
    visibility = fields.String()  # comments: residents never see internal ones (the service drops them)
    text = fields.String()
    outcome = fields.String()
    summary = fields.String()
    bounce_count = fields.Integer()
    to_role = fields.String()  # an escalation's: the secretary
    master_id = fields.String()  # a merge's
    master_number = fields.String(allow_none=True)
    until = fields.AwareDateTime(allow_none=True)


class AttachmentViewSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    url = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    at = fields.AwareDateTime()


class CommentViewSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String()
    text = fields.String()
    visibility = fields.String()
    by = fields.String()
    role = fields.String()
    at = fields.AwareDateTime()
    attachments = fields.List(fields.Nested(AttachmentViewSchema))


class NextStepSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    note = fields.String()
    owner = fields.String()
    due_at = fields.AwareDateTime()
    by = fields.String()
    at = fields.AwareDateTime()


class TicketSchema(Schema):
    """The ticket as clients see it."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String()
    community = fields.String()
    service_code = fields.String()
    category = fields.String()
    priority = fields.String()
    state = fields.String()
    status = fields.String(attribute="status_open311")
    description = fields.String()
    address_string = fields.String(allow_none=True)
    lat = fields.Float(allow_none=True)
    long = fields.Float(allow_none=True)
    source = fields.String()
    reporter = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    number = fields.String(allow_none=True)  # XQ-20261206-0042: what people read over the phone
    version = fields.Integer()  # the ETag: actions send it back in If-Match
    grid = fields.String(allow_none=True)
    building = fields.String(allow_none=True)
    suggested_owner = fields.String(allow_none=True)
    assignee = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True)
    merged_into = fields.String(allow_none=True)
    patrol_id = fields.String(allow_none=True)
    bounce_count = fields.Integer()
    reopen_count = fields.Integer()
    close_reason = fields.String(allow_none=True)
    resolution_summary = fields.String(allow_none=True)
    escalated_at = fields.AwareDateTime(allow_none=True)
    due_at = fields.AwareDateTime(allow_none=True)
    response_due_at = fields.AwareDateTime(allow_none=True)
    callback_due_at = fields.AwareDateTime(allow_none=True)
    next_step = fields.Nested(NextStepSchema, allow_none=True)
    comments = fields.List(fields.Nested(CommentViewSchema))
    attachments = fields.List(fields.Nested(AttachmentViewSchema))
    # The answers to the category's questions (code -> value): services/tickets/intake.py.
    attributes = fields.Dict(keys=fields.String())
    # The ticket's own entries, its side entries (recorded apart) and its echo outcomes (notify's), in time
    # order: Ticket.history.
    timeline = fields.List(fields.Nested(TimelineEntrySchema), attribute="history")
    # True when notify did not answer for the echoes in time: the timeline shows none (the service sets it).
    echoes_unavailable = fields.Boolean(dump_only=True)

