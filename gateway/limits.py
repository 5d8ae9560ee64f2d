"""Rate limits of the gateway: token buckets per token (or API key) and per client address.

Limits are per gateway instance (no shared store: the gateway owns no database), so a
platform of N gateways lets through up to N times the limit; the limits are configured
(``RATE_LIMIT_PER_MINUTE``, ``RATE_LIMIT_ADDRESS_PER_MINUTE``, ``AUTH_CODE_PER_MINUTE``)
so a load test raises them. Beyond a limit the answer is 429 with ``Retry-After``.

>>> bucket = Buckets(per_minute=2)
>>> bucket.take("a", now=0.0), bucket.take("a", now=0.0), bucket.take("a", now=0.0)
(0, 0, 30)
>>> bucket.take("a", now=30.0)
0
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from nameko.extensions import DependencyProvider

from kernel.config import settings_of
from kernel.errors import TooManyRequests

MAX_TRACKED = 50_000  # callers remembered per bucket set; the least recently seen go first


class Buckets:
    """Token buckets: ``per_minute`` requests a minute, refilled continuously, bursts up to the same."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = max(1, int(per_minute))
        self.rate = self.capacity / 60.0
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, who: str, now: float | None = None) -> int:
        """Take one token for ``who``: 0 if granted, else the whole seconds until one is free."""
        now = time.monotonic() if now is None else now
        tokens, at = self.buckets.pop(who, (float(self.capacity), now))
        tokens = min(float(self.capacity), tokens + (now - at) * self.rate)
        granted = tokens >= 1.0
        self.buckets[who] = (tokens - 1.0 if granted else tokens, now)
        while len(self.buckets) > MAX_TRACKED:
            self.buckets.popitem(last=False)
        return 0 if granted else max(1, math.ceil((1.0 - tokens) / self.rate))


class RateLimits(DependencyProvider):
    """Injects itself; ``check(kind, who)`` raises :class:`TooManyRequests` beyond the limit of ``kind``."""

    def setup(self) -> None:
        settings = settings_of(self.container.config)
        self.kinds = {
            "caller": Buckets(settings.rate_limit_per_minute),
            "address": Buckets(settings.rate_limit_address_per_minute),
            "auth_code": Buckets(settings.auth_code_per_minute),
        }

    def get_dependency(self, worker_ctx) -> RateLimits:
        return self

    def check(self, kind: str, who: str) -> None:
        wait = self.kinds[kind].take(who)
        if wait:
            raise TooManyRequests("too many requests; try again later", {"retry_after": wait}, code="rate_limited")
