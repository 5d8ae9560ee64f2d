"""The outbox relay alone under faults: writers of our own (:mod:`tests.chaos.writer`), proxies, a tap queue.

The late-commit and skewed-clock scenarios (issue #16) judge the relay, not the
platform: through the platform a retried request or a redelivered event would mask
an event the relay failed to publish. So each writer is a small process of the
suite's own whose writes nobody retries; its MongoDB connection runs through a
proxy the test can *hold* (the commit comes late) and its AMQP connection through
one the test can *cut* (the broker is gone); and the broker side is counted by a
**tap**: a queue bound to the events exchange with ``#``, which sees every event
any relay published, as often as it was published.

The verdict is read from the database itself, not from what the writers believe:
every event of every document that committed (whatever its writer was told) must
be on the tap at least once. When each write committed comes from a change stream
the test opens beside the writers (straight to the server): its ``wallTime`` minus
the event's staging stamp is how late the commit was.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from kombu import Connection, Queue

from kernel.config import Settings
from kernel.mongo import connect
from kernel.outbox import OUTBOX, STAGED
from kernel.topology import EVENTS, declare_all
from tests.chaos.processes import DatabaseServer, Process, kill_all
from tests.chaos.rabbit import RabbitNode
from tests.chaos.systems import CHAOS_SETTINGS, clean_environ
from tests.chaos.writer import NOTES, SERVICE
from tests.support.proxy import TcpProxy

FAKETIME_LIBRARIES = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                      "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
                      "/usr/lib/faketime/libfaketimeMT.so.1")
TAP = "chaos.tap"


def faketime_library() -> str | None:
    """libfaketime's multi-threaded library (Debian's ``faketime`` package), if installed."""
    return next((path for path in FAKETIME_LIBRARIES if os.path.exists(path)), None)


class Writer(Process):
    """One ``python -m tests.chaos.writer``: ready once its container started; its journal says the rest."""

    def __init__(self, label: str, count: int, rate: float, env: dict[str, str], root: Path,
                 clock_offset: str | None = None):
        self.journal = root / f"{label}.journal"
        argv = [sys.executable, "-m", "tests.chaos.writer", label, str(count), str(rate), str(self.journal)]
        if clock_offset is not None:  # a real skew: libfaketime preloaded, not a monkeypatch
            library = faketime_library()
            if library is None:
                raise RuntimeError("libfaketime is not installed: apt-get install -y faketime")
            env = {**env, "LD_PRELOAD": library, "FAKETIME": clock_offset, "FAKETIME_DONT_RESET": "1"}
        super().__init__(f"writer {label}", argv, env, root / f"{label}.log")
        self.count = count

    def entries(self) -> list[dict]:
        try:
            return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]
        except OSError:
            return []

    def ready(self) -> bool:
        return any("ready" in entry for entry in self.entries())

    def clock(self) -> float | None:
        """What ``time.time()`` said in the process when it started (libfaketime's, if preloaded)."""
        return next((entry["clock"] for entry in self.entries() if "clock" in entry), None)

    def writes(self) -> list[dict]:
        return [entry for entry in self.entries() if "id" in entry]

    def done(self) -> bool:
        return any("done" in entry for entry in self.entries())


class Tap:
    """A queue bound to the events exchange with ``#``: every published event, as often as it was published."""

    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri
        self.seen: Counter[str] = Counter()
        with Connection(amqp_uri, connect_timeout=5) as connection:
            Queue(TAP, exchange=EVENTS, routing_key="#", durable=True)(connection.default_channel).declare()

    def drain(self) -> Counter[str]:
        """Take everything the tap holds now; the count of each event id seen so far."""
        with Connection(self.amqp_uri, connect_timeout=5) as connection:
            channel = connection.channel()
            while (message := channel.basic_get(TAP, no_ack=True)) is not None:
                self.seen[message.properties.get("message_id") or json.loads(message.body)["event_id"]] += 1
            channel.close()
        return self.seen


@dataclass
class Verdict:
    """What became of every write: the writers' outcomes against what committed and what the tap saw."""

    name: str
    attempted: int = 0
    acknowledged: int = 0  # the writer was told the write succeeded
    failed: int = 0  # the writer was told it failed (and never retried it)
    committed: int = 0  # documents in the database
    committed_though_failed: int = 0
    late: int = 0  # committed at least LATE_S after their event was staged
    latest_s: float = 0.0
    published: int = 0  # distinct committed events on the tap
    published_twice: int = 0
    lost: list[str] = field(default_factory=list)  # committed, never on the tap
    phantom: list[str] = field(default_factory=list)  # on the tap, never committed
    drain_s: float | None = None
    notes: list[str] = field(default_factory=list)

    LATE_S = 5.0

    def summary(self) -> dict[str, str]:
        """This run's line in the suite's summary table (:data:`tests.chaos.tally.SUMMARY`): a write sent
        once, committed, and published (at least once: a second publish applies nothing, consumers dedupe)."""
        return {"scenario": self.name, "system": "outbox relay", "broker": "1 node", "sent": str(self.attempted),
                "acknowledged": str(self.acknowledged), "lost": str(len(self.lost) + len(self.phantom)),
                "duplicates applied": "-", "silent": "-",
                "drain_s": "never" if self.drain_s is None else f"{self.drain_s:.1f}"}

    def render(self) -> str:
        rows = [("attempted", self.attempted), ("acknowledged", self.acknowledged),
                ("failed (not retried)", self.failed),
                ("committed", self.committed), ("committed though failed", self.committed_though_failed),
                (f"committed >= {self.LATE_S:g} s late", self.late), ("latest commit (s)", f"{self.latest_s:.1f}"),
                ("published", self.published), ("published twice or more", self.published_twice),
                ("lost", len(self.lost)), ("phantom", len(self.phantom)),
                ("drained (s)", "-" if self.drain_s is None else f"{self.drain_s:.1f}")]
        lines = [f"== {self.name}"] + [f"  {label:<28} {value}" for label, value in rows]
        if self.lost:
            lines.append(f"  lost: {', '.join(self.lost[:8])}")
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])


