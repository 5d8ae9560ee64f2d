"""The broker SIGKILLed with hundreds of messages in flight, then restarted.

The suite's own node is used (never the machine's shared one). Both notify
instances are paused first so a backlog builds: hundreds of events sit in the
broker, ten per instance delivered and unacknowledged (a paused worker may even
have written its inbox message and not yet acked), more in the outboxes. Then
``beam.smp`` gets SIGKILL, the consumers are resumed into a dead connection, and
the node is started again on the same name and data directory. Confirmed
persistent messages must come back from disk, unconfirmed events must be
republished from the outboxes, and redeliveries must not duplicate anything.
"""

from __future__ import annotations

import pytest

from tests.chaos.faults import kill_broker
from tests.chaos.harness import DRAIN_TIMEOUT, Scenario, assert_clean, recount, run


@pytest.mark.chaos
def test_broker_killed_with_messages_in_flight(platform, node, record):
    notes: list[str] = []
    scenario = Scenario("broker killed+restarted", kill_broker(platform, node, notes), rate=40.0, recovery=8.0,
                        notes=notes)
    tally = record(run(scenario, platform))
    if platform.dead():
        # The platform did not survive on its own. Would an operator's restart recover everything, or is
        # something gone for good? (The test fails either way; this tells which kind of failure it is.)
        platform.restart()
        record(recount("broker killed+restarted, then huisheng down/up by hand", platform, tally.records,
                       DRAIN_TIMEOUT))
    assert_clean(tally, *([] if any("broker SIGKILLed" in n for n in notes) else ["the broker was not killed"]))
