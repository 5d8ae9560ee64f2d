"""A reply's timelines with notify's echo outcomes: one call for all its tickets, and a reply without them
when notify does not answer (a stand-in for the RPC proxy, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from nameko.exceptions import RemoteError
from nameko.exceptions import UnknownService as NoSuchService

from kernel.errors import ValidationFailed
from kernel.rpc import RpcTimeout
from services.tickets.catalogue import Service
from services.tickets.domain import Actor, Ticket
from services.tickets.schemas import TicketSchema
from services.tickets.timeline import UNAVAILABLE, attach_echoes, flagged

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
LEAK = Service("roof_leak", "房屋漏水", "屋顶漏水", "房屋设施", "urgent")


def ticket(ticket_id: str) -> Ticket:
    return Ticket.receive(ticket_id, "xingqiao", LEAK, "卫生间漏水", "3-2-401", "r1", "resident", NOW)


def delivered(ticket_id: str, seconds: float, recipient: str = "r1") -> dict:
    """An entry as notify's ``echo_outcomes`` sends it (``at`` in ISO 8601)."""
    return {"type": "echo.delivered", "at": (NOW + timedelta(seconds=seconds)).isoformat(),
            "event_id": f"ev-{ticket_id}:{recipient}:delivered", "echo_id": f"ev-{ticket_id}:{recipient}",
            "channel": "inbox", "recipient": recipient, "source_event_type": "ticket.received"}


class Notify:
    """What the tickets service's ``notify`` proxy answers: ``answer``, or ``error`` raised."""

    def __init__(self, answer: dict | None = None, error: Exception | None = None):
        self.answer, self.error, self.calls = answer or {}, error, []

    def echo_outcomes(self, community: str, ticket_ids: list[str]) -> dict:
        self.calls.append((community, ticket_ids))
        if self.error is not None:
            raise self.error
        return self.answer


def test_every_ticket_of_a_reply_gets_its_echoes_from_one_call():
    tickets = [ticket("T1"), ticket("T2"), ticket("T3")]
    notify = Notify({"T1": [delivered("T1", 1)], "T2": [delivered("T2", 2), delivered("T2", 3, "r2")], "T3": []})
    assert attach_echoes(notify, "xingqiao", tickets) is True
    assert notify.calls == [("xingqiao", ["T1", "T2", "T3"])]
    assert [len(t.echoes) for t in tickets] == [1, 2, 0]
    assert tickets[1].echoes[1]["at"] == NOW + timedelta(seconds=3) and tickets[1].echoes[1]["at"].tzinfo is UTC


def test_the_timeline_shows_notifys_echoes_in_time_order_with_todays_fields():
    shown = ticket("T1")
    shown.dispatch({"kind": "worker", "id": "w1"}, NOW + timedelta(minutes=2), Actor("s1", "secretary"))
    attach_echoes(Notify({"T1": [delivered("T1", 60)]}), "xingqiao", [shown])
    timeline = TicketSchema().dump(shown)["timeline"]
    assert [entry["type"] for entry in timeline] == ["ticket.received", "echo.delivered", "ticket.dispatched"]
    assert timeline[1] == {"type": "echo.delivered", "at": "2026-11-26T08:01:00+00:00", "channel": "inbox",
                           "recipient": "r1", "source_event_type": "ticket.received"}


def test_an_empty_reply_asks_nothing():
    notify = Notify()
    assert attach_echoes(notify, "xingqiao", []) is True and notify.calls == []


@pytest.mark.parametrize("error", [
    RpcTimeout("notify", "echo_outcomes", 2.0), NoSuchService("notify"), RemoteError("KeyError", "boom"),
    ValidationFailed("the request is not valid", {"ticket_ids": ["Longer than maximum length 100."]}),
])
def test_a_notify_that_does_not_answer_leaves_the_reply_without_echoes_and_says_so(error):
    tickets = [ticket("T1")]
    assert attach_echoes(Notify(error=error), "xingqiao", tickets) is False
    assert tickets[0].echoes == [] and [entry["type"] for entry in tickets[0].history] == ["ticket.received"]
    assert flagged(TicketSchema().dump(tickets[0]), answered=False)[UNAVAILABLE] is True


def test_a_reply_with_its_echoes_carries_no_flag():
    reply = TicketSchema().dump(ticket("T1"))
    assert UNAVAILABLE not in reply and UNAVAILABLE not in flagged(reply, answered=True)


def test_an_anonymised_ticket_shows_its_echoes_without_whom_they_went_to():
    anonymised = ticket("T1")
    anonymised.anonymised_at = NOW + timedelta(days=400)
    attach_echoes(Notify({"T1": [delivered("T1", 1)]}), "xingqiao", [anonymised])
    [echo] = anonymised.echoes
    assert echo["type"] == "echo.delivered" and "recipient" not in echo