class Rig:
    """A vhost on the suite's node with the topology and a tap, the test's database, proxies and writers."""

    def __init__(self, root: Path, node: RabbitNode, database: DatabaseServer, name: str):
        self.root, self.node, self.database, self.name = root, node, database, name
        self.vhost = f"chaos-outbox-{os.urandom(4).hex()}"
        self.amqp_uri = node.add_vhost(self.vhost)
        self.prefix = f"chaos{os.urandom(4).hex()}_"
        self.env = {**clean_environ(), **CHAOS_SETTINGS, "MONGO_DB_PREFIX": self.prefix,
                    "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONUNBUFFERED": "1"}
        declare_all(Settings(amqp_uri=self.amqp_uri))
        self.tap = Tap(self.amqp_uri)
        self.client = connect(database.uri)
        self.notes = self.client[f"{self.prefix}{SERVICE}"][NOTES]
        # Opened before any write, straight to the server: when each document really committed.
        self.commits = self.notes.watch([{"$match": {"operationType": "insert"}}], max_await_time_ms=1)
        self.proxies: list[TcpProxy] = []
        self.writers: list[Writer] = []

    def proxy(self, uri: str) -> TcpProxy:
        proxy = TcpProxy.before(uri)
        self.proxies.append(proxy)
        return proxy

    def writer(self, label: str, count: int, rate: float, *, mongo: TcpProxy, amqp: TcpProxy,
               clock_offset: str | None = None) -> Writer:
        env = {**self.env, "MONGO_URI": mongo.mongo_uri(self.database.uri), "AMQP_URI": amqp.amqp_uri(self.amqp_uri)}
        writer = Writer(label, count, rate, env, self.root, clock_offset)
        self.writers.append(writer)
        return writer

    def committed(self) -> dict[str, str]:
        """Event id -> document id, of every document in the database."""
        found = {}
        for document in self.notes.find({}, {OUTBOX: 1}):
            for event in document.get(OUTBOX) or []:
                found[event["event_id"]] = document["_id"]
        return found

    def commit_lateness(self) -> dict[str, float]:
        """Document id -> seconds between its event's staging (its writer's clock) and its commit (the server's)."""
        lateness = {}
        while (change := self.commits.try_next()) is not None:
            wall = change.get("wallTime")
            events = (change.get("fullDocument") or {}).get(OUTBOX) or []
            if wall is not None and events:
                wall = wall if wall.tzinfo else wall.replace(tzinfo=UTC)
                staged = events[0][STAGED]
                staged = staged if staged.tzinfo else staged.replace(tzinfo=UTC)
                lateness[change["documentKey"]["_id"]] = (wall - staged).total_seconds()
        return lateness

    def wait_writers_done(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(w.done() or not w.alive() for w in self.writers):
            time.sleep(0.2)

    def verdict(self, drain_timeout: float, clock_skew: dict[str, float] | None = None) -> Verdict:
        """Wait until the tap has every committed event (or ``drain_timeout``), then count."""
        started = time.monotonic()
        drained = None
        while True:
            committed = self.committed()
            seen = self.tap.drain()
            if committed and set(committed) <= set(seen):
                drained = time.monotonic() - started
                break
            if time.monotonic() - started > drain_timeout:
                break
            time.sleep(0.5)
        time.sleep(1.5)  # a relay still working its stream would add its duplicates now
        seen = self.tap.drain()
        committed = self.committed()
        writes = [entry for writer in self.writers for entry in writer.writes()]
        failed_ids = {entry["id"] for entry in writes if entry["outcome"] != "ok"}
        committed_ids = set(committed.values())
        # The server's clock minus the writer's stamp: a skewed writer's stamp is off by its skew.
        lateness = self.commit_lateness()
        skews = {writer.journal.stem: (clock_skew or {}).get(writer.journal.stem, 0.0) for writer in self.writers}
        corrected = {doc: late + skews.get(doc.rsplit("-", 1)[0], 0.0) for doc, late in lateness.items()}
        verdict = Verdict(
            self.name, attempted=len(writes), acknowledged=sum(1 for e in writes if e["outcome"] == "ok"),
            failed=len(failed_ids), committed=len(committed_ids),
            committed_though_failed=len(failed_ids & committed_ids),
            late=sum(1 for late in corrected.values() if late >= Verdict.LATE_S),
            latest_s=max(corrected.values(), default=0.0),
            published=len(set(committed) & set(seen)),
            published_twice=sum(1 for event_id in committed if seen[event_id] > 1),
            lost=sorted(committed[event_id] for event_id in committed if event_id not in seen),
            phantom=sorted(event_id for event_id in seen if event_id not in committed),
            drain_s=drained)
        by_writer: dict[str, list[float]] = {}
        for doc, late in lateness.items():
            by_writer.setdefault(doc.rsplit("-", 1)[0], []).append(-late)
        verdict.notes.append("staging stamp minus the server's commit time, median per writer (s): " + ", ".join(
            f"{label} {statistics.median(values):+.1f}" for label, values in sorted(by_writer.items())))
        if len(lateness) < len(committed_ids):
            verdict.notes.append(f"commit times known for {len(lateness)} of {len(committed_ids)} documents")
        return verdict

    def close(self) -> None:
        kill_all(self.writers)  # the verdict is in: how the writers stop is nobody's question (SIGTERM costs seconds)
        for proxy in self.proxies:
            proxy.stop()
        self.commits.close()
        self.client.close()
        self.node.delete_vhost(self.vhost)
