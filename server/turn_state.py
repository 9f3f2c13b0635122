"""The records of one turn as it runs: the handle that stops it, its timing marks, and its result."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.prompt import BuiltPrompt
    from server.protocols import SearchOutcome, Usage


@dataclass
class TurnControl:
    """Lets a transport stop a running turn: the reply so far is kept and the turn ends as stopped."""

    task: asyncio.Task | None = None
    stopped: bool = False
    released: bool = False  # the session is free again (set before the end frame goes out)
    limit_key: str | None = None  # who the turn counts against in the TurnLimiter
    freed: asyncio.Event = field(default_factory=asyncio.Event)  # set with `released`: a waiting turn may go

    def stop(self) -> None:
        self.stopped = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


@dataclass
class TurnTiming:
    """perf_counter() marks of one turn, for the overhead metric and benchmarks."""

    received: float
    generator_called: float | None = None
    last_token: float | None = None
    end_sent: float | None = None
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step before generation

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = now - self._last
        self._last = now

    def __post_init__(self) -> None:
        self._last = self.received

    @property
    def before_generation(self) -> float | None:
        return None if self.generator_called is None else self.generator_called - self.received

    @property
    def after_generation(self) -> float | None:
        return None if self.end_sent is None or self.last_token is None else self.end_sent - self.last_token


@dataclass
class TurnResult:
    session: str
    namespace: str
    turn_id: str
    text: str
    status: str  # complete | interrupted
    memories: list[int]
    usage: Usage
    search: SearchOutcome | None = None
    prompt: BuiltPrompt | None = field(default=None, repr=False)
    timing: TurnTiming | None = None
