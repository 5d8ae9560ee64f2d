"""``make bench``: measure the echo path against the limits of the machine, in one run.

Order of a run (everything on loopback, in vhosts and a database server of its own):

1. baselines: kombu confirmed publish and consume, pymongo insert_one / insert_many;
2. both stacks up: the naive pipeline (bench/naive) and the platform (``huisheng up -d``);
3. their loaded phases alternate (bench/schedule.py): warm-up; 8 and 32 connections
   (naive, platform, platform, naive); 100 req/s paced, then 40 req/s (an event tap bound
   for the platform's outbox lag); peak memory; the naive pipeline down;
4. the platform alone: a backlog of unpublished events for the relay to drain; memory; down;
5. the table, and ``bench/results/latest.json`` (quick runs: ``var/bench/quick.json``).

Whatever happens, everything started is stopped (``huisheng down``, the database,
the vhost). ``--quick`` (or ``BENCH_QUICK=1``) is a smoke run of under two minutes;
``--profile SECONDS`` adds py-spy profiles of every process under load;
``--platform-root DIR`` measures the platform of another checkout (a patched copy,
for before/after comparisons) against the same naive pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, replace
from pathlib import Path

from bench import baselines, scenarios, speed
from bench import broadcasts as bench_broadcasts
from bench import reports as bench_reports
from bench.analysis import combine_slots
from bench.figures import build_figures, creation_ratio
from bench.infra import BenchError, DatabaseServer, Vhost, ensure_wrk, py_spy
from bench.machine import describe
from bench.report import render_cpu_table, render_table, results_document
from bench.scenarios import Context
from bench.schedule import FULL, QUICK, Config, Step, build_schedule, only
from bench.stacks import REPO_ROOT, Stack, naive_stack, platform_stack
from bench.stalls import StallWatch, headline
from bench.tap import EventTap
from kernel.mongo import connect

RESULTS = REPO_ROOT / "bench" / "results" / "latest.json"
QUICK_RESULTS = REPO_ROOT / "var" / "bench" / "quick.json"
ONLY_RESULTS = REPO_ROOT / "var" / "bench" / "only.json"
KEEP_RUNS = 5



ACTIONS: dict[str, Callable[..., dict]] = {
    "warm_up": scenarios.warm_up, "sustained": scenarios.sustained, "paced": scenarios.paced,
    "backlog": scenarios.backlog, "memory": scenarios.memory, "profile": scenarios.profile,
}


def say(message: str) -> None:
    """Progress, on stdout."""
    print(f"bench: {message}", flush=True)


def execute(ctx: Context, stacks: dict[str, Stack], steps: list[Step], watch: StallWatch,
            probe: speed.SpeedProbe) -> None:
    """Each step in turn; a failed step is recorded and the next one still runs."""
    for step in steps:
        stack = stacks[step.stack]
        label = f"{step.stack}: {step.phase}" + (f" #{step.slot}" if step.slot else "")
        watch.step, watch.measured = label, step.action != "down"
        if step.action == "down":
            say(f"{step.stack}: stopping (huisheng down) ...")
            stack.down()
            continue
        say(f"{label} ...")
        started, probe.step = time.monotonic(), label
        try:
            result = run_step(ctx, stack, step)
        except Exception as error:  # recorded in the results: a partial run still reports what it measured
            ctx.raw.setdefault("errors", []).append(f"{label}: {error!r}")
            traceback.print_exc()
            continue
        finally:
            watch.measured, probe.step = False, None
        results = ctx.raw.setdefault(step.stack, {})
        if step.slot:
            results.setdefault("slots", {}).setdefault(step.phase, []).append(result)
        else:
            results[step.phase] = result
        say(f"{label} done in {time.monotonic() - started:.1f} s{_headline(result)}")
    for kind in stacks:
        for phase, slots in ctx.raw.get(kind, {}).pop("slots", {}).items():
            ctx.raw[kind][phase] = combine_slots(slots)


def run_step(ctx: Context, stack: Stack, step: Step) -> dict:
    """One step's scenario, with the tap bound around it if it needs one."""
    kwargs = {"connections": step.connections, "slot": step.slot} if step.connections else {}
    if step.rate:
        kwargs = {"rate": step.rate, "phase": step.phase}
    with tapped(ctx, stack, step.tap):
        return ACTIONS[step.action](ctx, stack, **kwargs)


