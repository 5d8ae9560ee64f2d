"""The faults, each a function of the running load (see :class:`tests.chaos.harness.Scenario`).

Each factory takes the system under test (the platform or the naive pipeline: the
same faults hit both) and a list its fault appends human-readable notes to, with
times on the load's clock (``t=`` seconds since the load began).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.chaos.load import LoadGenerator

Fault = Callable[[LoadGenerator], None]
KILL_INTERVAL = 2.5
DATABASE_DOWN_SECONDS = 8.0  # longer than the services' server-selection timeout (5 s): writes do fail
DATABASE_BACKLOG_SECONDS = 2.0
DATABASE_BURST_SECONDS = 0.05
BROKER_BACKLOG_SECONDS = 6.0
BROKER_DOWN_SECONDS = 3.0
CRASH_AFTER = 25  # writes before a crash-point instance exits
CRASH_WAIT = 30.0


def pause(instances) -> None:
    for instance in instances:
        instance.pause()


def resume(instances) -> None:
    for instance in instances:
        instance.resume()


def kill_in_turn(system, names: tuple[str, ...], rounds: int, notes: list[str]) -> Fault:
    """``rounds`` times: SIGKILL the extra instance of each of ``names`` under load, start it again."""

    def fault(load: LoadGenerator) -> None:
        for round_number in range(rounds):
            for name in names:
                load.run_for(KILL_INTERVAL)
                instance = system.extras[name]
                killed_at = load.now()
                instance.kill()
                started = time.monotonic()
                instance.start(timeout=60)
                notes.append(f"round {round_number + 1}: SIGKILLed {instance.label} at t={killed_at:.1f} s, "
                             f"back in {time.monotonic() - started:.1f} s")

    return fault


def crash_after_writes(system, names: tuple[str, ...], notes: list[str]) -> Fault:
    """Replace the extra of each of ``names`` by one that exits (137) right after its ``CRASH_AFTER``-th
    write, before the ack or the reply (``tests.chaos.crashpoint``); then put a normal instance back."""

    def fault(load: LoadGenerator) -> None:
        for name in names:
            system.extras[name].kill()
            crashing = system.extra(name, crash_after=CRASH_AFTER).launch()
            system.extras[name] = crashing
            code = crashing.wait_exit(CRASH_WAIT)
            notes.append(f"{crashing.label} exited with {code} at t={load.now():.1f} s")
        for name in names:
            system.extras[name] = system.extra(name).start(timeout=60)

    return fault


def kill_database(system, database, notes: list[str]) -> Fault:
    """Pause the notify consumers so a backlog waits in their hands, let them loose on it and SIGKILL the
    database a moment later, mid-burst (writes in flight and just acknowledged); start it again on the same
    port and data after ``DATABASE_DOWN_SECONDS``."""

    def fault(load: LoadGenerator) -> None:
        consumers = system.instances("notify")
        pause(consumers)
        load.run_for(DATABASE_BACKLOG_SECONDS)
        resume(consumers)
        time.sleep(DATABASE_BURST_SECONDS)
        killed_at = load.now()
        database.kill()
        load.run_for(DATABASE_DOWN_SECONDS)
        started = time.monotonic()
        database.start(timeout=60)
        notes.append(f"SecantusDB SIGKILLed at t={killed_at:.2f} s; restarted after {DATABASE_DOWN_SECONDS:g} s, "
                     f"serving again in {time.monotonic() - started:.1f} s")

    return fault


def kill_broker(system, node, notes: list[str]) -> Fault:
    """Pause the notify consumers until hundreds of messages are in flight, SIGKILL the broker, resume the
    consumers into the dead connection, start the node again on the same name and data."""

    def fault(load: LoadGenerator) -> None:
        consumers = system.instances("notify")
        pause(consumers)
        load.run_for(BROKER_BACKLOG_SECONDS)
        in_broker = sum(system.backlog().values())
        store = system.store()
        in_outbox = store.outbox_pending()
        store.close()
        killed_at = load.now()
        node.kill()
        resume(consumers)
        load.run_for(BROKER_DOWN_SECONDS)
        started = time.monotonic()
        node.start()
        notes.append(f"broker SIGKILLed at t={killed_at:.1f} s with {in_broker} messages in its queues and "
                     f"{in_outbox} documents with unconfirmed events; down {BROKER_DOWN_SECONDS:g} s + "
                     f"{time.monotonic() - started:.1f} s to restart")

    return fault


def crawl(instances, seconds: float, running: float = 0.02, stopped: float = 0.48) -> None:
    """A slow consumer: let ``instances`` run ``running`` s of every ``running + stopped`` s, for ``seconds``."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            pause(instances)
            time.sleep(stopped)
            resume(instances)
            time.sleep(running)
    finally:
        resume(instances)


def kill_cluster_node(system, cluster, notes: list[str]) -> Fault:
    """On a three-node cluster: with a backlog in the queues (notify paused), SIGKILL the node that leads the
    most of the platform's quorum queues, resume notify, start the node again (it rejoins with its data)."""

    def fault(load: LoadGenerator) -> None:
        consumers = system.instances("notify")
        pause(consumers)
        load.run_for(BROKER_BACKLOG_SECONDS)
        in_broker = sum(system.backlog().values())
        victim = cluster.busiest(system.vhost)
        led = cluster.leaders(system.vhost)[victim.name]
        killed_at = load.now()
        victim.kill()
        resume(consumers)
        load.run_for(BROKER_DOWN_SECONDS)
        started = time.monotonic()
        victim.start()
        members = cluster.wait_members(len(cluster.nodes), 120)
        notes.append(f"node {victim.name.split('@')[0]} (leader of {led} queues) SIGKILLed at t={killed_at:.1f} s "
                     f"with {in_broker} messages in the queues; down {BROKER_DOWN_SECONDS:g} s + "
                     f"{time.monotonic() - started:.1f} s to restart and rejoin ({len(members)} running)")

    return fault


def in_sequence(*faults: Fault) -> Fault:
    """One fault after the other, under the same load."""

    def fault(load: LoadGenerator) -> None:
        for each in faults:
            each(load)

    return fault


SUPERVISOR_HEAL_TIMEOUT = 60.0


def kill_supervised(system, names: tuple[str, ...], notes: list[str]) -> Fault:
    """SIGKILL the instance ``huisheng up`` supervises of each of ``names``, under load, and wait (without a
    hand on it) until the supervisor has it running and healthy again under a new pid."""

    def fault(load: LoadGenerator) -> None:
        for name in names:
            load.run_for(KILL_INTERVAL)
            victim = system.refresh()[name]
            killed_at = load.now()
            victim.kill()
            system.killed[name] = system.killed.get(name, 0) + 1
            started = time.monotonic()

            def healed(name=name, old=victim.pid):
                child = system.refresh().get(name)
                return child if child and child.pid != old and child.alive() and child.health == "healthy" else None

            back = _poll(healed, SUPERVISOR_HEAL_TIMEOUT)
            took = time.monotonic() - started
            notes.append(f"SIGKILLed supervised {name} (pid {victim.pid}) at t={killed_at:.1f} s; "
                         + (f"the supervisor had it healthy again in {took:.1f} s (pid {back.pid}, "
                            f"restarts={back.restarts})" if back else
                            f"NOT back within {SUPERVISOR_HEAL_TIMEOUT:g} s"))

    return fault


def _poll(check, timeout: float, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    return None
