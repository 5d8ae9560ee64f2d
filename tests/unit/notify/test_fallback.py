"""Preferences, quiet hours, digests and the fallback plan's timing, with an injected clock (no I/O)."""

from datetime import UTC, datetime, timedelta

import pytest

from services.notify.fallback import (
    Outcome,
    Policy,
    defer,
    expire,
    is_silent,
    new_echo,
    next_action,
    plan,
    receipt,
    record_send,
    skip,
)
from services.notify.preferences import deferral, next_digest, normalised, quiet_until

T0 = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
POLICY = Policy(deadlines={"inbox": 0, "sms": 60, "wechat": 30, "human": 3600}, retry_delays=(5, 20),
                max_attempts=3, proof_seconds=300)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def echo(channels=("sms", "wechat"), **extra):
    return new_echo("e1:r1", list(channels), occurred_at=T0, now=T0, policy=POLICY, **extra)


FAILED_RETRYABLE = Outcome("failed", answer={"code": "ServiceUnavailable"}, retryable=True)
FAILED_FINAL = Outcome("failed", answer={"code": "isv.MOBILE_NUMBER_ILLEGAL"})


# --- preferences, quiet hours, digest -------------------------------------------------------------------

def test_defaults_are_the_inbox_only():
    assert normalised({}) == {"channels": ["inbox"], "quiet_hours": None, "digest": None, "webhook_url": None}
    assert normalised({"channels": ["sms"], "unknown": 1}) == {**normalised({}), "channels": ["sms"]}


@pytest.mark.parametrize(("local", "expected_end"), [
    ("23:30", "07:00+1"), ("03:00", "07:00"), ("06:59", "07:00"), ("07:00", None), ("21:59", None), ("12:00", None)])
def test_quiet_hours_across_midnight(local, expected_end):
    hours, minutes = map(int, local.split(":"))
    now = datetime(2026, 12, 6, hours, minutes, tzinfo=UTC) - timedelta(hours=8)  # Shanghai is UTC+8
    end = quiet_until({"start": "22:00", "end": "07:00"}, now)
    if expected_end is None:
        assert end is None
    else:
        day = 7 if expected_end.endswith("+1") else 6
        assert end == datetime(2026, 12, day, 7, 0, tzinfo=UTC) - timedelta(hours=8)


def test_quiet_hours_within_a_day_and_equal_bounds():
    lunch = {"start": "12:00", "end": "14:00"}
    assert quiet_until(lunch, datetime(2026, 12, 6, 5, 0, tzinfo=UTC)) == datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
    assert quiet_until(lunch, datetime(2026, 12, 6, 7, 0, tzinfo=UTC)) is None
    assert quiet_until({"start": "08:00", "end": "08:00"}, T0) is None


def test_the_digest_is_the_next_occurrence_strictly_later():
    assert next_digest({"at": "18:00"}, T0) == datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    assert next_digest({"at": "10:00"}, T0) == datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # now is 10:00 already


def test_quiet_hours_hold_push_channels_not_the_inbox_and_not_critical_tickets():
    prefs = normalised({"channels": ["sms"], "quiet_hours": {"start": "09:00", "end": "11:00"}})
    until = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    assert deferral(prefs, "sms", critical=False, now=T0) == (until, "quiet_hours")
    assert deferral(prefs, "human", critical=False, now=T0) == (until, "quiet_hours")
    assert deferral(prefs, "inbox", critical=False, now=T0) is None
    assert deferral(prefs, "sms", critical=True, now=T0) is None


def test_a_digest_waits_for_its_time_and_then_for_the_end_of_quiet_hours():
    prefs = normalised({"digest": {"at": "22:30"}, "quiet_hours": {"start": "22:00", "end": "07:00"}})
    assert deferral(prefs, "sms", critical=False, now=T0) == (datetime(2026, 12, 6, 23, 0, tzinfo=UTC),
                                                             "digest_pending")
    assert deferral(prefs, "sms", critical=True, now=T0) is None


# --- the plan ---------------------------------------------------------------------------------------------

def test_the_plan_ends_with_the_human_step_once():
    assert plan(["sms", "human", "wechat", "sms"]) == ["sms", "wechat", "human"]
    assert plan([]) == ["human"]


def test_a_delivered_first_step_delivers_the_echo_once():
    state, events = record_send(echo(("inbox",)), 0, Outcome("delivered"), at(0.1), POLICY)
    assert (state["status"], events, state["due_at"]) == ("delivered", ["delivered"], None)
    assert next_action(state, at(1000)) is None


def test_a_retryable_failure_waits_its_back_off_then_tries_again():
    state, events = record_send(echo(), 0, FAILED_RETRYABLE, at(0), POLICY)
    assert events == [] and state["steps"][0]["status"] == "retrying" and state["due_at"] == at(5)
    assert next_action(state, at(4.9)) is None and next_action(state, at(5)) == ("send", 0)
    state, _ = record_send(state, 0, FAILED_RETRYABLE, at(5), POLICY)
    assert state["due_at"] == at(25)  # the second delay


def test_after_the_last_attempt_the_next_step_is_tried():
    state = echo()
    for moment in (0, 5, 25):
        state, events = record_send(state, 0, FAILED_RETRYABLE, at(moment), POLICY)
    assert state["steps"][0]["status"] == "failed" and state["steps"][0]["attempts"] == 3
    assert state["current"] == 1 and next_action(state, at(25)) == ("send", 1) and events == []