@contextmanager
def tapped(ctx: Context, stack: Stack, wanted: bool) -> Iterator[None]:
    """A copy of every event while the step runs (and none, so no extra broker work, otherwise)."""
    if not wanted:
        yield
        return
    ctx.tap = EventTap(stack.amqp_uri).start()
    try:
        yield
    finally:
        ctx.tap.stop()
        ctx.tap = None


def _headline(result: dict | None) -> str:
    if not result:
        return ""
    if "run" in result:
        run = result["run"]
        return f" — {run['echoed']} echoed in {run['seconds']:.1f} s = {run['rate'] or 0:.1f}/s"
    if "echo_ms" in result:
        return f" — echo p99 {result['echo_ms']['p99'] or 0:.1f} ms, http p99 {result['http_ms']['p99'] or 0:.1f} ms"
    if "rate" in result and "events" in result:
        return f" — {result['published']}/{result['events']} in {result['seconds']:.1f} s = {result['rate'] or 0:.0f}/s"
    return ""


def start_stacks(cleanup: ExitStack, stacks: dict[str, Stack], watch: StallWatch) -> None:
    """Both up before anything is measured; each stopped at the end whatever happens."""
    for stack in stacks.values():
        cleanup.callback(stack.down)
        say(f"{stack.kind}: starting (huisheng up -d) ...")
        watch.step = f"{stack.kind}: starting"
        stack.up()


def own_vhost(cleanup: ExitStack, name: str) -> Vhost:
    """A vhost for this run, deleted at the end."""
    vhost = Vhost(name).create()
    cleanup.callback(vhost.delete)
    return vhost


def measure(config: Config, platform_root: Path, work: Path, wrk: str, cleanup: ExitStack,
            phases: set[str] | None = None) -> dict:
    """Everything that needs the infrastructure; returns the raw results."""
    run_id = uuid.uuid4().hex[:8]
    naive_vhost, platform_vhost = (own_vhost(cleanup, f"huisheng-bench-{run_id}-{kind}")
                                   for kind in ("naive", "platform"))
    database = DatabaseServer(work / "mongo")
    cleanup.callback(database.stop)
    database.start(work / "secantus.log")
    client = connect(database.uri)
    cleanup.callback(client.close)
    ctx = Context(config, run_id, work, wrk, database, client)
    watch = StallWatch(database.uri, database.pid, work / "stalls", py_spy()).start()
    cleanup.callback(lambda: ctx.raw.setdefault("stalls", watch.stop()))
    probe = speed.SpeedProbe().start()
    cleanup.callback(lambda: ctx.raw.setdefault("machine_speed", probe.stop()))
    say(f"baselines on vhost {platform_vhost.name} and SecantusDB :{database.port} ...")
    watch.step, watch.measured = "baselines", True
    ctx.raw["baselines"] = baselines.measure(platform_vhost.amqp_uri, database.uri, "bench_baseline",
                                             config.baseline_messages, config.baseline_inserts,
                                             config.baseline_batches)
    watch.step, watch.measured = "baselines: dropping their databases", False
    baselines.drop(database.uri, "bench_baseline")
    secret = secrets.token_hex(24)
    stacks = {"naive": naive_stack(platform_root, work, naive_vhost.amqp_uri, database.uri, secret),
              "platform": platform_stack(platform_root, work, platform_vhost.amqp_uri, database.uri, secret)}
    steps = build_schedule(config) if not phases else only(build_schedule(config), phases)
    stacks = {kind: stack for kind, stack in stacks.items() if any(s.stack == kind and s.action != "down"
                                                                   for s in steps)}
    start_stacks(cleanup, stacks, watch)
    execute(ctx, stacks, [step for step in steps if step.stack in stacks], watch, probe)
    watch.step = "stopping"
    return ctx.raw


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; BENCH_QUICK=1 and BENCH_PROFILE=S are the same as --quick and --profile S."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                        help="a smoke run of under two minutes (also BENCH_QUICK=1)")
    parser.add_argument("--profile", type=float, default=float(os.environ.get("BENCH_PROFILE") or 0), metavar="S",
                        help="also profile every process with py-spy for S seconds under load (BENCH_PROFILE=S)")
    parser.add_argument("--platform-root", type=Path, default=REPO_ROOT,
                        help="checkout whose platform to measure (default: this one)")
    parser.add_argument("--output", type=Path, help="results file (default: bench/results/latest.json, "
                                                     "var/bench/quick.json for --quick)")
    parser.add_argument("--only", type=lambda text: set(text.split(",")), metavar="PHASES",
                        help="run only these phases (comma-separated: warmup, c8, c32, paced, light, backlog, "
                             "memory, profile, reports, broadcasts); for experiments — the results go to "
                             "var/bench/only.json")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, wrk output, profiles)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    return parser.parse_args(argv)


