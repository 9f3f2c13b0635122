"""What an OpenAI-style request says about its conversation: the client's system prompt, the earlier exchanges it
sent, the new message, and the stable id of a conversation that names no session of its own.

A user message opens an exchange and the assistant messages after it are its reply; tool and function messages
are not conversation. System and developer messages, wherever they are, make the client's system prompt.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import orjson

from server.errors import ClientError
from server.protocols import ImportedTurn, TurnRecord
from server.transport.frames import valid_text
from server.transport.identity import conversation_session


class ParamError(ClientError):
    """A request field is wrong; `param` names it, as OpenAI's errors do."""

    def __init__(self, param: str | None, message: str, code: str = "invalid_request", status: int = 400):
        super().__init__(code, message, status, param=param)


def content_text(message, param: str) -> str:
    if isinstance(message.content, list):
        if any(part.type != "text" or part.text is None for part in message.content):
            raise ParamError(f"{param}.content", "only text content parts are supported")
        return "".join(part.text for part in message.content)
    return message.content or ""


@dataclass(frozen=True, slots=True)
class SentConversation:
    text: str  # the new message: the turn
    instructions: str | None  # the client's system prompt, None when it sent none
    exchanges: tuple[ImportedTurn, ...]  # the earlier exchanges, oldest first

    def opening_digest(self, with_reply: bool) -> str:
        """Names the conversation by its first exchange: its message, and its reply once there is one (so that
        two chats that both began with "hi" part ways at their first answer). Not by the system prompt, which
        a chat UI may change mid-conversation (its date, a setting)."""
        first = self.exchanges[0] if self.exchanges else ImportedTurn(self.text, "", 0.0)
        opening = [first.user_text.strip(), first.response.strip() if with_reply else None]
        return hashlib.sha256(orjson.dumps(opening)).hexdigest()[:16]

    def session_for(self, user: str) -> tuple[str, str | None]:
        """The stored conversation of `user` this request continues, and the one its first request went to
        when that one had no reply yet to be named by (None when it is the same)."""
        if not self.exchanges:
            return conversation_session(user, self.opening_digest(False)), None
        return (conversation_session(user, self.opening_digest(True)),
                conversation_session(user, self.opening_digest(False)))

    def stand_ins(self, session: str) -> tuple[TurnRecord, ...]:
        """The exchanges as the buffer they stand in for, when nothing of them is stored."""
        return tuple(TurnRecord(f"sent-{seq}", session, seq, e.user_text, e.response, "complete", e.created)
                     for seq, e in enumerate(self.exchanges))


def read_conversation(messages: list, max_chars: int) -> SentConversation:
    last = messages[-1]
    param = f"messages.{len(messages) - 1}"
    if last.role != "user":
        raise ParamError(f"{param}.role", "the last message must be the user's: it is the turn this server answers")
    try:
        text = valid_text(content_text(last, param), max_chars)
    except ClientError as err:
        raise ParamError(f"{param}.content", err.message, err.code, err.status) from None
    system: list[str] = []
    exchanges: list[list[str]] = []
    for index, message in enumerate(messages[:-1]):
        said = content_text(message, f"messages.{index}")
        if message.role in ("system", "developer"):
            system.append(said)
        elif message.role == "user":
            exchanges.append([said, ""])
        elif message.role == "assistant":
            if not exchanges:  # the assistant spoke first, e.g. a greeting
                exchanges.append(["", ""])
            exchanges[-1][1] += said
    system = [s for s in system if s.strip()]
    now = time.time()
    sent = tuple(ImportedTurn(user, reply, now) for user, reply in exchanges if user.strip() or reply.strip())
    return SentConversation(text, "\n\n".join(system) or None, sent)
