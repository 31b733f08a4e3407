"""Per-client token buckets: a steady request rate with room for short bursts.

Each API key (or client address when auth is off) owns a bucket of `burst` tokens that refills
at `rate` tokens per second; a request takes one token, and a request that finds the bucket
empty is refused with the time until the next token (HTTP 429 + Retry-After). Buckets of idle
clients are dropped, so memory stays bounded by the number of recently active clients.

Example:
    >>> clock = iter([0.0, 0.0, 0.0, 0.5]).__next__
    >>> limiter = RateLimiter(rate=2.0, burst=2, clock=clock)
    >>> limiter.acquire("k"), limiter.acquire("k"), limiter.acquire("k"), limiter.acquire("k")
    (None, None, 0.5, None)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter", "retry_after_header"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by client; thread-safe (one lock, O(1) work per request).

    `rate` is tokens per second, `burst` the bucket size (the most requests a client can make
    at once after being idle). `rate <= 0` disables limiting. `clock` is injectable for tests.
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        if rate > 0 and burst < 1:
            raise ValueError(f"rate_limit_burst must be >= 1 when rate limiting is on, got {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._last_sweep = 0.0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, client: str, cost: float = 1.0) -> float | None:
        """Take `cost` tokens from `client`'s bucket: None when allowed, else the seconds to
        wait before the request would be allowed."""
        if not self.enabled:
            return None
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                self._sweep(now)
                bucket = self._buckets[client] = _Bucket(tokens=float(self.burst), updated=now)
            else:
                bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return None
            return (cost - bucket.tokens) / self.rate

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled completely (their owners were idle long enough
        that a fresh bucket is identical). Runs at most once per refill period, or when the
        table is full."""
        refill_s = self.burst / self.rate
        if now - self._last_sweep < refill_s and len(self._buckets) < self._max_clients:
            return
        self._last_sweep = now
        stale = [k for k, b in self._buckets.items() if now - b.updated >= refill_s]
        for k in stale:
            del self._buckets[k]
        if len(self._buckets) >= self._max_clients:  # still full of active clients: drop the oldest
            for k, _ in sorted(self._buckets.items(), key=lambda kv: kv[1].updated)[: len(self._buckets) // 10 + 1]:
                del self._buckets[k]

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(wait_s: float) -> str:
    """Retry-After takes whole seconds: round up so a client that obeys it is let through."""
    return str(max(1, math.ceil(wait_s)))
