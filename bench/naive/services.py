"""The naive pipeline's three services: gateway (HTTP), tickets (RPC + event), notify (handler)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from nameko.events import EventDispatcher, event_handler
from nameko.rpc import RpcProxy, rpc
from nameko.web.handlers import http
from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from kernel.envelope import utcnow
from kernel.mongo import Mongo

COMMUNITY = "xingqiao"
RESIDENT_HEADER = "X-Bench-Resident"
# The platform's text of the received echo (services/notify): the baseline writes as many bytes.
TITLE, BODY = "您的诉求已受理", "我们已收到您反映的问题（编号 {number}），将尽快安排处理。"


def ensure_ticket_indexes(db: Database) -> None:
    """The platform's ticket indexes, so a write maintains as many index entries."""
    db.tickets.create_index([("community", ASCENDING), ("attached_residents", ASCENDING),
                             ("created_at", DESCENDING)], name="by_resident")
    db.tickets.create_index([("community", ASCENDING), ("state", ASCENDING)], name="by_state")


def ensure_inbox_indexes(db: Database) -> None:
    """The platform's inbox index."""
    db.inbox.create_index([("community", ASCENDING), ("recipient", ASCENDING),
                           ("created_at", DESCENDING)], name="by_recipient")


def ticket_document(ticket_id: str, community: str, reporter: str, data: dict, now: datetime) -> dict:
    """A ticket with the fields of the platform's ``Ticket.to_document()`` (no outbox)."""
    return {
        "_id": ticket_id, "community": community, "service_code": data.get("service_code"),
        "category": "房屋设施", "priority": "urgent", "description": data.get("description"),
        "address_string": data.get("address_string"), "source": "resident", "reporter": reporter,
        "created_at": now, "updated_at": now, "state": "received", "lat": data.get("lat"),
        "long": data.get("long"), "attached_residents": [reporter], "assignee": None, "priority_raises": 0,
        "bounce_count": 0, "reopen_count": 0, "callback_round": 0, "callbacks": [], "review_flags": [],
        "first_response_at": None, "resolution_summary": None, "close_reason": None, "version": 1,
        "timeline": [{"type": "ticket.received", "at": now, "state": "received", "by": None, "role": None,
                      "source": "resident"}],
    }


def inbox_document(event: dict, recipient: str, now: datetime) -> dict:
    """An inbox message with the fields of the platform's (no outbox)."""
    event_id = event["event_id"]
    return {
        "_id": f"{event_id}:{recipient}", "community": event["community"], "recipient": recipient,
        "ticket_id": event["ticket_id"], "channel": "inbox", "title": TITLE,
        "body": BODY.format(number=event["ticket_id"]), "source_event_id": event_id,
        "source_event_type": "ticket.received", "correlation_id": event_id, "created_at": now,
        "read_at": None, "delivery": {"status": "delivered", "requested_at": event["occurred_at"],
                                      "delivered_at": now},
    }


def json_response(status: int, body: object) -> tuple[int, dict, str]:
    """A nameko http response with a JSON body."""
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(body, ensure_ascii=False)


class Probes:
    """``/health`` and ``/ready`` for the supervisor: no broker or database checks, no metrics."""

    @http("GET", "/health")
    def health_check(self, request):
        return json_response(200, {"status": "ok", "service": self.name})

    @http("GET", "/ready")
    def readiness_check(self, request):
        return json_response(200, {"status": "ready"})


def public(document: dict) -> dict:
    """JSON-ready: datetimes as ISO 8601."""
    return json.loads(json.dumps(document, default=lambda value: value.isoformat()))


class NaiveGateway(Probes):
    """HTTP in, one RPC out; no token, no validation beyond parsing JSON."""

    name = "naive_gateway"
    tickets = RpcProxy("naive_tickets")

    @http("POST", "/api/v1/tickets")
    def create_ticket(self, request):
        body = json.loads(request.get_data())
        resident = request.headers.get(RESIDENT_HEADER, "anonymous")
        return json_response(201, self.tickets.create(COMMUNITY, resident, body))


class NaiveTickets(Probes):
    """Insert the ticket, then dispatch its event (no outbox: a crash in between loses it)."""

    name = "naive_tickets"
    db = Mongo(indexes=ensure_ticket_indexes)
    dispatch = EventDispatcher()

    @rpc
    def create(self, community: str, reporter: str, data: dict) -> dict:
        now = utcnow()
        document = ticket_document(uuid.uuid4().hex, community, reporter, data, now)
        self.db.tickets.insert_one(document)
        ticket = {"id": document["_id"], **public(document)}
        self.dispatch("ticket_received", {
            **{key: ticket[key] for key in ("state", "service_code", "category", "priority", "reporter",
                                            "attached_residents", "description", "address_string", "lat",
                                            "long", "source", "created_at", "community")},
            "ticket_id": ticket["id"], "event_id": uuid.uuid4().hex, "occurred_at": ticket["created_at"],
        })
        return ticket


class NaiveNotify(Probes):
    """nameko's own event handler: acked even if it fails, no dedupe, no retries."""

    name = "naive_notify"
    db = Mongo(indexes=ensure_inbox_indexes)

    @event_handler("naive_tickets", "ticket_received")
    def on_ticket_received(self, event: dict) -> None:
        event = {**event, "occurred_at": datetime.fromisoformat(event["occurred_at"])}
        now = utcnow()
        for recipient in event["attached_residents"]:
            self.db.inbox.insert_one(inbox_document(event, recipient, now))
