"""Where the time went: summaries of py-spy's collapsed stacks (``-f raw``).

>>> top = hot_frames(["a (m.py:1);b (m.py:2) 3", "a (m.py:1);c (n.py:9) 1"])
>>> top["self"][0], top["inclusive"][0]
(['b (m.py)', 75.0], ['a (m.py)', 100.0])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

TOP = 15


def frame_name(frame: str) -> str:
    """``"insert_one (pymongo/collection.py:123)"`` -> ``"insert_one (collection.py)"``."""
    function, _, where = frame.partition(" (")
    if not where:
        return function
    return f"{function} ({where.split(':')[0].rsplit('/', 1)[-1]})"


def hot_frames(lines: Iterable[str], top: int = TOP) -> dict:
    """The functions most often on the CPU (self) and on the stack (inclusive), as % of samples."""
    own, inclusive, total = Counter(), Counter(), 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples, frames = int(count), [frame_name(f) for f in stack.split(";")]
        total += samples
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}

    def ranked(counter: Counter) -> list[list]:
        return [[name, round(100.0 * n / total, 1)] for name, n in counter.most_common(top)]

    return {"samples": total, "self": ranked(own), "inclusive": ranked(inclusive)}


def summarize_collapsed(path: Path) -> dict:
    """:func:`hot_frames` of one py-spy output file (empty if py-spy wrote none)."""
    if not path.exists():
        return {"samples": 0, "self": [], "inclusive": [], "error": "no profile written"}
    return hot_frames(path.read_text().splitlines())
