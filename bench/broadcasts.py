"""A broadcast's fan-out rate beside a bulk insert of the same documents (target: at least 50 %), and the ticket
echo p99 while it runs (target: at most 250 ms).

    python -m bench.broadcasts [--residents 10000] [--echo-rate 20] [--keep]
    python -m bench --only broadcasts            (the same, from the bench's entry point; --quick: 2,000)

A SecantusDB server and a RabbitMQ vhost of its own. notify runs as a child process (this module's
``--serve``): the real service class, whose segment is ``--residents`` generated residents paged as
``directory.segment`` pages them (the directory's paging is left out of the figure: it reads an index the
directory keeps anyway; every resident has the default preferences, the inbox). The baseline inserts the
very documents the fan-out stores (the inbox message carrying its delivered echo), ``insert_many`` in pages
of the fan-out's directory page (500), on the same server, into the collection the fan-out writes: notify's
``inbox`` with the indexes notify keeps on it (``services.notify.repository.ensure_indexes``), since a
resident's inbox must be read by recipient whoever wrote it. The same insert into a bare collection (no
secondary index) is printed beside it, to show what those indexes cost the database.

While the broadcast fans out, ticket events are published at ``--echo-rate`` a second; each echo's latency is
from its publish to ``delivery.delivered_at`` of its inbox message (one clock: this machine's). Results go to
``var/bench/broadcasts.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "var" / "bench" / "broadcasts.json"
COMMUNITY = "xingqiao"
RATE_TARGET = 0.5
ECHO_P99_TARGET_MS = 250.0
ECHO_RESIDENT = "bench-echo"


# --- the notify child ------------------------------------------------------------------------------------

def serve() -> int:
    """``--serve``: notify with a generated segment, until SIGTERM (run as a child of :func:`run`)."""
    import eventlet

    eventlet.monkey_patch()
    import signal

    from nameko.runners import ServiceRunner

    from kernel.config import Settings
    from kernel.topology import declare_all
    from services.notify.service import NotifyService

    residents = int(os.environ["BENCH_RESIDENTS"])

    class GeneratedSegment(NotifyService):
        def segment_page(self, community: str, spec: dict, cursor: str | None, limit: int) -> dict:
            start = int(cursor or 0)
            following = min(start + limit, residents)
            return {"items": [{"id": f"bench-r-{n:06d}"} for n in range(start, following)],
                    "next_cursor": str(following) if following < residents else None}

    settings = Settings.from_env()
    declare_all(settings)
    runner = ServiceRunner(settings.nameko_config(web_address=f"127.0.0.1:{os.environ['BENCH_WEB_PORT']}"))
    runner.add_service(GeneratedSegment)
    stopping = eventlet.event.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.ready() or stopping.send(True))
    runner.start()
    stopping.wait()
    runner.stop()
    return 0


# --- the measurements -----------------------------------------------------------------------------------

def baseline_documents(residents: int, broadcast_id: str) -> list[dict]:
    """What the fan-out stores per resident, built by notify's own functions."""
    from kernel.envelope import utcnow
    from services.notify.domain import echo_message
    from services.notify.fallback import Outcome, Policy, new_echo, record_send
    from services.notify.repository import carrying

    now, policy, documents = utcnow(), Policy(), []
    facts = {"title": "停水通知", "body": "明日9时至12时停水，请提前储水。", "number": broadcast_id[:8]}
    for n in range(residents):
        echo = new_echo(f"{broadcast_id}:bench-r-{n:06d}", ["inbox"], occurred_at=now, now=now, policy=policy,
                        human=False)
        echo.update(community=COMMUNITY, ticket_id=None, broadcast_id=broadcast_id, recipient=f"bench-r-{n:06d}",
                    source_event_id=uuid.uuid4().hex, source_event_type="broadcast", correlation_id=None,
                    critical=False, grid=None, facts=facts, silent_at=None, audience="broadcast",
                    template="broadcast")
        echo, _ = record_send(echo, 0, Outcome("delivered", answer={"code": "stored"}), now, policy)
        documents.append(carrying(echo_message(echo, facts["title"], facts["body"], now), echo))
    return documents


