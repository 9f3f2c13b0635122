"""A ChatGPT data export's `conversations.json` read as chats of turns (the history most new users bring).

Each conversation is a tree of messages (`mapping`: node -> message, parent, children; edits and regenerated
answers are branches). The chat the user last saw is the path from `current_node` up to the root: that is the
one imported. A user message opens a turn and the assistant messages that follow it are its answer; system,
tool and hidden messages, and non-text parts (images, files), are left out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from server.protocols import ImportedTurn

SESSION_PREFIX = "chatgpt-"


class ExportError(ValueError):
    """Not a ChatGPT conversations.json."""


@dataclass(frozen=True, slots=True)
class ExportedChat:
    session: str
    title: str
    turns: list[ImportedTurn]


def parse_chatgpt_export(data: bytes) -> list[ExportedChat]:
    try:
        conversations = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ExportError("conversations.json is not valid JSON") from None
    if not isinstance(conversations, list) or not all(isinstance(c, dict) and "mapping" in c for c in conversations):
        raise ExportError("expected ChatGPT's conversations.json: a list of conversations with a 'mapping'")
    chats = [_chat(c) for c in conversations]
    return [c for c in chats if c.turns]


def _chat(conversation: dict) -> ExportedChat:
    key = conversation.get("conversation_id") or conversation.get("id")
    if not isinstance(key, str) or not key.isprintable() or not 0 < len(key) <= 100:
        key = hashlib.sha256(orjson.dumps(conversation.get("mapping"))).hexdigest()[:32]
    title = conversation.get("title") if isinstance(conversation.get("title"), str) else ""
    fallback = _number(conversation.get("create_time")) or 0.0
    return ExportedChat(SESSION_PREFIX + key, title, _turns(_path(conversation), fallback))


def _path(conversation: dict) -> list[dict]:
    """The messages from the root to `current_node` (or to the last leaf when it is missing)."""
    mapping = conversation.get("mapping")
    if not isinstance(mapping, dict):
        return []
    node = conversation.get("current_node")
    if node not in mapping:
        leaves = [n for n, v in mapping.items() if isinstance(v, dict) and not v.get("children")]
        node = leaves[-1] if leaves else None
    messages, seen = [], set()
    while node in mapping and node not in seen:  # `seen`: a broken file must not loop forever
        seen.add(node)
        entry = mapping[node] if isinstance(mapping[node], dict) else {}
        if isinstance(entry.get("message"), dict):
            messages.append(entry["message"])
        node = entry.get("parent")
    return messages[::-1]


def _turns(messages: list[dict], fallback: float) -> list[ImportedTurn]:
    turns: list[ImportedTurn] = []
    user, answer, when = "", [], fallback
    for message in messages:
        role = (message.get("author") or {}).get("role")
        text = _text(message)
        if not text or role not in ("user", "assistant"):
            continue
        if role == "user":
            if user or answer:
                turns.append(ImportedTurn(user, "\n\n".join(answer), when))
            user, answer, when = text, [], _number(message.get("create_time")) or when
        else:
            if not user and not answer:
                when = _number(message.get("create_time")) or when
            answer.append(text)
    if user or answer:
        turns.append(ImportedTurn(user, "\n\n".join(answer), when))
    return turns


def _text(message: dict) -> str:
    if (message.get("metadata") or {}).get("is_visually_hidden_from_conversation"):
        return ""
    content = message.get("content") or {}
    if content.get("content_type") not in ("text", "multimodal_text"):  # not code run by tools, not quotes
        return ""
    parts = content.get("parts") or []
    return "\n".join(p for p in parts if isinstance(p, str)).strip()


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None
