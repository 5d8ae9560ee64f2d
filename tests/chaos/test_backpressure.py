"""Back-pressure: a slow consumer behind a full queue, then a full RPC queue in front of a stalled service.

The platform has no admission control: a ticket is accepted (201) once it is
durably written, and its events wait in the outbox while the broker refuses them.

1. *Slow consumer, full queue*: the notify consumer queue gets a policy
   ``max-length`` with ``overflow: reject-publish`` (the broker nacks what does not
   fit), and both notify instances are slowed to a crawl (SIGSTOP most of the time,
   SIGCONT a little). The relay's publishes are nacked; events wait in the outbox.
2. *Full RPC queue*: ``rpc-tickets`` gets the same kind of policy and both tickets
   instances are paused outright, so the gateway's calls are refused or time out.

Either way the gateway must answer every request within the RPC deadline plus a
margin (503 with Retry-After, 504, or 201 for a durable accept): never hang,
never lose. When the policies go and the consumers run again, everything drains.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.chaos.faults import crawl, pause, resume
from tests.chaos.harness import Scenario, assert_clean, run

SLOW_SECONDS = 8.0
STALL_SECONDS = 6.0
QUEUE_LIMIT = 10
RPC_DEADLINE = 5.0  # RPC_TIMEOUT of the suite's platform
ANSWER_MARGIN = 3.0


def observe(platform, store, samples: dict) -> None:
    """Keep the largest backlog seen in the notify queue and in the outboxes."""
    depth = platform.backlog().get("huisheng.notify.ticket_events", 0)
    samples["queue"] = max(samples.get("queue", 0), depth)
    samples["outbox"] = max(samples.get("outbox", 0), store.outbox_pending())


def full_queues(platform, node, notes: list[str]):
    def fault(load) -> None:
        store, samples = platform.store(), {}
        limit = {"max-length": QUEUE_LIMIT, "overflow": "reject-publish"}
        node.set_policy(platform.vhost, "chaos-full-notify", r"^huisheng\.notify\.ticket_events$", limit)
        for _ in range(int(SLOW_SECONDS / 2)):
            crawl(platform.instances("notify"), 2.0)
            observe(platform, store, samples)
        notes.append(f"slow notify behind a full queue ({QUEUE_LIMIT}) for {SLOW_SECONDS:g} s: at most "
                     f"{samples['queue']} queued, {samples['outbox']} documents waiting in outboxes")
        node.clear_policy(platform.vhost, "chaos-full-notify")
        node.set_policy(platform.vhost, "chaos-full-rpc", r"^rpc-tickets$", {**limit, "max-length": 5})
        stalled, paused_at = platform.instances("tickets"), load.now()
        pause(stalled)
        load.run_for(STALL_SECONDS)
        resume(stalled)
        node.clear_policy(platform.vhost, "chaos-full-rpc")
        notes.append(f"tickets stalled from t={paused_at:.1f} s for {STALL_SECONDS:g} s behind a full "
                     f"rpc-tickets queue (5)")
        store.close()

    return fault


@pytest.mark.chaos
def test_slow_consumer_and_full_queues(platform, node, record):
    notes: list[str] = []
    # 32 clients: more requests in flight than the stalled tickets instances and their queue can hold
    scenario = Scenario("slow consumer + full queues", full_queues(platform, node, notes), rate=30.0,
                        recovery=4.0, workers=32, notes=notes)
    tally = run(scenario, platform)
    attempts = [a for r in tally.records for a in r.attempts]
    slowest = max(a.seconds for a in attempts)
    late = [f"{r.key}@{a.started:.1f}+{a.seconds:.1f}" for r in tally.records for a in r.attempts
            if a.seconds > RPC_DEADLINE + ANSWER_MARGIN]
    tally.notes.append(f"slowest answer {slowest:.1f} s (bound: RPC deadline {RPC_DEADLINE:g} s + "
                       f"{ANSWER_MARGIN:g} s); late answers (key@t+s): {', '.join(late[:6]) or 'none'}")
    record(tally)
    refused = Counter(a.outcome for a in attempts if a.outcome not in ("201", "503", "504"))
    assert_clean(tally, *([f"the gateway held a request {slowest:.1f} s, past its deadline"]
                          if slowest > RPC_DEADLINE + ANSWER_MARGIN else []),
                 *([f"answers other than 201/503/504 under back-pressure: {dict(refused)}"] if refused else []))
