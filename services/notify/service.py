"""The notify service's entrypoints: echo ticket events to residents, serve their inbox."""

from __future__ import annotations

import uuid

from kernel.context import Context
from kernel.envelope import Envelope, utcnow
from kernel.errors import ValidationFailed
from kernel.groupcommit import GroupCommit
from kernel.handlers import handles
from kernel.health import HealthEndpoints
from kernel.logging import get_logger
from kernel.metrics import ECHO_LATENCY, ECHOES, labelled
from kernel.mongo import Mongo
from kernel.outbox import Outbox
from kernel.pagination import decode_cursor, page, page_limit
from kernel.rpc import rpc
from services.notify.domain import (
    code_delivery,
    code_request_errors,
    compose,
    inbox_message,
    masked_phone,
    national_phone,
)
from services.notify.repository import COLLECTION, DeliveryRepository, InboxRepository, ensure_indexes
from services.notify.schemas import INBOX_MESSAGES
from services.notify.sms import Sms, SmsError

log = get_logger(__name__)


EXPORT_PAGE = 200  # messages read at a time for a personal-data export


class NotifyService(HealthEndpoints):
    name = "notify"

    db = Mongo(indexes=ensure_indexes)
    writes = GroupCommit()
    outbox = Outbox(collections=[COLLECTION])
    context = Context()
    sms = Sms()

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
    def send_code(self, community: str, phone: str, code: str, purpose: str) -> dict:
        """Send a one-time code by SMS now; the caller waits for the provider's answer.

        Answers ``{"sent": true, "provider_id"}`` or ``{"sent": false, "error": {"code", "message",
        "retryable"}}``; bad input raises ValidationFailed. The code is a credential: it goes to the
        provider and nowhere else (no log line, event, outbox or record); the delivery record keeps
        the phone masked.
        """
        errors = code_request_errors(community, phone, code, purpose)
        if errors:
            raise ValidationFailed("the code request is not valid", errors)
        number = national_phone(phone)
        record = code_delivery(uuid.uuid4().hex, community, number, purpose, utcnow())
        deliveries = DeliveryRepository(self.db)
        deliveries.requested(record)
        try:
            provider_id, attempts = self.sms.send_code(number, code, record["_id"])
        except SmsError as error:
            deliveries.failed(record["_id"], utcnow(), error.to_dict(), error.attempts)
            log.warning("sms.code_failed", delivery_id=record["_id"], phone=masked_phone(number), purpose=purpose,
                        provider_code=error.code, retryable=error.retryable, attempts=error.attempts)
            return {"sent": False, "delivery_id": record["_id"], "error": error.to_dict()}
        deliveries.sent(record["_id"], utcnow(), provider_id, attempts)
        log.info("sms.code_sent", delivery_id=record["_id"], phone=masked_phone(number), purpose=purpose,
                 provider_id=provider_id, attempts=attempts)
        return {"sent": True, "provider_id": provider_id, "delivery_id": record["_id"]}

    @handles("notify.erasures")
    def on_resident_erased(self, event: Envelope) -> None:
        """A resident asked to be forgotten: their inbox messages go (a repeat finds none left)."""
        removed = self.inbox.erase_recipient(event.community, event.payload["resident_id"])
        log.info("resident.erased", resident_id=event.payload["resident_id"], inbox_messages_removed=removed)

    @rpc
    def export_recipient(self, community: str, recipient: str) -> dict:
        """Every inbox message of the recipient: their part of a personal-data export."""
        messages, after = [], None
        while page_of := self.inbox.of_recipient(community, recipient, EXPORT_PAGE, after=after):
            messages += page_of
            after = (page_of[-1]["created_at"], page_of[-1]["_id"])
        return {"inbox": INBOX_MESSAGES.dump(messages)}

    @rpc
    def list_inbox(self, community: str, recipient: str, cursor: str | None = None, limit: int | None = None) -> dict:
        """The recipient's messages, newest first: ``{"items", "next_cursor", "unread"}``."""
        limit = page_limit(limit)
        messages = self.inbox.of_recipient(community, recipient, limit + 1, after=decode_cursor(cursor, 2))
        answer = page(messages, limit, key=lambda message: (message["created_at"], message["_id"]),
                      dump=INBOX_MESSAGES.dump)
        return {**answer, "unread": self.inbox.unread(community, recipient)}
