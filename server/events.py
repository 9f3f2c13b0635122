"""Turn events and a small bus that runs their handlers in the background and can be drained."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.logs import get_logger

if TYPE_CHECKING:
    from server.protocols import TurnRecord

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TurnReceived:
    session: str
    namespace: str
    text: str
    received_at: float  # time.perf_counter() when the transport read the request
    # The conversation the client sent (OpenAI-style requests that carry earlier messages): it stands in for
    # the session's buffer. None: the session's buffer is the short-term context.
    sent_history: tuple[TurnRecord, ...] | None = None
    instructions: str | None = None  # the client's own system prompt, kept next to the persona
    stateless: bool = False  # nothing of the turn is stored (an anonymous OpenAI-style call)


@dataclass(frozen=True, slots=True)
class TurnCompleted:
    session: str
    namespace: str
    turn_id: str
    status: str


Handler = Callable[[object], Awaitable[None]]


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = defaultdict(list)
        self._tasks: set[asyncio.Task] = set()

    def subscribe(self, event_type: type, handler: Handler) -> None:
        self._handlers[event_type].append(handler)

    def publish(self, event: object) -> None:
        for handler in self._handlers[type(event)]:
            task = asyncio.create_task(self._run(handler, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(handler: Handler, event: object) -> None:
        try:
            await handler(event)
        except Exception:
            log.exception("event handler failed", handler=getattr(handler, "__qualname__", str(handler)),
                          event=type(event).__name__)

    async def drain(self, grace: float | None = None) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
