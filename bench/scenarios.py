"""The phases of a run. Each loads one stack in one way and returns what it observed (raw, JSON-ready).

A new capability (reports, broadcasts ...) adds a phase here and the rows it
feeds in :mod:`bench.figures`; :mod:`bench.run` lists which phases run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pymongo import MongoClient
from pymongo.collection import Collection

from bench import analysis, baselines
from bench.documents import backlog_tickets, staged_at
from bench.echoes import EchoStore
from bench.infra import DatabaseServer, counter_delta, opcounters, pids_named, py_spy, status_kb
from bench.loadgen import run_paced, run_wrk
from bench.meter import CpuMeter
from bench.profiles import summarize_collapsed
from bench.schedule import Config
from bench.stacks import Stack
from bench.stats import sustained_run
from bench.tap import EventTap
from kernel.config import Settings
from kernel.ledger import unpublished

BACKLOG_PER_INSTANT = 500  # backlog documents staged in the same millisecond, as writes pile up in an outage
INSERT_BATCH = 1000
NOT_THE_SYSTEM = frozenset({"harness", "loadgen"})  # the benchmark's own processes


@dataclass
class Context:
    """What every phase may use: the config, the run's infrastructure, a database client, the tap."""

    config: Config
    run_id: str
    work: Path
    wrk: str
    database: DatabaseServer
    client: MongoClient
    tap: EventTap | None = None
    raw: dict = field(default_factory=dict)

    def subject(self, stack: Stack, phase: str) -> str:
        """A resident of one phase: its tickets and echoes are told apart by it."""
        return f"bench-{self.run_id}-{stack.kind}-{phase}"

    def infra_pids(self) -> dict[str, int]:
        pids = {"secantus": self.database.pid, "harness": os.getpid()}
        rabbit = pids_named("beam.smp")
        if rabbit:
            pids["rabbitmq"] = rabbit[0]
        return {name: pid for name, pid in pids.items() if pid}

    def meter(self, stack: Stack) -> CpuMeter:
        return CpuMeter({**stack.pids(), **self.infra_pids()}).start()

    def phase_dir(self, stack: Stack, phase: str) -> Path:
        path = self.work / stack.kind / phase
        path.mkdir(parents=True, exist_ok=True)
        return path


def warm_up(ctx: Context, stack: Stack) -> dict:
    """A short load first, so connections, pools and caches are warm, then let it drain."""
    subject = ctx.subject(stack, "warmup")
    result = run_wrk(ctx.wrk, stack.request(subject), 8, ctx.config.warmup_seconds, ctx.phase_dir(stack, "warmup"))
    drained = EchoStore.of(ctx.client, stack).wait_drained(subject, time.time() + ctx.config.drain_timeout)
    return {"requests": result["requests"], "drained": drained}


def sustained(ctx: Context, stack: Stack, connections: int, slot: int = 1) -> dict:
    """Closed-loop load; the rate counts only tickets whose echo was delivered before the clock stopped."""
    phase = f"c{connections}-{slot}"
    subject, store = ctx.subject(stack, phase), EchoStore.of(ctx.client, stack)
    ops_before, meter, whole = opcounters(ctx.client), ctx.meter(stack), ctx.meter(stack)
    started = time.time()
    wrk = run_wrk(ctx.wrk, stack.request(subject), connections, ctx.config.sustained_seconds,
                  ctx.phase_dir(stack, phase))
    load_ended = time.time()
    cpu = meter.stop({"loadgen": wrk["cpu_cores"]})
    deadline = load_ended + ctx.config.drain_timeout
    store.wait_drained(subject, deadline)
    until_drained = whole.stop()
    created, delivered = store.created(subject), store.delivered(subject)
    ops = counter_delta(ops_before, opcounters(ctx.client))
    run = sustained_run(started, load_ended, deadline, len(created), list(delivered.values()))
    return {"wrk": wrk, "run": run.to_dict(), "cpu": cpu, "db_ops": ops,
            "db_ops_per_ticket": sum(ops.values()) / len(created) if created else None,
            "cpu_ms_per_ticket": cpu_ms_per_item(until_drained, len(created))}