def test_retries_never_outlast_the_steps_deadline():
    short = Policy(deadlines={"sms": 10}, retry_delays=(30,), max_attempts=5, proof_seconds=300)
    state, _ = record_send(echo(), 0, FAILED_RETRYABLE, at(0), short)
    assert state["steps"][0]["status"] == "failed" and state["current"] == 1


def test_a_final_failure_moves_on_at_once():
    state, _ = record_send(echo(), 0, FAILED_FINAL, at(0), POLICY)
    assert state["steps"][0]["status"] == "failed" and state["steps"][0]["attempts"] == 1 and state["current"] == 1


def test_a_sent_step_without_a_receipt_expires_at_its_deadline():
    state, _ = record_send(echo(), 0, Outcome("sent", provider_id="biz-1"), at(0), POLICY)
    assert state["steps"][0]["deadline_at"] == at(60) and state["due_at"] == at(60)
    assert next_action(state, at(59.9)) is None and next_action(state, at(60)) == ("expire", 0)
    state, events = expire(state, at(60), POLICY)
    assert [s["status"] for s in state["steps"]] == ["expired", "pending", "pending"] and events == []


def test_echo_failed_only_when_the_last_step_fails():
    state = echo(("sms",))
    state, events = record_send(state, 0, FAILED_FINAL, at(0), POLICY)
    assert events == [] and state["steps"][1]["channel"] == "human"
    state, _ = record_send(state, 1, Outcome("sent"), at(0), POLICY)  # a task for the grid worker
    state, events = expire(state, at(3600), POLICY)
    assert state["status"] == "failed" and events == ["failed"] and state["due_at"] is None


def test_a_late_receipt_on_an_expired_step_still_delivers():
    state, _ = record_send(echo(), 0, Outcome("sent"), at(0), POLICY)
    state, _ = expire(state, at(60), POLICY)
    state, events = receipt(state, "sms", "delivered", at(61))
    assert events == ["delivered"] and state["status"] == "delivered" and state["steps"][0]["delivered_at"] == at(61)
    state, events = receipt(state, "sms", "delivered", at(62))
    assert events == []  # a repeated receipt changes nothing


def test_a_read_receipt_reads_and_delivers_once():
    state, _ = record_send(echo(("inbox",)), 0, Outcome("delivered"), at(0), POLICY)
    state, events = receipt(state, "inbox", "read", at(30))
    assert events == ["read"] and state["read_at"] == at(30) and state["steps"][0]["status"] == "read"


def test_a_skipped_step_records_why_and_moves_on():
    state, events = skip(echo(), 0, "no phone on record", at(0))
    [answer] = state["steps"][0]["answers"]
    assert state["steps"][0]["status"] == "skipped" and answer["reason"] == "no phone on record"
    assert state["current"] == 1 and events == []


def test_a_deferred_echo_waits_and_its_proof_deadline_moves_with_it():
    state = defer(echo(), at(3600), "quiet_hours", POLICY)
    assert next_action(state, at(3599)) is None and next_action(state, at(3600)) == ("send", 0)
    assert state["proof_due_at"] == at(3900)
    assert not is_silent(state, at(5000))  # a reason is recorded while it waits
    state, _ = record_send(state, 0, Outcome("sent"), at(3600), POLICY)
    assert state["reason"] is None and state["deferred_for"] == "quiet_hours"
    assert is_silent(state, at(3900)) and not is_silent(state, at(3899))


def test_silence_is_not_delivered_by_the_proof_deadline_without_a_reason():
    state, _ = record_send(echo(), 0, Outcome("sent"), at(0), POLICY)
    assert not is_silent(state, at(299)) and is_silent(state, at(300))
    delivered, _ = receipt(state, "sms", "delivered", at(301))
    assert not is_silent(delivered, at(400))


def test_answers_are_kept_per_attempt_and_bounded():
    state = echo(("sms",))
    many = Policy(deadlines={"sms": 10_000}, retry_delays=(1,), max_attempts=50, proof_seconds=300)
    for moment in range(20):
        state, _ = record_send(state, 0, FAILED_RETRYABLE, at(moment), many)
    assert len(state["steps"][0]["answers"]) == 10 and state["steps"][0]["attempts"] == 20


def test_a_failure_receipt_fails_the_step_in_progress_and_moves_on():
    from services.notify.fallback import failure_receipt

    state, _ = record_send(echo(), 0, Outcome("sent"), at(0), POLICY)
    state, events = failure_receipt(state, "sms", {"code": "MOBILE_NOT_ON_SERVICE"}, at(10))
    assert state["steps"][0]["status"] == "failed" and state["current"] == 1 and state["due_at"] == at(10)
    assert state["steps"][0]["answers"][-1]["code"] == "MOBILE_NOT_ON_SERVICE" and events == []
    again, events = failure_receipt(state, "sms", {"code": "MOBILE_NOT_ON_SERVICE"}, at(11))
    assert again["current"] == 1 and events == []  # a repeated receipt does not skip another step


def test_a_failure_receipt_after_delivery_changes_nothing():
    from services.notify.fallback import failure_receipt

    state, _ = record_send(echo(), 0, Outcome("sent"), at(0), POLICY)
    state, _ = receipt(state, "sms", "delivered", at(5))
    after, events = failure_receipt(state, "sms", {"code": "x"}, at(6))
    assert after["status"] == "delivered" and after["steps"][0]["status"] == "delivered" and events == []
