"""An echo's fallback plan and its state machine, with the clock passed in. No I/O.

An echo is one message about one ticket change to one person. Its plan is the person's channels in
order, then the human step (a grid worker phones or visits). Each step is tried; a step that fails
after its retries (with back-off), or is not delivered within its deadline, hands over to the next.
The echo is delivered by its first step delivered, failed only when the last step fails (what its ticket's
timeline shows: :func:`services.notify.outcomes.timeline_entries`).

Each step is the delivery record of the echo on that channel (one per (event, recipient, channel)):
its status (pending, retrying, sent, delivered, read, failed, expired, skipped), its times and the
provider's answers.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
>>> policy = Policy(deadlines={"sms": 60}, retry_delays=(5,), max_attempts=2, proof_seconds=300)
>>> echo = new_echo("e1:r1", ["sms", "inbox"], occurred_at=t0, now=t0, policy=policy)
>>> next_action(echo, t0)
('send', 0)
>>> echo, events = record_send(echo, 0, Outcome("sent", answer={"code": "OK"}), t0, policy)
>>> echo["steps"][0]["status"], echo["due_at"] == t0 + timedelta(seconds=60)
('sent', True)
>>> echo, events = expire(echo, t0 + timedelta(seconds=61), policy)
>>> [s["status"] for s in echo["steps"]], next_action(echo, t0 + timedelta(seconds=61))
(['expired', 'pending', 'pending'], ('send', 1))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DONE = ("delivered", "read")
STEP_STATUSES = ("pending", "retrying", "sent", "delivered", "read", "failed", "expired", "skipped")
DEFAULT_DEADLINES = {"inbox": 0, "sms": 600, "wechat": 600, "email": 1800, "webhook": 300, "human": 8 * 3600}
# Reasons that account for an echo not yet delivered: the reconciler does not call such a ticket silent.
DEFERRALS = ("quiet_hours", "digest_pending")
ACCOUNTED_REASONS = ("opted_out", "no_channel", "quiet_hours", "digest_pending", "no_resident", "erased",
                     "consent_withdrawn")


@dataclass(frozen=True)
class Policy:
    """Per-channel deadlines (seconds from a step's first attempt), retry back-off, and the proof window."""

    deadlines: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    retry_delays: Sequence[float] = (5, 30, 120)
    max_attempts: int = 3
    proof_seconds: float = 900

    def deadline(self, channel: str) -> float:
        return float(self.deadlines.get(channel, DEFAULT_DEADLINES.get(channel, 600)))

    def backoff(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt (the last delay repeats).

        >>> Policy(retry_delays=(1, 4)).backoff(1), Policy(retry_delays=(1, 4)).backoff(5)
        (1.0, 4.0)
        """
        delays = list(self.retry_delays) or [0]
        return float(delays[min(attempts, len(delays)) - 1])


@dataclass(frozen=True)
class Outcome:
    """What one attempt on a channel came to: ``sent`` (awaiting a receipt), ``delivered``, or ``failed``."""

    status: str
    answer: Mapping | None = None
    provider_id: str | None = None
    retryable: bool = False


def plan(channels: Sequence[str], human: bool = True) -> list[str]:
    """The person's channels in order, each once, ending with the human step (for residents).

    >>> plan(["sms", "inbox", "sms"]), plan(["wechat"], human=False)
    (['sms', 'inbox', 'human'], ['wechat'])
    """
    steps = [channel for channel in dict.fromkeys(channels) if channel != "human"]
    return [*steps, "human"] if human or not steps else steps


def _step(channel: str) -> dict:
    return {"channel": channel, "status": "pending", "attempts": 0, "started_at": None, "deadline_at": None,
            "next_attempt_at": None, "sent_at": None, "delivered_at": None, "read_at": None, "failed_at": None,
            "provider_id": None, "answers": []}


def new_echo(echo_id: str, channels: Sequence[str], *, occurred_at: datetime, now: datetime, policy: Policy,
             not_before: datetime | None = None, reason: str | None = None, human: bool = True) -> dict:
    """An echo's state, its first step due at once (or at ``not_before``, with the reason recorded)."""
    due = max(now, not_before) if not_before else now
    return {
        "_id": echo_id, "status": "pending", "current": 0, "steps": [_step(c) for c in plan(channels, human)],
        "occurred_at": occurred_at, "requested_at": now, "due_at": due, "not_before": not_before,
        "reason": reason, "delivered_at": None, "read_at": None, "failed_at": None,
        "proof_due_at": max(occurred_at, not_before or occurred_at) + timedelta(seconds=policy.proof_seconds),
    }


def next_action(echo: Mapping, now: datetime) -> tuple[str, int] | None:
    """What is due now: ``("send", i)``, ``("expire", i)`` or None (nothing, or not yet)."""
    if echo["status"] in ("delivered", "failed"):
        return None
    index = echo["current"]
    step = echo["steps"][index]
    if echo.get("not_before") and now < echo["not_before"]:
        return None
    if step["status"] == "pending" or (step["status"] == "retrying" and step["next_attempt_at"] <= now):
        return "send", index
    if step["status"] == "sent" and step["deadline_at"] is not None and now >= step["deadline_at"]:
        return "expire", index
    return None


def defer(echo: dict, not_before: datetime, reason: str, policy: Policy) -> dict:
    """Hold the current step until ``not_before`` (quiet hours, a digest), recording why."""
    echo = {**echo, "not_before": not_before, "reason": reason, "due_at": not_before}
    echo["proof_due_at"] = max(echo["proof_due_at"], not_before + timedelta(seconds=policy.proof_seconds))
    return echo


def _copy(echo: Mapping) -> dict:
    return {**echo, "steps": [dict(step) for step in echo["steps"]]}


def record_send(echo: Mapping, index: int, outcome: Outcome, now: datetime, policy: Policy) -> tuple[dict, list[str]]:
    """The echo after an attempt on step ``index``, and what the attempt made true (``delivered``/``failed``:
    the metrics count it)."""
    echo = _copy(echo)
    step = echo["steps"][index]
    step["attempts"] += 1
    step["started_at"] = step["started_at"] or now
    step["answers"] = [*step["answers"], {"at": now, "status": outcome.status, **(outcome.answer or {})}][-10:]
    echo["not_before"] = None
    if echo.get("reason") in DEFERRALS:  # the wait is over: from now on the step must prove itself
        echo.update(deferred_for=echo["reason"], reason=None)
    if outcome.provider_id:
        step["provider_id"] = outcome.provider_id
    if outcome.status == "delivered":
        step.update(status="delivered", sent_at=step["sent_at"] or now, delivered_at=now, next_attempt_at=None)
        return _delivered(echo, now)
    if outcome.status == "sent":
        deadline = step["started_at"] + timedelta(seconds=policy.deadline(step["channel"]))
        step.update(status="sent", sent_at=now, deadline_at=deadline, next_attempt_at=None)
        echo.update(status="delivering", due_at=deadline)
        return echo, []
    deadline = step["started_at"] + timedelta(seconds=policy.deadline(step["channel"]))
    retry_at = now + timedelta(seconds=policy.backoff(step["attempts"]))
    if outcome.retryable and step["attempts"] < policy.max_attempts and (
            retry_at < deadline or policy.deadline(step["channel"]) == 0):
        step.update(status="retrying", next_attempt_at=retry_at)
        echo.update(status="delivering", due_at=retry_at)
        return echo, []
    step.update(status="failed", failed_at=now, next_attempt_at=None)
    return _next_step(echo, now)


def skip(echo: Mapping, index: int, reason: str, now: datetime) -> tuple[dict, list[str]]:
    """Step ``index`` cannot be tried (no contact for that channel, no consent): on to the next."""
    echo = _copy(echo)
    echo["steps"][index].update(status="skipped", failed_at=now,
                                answers=[{"at": now, "status": "skipped", "reason": reason}])
    return _next_step(echo, now)


def expire(echo: Mapping, now: datetime, policy: Policy) -> tuple[dict, list[str]]:
    """The current step was sent but not delivered within its deadline: on to the next step."""
    echo = _copy(echo)
    echo["steps"][echo["current"]].update(status="expired")
    return _next_step(echo, now)


def receipt(echo: Mapping, channel: str, status: str, at: datetime) -> tuple[dict, list[str]]:
    """A delivery (or read) receipt for the step on ``channel``, even one that had expired."""
    echo = _copy(echo)
    for step in echo["steps"]:
        if step["channel"] != channel:
            continue
        if status == "read":
            step.update(status="read", read_at=step["read_at"] or at, delivered_at=step["delivered_at"] or at)
            echo["read_at"] = echo["read_at"] or at
        elif step["status"] != "read":
            step.update(status="delivered", delivered_at=step["delivered_at"] or at)
        events: list[str] = []
        if echo["status"] != "delivered":
            echo, events = _delivered(echo, at)
        return echo, [*events, "read"] if status == "read" else events
    return echo, []


def failure_receipt(echo: Mapping, channel: str, answer: Mapping, at: datetime) -> tuple[dict, list[str]]:
    """The provider reports that a step it had accepted never reached the person (an SMS receipt's
    ``success: false``): the step failed; if it was the current one, the next step is tried now."""
    echo = _copy(echo)
    for index, step in enumerate(echo["steps"]):
        if step["channel"] != channel or step["status"] in DONE:
            continue
        step["answers"] = [*step["answers"], {"at": at, "status": "failed", **answer}][-10:]
        if step["status"] in ("sent", "expired"):
            was_current = index == echo["current"] and step["status"] == "sent"
            step.update(status="failed", failed_at=at)
            if was_current:
                return _next_step(echo, at)
        return echo, []
    return echo, []


def _delivered(echo: dict, now: datetime) -> tuple[dict, list[str]]:
    already = echo["status"] == "delivered"
    echo.update(status="delivered", delivered_at=echo.get("delivered_at") or now, due_at=None, not_before=None)
    return echo, [] if already else ["delivered"]


def _next_step(echo: dict, now: datetime) -> tuple[dict, list[str]]:
    if echo["status"] == "delivered":  # a late receipt already delivered it
        return echo, []
    if echo["current"] + 1 >= len(echo["steps"]):
        echo.update(status="failed", failed_at=now, due_at=None)
        return echo, ["failed"]
    echo.update(current=echo["current"] + 1, status="delivering", due_at=now)
    return echo, []


def is_silent(echo: Mapping, now: datetime) -> bool:
    """Whether the echo proves nothing by now: not delivered, no accepted reason, past its proof deadline.

    >>> from datetime import UTC
    >>> t = datetime(2026, 12, 6, tzinfo=UTC)
    >>> is_silent({"status": "delivering", "reason": None, "proof_due_at": t}, t + timedelta(seconds=1))
    True
    >>> is_silent({"status": "delivering", "reason": "quiet_hours", "proof_due_at": t}, t + timedelta(seconds=1))
    False
    """
    if echo["status"] == "delivered" or echo.get("reason") in ACCOUNTED_REASONS:
        return False
    return now >= echo["proof_due_at"]
