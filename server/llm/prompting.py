"""Turning chat messages into model input when a backend must do it itself."""

from __future__ import annotations

from collections.abc import Sequence

from server.protocols import Message

_LABELS = {"system": "", "user": "User", "assistant": "Assistant"}


def plain_transcript(messages: Sequence[Message]) -> str:
    """A transcript for models without a chat template; ends with the assistant's cue."""
    parts = []
    for m in messages:
        parts.append(m.content if m.role == "system" else f"{_LABELS[m.role]}: {m.content}")
    parts.append("Assistant:")
    return "\n\n".join(parts)


def to_openai(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]
