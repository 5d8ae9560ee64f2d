"""Graceful shutdown under load: SIGTERM finishes or returns in-flight work, then exits within a bound.

First the extra instance of every process gets SIGTERM at once (each must exit 0
within ``HUISHENG_STOP_TIMEOUT`` + 2 s) and is started again; then ``huisheng
down`` stops the supervised platform while the extras keep serving (a rolling
restart), and ``huisheng up -d`` brings it back on the same data. Nothing
acknowledged may be lost or done twice, and nothing may need SIGKILL.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.harness import Scenario, assert_clean, run
from tests.chaos.systems import CHAOS_SETTINGS, PLATFORM_PROCESSES

STOP_BOUND = float(CHAOS_SETTINGS["HUISHENG_STOP_TIMEOUT"]) + 2.0
DOWN_BOUND = 2 * (STOP_BOUND + 2.0) + 5.0  # two layers, each SIGTERM-then-wait, as `huisheng down` does


def terminate_extras(platform, exits: dict[str, tuple]) -> None:
    """SIGTERM every extra at once; record (exit code, seconds) for each; start them again."""
    stopping = [platform.extras[name] for name in PLATFORM_PROCESSES]
    started = time.monotonic()
    for instance in stopping:
        instance.popen.terminate()
    for instance in stopping:
        code = instance.wait_exit(max(0.1, STOP_BOUND + 5 - (time.monotonic() - started)))
        exits[instance.label] = (code, time.monotonic() - started)
    for instance in stopping:
        instance.start(timeout=60)


def graceful(platform, exits: dict, notes: list[str]):
    def fault(load) -> None:
        notes.append(f"SIGTERM to every extra at t={load.now():.1f} s")
        terminate_extras(platform, exits)
        load.run_for(3.0)
        notes.append(f"huisheng down at t={load.now():.1f} s")
        seconds, done = platform.down()
        exits["huisheng down"] = (done.returncode, seconds)
        notes.append(f"huisheng down: {done.stdout.strip().splitlines()[-1:]} {done.stderr.strip()[-300:]}")
        if "SIGKILL" in done.stdout + done.stderr:
            exits["huisheng down needed SIGKILL"] = (None, seconds)
        load.run_for(2.0)
        platform.up()
        notes.append("exits (code, s): " + ", ".join(f"{k}={v[0]}/{v[1]:.1f}" for k, v in exits.items()))

    return fault


@pytest.mark.chaos
def test_sigterm_under_load_finishes_in_flight_work(platform, record):
    exits: dict[str, tuple] = {}
    notes: list[str] = []
    scenario = Scenario("graceful shutdown (SIGTERM, huisheng down)", graceful(platform, exits, notes), rate=30.0,
                        recovery=4.0, notes=notes)
    tally = record(run(scenario, platform))
    slow = {k: v for k, v in exits.items() if k != "huisheng down" and (v[0] != 0 or v[1] > STOP_BOUND)}
    down_code, down_seconds = exits["huisheng down"]
    dropped = sum(n for key, n in tally.details.items() if key.startswith("written_then_unanswered(connection"))
    assert_clean(
        tally,
        *([f"did not exit 0 within {STOP_BOUND:g} s of SIGTERM: {slow}"] if slow else []),
        *([f"huisheng down took {down_seconds:.1f} s (exit {down_code})"]
          if down_code != 0 or down_seconds > DOWN_BOUND else []),
        *([f"{dropped} requests were carried out but their answer was dropped (connection closed) "
           "by a stopping gateway"] if dropped else []),
    )
