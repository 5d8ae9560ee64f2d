"""The database server SIGKILLed under load and restarted on the same port and data.

Both notify instances are paused for a moment first, so that a backlog of events
is waiting in their hands; they are let loose on it 50 ms before the kill, so the
database dies mid-burst, and the rest of the burst runs into the outage: nothing
they could not write may be dropped.
Every write acknowledged before the kill must still be there (SecantusDB keeps its
WiredTiger log across a process kill); writes attempted while it is away fail and
are retried by their callers (the gateway's client, a handler's retry tier); a
handler that had claimed an event when the database went away leaves a claim
that must expire before the event is finished.
"""

from __future__ import annotations

import pytest

from tests.chaos.faults import kill_database
from tests.chaos.harness import Scenario, assert_clean, run


@pytest.mark.chaos
def test_database_killed_and_restarted(platform, database, record):
    notes: list[str] = []
    scenario = Scenario("database killed+restarted", kill_database(platform, database, notes), rate=30.0,
                        recovery=6.0, notes=notes)
    tally = record(run(scenario, platform))
    assert_clean(tally)
