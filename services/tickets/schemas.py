"""What goes in and out of the tickets service: marshmallow schemas, Open311 names where they overlap."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields

from kernel.contracts import CreateTicketSchema

__all__ = ["CreateTicketSchema", "TicketSchema", "ViewerSchema"]


class ViewerSchema(Schema):
    """Who is asking, as the gateway authenticated them."""

    class Meta:
        unknown = EXCLUDE

    subject = fields.String(required=True)
    role = fields.String(required=True)
    community = fields.String(load_default=None)  # None: the community the call names
    grids = fields.List(fields.String(), load_default=list)
    teams = fields.List(fields.String(), load_default=list)


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
    # The ticket's own entries and its echo outcomes (recorded apart), in time order: Ticket.history.
    timeline = fields.List(fields.Nested(TimelineEntrySchema), attribute="history")

