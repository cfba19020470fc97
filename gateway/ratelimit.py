"""Per-client token buckets for unauthenticated requests (``gateway.rate_limit``).

Each client IP has a bucket of ``burst`` tokens refilled at ``per_second``; a request takes one,
and a client with none left is answered 429 with ``Retry-After``. At most ``clients`` buckets are
kept: the least recently used is forgotten (a forgotten client starts full again), so a flood
from many addresses costs bounded memory. Signed webhooks never take a token (gateway/app.py
charges only requests that are not authenticated: clicks, refusals before a valid signature).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

from gateway.settings import RateLimit


class TokenBuckets:
    def __init__(self, limit: RateLimit, clock: Callable[[], float]):
        self.limit = limit
        self.clock = clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, when)
        self.refused = 0  # requests answered 429 since the start

    def take(self, key: str) -> int:
        """0 when the request may go on (a token taken), else the whole seconds to wait."""
        now = self.clock()
        rate, burst = self.limit.per_second, self.limit.burst
        tokens, when = self.buckets.pop(key, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - when) * rate)  # a clock stepping back adds nothing
        wait = 0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = max(1, math.ceil((1 - tokens) / rate))
            self.refused += 1
        self.buckets[key] = (tokens, now)
        if len(self.buckets) > self.limit.clients:
            self.buckets.popitem(last=False)
        return wait
