"""The wrk script and its parsing, and the analysis of paced runs, drains and lag (no I/O)."""

import json

import pytest

from bench.analysis import drain_summary, first_arrivals, outbox_lags, paced_summary
from bench.loadgen import WRK_RESULT, Request, lua_string, parse_wrk, wrk_script
from bench.profiles import frame_name, hot_frames


def test_lua_long_strings_survive_any_body():
    assert lua_string("a]]b") == "[=[a]]b]=]"
    assert lua_string("x]=]y") == "[==[x]=]y]==]"


def test_wrk_script_posts_the_body_with_every_header_and_reports_json():
    script = wrk_script(Request("http://127.0.0.1:1/x", '{"d": "下水道"}', {"Authorization": "Bearer t"}))
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = [=[{"d": "下水道"}]=]' in script
    assert "wrk.headers[ [=[Authorization]=] ] = [=[Bearer t]=]" in script  # "[[" would open a string
    assert WRK_RESULT.strip() in script


def test_parse_wrk_reads_the_json_line_and_the_rate():
    payload = {"requests": 10, "duration_us": 1000000, "bytes": 1, "latency_us": {"p99": 5},
               "errors": {"connect": 0, "read": 0, "write": 0, "status": 2, "timeout": 0}}
    output = f"Running 1s test\n{WRK_RESULT}{json.dumps(payload)}\nRequests/sec:     10.00\n"
    result = parse_wrk(output)
    assert result["requests"] == 10 and result["requests_per_second"] == 10.0 and result["non_2xx"] == 2
    with pytest.raises(ValueError):
        parse_wrk("wrk: connection refused")


def test_paced_summary_measures_from_the_scheduled_time_and_joins_echoes():
    records = [
        {"scheduled": 10.0, "sent": 10.0, "done": 10.02, "status": 201, "id": "a"},
        {"scheduled": 10.01, "sent": 10.05, "done": 10.06, "status": 201, "id": "b"},
        {"scheduled": 10.02, "sent": 10.02, "done": 10.03, "status": 504, "id": None},
    ]
    summary = paced_summary(records, created={"a": 10.01, "b": 10.055}, delivered={"a": 10.03}, started=10.0)
    assert summary["accepted"] == 2 and summary["statuses"] == {"201": 2, "504": 1}
    assert summary["http_ms"]["max"] == pytest.approx(50.0)  # 10.06 - 10.01, queueing included
    assert summary["echo_ms"]["count"] == 1 and summary["echo_ms"]["p50"] == pytest.approx(20.0)
    assert summary["echo_from_post_ms"]["p50"] == pytest.approx(30.0)
    assert summary["missing_echoes"] == 1
    assert summary["achieved_rate"] == pytest.approx(2 / 0.06)


def test_outbox_lag_is_arrival_minus_occurred_at_per_type():
    events = [(1.010, {"type": "ticket.received", "occurred_at": "1970-01-01T00:00:01+00:00"}),
              (2.030, {"type": "ticket.dispatched", "occurred_at": "1970-01-01T00:00:02+00:00"})]
    lags = outbox_lags(events)
    assert lags["all"]["count"] == 2 and lags["all"]["max"] == pytest.approx(30.0)
    assert lags["by_type"]["ticket.received"]["p50"] == pytest.approx(10.0)


def test_drain_counts_distinct_events_of_the_backlog_only():
    events = [(5.0, {"event_id": "1", "correlation_id": "bk-1"}), (6.0, {"event_id": "1", "correlation_id": "bk-1"}),
              (7.0, {"event_id": "2", "correlation_id": "bk-2"}), (8.0, {"event_id": "3", "correlation_id": "x"})]
    arrivals = first_arrivals(events, "bk-")
    assert arrivals == {"1": 5.0, "2": 7.0}
    summary = drain_summary(2, due=4.0, arrivals=arrivals, cleaned_at=7.5)
    assert summary["complete"] and summary["seconds"] == 3.0 and summary["rate"] == pytest.approx(2 / 3)
    assert summary["outbox_clean_after_seconds"] == 3.5
    assert drain_summary(3, 4.0, arrivals, None)["complete"] is False


def test_profile_summaries_rank_self_and_inclusive_time():
    assert frame_name("insert_one (pymongo/collection.py:123)") == "insert_one (collection.py)"
    top = hot_frames(["main (a.py:1);work (b.py:2) 3", "main (a.py:1) 1", "garbage"])
    assert top["samples"] == 4
    assert top["self"][0] == ["work (b.py)", 75.0]
    assert top["inclusive"][0] == ["main (a.py)", 100.0]
