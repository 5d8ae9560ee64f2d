"""Cursor pagination: ``{"items": [...], "next_cursor": ...}`` pages of at most ``limit`` items.

A cursor is opaque to clients: the sort key of the last item of a page, as JSON, with a
checksum, in URL-safe base64. The service that owns the list makes and reads it (the
gateway only passes it on). A cursor that was changed, truncated or made up answers 422
(``cursor``), and so does a ``limit`` that is not a whole number from 1 to :data:`MAX_LIMIT`.
A decoded cursor holds only strings, numbers and datetimes, so it cannot smuggle a query
operator; it only positions a page within a query the service scopes anyway.

>>> cursor = encode_cursor(datetime(2026, 12, 6, 8, 0), "T-9")
>>> decode_cursor(cursor, 2)
(datetime.datetime(2026, 12, 6, 8, 0), 'T-9')
>>> page_limit(None), page_limit("50")
(20, 50)
>>> keyset_filter([("created_at", -1), ("_id", -1)], (1, "b"))
{'$or': [{'created_at': {'$lt': 1}}, {'created_at': 1, '_id': {'$lt': 'b'}}]}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from kernel.errors import ValidationFailed

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_CHARS = 512
_CHECK = b"huisheng-cursor-v1"  # a checksum against edits, not a secret: the query's scope is the guard
_DIGEST_BYTES = 8


def page_limit(limit: Any) -> int:
    """The page size asked for (else :data:`DEFAULT_LIMIT`); :class:`ValidationFailed` (``limit``) unless 1..MAX_LIMIT.

    >>> page_limit(101)
    Traceback (most recent call last):
    ...
    kernel.errors.ValidationFailed: ('the request is not valid', {'limit': ['must be a whole number from 1 to 100']})
    """
    if limit is None or limit == "":
        return DEFAULT_LIMIT
    if isinstance(limit, bool):
        limit = None
    elif isinstance(limit, str) and re.fullmatch(r"[0-9]{1,6}", limit.strip()):  # not isdigit(): "²" is a digit
        limit = int(limit.strip())
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed("the request is not valid", {"limit": [f"must be a whole number from 1 to {MAX_LIMIT}"]})
    return limit


def encode_cursor(*values: Any) -> str:
    """An opaque cursor for a sort key of strings, numbers, None and datetimes."""
    plain = json.dumps([_tagged(value) for value in values], separators=(",", ":"), ensure_ascii=False)
    raw = plain.encode("utf-8")
    digest = hmac.new(_CHECK, raw, hashlib.sha256).digest()[:_DIGEST_BYTES]
    return base64.urlsafe_b64encode(digest + raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> tuple | None:
    """The sort key of ``cursor`` (``arity`` values), None for no cursor; :class:`ValidationFailed` if tampered."""
    if cursor is None or cursor == "":
        return None
    try:
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("not a cursor")
        data = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        digest, raw = data[:_DIGEST_BYTES], data[_DIGEST_BYTES:]
        if not hmac.compare_digest(digest, hmac.new(_CHECK, raw, hashlib.sha256).digest()[:_DIGEST_BYTES]):
            raise ValueError("checksum")
        values = json.loads(raw.decode("utf-8"))
        if not isinstance(values, list) or len(values) != arity:
            raise ValueError("shape")
        return tuple(_untagged(value) for value in values)
    except (ValueError, TypeError, binascii.Error, UnicodeError) as error:
        raise ValidationFailed("the request is not valid",
                               {"cursor": ["not a cursor this list gave out"]}) from error


def keyset_filter(sort: Sequence[tuple[str, int]], values: Sequence[Any] | None) -> dict:
    """The MongoDB filter for the items after ``values`` in ``sort`` order (``[(field, 1 | -1), ...]``)."""
    if values is None:
        return {}
    branches = []
    for index, (name, direction) in enumerate(sort):
        branch = {field: values[position] for position, (field, _) in enumerate(sort[:index])}
        branch[name] = {"$lt" if direction < 0 else "$gt": values[index]}
        branches.append(branch)
    return {"$or": branches} if len(branches) > 1 else branches[0]


def page(items: Sequence[Any], limit: int, key: Callable[[Any], Sequence[Any]],
         dump: Callable[[Sequence[Any]], list] = list) -> dict:
    """The page of ``items`` (fetched with ``limit + 1`` to learn whether more follow).

    >>> page([{"n": 3}, {"n": 2}, {"n": 1}], 2, key=lambda item: (item["n"],))["items"]
    [{'n': 3}, {'n': 2}]
    >>> page([{"n": 1}], 2, key=lambda item: (item["n"],))["next_cursor"] is None
    True
    """
    shown = list(items[:limit])
    more = len(items) > limit and shown
    return {"items": dump(shown), "next_cursor": encode_cursor(*key(shown[-1])) if more else None}


def _tagged(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"d": value.isoformat()}
    if value is None or isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    raise TypeError(f"a cursor holds strings, numbers and datetimes, not {type(value).__name__}")


def _untagged(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"d"} and isinstance(value["d"], str):
        return datetime.fromisoformat(value["d"])
    if value is None or isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    raise ValueError("a cursor value of another type")
