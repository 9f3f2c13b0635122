"""A circuit breaker per search provider: after repeated failures, stop calling it for a while.

A provider that is down, out of quota or refusing the key would otherwise cost every turn its full search
deadline. After `failures` consecutive failures the breaker opens; after `cooldown` seconds one trial call
is let through (half-open): success closes it, failure opens it again. Hand-written because it is a few
lines and the maintained libraries (pybreaker, aiobreaker) bring thread locks or stale asyncio support.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, failures: int = 3, cooldown: float = 60.0, clock: Callable[[], float] = time.monotonic):
        if failures < 1 or cooldown < 0:
            raise ValueError("a circuit breaker needs failures >= 1 and cooldown >= 0")
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False  # a half-open trial call is in flight

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial = False

    def failure(self) -> None:
        self.failures += 1
        self._trial = False
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = self.clock()

    def release(self) -> None:
        """The call ended without a verdict (for example the turn was cancelled): let another trial through."""
        self._trial = False
