"""The queue behind group commit: batching, per-item outcomes, failures, shutdown (no I/O)."""

from __future__ import annotations

import eventlet
import pytest
from eventlet.event import Event

from kernel.groupcommit import CommitQueue, CommitQueueClosed


def submit_all(queue: CommitQueue, items: list) -> list:
    """Submit every item from its own greenthread; each one's outcome or the exception it raised."""
    def one(item):
        try:
            return queue.submit(item)
        except Exception as error:
            return error
    return list(eventlet.GreenPool().imap(one, items))


def test_concurrent_submits_share_a_run_and_each_gets_its_own_outcome():
    runs = []

    def run(items):
        runs.append(list(items))
        return [item.upper() for item in items]

    queue = CommitQueue("upper", run)
    assert submit_all(queue, ["a", "b", "c"]) == ["A", "B", "C"]
    assert runs == [["a", "b", "c"]]
    queue.close()


def test_items_that_queue_during_a_run_go_together_in_the_next():
    runs, release = [], Event()

    def run(items):
        runs.append(list(items))
        if len(runs) == 1:
            release.wait()  # the first write is slow: the others queue meanwhile
        return list(items)

    queue = CommitQueue("slow", run)
    first = eventlet.spawn(queue.submit, 1)
    eventlet.sleep(0)
    later = [eventlet.spawn(queue.submit, item) for item in (2, 3, 4)]
    eventlet.sleep(0)
    release.send()
    assert [first.wait()] + [thread.wait() for thread in later] == [1, 2, 3, 4]
    assert runs == [[1], [2, 3, 4]]
    queue.close()


def test_a_batch_never_exceeds_the_limit():
    runs = []
    queue = CommitQueue("limited", lambda items: runs.append(len(items)) or list(items), limit=3)
    assert submit_all(queue, list(range(7))) == list(range(7))
    assert runs == [3, 3, 1]
    queue.close()


def test_an_exception_returned_for_one_item_is_raised_in_its_submitter_only():
    queue = CommitQueue("half", lambda items: [ValueError(i) if i % 2 else i for i in items])
    outcomes = submit_all(queue, [0, 1, 2])
    assert outcomes[0] == 0 and outcomes[2] == 2
    assert isinstance(outcomes[1], ValueError)
    queue.close()


def test_a_failed_run_fails_every_submitter_of_its_batch_and_the_writer_goes_on():
    calls = []

    def run(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise ConnectionError("database away")
        return list(items)

    queue = CommitQueue("flaky", run)
    outcomes = submit_all(queue, ["a", "b"])
    assert [type(outcome) for outcome in outcomes] == [ConnectionError, ConnectionError]
    assert queue.submit("c") == "c"
    queue.close()


def test_a_run_returning_the_wrong_number_of_outcomes_fails_the_batch_loudly():
    queue = CommitQueue("short", lambda items: items[:1])
    outcomes = submit_all(queue, ["a", "b"])
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert "1 outcomes for 2 writes" in str(outcomes[0])
    queue.close()


def test_close_fails_whoever_still_waits():
    started, never = Event(), Event()

    def run(items):
        started.send()
        never.wait()

    queue = CommitQueue("stuck", run)
    waiting = eventlet.spawn(queue.submit, "x")
    started.wait()
    queued = eventlet.spawn(queue.submit, "y")
    eventlet.sleep(0)
    queue.close()
    for thread in (waiting, queued):
        with pytest.raises(CommitQueueClosed):
            thread.wait()
