"""Who owns a memory namespace: the authenticated user when there is one, otherwise the session."""

from __future__ import annotations


def namespace_for(user: str | None, session: str) -> str:
    return f"user:{user}" if user else f"session:{session}"
