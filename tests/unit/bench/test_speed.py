"""bench/speed.py: the probe files its timings under the step that was running, and only under it."""

from __future__ import annotations

import time

from bench.speed import SpeedProbe, fixed_work


def test_the_probe_files_each_timing_under_the_step_that_was_running() -> None:
    probe = SpeedProbe(interval=0.005, steps=2_000).start()
    time.sleep(0.1)  # no step: nothing is filed
    probe.step = "naive: c8 #1"
    time.sleep(0.15)
    probe.step = None
    time.sleep(0.05)
    probe.step = "platform: c8 #1"
    time.sleep(0.15)
    result = probe.stop()
    assert set(probe.samples) == {"naive: c8 #1", "platform: c8 #1"}
    assert all(len(samples) >= 3 and all(ms > 0 for ms in samples) for samples in probe.samples.values())
    assert set(result["by_step"]) == set(probe.samples)
    assert result["median_ms"] > 0
    assert all(0.2 < value < 5 for value in result["by_step"].values())


def test_the_work_is_the_same_every_time() -> None:
    assert fixed_work(1_000) == fixed_work(1_000) == sum(n * n % 7 for n in range(1_000))
