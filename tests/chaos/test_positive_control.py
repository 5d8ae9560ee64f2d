"""Positive control: the same faults against the naive pipeline of ``bench/naive`` must show damage.

The naive pipeline (gateway -> RPC -> insert -> event -> handler -> insert, no
outbox, no idempotency, no retries) runs with two instances of each process, under
the same load generator (which retries exactly as it does against the platform),
and gets the platform's faults: its extra instances SIGKILLed in turn, then its
database killed and restarted. The tallies must show lost or duplicated effects;
if they do not, the suite could not tell a broken system from a sound one.
"""

from __future__ import annotations

import pytest

from tests.chaos.faults import kill_database, kill_in_turn
from tests.chaos.harness import Scenario, run

NAIVE_DRAIN_TIMEOUT = 20.0  # losses never drain: do not wait long for them


@pytest.mark.chaos
def test_the_naive_pipeline_loses_or_duplicates_under_the_same_faults(naive, database, record):
    notes: list[str] = []
    kills = kill_in_turn(naive, ("notify", "tickets", "gateway"), 2, notes)
    outage = kill_database(naive, database, notes)

    def fault(load) -> None:
        kills(load)
        outage(load)

    scenario = Scenario("positive control: sigkill + database restart", fault, rate=30.0, recovery=4.0,
                        drain_timeout=NAIVE_DRAIN_TIMEOUT, notes=notes)
    tally = record(run(scenario, naive))
    assert tally.acknowledged > 0, tally.render()
    assert tally.lost + tally.duplicated > 0, f"the faults did no visible harm to the naive pipeline\n{tally.render()}"
