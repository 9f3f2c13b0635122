"""A conversation its client keeps: OpenAI-style chat front-ends send the whole conversation with every request,
and regenerate, edit and branch it themselves. Before such a request's turn, the stored session is brought to
the branch the client sent, so that every exchange is stored once and a replaced one leaves no memory behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from server.memory.service import LongTermMemory
from server.protocols import ImportedTurn, SessionBusy, TurnRecord


def _same(turn: TurnRecord, sent: ImportedTurn) -> bool:
    # clients trim what they show and send back; nothing else about a stored exchange may differ
    return turn.user_text.strip() == sent.user_text.strip() and (turn.response or "").strip() == sent.response.strip()


async def follow(memory: LongTermMemory, session: str, namespace: str, sent: Sequence[ImportedTurn],
                 opened_in: str | None = None) -> list[TurnRecord]:
    """Make `session` hold the exchanges `sent` (oldest first) and nothing after them; return them as stored turns.

    1. The stored turns that match the sent exchanges from the start are kept.
    2. The stored turns after those are superseded, with the memories made of them: a regenerated reply, an
       edited message or another branch replaces them.
    3. The sent exchanges the session lacks are stored as completed turns (a conversation begun elsewhere, a
       branch switched back to); they are flushed into memory as live turns are.
    A new session whose first exchange is all that `opened_in` holds (the session a conversation's first request
    went to, before it had a reply to be named by) takes it over: `opened_in` is forgotten, so it is stored once.
    PermissionError when another namespace owns the session.
    """
    turns = memory.turns
    owner = await turns.session_namespace(session)
    if owner is not None and owner != namespace:
        raise PermissionError(f"session {session!r} belongs to another user")
    stored = await turns.history(session) if owner is not None else []
    kept = 0
    while kept < min(len(stored), len(sent)) and _same(stored[kept], sent[kept]):
        kept += 1
    await _supersede(memory, session, namespace, [t.id for t in stored[kept:]])
    if owner is None and sent and opened_in is not None and await turns.session_namespace(opened_in) == namespace:
        opening = await turns.history(opened_in)
        if all(_same(t, sent[0]) for t in opening):  # it held only this conversation's opening: it moves here
            with contextlib.suppress(SessionBusy):  # its own first request is running again: that one stays
                await memory.forget(opened_in, namespace)
    added = await turns.import_turns(session, namespace, sent[kept:]) if len(sent) > kept else []
    return [*stored[:kept], *added]


async def _supersede(memory: LongTermMemory, session: str, namespace: str, turn_ids: list[str]) -> None:
    if turn_ids and await memory.turns.supersede_turns(session, turn_ids):
        await memory.vectors.refresh(namespace)  # the replaced memories are never retrieved again
