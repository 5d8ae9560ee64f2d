"""A writer of the outbox whose writes nobody retries: the late-commit and skewed-clock scenarios' subject.

    python -m tests.chaos.writer LABEL COUNT RATE JOURNAL

runs a nameko container of one service (``chaoswriter``) with the kernel's
:class:`~kernel.outbox.Outbox` exactly as the platform's services use it, and
writes ``COUNT`` documents at ``RATE`` per second, each carrying one event in its
outbox: ``insert_one(with_events(...))`` and then ``relay.flush_soon(...)``, as a
repository and its service do. Each write runs in its own greenthread (a write held
up by the database does not hold up the next) and is tried **once**: whatever the
outcome, it is not repeated, so no idempotent retry or redelivery can hide an event
the relay failed to publish. The relay keeps running (its change stream, its
ledger) until the process gets SIGTERM.

The journal (JSON lines) tells the test what happened: ``{"clock": time.time()}``
first (the process's own clock, which libfaketime may have moved), ``{"ready": true}`` once its
container runs, then one line
per write (its document id, event id, staging time, outcome and seconds taken),
then ``{"done": n}``. Settings come from the environment as for any process
(``MONGO_URI``, ``AMQP_URI``, ``MONGO_DB_PREFIX``, ``OUTBOX_GRACE_SECONDS``...).
"""

# ruff: noqa: I001  (kernel.runner monkey-patches eventlet: it must come before nameko and pymongo)
from __future__ import annotations

import kernel.runner  # noqa: F401

import json
import signal
import sys
import time
from pathlib import Path

import eventlet
from nameko.containers import ServiceContainer

from kernel import logging as platform_logging
from kernel.config import Settings
from kernel.envelope import Envelope
from kernel.mongo import Mongo
from kernel.outbox import OUTBOX, STAGED, Outbox, with_events

SERVICE = "chaoswriter"
NOTES = "notes"
EVENT_TYPE = "ticket.silent"  # any type of the catalogue: the relay validates what it stages


class WriterService:
    """A service with an outbox and nothing else: the writer drives it from outside a worker."""

    name = SERVICE
    db = Mongo()
    outbox = Outbox(collections=[NOTES])


def envelope(document_id: str) -> Envelope:
    return Envelope.new(EVENT_TYPE, {
        "ticket_id": document_id, "echo_id": document_id, "recipient": "chaos", "source_event_id": document_id,
        "source_event_type": "ticket.received", "occurred_at": "2026-12-06T08:00:00+00:00",
        "proof_due_at": "2026-12-06T08:15:00+00:00", "status": "delivering", "channel": "inbox"},
        community="xingqiao")


class Journal:
    """One JSON object per line, flushed at once (the test reads it while we run)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, **entry) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(entry, default=str) + "\n")


def write_one(collection, relay, label: str, index: int, journal: Journal) -> None:
    document_id = f"{label}-{index:05d}"
    event = envelope(document_id)
    document = with_events({"_id": document_id, "writer": label, "n": index}, [event])
    started = time.time()
    try:
        collection.insert_one(document)
    except Exception as error:  # never retried: the relay alone must find it if it committed after all
        journal.write(id=document_id, event_id=event.event_id, staged=document[OUTBOX][0][STAGED].isoformat(),
                      outcome="failed", error=repr(error)[:200], took=round(time.time() - started, 3))
        return
    relay.flush_soon(NOTES, document_id, [event])
    journal.write(id=document_id, event_id=event.event_id, staged=document[OUTBOX][0][STAGED].isoformat(),
                  outcome="ok", took=round(time.time() - started, 3))


def main(argv: list[str]) -> int:
    label, count, rate, journal_path = argv[0], int(argv[1]), float(argv[2]), Path(argv[3])
    settings = Settings.from_env()
    platform_logging.configure(SERVICE, settings.log_level, settings.log_format)
    journal = Journal(journal_path)
    journal.write(clock=time.time(), label=label)
    container = ServiceContainer(WriterService, settings.nameko_config())
    container.start()
    relay = next(e for e in container.dependencies if isinstance(e, Outbox))
    collection = relay.collections[NOTES]
    journal.write(ready=True)
    stopping = eventlet.event.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.ready() or stopping.send(True))
    pool = eventlet.GreenPool(1000)
    began = time.monotonic()
    for index in range(count):
        if stopping.ready():
            break
        eventlet.sleep(max(0.0, began + index / rate - time.monotonic()))
        pool.spawn_n(write_one, collection, relay, label, index, journal)
    pool.waitall()
    journal.write(done=count)
    stopping.wait()
    container.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
