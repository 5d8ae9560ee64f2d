"""The outbox relay's two cases without a bound (issue #16): a late commit, and two relays on skewed clocks.

Neither goes through the platform (a retry or redelivery would mask the window):
writers of the suite's own (:mod:`tests.chaos.writer`) write once and never again,
and a tap queue bound to the events exchange counts what reached the broker.

* **Late commit.** The writer's connection to the database is held by a proxy for
  10 s while its broker connection is cut: writes in flight stay staged (stamped)
  but uncommitted; when the proxy lets them through they commit 10 s after their
  stamp, their writer's immediate publish fails (no broker), some writers were even
  told their write failed (a socket timeout) though it committed. The broker comes
  back: every committed event must be published, at least once.
* **Skewed clocks.** Two writers (two relays) on the same collection, one of them
  under libfaketime 10 s ahead (a real skew of the process's clock, checked through
  what ``time.time()`` said in it), the broker cut for a while under their writes,
  and one of the two SIGKILLed meanwhile: the other relay publishes what it left, and
  everything is published, at least once.

Each scenario has a bounded ``chaos_smoke`` run (``make test``) and a longer ``chaos`` one.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.relays import Rig, faketime_library
from tests.chaos.systems import CHAOS_SETTINGS

HOLD_S = 10.0
SKEW_S = 10.0
GRACE_S = float(CHAOS_SETTINGS["OUTBOX_GRACE_SECONDS"])
DRAIN_TIMEOUT = 40.0

# victim: the writer the skewed-clock scenario SIGKILLs while the broker is away (the other relay must publish
# what it left): the one ahead in the bounded run, the one behind in the full run.
BOUNDED = pytest.param({"count": 300, "rate": 20.0, "victim": "ahead"}, marks=pytest.mark.chaos_smoke, id="bounded")
FULL = pytest.param({"count": 1200, "rate": 40.0, "victim": "even"}, marks=pytest.mark.chaos, id="full")


@pytest.fixture
def rig(request, tmp_path, node, database):
    system = Rig(tmp_path, node, database, request.node.name)
    try:
        yield system
    finally:
        system.close()


def assert_nothing_lost(verdict) -> None:
    problems = []
    if verdict.committed == 0:
        problems.append("nothing committed: the writers never got through")
    if verdict.lost:
        problems.append(f"{len(verdict.lost)} committed events never reached the broker")
    if verdict.phantom:
        problems.append(f"{len(verdict.phantom)} events on the broker belong to no committed document")
    if verdict.drain_s is None:
        problems.append(f"the tap did not have every committed event within {DRAIN_TIMEOUT:g} s")
    assert not problems, "; ".join(problems) + "\n" + verdict.render()


@pytest.mark.parametrize("size", [BOUNDED, FULL])
def test_a_commit_held_back_10_s_while_the_broker_is_down_is_published(rig, record, size):
    mongo, amqp = rig.proxy(rig.database.uri), rig.proxy(rig.amqp_uri)
    writer = rig.writer("late", size["count"], size["rate"], mongo=mongo, amqp=amqp).start(60)
    time.sleep(2.0)  # some writes go through and are published at once
    amqp.cut()  # the broker is gone for this writer: its immediate publishes fail from now on
    time.sleep(0.5)
    mongo.hold()  # writes in flight are stamped and sent, and reach the database 10 s later
    held = time.monotonic()
    time.sleep(HOLD_S)
    mongo.release()
    # Past the grace delay with the late commits in hand and no broker: the old clock-based
    # checkpoint would have moved past their stamps here.
    time.sleep(GRACE_S + 3.0)
    amqp.restore()
    restored = time.monotonic() - held
    rig.wait_writers_done(60)
    verdict = record(rig.verdict(DRAIN_TIMEOUT))
    verdict.notes.append(f"database held {HOLD_S:g} s with the broker cut; broker back {restored:.1f} s after the hold")
    assert_nothing_lost(verdict)
    assert verdict.late >= 1, "no write committed late: the fault did not strike\n" + verdict.render()
    assert writer.alive(), "the writer died"


@pytest.mark.skipif(faketime_library() is None, reason="libfaketime is not installed (apt-get install faketime)")
@pytest.mark.parametrize("size", [BOUNDED, FULL])
def test_two_relays_whose_clocks_differ_by_10_s_publish_everything(rig, record, size):
    count, rate = size["count"] // 2, size["rate"] / 2
    amqp, amqp_ahead = rig.proxy(rig.amqp_uri), rig.proxy(rig.amqp_uri)
    writers = [rig.writer("even", count, rate, mongo=rig.proxy(rig.database.uri), amqp=amqp),
               rig.writer("ahead", count, rate, mongo=rig.proxy(rig.database.uri), amqp=amqp_ahead,
                          clock_offset=f"+{SKEW_S:g}s")]
    launched = time.time()
    for writer in writers:
        writer.launch()
    for writer in writers:
        writer.wait_ready(60)
    # The skew is real: what time.time() said in each process as it started (a second or two after
    # we launched it), against our clock at the launch.
    offsets = {writer.journal.stem: writer.clock() - launched for writer in writers}
    assert 0.0 <= offsets["even"] < 6.0 and SKEW_S <= offsets["ahead"] < SKEW_S + 6.0, offsets
    time.sleep(2.0)
    for proxy in (amqp, amqp_ahead):
        proxy.cut()  # both relays must find what was written meanwhile in their streams
    time.sleep(GRACE_S + 2.0)
    # One relay dies with events it could not publish: the other, its clock 10 s apart, must publish them.
    victim = next(writer for writer in writers if writer.journal.stem == size["victim"])
    published_before = set(rig.tap.drain())
    victim.kill()
    time.sleep(2.0)
    for proxy in (amqp, amqp_ahead):
        proxy.restore()
    rig.wait_writers_done(60)
    verdict = record(rig.verdict(DRAIN_TIMEOUT, clock_skew={"ahead": SKEW_S}))
    left = {entry["event_id"] for entry in victim.writes() if entry["outcome"] == "ok"} - published_before
    by_survivor = left & set(rig.tap.seen)
    verdict.notes.append("clock offsets seen in the writers (s): "
                         + ", ".join(f"{name} {offset:+.1f}" for name, offset in offsets.items()))
    verdict.notes.append(f"writer {victim.journal.stem} SIGKILLed with the broker away: {len(left)} of its events "
                         f"unpublished, {len(by_survivor)} of them published by the other relay")
    assert_nothing_lost(verdict)
    assert left and by_survivor == left, "the killed relay left nothing unpublished, or the other one did not " \
                                         "publish it\n" + verdict.render()
    assert all(writer.alive() for writer in writers if writer is not victim), "a writer died"
