"""Rows, targets, the printed table and the shape of bench/results/latest.json."""

import json

import pytest

from bench.figures import ROWS, build_figures, creation_ratio
from bench.report import Figure, Target, render_cpu_table, render_table, results_document

RAW = {
    "baselines": {"publish_confirmed": {"rate": 2000.0, "confirm_ms": {"p50": 0.5, "p99": 2.0}},
                  "consume_acked": {"rate": 9000.0}, "insert_one": {"rate": 2500.0},
                  "insert_many": {"rate": 9000.0}},
    "naive": {"c8": {"run": {"rate": 400.0}, "cpu_ms_per_ticket": {"system": 10.0}},
              "c32": {"run": {"rate": 380.0}, "db_ops_per_ticket": 2.0,
                      "cpu": {"cores": {"gateway": 0.3}, "other_cores": 0.1, "machine_busy_cores": 1.9}},
              "paced": {"achieved_rate": 100.0, "http_ms": {"p50": 5.0, "p99": 20.0},
                        "echo_ms": {"p50": 4.0, "p99": 10.0}},
              "memory": {"gateway": {"peak_rss_kb": 51200}}},
    "platform": {"c8": {"run": {"rate": 320.0, "drained": True}, "wrk": {"non_2xx": 0}},
                 "c32": {"run": {"rate": 270.0}, "wrk": {"cpu_cores": 0.02}},
                 "paced": {"rate": 100.0, "achieved_rate": 99.5, "echo_ms": {"p50": 30.0, "p99": 120.0},
                           "outbox_lag_ms": {"all": {"p50": 3.0, "p99": 9.0}}},
                 "backlog": {"events": 10000, "rate": 900.0, "seconds": 11.1, "complete": True},
                 "memory": {"gateway": {"peak_rss_kb": 61440}}},
}


def by_key(figures):
    return {figure.key: figure for figure in figures}


def test_targets_check_ratio_or_value_in_the_right_direction():
    assert Target.ratio_at_least(0.75).check(value=1, ratio_=0.75) is True
    assert Target.ratio_at_least(0.75).check(value=1, ratio_=0.74) is False
    assert Target.at_most(100, "ms").check(value=100.5, ratio_=None) is False
    assert Target.at_least(95).check(value=None, ratio_=None) is None
    assert Target.at_most(100, "ms").text == "≤ 100 ms"
    assert Target.ratio_at_least(0.5).text == "ratio ≥ 0.5"


def test_figures_compute_ratios_against_the_same_run_and_pass_or_fail():
    rows = by_key(build_figures(RAW))
    creation = rows["platform.creation_c8"]
    assert creation.ratio == pytest.approx(0.8) and creation.passed is True
    assert rows["platform.creation_c32"].ratio == pytest.approx(270 / 380)
    assert rows["platform.creation_c32"].passed is False
    assert rows["platform.echo_p99"].passed is False  # 120 ms > 100 ms
    assert rows["platform.backlog_drain_rate"].ratio == pytest.approx(0.45)
    assert rows["platform.backlog_drain_rate"].passed is False
    assert rows["platform.backlog_drain_seconds"].baseline == pytest.approx(5.0)  # 10,000 at 2,000/s
    assert rows["platform.peak_rss.gateway"].value == 60.0
    assert rows["platform.peak_rss.gateway"].ratio == pytest.approx(1.2)
    assert rows["harness.wrk_cpu_c32"].passed is True


def test_creation_ratio_compares_the_best_rate_of_each():
    assert creation_ratio(RAW) == pytest.approx(320 / 400)
    assert creation_ratio({}) is None


def test_a_phase_that_did_not_run_gives_rows_without_values_not_numbers():
    rows = build_figures({})
    assert len(rows) == sum(len(builder({})) for builder in ROWS) > 25
    creation = by_key(rows)["platform.creation_c8"]
    assert creation.value is None and creation.passed is None
    assert "n/a" in render_table([creation])


def test_table_has_every_column_and_a_row_per_figure():
    figures = [Figure("a", "alpha", 1234.5, "req/s", baseline=2000, baseline_label="naive",
                      target=Target.ratio_at_least(0.75)),
               Figure("b", "beta", None, "ms")]
    lines = render_table(figures, "title").splitlines()
    assert lines[0] == "title"
    header = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert header == ["figure", "value", "baseline", "ratio", "target", "result"]
    alpha = [cell.strip() for cell in lines[4].strip("|").split("|")]
    assert alpha == ["alpha", "1,234 req/s", "2,000 req/s (naive)", "0.617", "ratio ≥ 0.75", "FAIL"]
    assert len({len(line) for line in lines[2:]}) == 1  # aligned
    noted = render_table([Figure("c", "gamma", 1.0, "s", note="measured while writing")])
    assert noted.splitlines()[-1] == "note — gamma: measured while writing"


def test_cpu_table_lists_phases_that_measured_cpu():
    table = render_cpu_table(RAW)
    assert "naive c32" in table and "gateway" in table and "platform c8" not in table


def test_results_document_is_json_with_every_figure_and_the_machine():
    figures = build_figures(RAW)
    document = results_document(figures, machine={"nproc": 2}, run={"mode": "full"},
                                creation_ratio=creation_ratio(RAW), raw=RAW)
    parsed = json.loads(json.dumps(document))
    assert parsed["schema_version"] == 1
    assert parsed["creation_ratio"] == pytest.approx(0.8)
    assert parsed["machine"] == {"nproc": 2}
    assert {"key", "label", "value", "unit", "baseline", "ratio", "target", "passed"} <= set(parsed["figures"][0])
    assert parsed["targets"]["platform.creation_c8"] is True
    assert parsed["all_targets_passed"] is False
    assert len(parsed["figures"]) == len(figures)


def test_the_drain_is_compared_with_the_publish_rate_measured_beside_it():
    raw = {**RAW, "platform": {**RAW["platform"], "backlog": {**RAW["platform"]["backlog"],
                                                              "raw_publish_rate": 1800.0}}}
    drain = by_key(build_figures(raw))["platform.backlog_drain_rate"]
    assert drain.baseline == 1800.0 and drain.ratio == pytest.approx(0.5) and drain.passed is True
