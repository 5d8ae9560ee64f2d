"""What the notify service answers: its inbox messages as the API shows them."""

from __future__ import annotations

from marshmallow import Schema, fields


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