def check_tools(profile: bool) -> str:
    """wrk (installed if we may), and py-spy if we are to profile; a clear error otherwise."""
    wrk = ensure_wrk()
    if profile and not py_spy():
        raise BenchError("py-spy is needed for --profile: `.venv/bin/pip install -e '.[bench]'` (or `make bench`)")
    return wrk


def write_results(document: dict, path: Path) -> None:
    """Atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    temporary.replace(path)


def _terminate(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def prune(parent: Path, keep: int = KEEP_RUNS) -> None:
    """Only the last few work directories stay in var/bench (logs, wrk output, profiles)."""
    for old in sorted(parent.glob("run-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def summarize_run(raw: dict, machine: dict, config: Config, started: float, work: Path) -> dict:
    """The results document, after printing its table and where the CPU went."""
    figures = build_figures(raw)
    run = {"mode": "quick" if config.quick else "full",
           "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
           "duration_seconds": round(time.time() - started, 1), "config": asdict(config),
           "errors": raw.get("errors", []), "work_directory": str(work)}
    title = (f"Huisheng benchmark ({run['mode']}, {machine['nproc']} cores {machine['cpu_model']}, "
             f"{run['duration_seconds']:.0f} s)")
    print(f"\n{render_table(figures, title)}\n\nCPU, in cores, while loaded:\n{render_cpu_table(raw)}\n")
    print(f"database stalls (a probe write waiting over 2 s): {headline(raw.get('stalls', []))}")
    by_step = (raw.get("machine_speed") or {}).get("by_step", {})
    print(f"machine time for a fixed piece of work, per measured step: {speed.headline(by_step)}\n")
    return results_document(figures, machine=machine, run=run, creation_ratio=creation_ratio(raw), raw=raw)


def main(argv: list[str] | None = None) -> int:
    """Run, report, write the results; 0 if every phase ran (and, with --strict, every target passed)."""
    args = parse_args(argv)
    if args.only and "reports" in args.only:  # the reports' answer times (bench/reports.py) need no stacks
        code = bench_reports.main(["--sizes", "10000"] if args.quick else [])
        args.only.discard("reports")
        if not args.only:
            return code
    if args.only and "broadcasts" in args.only:  # the broadcast fan-out (bench/broadcasts.py) runs its own notify
        code = bench_broadcasts.main(["--residents", "2000"] if args.quick else [])
        args.only.discard("broadcasts")
        if not args.only:
            return code
    config = replace(QUICK if args.quick else FULL, profile_seconds=args.profile)
    output = args.output or (QUICK_RESULTS if args.quick else ONLY_RESULTS if args.only else RESULTS)
    work = REPO_ROOT / "var" / "bench" / time.strftime("run-%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    prune(work.parent)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.time()
    try:
        wrk = check_tools(bool(args.profile))
        machine = describe(REPO_ROOT, args.platform_root.resolve(), wrk)
        say(f"{'quick' if config.quick else 'full'} run; work directory {work}")
        with ExitStack() as cleanup:
            raw = measure(config, args.platform_root.resolve(), work, wrk, cleanup, args.only)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(work / "mongo", ignore_errors=True)
    document = summarize_run(raw, machine, config, started, work)
    write_results(document, output)
    say(f"results written to {output}")
    if not args.only:  # the reports' answer times at 100,000 and 1,000,000 tickets (a quick run: 10,000)
        bench_reports.main(["--sizes", "10000"] if args.quick else [])
        # a broadcast to 10,000 residents beside a bulk insert, and the echo p99 while it runs (quick: 2,000)
        bench_broadcasts.main(["--residents", "2000"] if args.quick else [])
    if raw.get("errors"):
        say("some phases failed: " + "; ".join(raw["errors"]))
        return 1
    return 1 if args.strict and not document["all_targets_passed"] else 0
