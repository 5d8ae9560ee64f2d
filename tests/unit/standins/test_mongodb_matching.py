"""Patch 4 of standins/mongodb.py: filters of strings are matched by set lookups, anything else as before.

The answers themselves are compared with SecantusDB as shipped in tests/integration/test_mongodb_standin.py;
here, which filters and documents take the set lookup and which go to SecantusDB's own matcher.
"""

from __future__ import annotations

from typing import Any

from standins.mongodb import set_matching


def counting() -> tuple[list, Any]:
    calls: list = []

    def matches(doc, query, *, vars=None, collation=None) -> bool:
        calls.append((doc, query))
        return True

    return calls, set_matching(matches)


def test_string_ids_are_looked_up_in_a_set_without_the_original_matcher() -> None:
    calls, matches = counting()
    query = {"_id": {"$in": [f"t{n}" for n in range(500)]}, "community": "xingqiao"}
    found = [matches({"_id": f"t{n}", "community": "xingqiao"}, query) for n in range(0, 1000, 7)]
    assert found == [n < 500 for n in range(0, 1000, 7)]
    assert not matches({"_id": "t1", "community": "elsewhere"}, query)
    assert calls == []


def test_what_is_not_a_string_goes_to_the_original_matcher() -> None:
    calls, matches = counting()
    query = {"tags": {"$in": ["a"]}}
    assert matches({"tags": ["a", "b"]}, query)  # an array may hold a match
    assert matches({}, query)  # a missing field has its own rules ($in: [null])
    assert matches({"tags": 1}, {"tags": {"$in": ["a", 1]}})  # a number in the list
    assert matches({"tags": "A"}, query, collation={"locale": "en", "strength": 2})  # a collation compares otherwise
    assert matches({"a": {"b": "x"}}, {"a.b": "x"})  # a dotted path
    assert matches({"n": "b"}, {"n": {"$gt": "a"}})  # an operator other than $in
    assert len(calls) == 6
