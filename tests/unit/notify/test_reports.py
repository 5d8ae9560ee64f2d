"""The proof's reports: latency per stage and channel, silent tickets grouped (no I/O)."""

from datetime import UTC, datetime, timedelta

from services.notify.reports import latency, percentile, silent_items

T0 = datetime(2026, 12, 6, tzinfo=UTC)


def step(channel, **seconds):
    return {"channel": channel, "status": "delivered",
            **{f"{stage}_at": T0 + timedelta(seconds=value) for stage, value in seconds.items()}}


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 1.0)) == (50, 95, 100)


def test_latency_is_per_channel_and_stage_from_the_ticket_change():
    echoes = [
        {"occurred_at": T0, "steps": [step("sms", sent=2), step("inbox", sent=62, delivered=62, read=600)]},
        {"occurred_at": T0, "steps": [step("inbox", sent=1, delivered=1)]},
    ]
    report = latency(echoes)
    assert report["sms"] == {"sent": {"count": 1, "p50": 2.0, "p95": 2.0}}
    assert report["inbox"]["delivered"] == {"count": 2, "p50": 1.0, "p95": 62.0}
    assert report["inbox"]["read"]["count"] == 1


def test_silent_echoes_are_grouped_per_ticket_oldest_first():
    def echo(echo_id, ticket, due, event="ticket.resolved"):
        return {"_id": echo_id, "ticket_id": ticket, "facts": {"number": f"N-{ticket}"}, "current": 0,
                "steps": [{"channel": "sms", "status": "sent"}], "proof_due_at": T0 + timedelta(seconds=due),
                "source_event_type": event, "recipient": "r1", "occurred_at": T0, "status": "delivering"}

    items = silent_items([echo("e1:r1", "t2", 50), echo("e2:r1", "t1", 10), echo("e3:r1", "t2", 5, "ticket.paused")])
    assert [item["ticket_id"] for item in items] == ["t2", "t1"]
    assert items[0]["silent_since"] == (T0 + timedelta(seconds=5)).isoformat()
    assert [change["source_event_type"] for change in items[0]["changes"]] == ["ticket.resolved", "ticket.paused"]
    assert items[1]["number"] == "N-t1" and items[1]["changes"][0]["step_status"] == "sent"
