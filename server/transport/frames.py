"""The websocket's JSON frames: client frames validated (every problem becomes a ClientError with a stable
code), and turn events encoded as the server's frames (README "Protocol")."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from server.errors import ClientError
from server.turn_events import SearchReported, TokenDelta, TurnEnded, TurnEvent, TurnFailed, TurnStarted

MAX_SESSION_CHARS = 128


@dataclass(frozen=True, slots=True)
class ChatFrame:
    session: str
    text: str


@dataclass(frozen=True, slots=True)
class CancelFrame:
    session: str | None


def valid_session_id(session: object) -> str:
    if not isinstance(session, str) or not session.strip():
        raise ClientError("invalid_frame", "'session' must be a non-empty string")
    if len(session) > MAX_SESSION_CHARS or not session.isprintable():
        raise ClientError("invalid_frame", f"'session' must be printable and at most {MAX_SESSION_CHARS} characters")
    return session


def valid_text(text: object, max_chars: int) -> str:
    if not isinstance(text, str):
        raise ClientError("invalid_frame", "'text' must be a string")
    if not text.strip():
        raise ClientError("empty_text", "the message is empty")
    if len(text) > max_chars:
        raise ClientError("message_too_long", f"the message has {len(text)} characters; the limit is {max_chars}",
                          413)
    if "\x00" in text:
        raise ClientError("invalid_frame", "'text' must not contain NUL characters")
    return text


def parse_frame(raw: str, max_chars: int) -> ChatFrame | CancelFrame:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ClientError("bad_json", "the frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ClientError("invalid_frame", "a frame must be a JSON object")
    kind = data.get("type")
    if kind == "chat":
        return ChatFrame(valid_session_id(data.get("session")), valid_text(data.get("text"), max_chars))
    if kind == "cancel":
        session = data.get("session")
        return CancelFrame(valid_session_id(session) if session is not None else None)
    if not isinstance(kind, str):
        raise ClientError("invalid_frame", "'type' must be a string")
    raise ClientError("unknown_type", "unknown frame type; expected 'chat' or 'cancel'")


def encode(event: TurnEvent) -> bytes:
    """A turn event as the text frame the websocket sends; key order and optional keys are part of the protocol."""
    return orjson.dumps(_frame(event))


def _frame(event: TurnEvent) -> dict:
    match event:
        case TokenDelta():  # first: nearly every frame is one
            return {"type": "token", "text": event.text}
        case TurnStarted():
            return {"type": "start", "turn": event.turn}
        case SearchReported():
            frame = {"type": "search", "query": event.query, "summary": event.summary, "sources": event.sources}
            if event.skipped:
                frame["skipped"] = event.skipped
            return frame
        case TurnEnded():
            frame = {"type": "end", "turn": event.turn, "text": event.text, "memories": event.memories,
                     "usage": event.usage.as_dict()}
            if event.stopped:
                frame["stopped"] = True
            return frame
        case TurnFailed():
            frame = {"type": "error", "code": event.code, "message": event.message}
            if event.retry_after is not None:
                frame["retry_after"] = event.retry_after
            return frame
    raise TypeError(f"not a turn event: {event!r}")


def error_event(err: ClientError) -> TurnFailed:
    """A ClientError as the websocket reports it, in-band."""
    return TurnFailed(err.code, err.message, err.retry_after)