def bulk_insert(client, documents: list[dict], batch: int, indexed: bool) -> float:
    """Seconds to insert ``documents`` in pages of ``batch`` (the fan-out's own page size); ``indexed``: into a
    collection with notify's inbox indexes, else into one with none but ``_id``."""
    from services.notify.repository import ensure_indexes

    database = client["bench_broadcast_baseline"]
    collection = database["inbox"]
    collection.drop()
    if indexed:
        ensure_indexes(database)
    started = time.perf_counter()
    for start in range(0, len(documents), batch):
        collection.insert_many(documents[start:start + batch], ordered=False)
    seconds = time.perf_counter() - started
    collection.drop()
    return seconds


def publish_echoes(amqp_uri: str, rate: float, stop: threading.Event, sent: dict[str, float]) -> None:
    """A ticket event every ``1 / rate`` s until ``stop``; ``sent``: event id -> publish time (epoch s)."""
    from kombu import Connection, Producer

    from kernel.envelope import Envelope
    from kernel.topology import EVENTS

    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        channel.confirm_select()
        producer = Producer(channel)
        next_at = time.monotonic()
        while not stop.is_set():
            event = Envelope.new("ticket.resolved", {
                "ticket_id": f"T-bench-{uuid.uuid4().hex[:12]}", "state": "resolved",
                "attached_residents": [ECHO_RESIDENT], "priority": "normal", "number": "XQ-BENCH"},
                community=COMMUNITY)
            sent[event.event_id] = time.time()
            producer.publish(event.to_wire(), exchange=EVENTS, routing_key=event.type, serializer="json",
                             delivery_mode=2)
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"notify exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("notify did not become healthy")


