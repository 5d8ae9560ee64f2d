"""What an echo's record shows on its ticket's timeline (``notify.echo_outcomes``), built from records the
fallback state machine wrote, with an injected clock (no I/O)."""

from datetime import UTC, datetime, timedelta

import pytest

from services.notify.fallback import Outcome, Policy, expire, new_echo, receipt, record_send
from services.notify.outcomes import FAILED_REASON, by_ticket, timeline_entries
from services.notify.schemas import ECHO_ENTRIES, ECHO_OUTCOMES_QUERY

T0 = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
POLICY = Policy(deadlines={"inbox": 0, "sms": 60, "wechat": 30, "human": 3600}, retry_delays=(5,),
                max_attempts=1, proof_seconds=300)
FAILED = Outcome("failed", answer={"code": "isv.MOBILE_NUMBER_ILLEGAL"})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record(channels=("inbox",), echo_id="ev1:r1", ticket_id="T1", recipient="r1", human=True) -> dict:
    """An echo's record as notify stores it (``_start`` adds what it is about to the plan)."""
    echo = new_echo(echo_id, list(channels), occurred_at=T0, now=T0, policy=POLICY, human=human)
    echo.update(ticket_id=ticket_id, recipient=recipient, source_event_id=echo_id.split(":")[0],
                source_event_type="ticket.received", community="xingqiao")
    return echo


def shown(entries: list[dict]) -> list[tuple]:
    return [(entry["type"], entry["channel"], entry["at"]) for entry in entries]


def test_an_echo_delivered_in_the_inbox_shows_delivered_with_what_it_is_about():
    echo, _ = record_send(record(), 0, Outcome("delivered", answer={"code": "stored"}), at(0.2), POLICY)
    assert timeline_entries(echo) == [{
        "type": "echo.delivered", "at": at(0.2), "event_id": "ev1:r1:delivered", "echo_id": "ev1:r1",
        "channel": "inbox", "recipient": "r1", "source_event_type": "ticket.received"}]


def test_a_read_inbox_message_shows_delivered_then_read():
    echo, _ = record_send(record(), 0, Outcome("delivered"), at(0), POLICY)
    echo, _ = receipt(echo, "inbox", "read", at(30))
    assert shown(timeline_entries(echo)) == [("echo.delivered", "inbox", at(0)), ("echo.read", "inbox", at(30))]


def test_an_echo_on_its_way_shows_nothing_yet():
    echo, _ = record_send(record(("sms", "inbox")), 0, Outcome("sent", provider_id="biz-1"), at(0), POLICY)
    assert timeline_entries(echo) == []


def test_an_echo_delivered_by_a_later_step_shows_that_step_and_its_time():
    echo, _ = record_send(record(("sms", "wechat")), 0, FAILED, at(0), POLICY)
    echo, _ = record_send(echo, 1, Outcome("sent"), at(1), POLICY)
    echo, _ = receipt(echo, "wechat", "delivered", at(20))
    assert shown(timeline_entries(echo)) == [("echo.delivered", "wechat", at(20))]


def test_an_echo_whose_every_step_failed_shows_failed_with_the_last_steps_channel_and_why():
    echo, _ = record_send(record(("sms",), human=False), 0, FAILED, at(5), POLICY)
    [entry] = timeline_entries(echo)
    assert (entry["type"], entry["channel"], entry["at"], entry["event_id"]) == (
        "echo.failed", "sms", at(5), "ev1:r1:failed")
    assert entry["reason"] == FAILED_REASON + "failed" == "every step of the plan failed; the last: failed"


def test_a_late_receipt_after_the_echo_failed_shows_both():
    echo, _ = record_send(record(("sms",), human=False), 0, Outcome("sent"), at(0), POLICY)
    echo, _ = expire(echo, at(60), POLICY)
    echo, _ = receipt(echo, "sms", "delivered", at(90))
    entries = timeline_entries(echo)
    assert shown(entries) == [("echo.failed", "sms", at(60)), ("echo.delivered", "sms", at(90))]
    assert entries[0]["reason"] == FAILED_REASON + "expired"  # as it was when it failed


def test_a_broadcasts_echo_has_no_ticket_and_shows_nowhere():
    echo, _ = record_send(record(ticket_id=None), 0, Outcome("delivered"), at(0), POLICY)
    assert timeline_entries(echo) == []
    assert by_ticket(["T1"], [echo]) == {"T1": []}


def test_entries_are_the_same_on_every_read():
    echo, _ = record_send(record(), 0, Outcome("delivered"), at(0), POLICY)
    echo, _ = receipt(echo, "inbox", "read", at(3))
    assert timeline_entries(echo) == timeline_entries(dict(echo))
    assert [entry["event_id"] for entry in timeline_entries(echo)] == ["ev1:r1:delivered", "ev1:r1:read"]


def test_by_ticket_answers_every_ticket_asked_for_oldest_first_and_nothing_else():
    late, _ = record_send(record(echo_id="ev2:r1"), 0, Outcome("delivered"), at(50), POLICY)
    early, _ = record_send(record(echo_id="ev1:r2", recipient="r2"), 0, Outcome("delivered"), at(10), POLICY)
    other, _ = record_send(record(echo_id="ev3:r3", ticket_id="T9"), 0, Outcome("delivered"), at(0), POLICY)
    found = by_ticket(["T1", "T2"], [late, other, early])
    assert list(found) == ["T1", "T2"] and found["T2"] == []
    assert [(entry["echo_id"], entry["at"]) for entry in found["T1"]] == [("ev1:r2", at(10)), ("ev2:r1", at(50))]


def test_entries_go_over_the_wire_as_the_timeline_shows_them():
    echo, _ = record_send(record(("sms",), human=False), 0, FAILED, at(5), POLICY)
    [wire] = ECHO_ENTRIES.dump(timeline_entries(echo))
    assert wire == {"type": "echo.failed", "at": "2026-12-06T02:00:05+00:00", "event_id": "ev1:r1:failed",
                    "echo_id": "ev1:r1", "channel": "sms", "recipient": "r1", "source_event_type": "ticket.received",
                    "reason": "every step of the plan failed; the last: failed"}


@pytest.mark.parametrize("query,field", [
    ({"community": "xingqiao"}, "ticket_ids"),
    ({"community": "", "ticket_ids": ["T1"]}, "community"),
    ({"community": "xingqiao", "ticket_ids": "T1"}, "ticket_ids"),
    ({"community": "xingqiao", "ticket_ids": [""]}, "ticket_ids"),
    ({"community": "xingqiao", "ticket_ids": [f"T{n}" for n in range(101)]}, "ticket_ids"),
    ({"community": "xingqiao", "ticket_ids": ["T1"], "since": "x"}, "since"),
])
def test_the_query_is_a_community_and_a_page_of_ticket_ids(query, field):
    assert field in ECHO_OUTCOMES_QUERY.validate(query)
