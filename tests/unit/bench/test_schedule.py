"""The order of a run, and how the runs of one figure are combined."""

import pytest

from bench.analysis import combine_slots
from bench.schedule import FULL, QUICK, build_schedule, only


def test_sustained_runs_alternate_naive_platform_platform_naive():
    steps = [s for s in build_schedule(FULL) if s.phase == "c8"]
    assert [(s.stack, s.slot) for s in steps] == [("naive", 1), ("platform", 1), ("platform", 2), ("naive", 2)]
    assert [s.stack for s in build_schedule(QUICK) if s.phase == "c32"] == ["naive", "platform"]


def test_the_tap_is_bound_only_where_the_platform_is_observed():
    tapped = {(s.stack, s.phase) for s in build_schedule(FULL) if s.tap}
    assert tapped == {("platform", "paced"), ("platform", "light"), ("platform", "backlog")}


def test_the_naive_pipeline_is_stopped_before_the_relay_is_measured():
    phases = [f"{s.stack}.{s.phase}" for s in build_schedule(FULL)]
    assert phases.index("naive.down") < phases.index("platform.backlog")
    assert "platform.profile" not in phases


def test_only_keeps_the_phases_asked_for():
    assert {s.phase for s in only(build_schedule(FULL), {"c8"})} == {"c8", "down"}


def slot(created, echoed, seconds, cores, ops):
    return {"run": {"created": created, "echoed": echoed, "seconds": seconds, "drained": True, "drain_seconds": 1.0},
            "wrk": {"requests": created, "non_2xx": 1, "cpu_cores": 0.01},
            "cpu": {"seconds": seconds, "cores": {"tickets": cores}, "other_cores": 0.1, "machine_busy_cores": 1.0},
            "db_ops": {"insert": ops}, "cpu_ms_per_ticket": {"system": 10.0 * cores}}


def test_slots_combine_as_totals_over_totals_and_time_weighted_cpu():
    combined = combine_slots([slot(100, 100, 10.0, 0.5, 200), slot(300, 300, 30.0, 1.0, 600)])
    assert combined["run"]["rate"] == pytest.approx(10.0)
    assert combined["wrk"]["non_2xx"] == 2
    assert combined["cpu"]["cores"]["tickets"] == pytest.approx((0.5 * 10 + 1.0 * 30) / 40)
    assert combined["db_ops_per_ticket"] == pytest.approx(2.0)
    assert combined["cpu_ms_per_ticket"]["system"] == pytest.approx((5.0 * 100 + 10.0 * 300) / 400)
