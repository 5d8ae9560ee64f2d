"""Cursor pagination: limits, opaque cursors that survive a round trip and refuse tampering."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from kernel.errors import ValidationFailed
from kernel.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor, keyset_filter, page, page_limit


@pytest.mark.parametrize("given, expected", [(None, 20), ("", 20), (1, 1), ("100", 100), (37, 37)])
def test_limits_in_range(given, expected):
    assert page_limit(given) == expected
    assert (DEFAULT_LIMIT, MAX_LIMIT) == (20, 100)


@pytest.mark.parametrize("given", [0, -1, 101, "101", "10000000000000", "ten", "1.5", 2.0, True, [], "-5", "²", "٣"])
def test_limits_out_of_range_are_422_on_limit(given):
    with pytest.raises(ValidationFailed) as caught:
        page_limit(given)
    assert set(caught.value.details) == {"limit"}


@pytest.mark.parametrize("values", [
    ("T-1",), (datetime(2026, 12, 6, 8, 0, 1, 123000), "b"), (datetime(2026, 1, 1, tzinfo=UTC), 3, None),
    ("兴乔社区", 1.5),
])
def test_a_cursor_round_trips_and_is_opaque_ascii(values):
    cursor = encode_cursor(*values)
    assert decode_cursor(cursor, len(values)) == values
    assert cursor.isascii() and "=" not in cursor and "兴" not in cursor


def tampered(cursor: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


@pytest.mark.parametrize("make", [
    lambda c: tampered(c), lambda c: c[:-3], lambda c: "x" + c, lambda c: "!!!", lambda c: "a" * 5000,
    lambda c: base64.urlsafe_b64encode(b'\x00' * 8 + b'[{"$gt": ""}]').decode(),
])
def test_a_tampered_or_made_up_cursor_is_422_on_cursor(make):
    cursor = encode_cursor("T-1", 5)
    with pytest.raises(ValidationFailed) as caught:
        decode_cursor(make(cursor), 2)
    assert set(caught.value.details) == {"cursor"}


def test_a_cursor_of_another_shape_is_refused():
    with pytest.raises(ValidationFailed):
        decode_cursor(encode_cursor("a"), 2)


def test_no_cursor_is_the_first_page():
    assert decode_cursor(None, 2) is None and decode_cursor("", 2) is None


def test_keyset_filter_for_descending_and_ascending_keys():
    assert keyset_filter([("_id", 1)], ("k",)) == {"_id": {"$gt": "k"}}
    assert keyset_filter([("a", -1), ("_id", 1)], (5, "k")) == {
        "$or": [{"a": {"$lt": 5}}, {"a": 5, "_id": {"$gt": "k"}}]}
    assert keyset_filter([("a", -1)], None) == {}


def test_paging_through_a_list_visits_every_item_once():
    items = [{"n": n} for n in range(45, 0, -1)]
    seen, cursor = [], None
    for _ in range(10):
        after = decode_cursor(cursor, 1)
        rest = [item for item in items if after is None or item["n"] < after[0]]
        got = page(rest[:11], 10, key=lambda item: (item["n"],))
        seen += got["items"]
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert seen == items
