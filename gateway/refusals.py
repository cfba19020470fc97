"""Anonymous refusals sampled into dead_letters (``gateway.refusal_samples``).

A refusal before a request is authenticated (a bad signature, an unknown shop, an altered link
code, a body too large) can come from anyone, as fast as they like; keeping each one is a durable
write (an fsynced inbox record, a Kafka send) and a row, so a flood would fill the disk. The
first ``per_reason`` of each kind — the route's source and the HTTP status, a fixed set, so an
attacker cannot mint new kinds — are kept per ``seconds``; the rest are answered the same way
and only counted: in ``GET /healthz`` (``refusals``) and in one warning line per kind and interval.
Refusals of authenticated requests (a shop's own payload that does not map) are always kept.
"""
from __future__ import annotations

import logging
from typing import Callable

from gateway.settings import RefusalSamples

log = logging.getLogger("tuike.gateway")


class RefusalSampler:
    def __init__(self, samples: RefusalSamples, clock: Callable[[], float]):
        self.samples = samples
        self.clock = clock
        self.windows: dict[str, list] = {}  # kind → [interval start, kept in it, dropped in it]
        self.kept = 0
        self.dropped = 0

    def keep(self, kind: str) -> bool:
        """Whether this refusal goes to dead_letters (else it is counted as dropped)."""
        now = self.clock()
        window = self.windows.get(kind)
        if window is None or now - window[0] >= self.samples.seconds or now < window[0]:
            if window is not None and window[2]:
                log.warning("refusals %s: %d kept in dead_letters, %d more answered and not kept in the last "
                            "%.0f s (gateway.refusal_samples)", kind, window[1], window[2], self.samples.seconds)
            window = self.windows[kind] = [now, 0, 0]
        if window[1] < self.samples.per_reason:
            window[1] += 1
            self.kept += 1
            return True
        window[2] += 1
        self.dropped += 1
        return False
