"""The daily check-in's clock, with the moment passed in: local days, the hour, the raise, the roll."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.notify.checkins import checkin_day, checkin_id, missing_by_grid, notice_time, parse_day, raise_due, roll


@pytest.mark.parametrize(("utc", "expected"), [
    (datetime(2026, 12, 6, 0, 59, tzinfo=UTC), None),  # 08:59 in Shanghai
    (datetime(2026, 12, 6, 1, 0, tzinfo=UTC), date(2026, 12, 6)),  # 09:00 sharp
    (datetime(2026, 12, 6, 17, 0, tzinfo=UTC), None),  # 01:00 on the 7th, local: not yet
    (datetime(2026, 12, 6, 15, 59, tzinfo=UTC), date(2026, 12, 6)),  # 23:59 on the 6th, local
])
def test_the_checkin_of_a_local_day_is_due_from_its_hour(utc, expected):
    assert checkin_day(utc, "09:00") == expected


def test_the_day_is_the_local_one_in_another_zone():
    assert checkin_day(datetime(2026, 12, 6, 20, 0, tzinfo=UTC), "08:00", tz="Europe/Berlin") == date(2026, 12, 6)
    assert checkin_day(datetime(2026, 12, 6, 6, 0, tzinfo=UTC), "08:00", tz="Europe/Berlin") is None


def test_missing_answers_are_raised_after_the_answer_window():
    day = date(2026, 12, 6)
    assert notice_time(day, "09:00").astimezone(UTC) == datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    assert not raise_due(datetime(2026, 12, 6, 2, 0, tzinfo=UTC), day, "09:00", hours=6)
    assert raise_due(datetime(2026, 12, 6, 7, 0, tzinfo=UTC), day, "09:00", hours=6)
    assert raise_due(datetime(2026, 12, 6, 3, 0, tzinfo=UTC), day, "09:00", hours=2)


def test_the_roll_lists_the_unanswered_first_and_groups_them_by_grid():
    members = [{"recipient": "r3", "grid": "g2"}, {"recipient": "r1", "grid": "g1"}, {"recipient": "r2", "grid": "g1"}]
    rows = roll(members, {"r1": {"status": "well"}})
    assert [(row["resident"], row["answered"]) for row in rows] == [("r2", False), ("r3", False), ("r1", True)]
    assert missing_by_grid(rows) == {"g1": ["r2"], "g2": ["r3"]}
    assert missing_by_grid(roll(members, {m["recipient"]: {} for m in members})) == {}


def test_ids_and_dates():
    assert checkin_id("xingqiao", date(2026, 1, 2)) == "checkin-xingqiao-2026-01-02"
    assert parse_day("2026-13-01", date(2026, 1, 1)) is None
    assert parse_day("", date(2026, 1, 1)) == date(2026, 1, 1)
