"""The notify service's entrypoints: echo ticket events to residents, serve their inbox."""

from __future__ import annotations

from marshmallow import Schema, fields

from kernel.context import Context
from kernel.envelope import Envelope, utcnow
from kernel.groupcommit import GroupCommit
from kernel.handlers import handles
from kernel.health import HealthEndpoints
from kernel.logging import get_logger
from kernel.metrics import ECHO_LATENCY, ECHOES, labelled
from kernel.mongo import Mongo
from kernel.outbox import Outbox
from kernel.rpc import rpc
from services.notify.domain import Echo, compose
from services.notify.repository import COLLECTION, InboxRepository

log = get_logger(__name__)


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


def inbox_message(event: Envelope, echo: Echo) -> tuple[dict, Envelope]:
    """The stored message for one echo and the ``echo.delivered`` fact it makes true."""
    now = utcnow()
    message_id = f"{event.event_id}:{echo.recipient}"
    message = {
        "_id": message_id, "community": event.community, "recipient": echo.recipient,
        "ticket_id": event.payload["ticket_id"], "channel": echo.channel,
        "title": echo.title, "body": echo.body,
        "source_event_id": event.event_id, "source_event_type": event.type,
        "correlation_id": event.correlation_id, "created_at": now, "read_at": None,
        "delivery": {"status": "delivered", "requested_at": event.occurred_at, "delivered_at": now},
    }
    outcome = Envelope.new("echo.delivered", {
        "echo_id": message_id, "ticket_id": event.payload["ticket_id"], "recipient": echo.recipient,
        "channel": echo.channel, "source_event_id": event.event_id, "source_event_type": event.type,
        "at": now.isoformat(), "reason": None,
    }, community=event.community, correlation_id=event.correlation_id)
    return message, outcome


class NotifyService(HealthEndpoints):
    name = "notify"

    db = Mongo(indexes=InboxRepository.ensure_indexes)
    writes = GroupCommit()
    outbox = Outbox(collections=[COLLECTION])
    context = Context()

    @property
    def inbox(self) -> InboxRepository:
        return InboxRepository(self.db, self.writes)

    # Each inbox message's id is <event_id>:<recipient>: the message is the record of the event.
    @handles("notify.ticket_events", dedupe="effects")
    def on_ticket_event(self, event: Envelope) -> None:
        for echo in compose(event.type, event.payload):
            message, outcome = inbox_message(event, echo)
            if self.inbox.deliver(message, outcome):
                self.outbox.flush_soon(COLLECTION, message["_id"], [outcome])
                labelled(ECHOES, echo.channel, "delivered").inc()
                labelled(ECHO_LATENCY, echo.channel).observe(
                    (message["delivery"]["delivered_at"] - event.occurred_at).total_seconds())
                log.info("echo.delivered", ticket_id=message["ticket_id"], recipient=echo.recipient,
                         channel=echo.channel, source_event_type=event.type)
            else:  # delivered before: publish its outcome again, in case that write's publish never happened
                self.outbox.flush_soon(COLLECTION, message["_id"])

    @rpc
    def list_inbox(self, community: str, recipient: str, limit: int = 50) -> list[dict]:
        messages = self.inbox.of_recipient(community, recipient, min(limit, 200))
        return INBOX_MESSAGES.dump(messages)
