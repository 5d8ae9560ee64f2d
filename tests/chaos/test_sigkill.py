"""SIGKILL under load, between a database write and its acknowledgement.

One cannot stop a process at an exact instruction from outside, so the suite kills
the *extra* instance of a process again and again while requests are in flight
(each instance holds up to ``max_workers`` unacknowledged deliveries and RPC
requests), restarts it, and lets the tallies and the crash evidence say what
happened: a ticket stored during an attempt that then failed, an inbox message
written by a worker that never acked. The supervised instance keeps serving, as a
surviving replica would, and gets what the killed one left unacknowledged.

The deterministic case comes last: an extra started through
``tests.chaos.crashpoint`` exits (like SIGKILL) right after its 25th write and
before that write's ack or reply, so the window is hit for certain.

The supervised instances are killed too, in a scenario of their own: nobody
restarts them but ``huisheng up`` itself (issue #16: a local runner that heals itself).
"""

from __future__ import annotations

import pytest

from tests.chaos.faults import crash_after_writes, kill_in_turn, kill_supervised
from tests.chaos.harness import Scenario, assert_clean, competing_note, run


@pytest.mark.chaos_smoke
def test_notify_killed_under_load(platform, record):
    notes: list[str] = []
    scenario = Scenario("sigkill notify x1", kill_in_turn(platform, ("notify",), 1, notes), rate=30.0, notes=notes)
    tally = run(scenario, platform)
    tally.notes.append(competing_note(platform, tally.records))
    record(tally)
    assert_clean(tally)


@pytest.mark.chaos
def test_every_service_killed_several_times(platform, record):
    """SIGKILL at random moments (twice each), then a crash exactly after a write (once each)."""
    notes: list[str] = []
    kills = kill_in_turn(platform, ("notify", "tickets", "gateway"), 2, notes)
    crashes = crash_after_writes(platform, ("notify", "tickets"), notes)

    def fault(load) -> None:
        kills(load)
        crashes(load)

    scenario = Scenario("sigkill notify/tickets/gateway x2, crash after write x1", fault, rate=30.0, notes=notes)
    tally = run(scenario, platform)
    tally.notes.append(competing_note(platform, tally.records))
    record(tally)
    crashed = sum(1 for note in notes if " exited with 137 " in note)
    assert_clean(tally, *([] if crashed == 2 else [f"only {crashed} of 2 crash points were reached"]))


@pytest.mark.chaos
def test_supervised_instances_killed_are_brought_back_by_huisheng_up(platform, record):
    """SIGKILL the instance ``huisheng up`` runs of each service; the supervisor alone restarts it."""
    notes: list[str] = []
    scenario = Scenario("sigkill supervised tickets/notify/volunteers/gateway, healed by huisheng up",
                        kill_supervised(platform, ("tickets", "notify", "volunteers", "gateway"), notes),
                        rate=30.0, notes=notes)
    tally = run(scenario, platform)
    tally.notes.append(competing_note(platform, tally.records))
    record(tally)
    unhealed = [note for note in notes if "NOT back" in note]
    restarts = {name: child.restarts for name, child in platform.refresh().items() if name in platform.killed}
    assert_clean(tally, *unhealed,
                 *[f"{name} shows {count} restarts, not 1" for name, count in restarts.items() if count != 1])