def run(residents: int, echo_rate: float, work: Path) -> dict:
    """Everything started here is stopped here, whatever happens."""
    from nameko.standalone.rpc import ClusterRpcProxy
    from pymongo import MongoClient

    from bench.infra import DatabaseServer, Vhost, free_port
    from services.notify.service import BROADCAST_BATCH

    vhost = Vhost(f"huisheng-bench-broadcasts-{uuid.uuid4().hex[:8]}").create()
    database = DatabaseServer(work / "mongo")
    child: subprocess.Popen | None = None
    try:
        database.start(work / "secantus.log")
        # a loaded machine may take longer than the platform's 10 s socket timeout for a page: wait, do not fail
        client = MongoClient(database.uri, tz_aware=True, socketTimeoutMS=120_000)
        documents = baseline_documents(residents, uuid.uuid4().hex)
        insert_seconds = bulk_insert(client, documents, BROADCAST_BATCH, indexed=True)
        bare_seconds = bulk_insert(client, documents, BROADCAST_BATCH, indexed=False)

        port, prefix = free_port(), f"bb{uuid.uuid4().hex[:6]}_"
        env = {**os.environ, "AMQP_URI": vhost.amqp_uri, "MONGO_URI": database.uri, "MONGO_DB_PREFIX": prefix,
               "BENCH_RESIDENTS": str(residents), "BENCH_WEB_PORT": str(port), "HUISHENG_HOME": str(work / "home"),
               "LOG_LEVEL": "WARNING"}
        with (work / "notify.log").open("w") as log:
            child = subprocess.Popen([sys.executable, "-m", "bench.broadcasts", "--serve"], cwd=REPO_ROOT, env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        wait_healthy(port, child)
        db = client[f"{prefix}notify"]

        sent: dict[str, float] = {}
        stop = threading.Event()
        publisher = threading.Thread(target=publish_echoes, args=(vhost.amqp_uri, echo_rate, stop, sent), daemon=True)
        publisher.start()
        time.sleep(2.0)  # echoes alone first: the p99 below is of those published while the broadcast runs
        quiet_until = time.time()
        with ClusterRpcProxy({"AMQP_URI": vhost.amqp_uri, "serializer": "json"}, timeout=60) as proxy:
            started = time.perf_counter()
            started_at = time.time()
            created = proxy.notify.create_broadcast(COMMUNITY, {"title": "停水通知", "body": "明日9时至12时停水。",
                                                                "segment": {}}, "bench")
            while (db.broadcasts.find_one({"_id": created["id"]}, {"status": 1}) or {}).get("status") != "done":
                if time.perf_counter() - started > 600:
                    raise RuntimeError("the broadcast did not finish within 10 minutes")
                time.sleep(0.05)
            fan_out_seconds = time.perf_counter() - started
        done_at = time.time()
        stop.set()
        publisher.join(10)
        deadline = time.monotonic() + 30
        while db.inbox.count_documents({"recipient": ECHO_RESIDENT}) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
        delivered = {m["source_event_id"]: m["delivery"]["delivered_at"].timestamp()
                     for m in db.inbox.find({"recipient": ECHO_RESIDENT}, {"source_event_id": 1,
                                                                           "delivery.delivered_at": 1})}
        latency = {e: (delivered[e] - at) * 1000 for e, at in sent.items() if e in delivered}
        during = [latency[e] for e, at in sent.items() if e in latency and started_at <= at <= done_at]
        before = [latency[e] for e, at in sent.items() if e in latency and at < quiet_until]
        stored = db.inbox.count_documents({"broadcast_id": created["id"]})
        fan_out_rate, insert_rate = residents / fan_out_seconds, residents / insert_seconds
        bare_rate = residents / bare_seconds
        return {
            "measured_at": datetime.now(UTC).isoformat(), "residents": residents, "stored": stored,
            "fan_out": {"seconds": round(fan_out_seconds, 3), "rate": round(fan_out_rate, 1)},
            "bulk_insert": {"seconds": round(insert_seconds, 3), "rate": round(insert_rate, 1)},
            "bulk_insert_bare": {"seconds": round(bare_seconds, 3), "rate": round(bare_rate, 1),
                                 "ratio": round(fan_out_rate / bare_rate, 3)},
            "ratio": round(fan_out_rate / insert_rate, 3), "ratio_target": RATE_TARGET,
            "echoes": {"rate": echo_rate, "during": len(during), "lost": len(sent) - len(delivered),
                       "p50_ms": _round(percentile(during, 0.5)), "p99_ms": _round(percentile(during, 0.99)),
                       "p99_ms_before": _round(percentile(before, 0.99)),
                       "mean_ms": _round(statistics.fmean(during) if during else None)},
            "echo_p99_target_ms": ECHO_P99_TARGET_MS,
        }
    finally:
        if child is not None:
            child.terminate()
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        database.stop()
        vhost.delete()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def render(result: dict) -> str:
    ratio_ok = result["ratio"] >= RATE_TARGET
    p99 = result["echoes"]["p99_ms"]
    p99_ok = p99 is not None and p99 <= ECHO_P99_TARGET_MS
    bare = result["bulk_insert_bare"]
    return "\n".join([
        f"broadcast to {result['residents']:,} residents ({result['stored']:,} inbox messages stored)",
        f"  fan-out        {result['fan_out']['rate']:>10,.0f} /s  ({result['fan_out']['seconds']:.1f} s)",
        f"  bulk insert    {result['bulk_insert']['rate']:>10,.0f} /s  ({result['bulk_insert']['seconds']:.1f} s)"
        "  into notify's inbox, its indexes",
        f"  ratio          {result['ratio']:>10.3f}     target >= {RATE_TARGET}  {'PASS' if ratio_ok else 'FAIL'}",
        f"  (bare insert   {bare['rate']:>10,.0f} /s  ({bare['seconds']:.1f} s)  no secondary index;"
        f" fan-out / bare {bare['ratio']:.3f})",
        f"  ticket echoes at {result['echoes']['rate']:g}/s while it ran: {result['echoes']['during']} echoes, "
        f"p50 {result['echoes']['p50_ms']} ms, p99 {p99} ms (before it: p99 {result['echoes']['p99_ms_before']} ms)"
        f"  target <= {ECHO_P99_TARGET_MS:g} ms  {'PASS' if p99_ok else 'FAIL'}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broadcasts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=10_000)
    parser.add_argument("--echo-rate", type=float, default=20.0, help="ticket events a second during the fan-out")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database files)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    work = REPO_ROOT / "var" / "bench" / time.strftime("broadcasts-%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args.residents, args.echo_rate, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(render(result), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
