"""What the chat server says, as typed values: the turn's websocket frames, the stored turns, chats, memories and
account its HTTP endpoints return (README "Protocol"), and the errors it reports.

Kept apart from the network code so the renderer and the handlers can use these values without aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ChatError(Exception):
    """A problem to show the person chatting; `str()` is a readable sentence, never a traceback."""


class ServerError(ChatError):
    """The server refused or failed a request and said why (an `error` frame or an HTTP error body)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ServerUnreachable(ChatError):
    pass


@dataclass(frozen=True, slots=True)
class Started:
    turn: str


@dataclass(frozen=True, slots=True)
class Searched:
    query: str
    summary: str = ""
    sources: tuple[str, ...] = ()
    skipped: str | None = None
    titles: tuple[str, ...] = ()  # the sources' page titles, where known (a stored turn keeps them)


@dataclass(frozen=True, slots=True)
class Token:
    text: str


@dataclass(frozen=True, slots=True)
class Ended:
    turn: str
    text: str
    memories: tuple[Any, ...] = ()
    usage: dict = field(default_factory=dict)
    stopped: bool = False


Event = Started | Searched | Token | Ended


@dataclass(frozen=True, slots=True)
class Recalled:
    """A long-term memory as the UI shows it: what a turn recalled, or one on the Memories page."""

    id: int
    text: str
    created: str | float | None = None  # ISO-8601 (memory API) or epoch seconds (a stored turn)
    session: str | None = None


@dataclass(frozen=True, slots=True)
class PastTurn:
    turn: str
    user: str
    response: str
    status: str  # pending | complete | interrupted | failed
    memories: tuple[Recalled, ...] = ()  # what the turn's prompt recalled, as stored with the turn
    search: Searched | None = None


@dataclass(frozen=True, slots=True)
class ChatInfo:
    """One of the user's chats, as the sidebar lists it."""

    id: str
    title: str
    updated: str | None
    turns: int


@dataclass(frozen=True, slots=True)
class Account:
    user: str
    single_user: bool  # the server has no SERVER_TOKENS: everyone is its one local user
    max_message_chars: int


def parse_event(frame: dict) -> Event:
    """A server frame as an event; an `error` frame raises ServerError."""
    kind = frame.get("type")
    if kind == "token":
        return Token(str(frame.get("text", "")))
    if kind == "start":
        return Started(str(frame.get("turn", "")))
    if kind == "search":
        return Searched(str(frame.get("query", "")), str(frame.get("summary") or ""),
                        tuple(str(s) for s in frame.get("sources") or ()), frame.get("skipped"))
    if kind == "end":
        return Ended(str(frame.get("turn", "")), str(frame.get("text", "")), tuple(frame.get("memories") or ()),
                     dict(frame.get("usage") or {}), bool(frame.get("stopped", False)))
    if kind == "error":
        message = frame.get("message") or "the server reported an error"
        raise ServerError(str(frame.get("code", "unknown")), str(message))
    raise ChatError(f"the chat server sent a frame this UI does not understand (type {kind!r})")



def parse_memories(rows: Any) -> tuple[Recalled, ...]:
    """Memories from a memory API body or a stored turn; a row without an integer id is skipped, not guessed."""
    return tuple(Recalled(int(m["id"]), str(m.get("text") or ""), m.get("created"), m.get("session"))
                 for m in rows or () if isinstance(m, dict) and isinstance(m.get("id"), int))


def parse_search(search: Any) -> Searched | None:
    if not isinstance(search, dict) or not search.get("query"):
        return None
    return Searched(str(search["query"]), str(search.get("summary") or ""),
                    tuple(str(s) for s in search.get("sources") or ()), search.get("skipped"),
                    tuple(str(t) for t in search.get("titles") or ()))
