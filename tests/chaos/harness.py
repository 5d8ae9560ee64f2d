"""Running a fault scenario: load, fault, recovery, drain, tally — and the checks every run must pass.

A scenario is: start the load generator, let it warm up (phase ``before``), run
the fault (phase ``fault``; the fault function may take as long as it needs and
may look at the load), keep the load on for a while after recovery (phase
``after``), stop the load (every request in progress is finished or given up),
wait for the backlog to drain, and count.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kombu import Connection, Producer

from kernel.topology import EVENTS
from tests.chaos.load import LoadGenerator, LogicalRequest
from tests.chaos.systems import System, logged
from tests.chaos.tally import Tally, count, crash_evidence, wait_drained

# Every scenario's backlog must drain within this after the load stops. (A handler in the kernel's "claim"
# dedupe mode whose worker dies leaves its event parked for the claim's 60 s lease: such a handler on the
# echo path would fail this bound, on purpose.)
DRAIN_TIMEOUT = 60.0


@dataclass
class Scenario:
    name: str
    fault: Callable[[LoadGenerator], None]
    rate: float = 30.0
    warmup: float = 4.0
    recovery: float = 4.0
    drain_timeout: float = DRAIN_TIMEOUT
    workers: int = 8
    notes: list[str] = field(default_factory=list)


def run(scenario: Scenario, system: System) -> Tally:
    """Load, fault, recovery, drain; the tally (not yet asserted on)."""
    store = system.store()
    try:
        started = time.monotonic()
        load = drive(scenario, system)
        loaded, stopped = time.monotonic() - started, time.time()
        tally = count(scenario.name, system, store, load.requests,
                      wait_drained(system, store, load.requests, scenario.drain_timeout))
        evidence, samples = crash_evidence(system, store, load.requests, load.wall_began)
        tally.silent, silent_note = system.silent_tickets(stopped)
    finally:
        store.close()
    if silent_note:
        tally.notes.append(silent_note)
    tally.details.update(evidence)
    if samples:
        tally.notes.append(f"written, then the attempt failed (key@t): {', '.join(samples[:4])}")
    began = time.strftime("%H:%M:%S", time.gmtime(load.wall_began))
    tally.notes += scenario.notes + [f"load ran {loaded:.0f} s at {scenario.rate:g} req/s from {began} UTC (t=0)"]
    tally.notes += [f"CRASHED {crash}" for crash in system.crashes()]
    tally.notes += [f"NOT RUNNING after the scenario: {label}" for label in system.dead()]
    return tally


def drive(scenario: Scenario, system: System) -> LoadGenerator:
    """Warm-up, fault, recovery under load; returns the stopped load generator with its records."""
    prefix = re.sub(r"[^A-Za-z0-9.:-]", "-", scenario.name)  # an Idempotency-Key's alphabet
    load = LoadGenerator(system.target(), f"{prefix}-{uuid.uuid4().hex[:6]}", rate=scenario.rate,
                         workers=scenario.workers)
    load.start()
    try:
        load.run_for(scenario.warmup)
        load.phase("fault")
        scenario.fault(load)
        load.phase("after")
        load.run_for(scenario.recovery)
    finally:
        load.stop()
    return load


def recount(name: str, system: System, records: list[LogicalRequest], drain_timeout: float) -> Tally:
    """Drain and count again what an earlier run acknowledged (after an operator's intervention, say)."""
    store = system.store()
    drain = wait_drained(system, store, records, drain_timeout)
    tally = count(name, system, store, records, drain)
    store.close()
    return tally


def violations(tally: Tally) -> list[str]:
    """What every run must end with: nothing lost, nothing twice, no hang, no crash, the backlog drained."""
    checks = [
        (tally.acknowledged > 0, "nothing was acknowledged: the load never got through"),
        (tally.lost == 0, f"{tally.lost} acknowledged requests were lost"),
        (tally.duplicated == 0, f"{tally.duplicated} effects were duplicated"),
        (tally.hung == 0, f"{tally.hung} attempts got no answer within the client's timeout"),
        (tally.drain_s is not None, "the backlog did not drain"),
        (not any(n.startswith(("CRASHED", "NOT RUNNING")) for n in tally.notes), "a process died"),
        (tally.unacked == 0, f"{tally.unacked} requests were never acknowledged though the system recovered"),
        (not tally.proves_echoes or tally.silent is not None, "notify's silent-tickets report was not read"),
        (not tally.silent, f"{tally.silent} tickets are silent (GET /api/v1/reports/silent)"),
    ]
    return [problem for ok, problem in checks if not ok]


def assert_clean(tally: Tally, *more: str) -> None:
    """Fail with every violated invariant at once (and the tally), if any; ``more`` adds a scenario's own."""
    problems = violations(tally) + list(more)
    assert not problems, "; ".join(problems) + "\n" + tally.render()


# ---------------------------------------------------------------------- competing instances


# What each instance logs once per unit of work it did (log lines: notify logs ``echo.delivered`` for each echo it
# stores delivered in the inbox, though it publishes no such event).
WORK_EVENTS = {"tickets": "ticket.received", "notify": "echo.delivered"}


def competing_note(system: System, requests: list[LogicalRequest]) -> str:
    """How the work was shared: 201s per gateway, tickets created and echoes delivered per instance."""
    answered = Counter(a.gateway for r in requests for a in r.attempts if a.outcome == "201")
    parts = ["gateway: " + " / ".join(f"#{index + 1}={answered[index]}" for index in range(len(system.target().urls)))]
    for name, event in WORK_EVENTS.items():
        parts.append(f"{name} ({event}): " + " / ".join(
            f"{instance.label}={logged(instance.log, event)}" for instance in system.instances(name)))
    return "work per instance: " + "; ".join(parts)


def shared_work(system: System, requests: list[LogicalRequest]) -> dict[str, list[int]]:
    """Units of work per instance of the gateway, tickets and notify (for asserting both took part)."""
    answered = Counter(a.gateway for r in requests for a in r.attempts if a.outcome == "201")
    shares = {"gateway": [answered[index] for index in range(len(system.target().urls))]}
    for name, event in WORK_EVENTS.items():
        shares[name] = [logged(instance.log, event) for instance in system.instances(name)]
    return shares


# ---------------------------------------------------------------------- messages by hand


def publish(amqp_uri: str, body, *, routing_key: str, message_id: str, content_type: str = "application/json",
            raw: bool = False) -> None:
    """Publish to the events exchange with confirms; ``raw`` bytes are sent as they are."""
    with Connection(amqp_uri, connect_timeout=5) as connection:
        channel = connection.default_channel
        channel.confirm_select()
        producer = Producer(channel)
        options = {"content_type": content_type, "content_encoding": "binary"} if raw else {"serializer": "json"}
        producer.publish(body, exchange=EVENTS, routing_key=routing_key, message_id=message_id,
                         delivery_mode=2, **options)


def peek(amqp_uri: str, queue: str, limit: int = 500) -> list[dict]:
    """The messages in a queue (message id, headers, body), left in place (not acked)."""
    seen = []
    with Connection(amqp_uri, connect_timeout=5) as connection:
        channel = connection.channel()
        for _ in range(limit):
            message = channel.basic_get(queue, no_ack=False)
            if message is None:
                break
            seen.append({"message_id": message.properties.get("message_id"),
                         "headers": dict(message.headers or {}), "body": message.body})
        channel.close()  # unacked: the broker puts them back
    return seen


def wait_for(check: Callable[[], object], timeout: float, interval: float = 0.5):
    """Poll ``check`` until it returns something truthy (that value) or ``timeout`` passes (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    return None
