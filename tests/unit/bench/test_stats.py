"""The harness's arithmetic: percentiles, rates, the sustained-rate clock, CPU shares."""

import pytest

from bench.meter import cpu_shares, others_share
from bench.stats import latencies_ms, per_second, percentile, ratio, summarize, sustained_run


def test_percentile_interpolates_between_ranks_like_numpy():
    values = [15, 20, 35, 40, 50]
    assert percentile(values, 0) == 15
    assert percentile(values, 100) == 50
    assert percentile(values, 50) == 35
    assert percentile(values, 40) == pytest.approx(29.0)  # numpy.percentile(values, 40)
    assert percentile(values, 99) == pytest.approx(49.6)


def test_percentile_ignores_input_order_and_rejects_nonsense():
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([], 50) is None
    assert percentile([7], 99) == 7
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summary_has_count_mean_max_and_the_percentiles():
    summary = summarize([1.0, 2.0, 3.0, 4.0])
    assert summary == {"count": 4, "p50": 2.5, "p90": pytest.approx(3.7), "p99": pytest.approx(3.97),
                       "mean": 2.5, "max": 4.0}
    assert summarize([])["p99"] is None


def test_rates_and_ratios_never_divide_by_zero():
    assert per_second(100, 4) == 25
    assert per_second(100, 0) is None
    assert ratio(75, 100) == 0.75
    assert ratio(75, 0) is None
    assert ratio(None, 100) is None


def test_latencies_are_in_milliseconds_and_skip_missing_ends():
    assert latencies_ms([(1.0, 1.25), (2.0, None)]) == [250.0]


def test_clock_stops_at_the_last_echo_when_the_backlog_drains():
    run = sustained_run(started=100.0, load_ended=110.0, deadline=170.0, created=4,
                        delivered=[101.0, 105.0, 112.0, 120.0])
    assert run.drained and run.echoed == 4
    assert run.seconds == 20.0 and run.rate == pytest.approx(0.2)
    assert run.drain_seconds == 10.0


def test_clock_never_stops_before_the_load_ended():
    run = sustained_run(100.0, 110.0, 170.0, created=2, delivered=[101.0, 102.0])
    assert run.stopped == 110.0 and run.rate == pytest.approx(0.2)


def test_tickets_not_echoed_by_the_deadline_do_not_count():
    run = sustained_run(100.0, 110.0, 130.0, created=3, delivered=[105.0, 129.0, 131.0])
    assert not run.drained
    assert run.echoed == 2 and run.stopped == 130.0
    assert run.rate == pytest.approx(2 / 30)
    assert run.to_dict()["rate"] == run.rate


def test_cpu_shares_are_cores_and_others_is_what_is_left():
    shares = cpu_shares({"a": 10.0, "b": 1.0, "gone": 1.0}, {"a": 13.0, "b": 2.5, "gone": None}, 2.0)
    assert shares == {"a": 1.5, "b": 0.75, "gone": None}
    assert others_share(2.0, shares) == 0.0  # never negative
    assert others_share(1.9, {"a": 1.0}) == pytest.approx(0.9)


@pytest.mark.parametrize("module", ["bench.stats", "bench.report", "bench.meter", "bench.analysis", "bench.loadgen",
                                    "bench.profiles", "bench.tap"])
def test_the_examples_in_the_docstrings_hold(module):
    """bench/ is not among pytest's testpaths, so its doctests are run from here."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
