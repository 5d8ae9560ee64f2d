"""Preferences held in-process for a short time, so an echo does not read them from the database each time.

Most residents never set preferences, and an echo needs them before anything else: read per echo, they were
a third of the echo path's database commands. A process forgets what it holds after ``ttl`` seconds, and at
once for a person whose preferences it changes itself (``put_preferences``) or erases. Another notify instance
that changed them is seen within ``ttl`` (there is no preference-change event yet to invalidate on).

>>> clock = iter([0.0, 1.0, 40.0]).__next__
>>> cache = PreferenceCache(ttl=30.0, clock=clock)
>>> loads = []
>>> def load(community, person):
...     loads.append(person)
...     return {"channels": ["inbox"]}
>>> _ = cache.get("xq", "r1", load); _ = cache.get("xq", "r1", load); _ = cache.get("xq", "r1", load)
>>> loads
['r1', 'r1']
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from nameko.extensions import DependencyProvider

DEFAULT_TTL_SECONDS = 10.0
MAX_ENTRIES = 50_000  # a broadcast to a whole community fits; past it the cache starts over


class PreferenceCache:
    """``(community, person) -> preferences`` for ``ttl`` seconds (the normalised ones, defaults included)."""

    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.ttl, self.clock = ttl, clock
        self._entries: dict[tuple[str, str], tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def get(self, community: str, person: str, load: Callable[[str, str], dict]) -> dict:
        key, now = (community, person), self.clock()
        with self._lock:
            held = self._entries.get(key)
        if held is not None and held[0] > now:
            return held[1]
        value = load(community, person)
        self.put(community, {person: value}, now)
        return value

    def put(self, community: str, values: Mapping[str, dict], now: float | None = None) -> None:
        expires = (self.clock() if now is None else now) + self.ttl
        with self._lock:
            if len(self._entries) + len(values) > MAX_ENTRIES:
                self._entries.clear()
            for person, value in values.items():
                self._entries[(community, person)] = (expires, value)

    def forget(self, community: str, person: str) -> None:
        with self._lock:
            self._entries.pop((community, person), None)


class CachedPreferences(DependencyProvider):
    """One :class:`PreferenceCache` per service container, shared by its workers."""

    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, **kwargs):
        self.cache = PreferenceCache(ttl)
        super().__init__(**kwargs)

    def get_dependency(self, worker_ctx) -> PreferenceCache:
        return self.cache