def cpu_ms_per_item(cpu: dict, items: int) -> dict:
    """CPU milliseconds each process spent per ticket over load and drain, and the sum of the system's own."""
    if not items:
        return {}
    per = {name: cores * cpu["seconds"] * 1000.0 / items for name, cores in cpu["cores"].items()
           if cores is not None}
    per["system"] = sum(value for name, value in per.items() if name not in NOT_THE_SYSTEM)
    return per


def paced(ctx: Context, stack: Stack, rate: float | None = None, phase: str = "paced") -> dict:
    """Open-loop load at a fixed rate: HTTP latency, echo latency and (with the tap) outbox lag."""
    rate = rate or ctx.config.paced_rate
    subject, store = ctx.subject(stack, phase), EchoStore.of(ctx.client, stack)
    mark = ctx.tap.mark() if ctx.tap else 0
    meter = ctx.meter(stack)
    result = run_paced(stack.request(subject), rate, ctx.config.paced_seconds, ctx.phase_dir(stack, phase))
    cpu = meter.stop({"loadgen": result["cpu_cores"]})
    store.wait_drained(subject, time.time() + ctx.config.drain_timeout)
    summary = analysis.paced_summary(result["records"], store.created(subject), store.delivered(subject),
                                     result["started"])
    summary.update(rate=rate, seconds=ctx.config.paced_seconds, cpu=cpu)
    if ctx.tap:
        time.sleep(0.5)  # the last events are on their way to the tap
        summary["outbox_lag_ms"] = analysis.outbox_lags(ctx.tap.events(mark))
    return summary


