"""Admission control for turns: a rate per user, turns at once per user, and turns in this process.

The rate uses `limits` (moving window) on memory, or on Redis when the store is Redis, so that
replicas share one budget per user.
"""

from __future__ import annotations

import math
import time
from collections import Counter

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from server.errors import ClientError


class TurnLimiter:
    def __init__(self, per_minute: int, per_user: int, total: int, redis_url: str | None = None):
        self.rate = RateLimitItemPerMinute(per_minute)
        storage = storage_from_string(f"async+{redis_url}", implementation="redispy", wrap_exceptions=True,
                                      key_prefix="chat-limits") if redis_url else storage_from_string("async+memory://")
        self.limiter = MovingWindowRateLimiter(storage)
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
            allowed = await self.limiter.hit(self.rate, key)
        except StorageError as exc:
            raise ClientError("store_unavailable", "the rate-limit store is unavailable", 503, retry_after=2) from exc
        if not allowed:
            stats = await self.limiter.get_window_stats(self.rate, key)
            wait = max(1, math.ceil(stats.reset_time - time.time()))
            raise ClientError("rate_limited", f"more than {self.rate.amount} turns per minute; retry in {wait}s",
                              429, retry_after=wait)
        self.running[key] += 1

    def release(self, key: str) -> None:
        self.running[key] -= 1
        if self.running[key] <= 0:
            del self.running[key]
