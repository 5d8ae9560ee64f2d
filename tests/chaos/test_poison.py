"""Poison and malformed messages under load: each ends in its subscription's dead-letter queue,
and the echo loop around them loses nothing and does nothing twice.

* poison: a valid envelope of a catalogued type whose handler fails every time. The
  payload passes the catalogue's schema but names a resident with a lone UTF-16
  surrogate (``"r-\\ud800"``, legal in JSON, not encodable as BSON), so the handler's
  database write raises on every attempt. It must go through every retry tier and
  land in the DLQ with the error.
* malformed: a body that is not JSON (the consumer cannot decode it: rejected, the
  broker dead-letters it) and JSON that is not an envelope (the handler's check
  sends it to the DLQ at once).
"""

from __future__ import annotations

import uuid

import pytest

from kernel.envelope import Envelope
from tests.chaos.harness import (
    Scenario,
    assert_clean,
    competing_note,
    peek,
    publish,
    run,
    shared_work,
    wait_for,
)

pytestmark = pytest.mark.chaos_smoke

UNSTORABLE = "r-\ud800"  # a lone surrogate: valid JSON text, never valid UTF-8/BSON
MAX_ATTEMPTS = 5  # RETRY_DELAYS_MS of the suite has four tiers


def poison_for_notify() -> Envelope:
    return Envelope.new("ticket.dispatched", {"ticket_id": f"poison-{uuid.uuid4().hex[:8]}", "state": "dispatched",
                                              "attached_residents": [UNSTORABLE]}, community="xingqiao")


def poison_for_tickets() -> Envelope:
    """A volunteer's offer on a ticket (tickets records it for the timeline; only tickets listens to it)."""
    return Envelope.new("volunteer.offered", {
        "assignment_id": f"poison-{uuid.uuid4().hex[:8]}", "subject": "ticket",
        "ticket_id": f"poison-{uuid.uuid4().hex[:8]}", "volunteer_id": UNSTORABLE, "attached_residents": [],
        "at": "2026-11-26T08:00:00+00:00", "reasons": ["nearby"]}, community="xingqiao")


def inject(amqp_uri: str) -> dict[str, dict[str, str]]:
    """Publish 3 poison and 2 malformed messages per subscription; their ids by DLQ and kind."""
    expected: dict[str, dict[str, str]] = {}
    targets = (("huisheng.notify.ticket_events.dlq", "ticket.dispatched", poison_for_notify),
               ("huisheng.tickets.volunteer_events.dlq", "volunteer.offered", poison_for_tickets))
    for dlq, routing_key, make in targets:
        ids = expected.setdefault(dlq, {})
        for _ in range(3):
            event = make()
            publish(amqp_uri, event.to_wire(), routing_key=routing_key, message_id=event.event_id)
            ids[event.event_id] = "poison"
        not_json, not_envelope = f"not-json-{uuid.uuid4().hex[:8]}", f"not-envelope-{uuid.uuid4().hex[:8]}"
        publish(amqp_uri, b"\x00{this is not json", routing_key=routing_key, message_id=not_json, raw=True)
        publish(amqp_uri, {"hello": "not an envelope"}, routing_key=routing_key, message_id=not_envelope)
        ids.update({not_json: "not_json", not_envelope: "not_envelope"})
    return expected


def check_dead_letters(amqp_uri: str, expected: dict[str, dict[str, str]]) -> list[str]:
    """Problems with what the DLQs hold (empty when each message is there once, as it should be)."""
    problems = []
    for dlq, ids in expected.items():
        held = {m["message_id"]: m for m in peek(amqp_uri, dlq)}
        for message_id, kind in ids.items():
            message = held.get(message_id)
            if message is None:
                problems.append(f"{kind} {message_id} is not in {dlq}")
            elif kind == "poison" and int(message["headers"].get("x-huisheng-attempt", 0)) != MAX_ATTEMPTS:
                problems.append(f"poison {message_id} reached {dlq} after {message['headers']} attempts")
            elif kind == "poison" and "UnicodeEncodeError" not in str(message["headers"].get("x-huisheng-error")):
                problems.append(f"poison {message_id} in {dlq} without its error: {message['headers']}")
        extra = set(held) - set(ids)
        if extra:
            problems.append(f"{dlq} holds messages nobody sent it: {sorted(extra)}")
    return problems


def competing_problems(platform, tally) -> list[str]:
    """Two instances of each process share the queues: each took part in the work."""
    problems = []
    for name, counts in shared_work(platform, tally.records).items():
        if len(counts) != 2 or min(counts) == 0:
            problems.append(f"the two {name} instances did not share the work: {counts}")
    consumers = platform.consumers()
    for queue in ("huisheng.notify.ticket_events", "huisheng.tickets.volunteer_events", "rpc-tickets"):
        if consumers.get(queue) != 2:
            problems.append(f"{queue} has {consumers.get(queue)} consumers, not two")
    return problems


def test_poison_and_malformed_messages_end_in_dead_letter_queues(platform, record):
    expected: dict = {}

    def fault(load) -> None:
        expected.update(inject(platform.amqp_uri))
        # Every poison message goes through the four retry tiers (about 3.4 s) while the load goes on.
        wait_for(lambda: not check_dead_letters(platform.amqp_uri, expected), timeout=30)

    scenario = Scenario("poison+malformed", fault, rate=20.0, warmup=3.0, recovery=2.0)
    tally = run(scenario, platform)
    problems = check_dead_letters(platform.amqp_uri, expected)
    tally.details["dead_lettered"] = sum(len(ids) for ids in expected.values()) - len(problems)
    tally.notes.append(competing_note(platform, tally.records))
    record(tally)
    assert_clean(tally, *problems, *competing_problems(platform, tally))