def backlog(ctx: Context, stack: Stack, on_due: Callable[[], None] | None = None) -> dict:
    """Write N tickets whose events are unpublished (as after a broker outage); time the relay's drain.

    The relay reads what was committed in commit order (a change stream), so a backlog written while
    it runs would be drained as it is written. The tickets processes are therefore stopped (SIGSTOP)
    while the backlog is inserted, as a relay that could not publish during an outage, and continued
    (SIGCONT) once it is all in. The relay then reads the backlog and leaves each event to its writer
    for the grace period before it publishes it itself: the clock runs from the end of that grace
    period until the last event reached the tap, and the outbox is checked clean.
    """
    count, prefix = ctx.config.backlog_events, f"bench-backlog-{uuid.uuid4().hex[:8]}-"
    grace = Settings.from_env(stack.env).outbox_grace_seconds
    documents = backlog_tickets(count, datetime.now(UTC), prefix)
    since = datetime.now(UTC)
    for index, document in enumerate(documents):
        staged_at(document, since + timedelta(milliseconds=index // BACKLOG_PER_INSTANT))
    tickets = EchoStore.of(ctx.client, stack).tickets
    relays = [pid for name, pid in stack.pids().items() if name.split("#")[0] == "tickets"]
    mark, inserting = ctx.tap.mark(), time.time()
    _signal_all(relays, signal.SIGSTOP)
    try:
        for start in range(0, count, INSERT_BATCH):
            tickets.insert_many(documents[start:start + INSERT_BATCH])
        inserted = time.time()
        raw_publish = [bracketing_publish(ctx, stack)]
    finally:
        _signal_all(relays, signal.SIGCONT)
    due = time.time() + grace
    time.sleep(max(0.0, due - time.time()))
    if on_due:
        on_due()
    meter = ctx.meter(stack)
    arrivals = _wait_published(ctx.tap, mark, prefix, count, due + ctx.config.drain_timeout * 2)
    cpu = meter.stop()
    cleaned_at = _wait_clean(tickets, time.time() + 30)
    raw_publish.append(bracketing_publish(ctx, stack))
    summary = analysis.drain_summary(count, due, arrivals, cleaned_at)
    summary.update(insert_seconds=inserted - inserting, relays_paused=len(relays), grace_seconds=grace,
                   event_type=documents[0]["_outbox"][0]["type"], cpu=cpu,
                   cpu_ms_per_event=cpu_ms_per_item(cpu, len(arrivals)), raw_publish=raw_publish,
                   raw_publish_rate=_mean([r["rate"] for r in raw_publish if r and r.get("rate")]))
    return summary


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)


def bracketing_publish(ctx: Context, stack: Stack, until: float | None = None) -> dict | None:
    """The raw confirmed-publish rate right beside the drain (before it, if there is time; and after it),
    on the platform's vhost: the neighbours' load drifts, so the drain's baseline is taken next to it."""
    messages = ctx.config.baseline_messages
    expected = messages / 800.0  # seconds, at a slow publish rate
    if until is not None and time.time() + expected > until:
        return None
    return baselines.publish_confirmed(stack.amqp_uri, messages)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _wait_published(tap: EventTap, mark: int, prefix: str, count: int, deadline: float) -> dict[str, float]:
    arrivals: dict[str, float] = {}
    scanned = mark
    while len(arrivals) < count and time.time() < deadline:
        time.sleep(0.2)
        upto = tap.mark()
        for event_id, at in analysis.first_arrivals(tap.events(scanned, upto), prefix).items():
            arrivals.setdefault(event_id, at)
        scanned = upto
    return arrivals


def _wait_clean(tickets: Collection, deadline: float) -> float | None:
    """When no document of ``tickets`` has an event the broker has not confirmed (None: not by ``deadline``).

    Documents keep their events once published, so "clean" is the relay's own
    question, :func:`kernel.ledger.unpublished`: the ledger and the checkpoint account
    for every event. The time is taken after the check, so it never flatters the relay.
    """
    while time.time() < deadline:
        if not unpublished(tickets.database, tickets.name):
            return time.time()
        time.sleep(0.25)
    return None


def memory(ctx: Context, stack: Stack) -> dict:
    """Peak (``VmHWM``) and current resident memory of each process, in kB, after the load."""
    pids = {**stack.pids(), **{k: v for k, v in ctx.infra_pids().items() if k == "secantus"}}
    return {name: {"peak_rss_kb": status_kb(pid, "VmHWM"), "rss_kb": status_kb(pid, "VmRSS"), "pid": pid}
            for name, pid in pids.items()}


def start_sampling(ctx: Context, stack: Stack, out: Path) -> dict[str, subprocess.Popen]:
    """py-spy on every process that works (only the thread holding the GIL: CPU, not waiting)."""
    targets = {**{k: v for k, v in stack.pids().items() if k not in ("supervisor", "volunteers")},
               "secantus": ctx.database.pid}
    return {name: subprocess.Popen([py_spy() or "py-spy", "record", "--gil", "--nonblocking", "-r", "100",
                                    "-d", str(int(ctx.config.profile_seconds)), "-f", "raw",
                                    "-o", str(out / f"{name}.txt"), "-p", str(pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in targets.items()}


def finish_sampling(samplers: dict[str, subprocess.Popen], out: Path, timeout: float) -> dict:
    """Wait for the samplers and summarize what each wrote."""
    for sampler in samplers.values():
        try:
            sampler.wait(timeout)
        except subprocess.TimeoutExpired:
            sampler.kill()
    return {name: summarize_collapsed(out / f"{name}.txt") for name in samplers}


def profile(ctx: Context, stack: Stack) -> dict:
    """Profiles under 32-connection load, then during a backlog drain; after the measured phases,
    so the sampling does not distort them."""
    seconds = ctx.config.profile_seconds
    out = ctx.phase_dir(stack, "profile-load")
    samplers = start_sampling(ctx, stack, out)
    time.sleep(1.0)
    load = run_wrk(ctx.wrk, stack.request(ctx.subject(stack, "profile")), 32, seconds, out)
    result = {"load": {"requests_per_second": load["requests_per_second"], "files": str(out),
                       "processes": finish_sampling(samplers, out, seconds + 30)}}
    EchoStore.of(ctx.client, stack).wait_drained(ctx.subject(stack, "profile"), time.time() + ctx.config.drain_timeout)
    out = ctx.phase_dir(stack, "profile-backlog")
    ctx.tap = EventTap(stack.amqp_uri).start()
    try:
        drain = backlog(ctx, stack, on_due=lambda: samplers.update(start_sampling(ctx, stack, out)))
    finally:
        ctx.tap.stop()
        ctx.tap = None
    result["backlog"] = {"rate": drain["rate"], "files": str(out),
                         "processes": finish_sampling(samplers, out, seconds + 30)}
    return result
