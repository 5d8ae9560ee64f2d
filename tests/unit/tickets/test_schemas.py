"""What clients see of a ticket: its timeline shows the echoes notify keeps, and the steps recorded apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.tickets.catalogue import Service
from services.tickets.domain import Actor, Ticket
from services.tickets.schemas import TicketSchema

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
LEAK = Service("roof_leak", "房屋漏水", "屋顶漏水", "房屋设施", "urgent")


def test_the_timeline_shows_the_echoes_in_time_order_with_their_fields():
    ticket = Ticket.receive("T1", "xingqiao", LEAK, "卫生间漏水", "3-2-401", "r1", "resident", NOW)
    ticket.dispatch({"kind": "worker", "id": "w1"}, NOW + timedelta(minutes=2), Actor("s1", "secretary"))
    ticket.echoes = [{"type": "echo.failed", "at": NOW + timedelta(minutes=1), "event_id": "e1", "channel": "sms",
                      "recipient": "r1", "source_event_type": "ticket.received", "reason": "no phone number"}]

    timeline = TicketSchema().dump(ticket)["timeline"]

    assert [entry["type"] for entry in timeline] == ["ticket.received", "echo.failed", "ticket.dispatched"]
    assert timeline[1] == {"type": "echo.failed", "at": "2026-11-26T08:01:00+00:00", "channel": "sms",
                           "recipient": "r1", "source_event_type": "ticket.received", "reason": "no phone number"}
