"""What a client hears of a turn: the typed events the chat core emits and every transport encodes.

The core (`ChatService.run_turn`) sends `TurnStarted`, then `SearchReported` when it searched, a
`TokenDelta` per generated piece, and `TurnEnded`. It raises `ClientError` rather than sending
`TurnFailed`: only a transport knows whether a failure goes out in-band (the websocket's `error` frame)
or as an HTTP status, so the transport turns the error into `TurnFailed` where it reports in-band.
How each event looks on the wire is the transports' business (`transport/frames.py`, `openai_api.py`);
this module sits at the bottom of the import graph so that both sides share it without importing each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.protocols import Usage


@dataclass(frozen=True, slots=True)
class TurnStarted:
    turn: str  # the turn's id: the user message is durable from here on (unless the turn is stateless)


@dataclass(frozen=True, slots=True)
class SearchReported:
    query: str
    summary: str
    sources: tuple[str, ...]
    skipped: str | None = None  # why a query's results did not reach the prompt, when they did not


@dataclass(frozen=True, slots=True)
class TokenDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TurnEnded:
    turn: str
    text: str  # the whole reply, so that a client that merged or missed deltas still has it
    memories: tuple[int, ...]  # the memories the prompt used
    usage: Usage
    stopped: bool = False  # the reply was cut short (the client cancelled); `text` is what there was


@dataclass(frozen=True, slots=True)
class TurnFailed:
    code: str  # one of server.errors.CODES
    message: str
    retry_after: float | None = None


TurnEvent = TurnStarted | SearchReported | TokenDelta | TurnEnded | TurnFailed

# Where the core sends a turn's events: a transport's encoder, or a sink for a reply answered all at once.
Send = Callable[[TurnEvent], Awaitable[None]]
