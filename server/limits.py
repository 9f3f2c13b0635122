"""Admission control for turns: a rate per user, turns at once per user, and turns in this process.

The rate is a moving window (at most N turns in any minute). With Redis it uses `limits` on Redis, so
that replicas share one budget per user. In memory it is a deque of turn times per user: `limits`'
in-memory storages sweep every key on each hit, with a thread hop per key (the async one) or from a
timer thread every 10 ms (the sync one), which cost the event loop 4% of its time and its tail
latency at 1,000 users.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from server.errors import ClientError


class MemoryMovingWindow:
    """At most `amount` hits per key in any `seconds`; idle keys are dropped as the window passes."""

    def __init__(self, amount: int, seconds: float = 60.0, clock=time.monotonic):
        self.amount = amount
        self.seconds = seconds
        self.clock = clock
        self.hits: dict[str, deque[float]] = {}
        self._next_sweep = clock() + seconds

    async def hit(self, key: str) -> float:
        """Count a hit and return 0, or return the seconds until one is allowed (nothing counted)."""
        now = self.clock()
        if now >= self._next_sweep:  # amortised: one pass per window over the users seen
            self.hits = {k: q for k, q in self.hits.items() if q[-1] > now - self.seconds}
            self._next_sweep = now + self.seconds
        window = self.hits.setdefault(key, deque())
        while window and window[0] <= now - self.seconds:
            window.popleft()
        if len(window) >= self.amount:
            return window[0] + self.seconds - now
        window.append(now)
        return 0.0


class RedisMovingWindow:
    """The same window shared by every replica, with `limits` on Redis."""

    def __init__(self, amount: int, redis_url: str):
        self.rate = RateLimitItemPerMinute(amount)
        storage = storage_from_string(f"async+{redis_url}", implementation="redispy", wrap_exceptions=True,
                                      key_prefix="chat-limits")
        self.limiter = MovingWindowRateLimiter(storage)

    async def hit(self, key: str) -> float:
        if await self.limiter.hit(self.rate, key):
            return 0.0
        stats = await self.limiter.get_window_stats(self.rate, key)
        return max(0.0, stats.reset_time - time.time())


class TurnLimiter:
    def __init__(self, per_minute: int, per_user: int, total: int, redis_url: str | None = None):
        self.per_minute = per_minute
        self.window = RedisMovingWindow(per_minute, redis_url) if redis_url else MemoryMovingWindow(per_minute)
        self.per_user = per_user
        self.total = total
        self.running: Counter[str] = Counter()

    async def admit(self, key: str) -> None:
        """Raise ClientError (429/503 with Retry-After) unless `key` may start a turn now; else count it."""
        if sum(self.running.values()) >= self.total:
            raise ClientError("busy", "the server has too many turns in progress; retry shortly", 503, retry_after=2)
        if self.running[key] >= self.per_user:
            raise ClientError("too_many_turns", f"at most {self.per_user} turns may run at once per user", 429,
                              retry_after=1)
        try:
            wait = await self.window.hit(key)
        except StorageError as exc:
            raise ClientError("store_unavailable", "the rate-limit store is unavailable", 503, retry_after=2) from exc
        if wait > 0:
            wait = max(1, math.ceil(wait))
            raise ClientError("rate_limited", f"more than {self.per_minute} turns per minute; retry in {wait}s",
                              429, retry_after=wait)
        self.running[key] += 1

    def release(self, key: str) -> None:
        self.running[key] -= 1
        if self.running[key] <= 0:
            del self.running[key]
