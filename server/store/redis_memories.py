"""The Redis TurnStore's memory API and chat imports (the scripts: redis_memory_scripts), a mixin of
RedisTurnStore kept apart from the turn lifecycle, as sqlite_memories is for the SQLite store.

A Redis written by an earlier version may lack the per-namespace lists of sessions and documents, and its turns
may keep copies of the memories they recalled: the first replica to start builds the lists and drops the copies
from a key scan (`index_existing`), batch by batch, each batch atomic; replicas starting together may both do
it, which changes nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import orjson

from server.logs import get_logger
from server.protocols import Document, ImportedTurn, SessionInfo, TurnRecord
from server.store import redis_memory_scripts as memory_lua
from server.store.redis_link import RedisLink
from server.turn_details import memory_id

log = get_logger(__name__)

TITLE_CHARS = 80  # a session's title: the start of its first message, as the SQLite store gives it
# The layout version this code writes; below it, `index_existing` builds what is missing.
LAYOUT = 3
_SCAN = 500

# name -> Lua source, for the store to register with its own scripts
MEMORY_SCRIPTS = {name: getattr(memory_lua, name) for name in (
    "IMPORT_TURNS", "SESSIONS_PAGE", "MEMORIES_PAGE", "ADD_MEMORY", "EDIT_MEMORY", "DELETE_MEMORY", "INDEX_SESSIONS",
    "INDEX_DOCUMENTS", "SUPERSEDE_TURNS", "REPLACE_DETAILS")}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8")


def _time(value: bytes | None) -> float | None:
    return float(value) if value else None


def memory_ids_only(details: bytes | None) -> str | None:
    """A turn's details as this version stores them, where an earlier one kept a copy of each recalled memory
    ({"id", "text", ...}), which outlived the memory's edit or deletion; None when they need no change."""
    try:
        parsed = orjson.loads(details) if details else None
    except orjson.JSONDecodeError:
        return None
    memories = parsed.get("memories") if isinstance(parsed, dict) else None
    if not isinstance(memories, list) or not any(isinstance(m, dict) for m in memories):
        return None
    try:
        parsed["memories"] = [memory_id(m) for m in memories]
    except (KeyError, TypeError, ValueError):
        return None  # not a shape any release wrote: left as it is
    return orjson.dumps(parsed).decode()


def _glob(text: str) -> str:
    """`text` as a literal in a SCAN MATCH pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class _Store(Protocol):
    link: RedisLink
    prefix: str

    async def _script(self, name: str, args: Sequence, *, wait: float = 0.0) -> Any: ...


class RedisMemories:
    """Needs `link`, `prefix` and `_script` (run a registered script by name) from the store it is mixed into."""

    async def import_turns(self: _Store, session: str, namespace: str,
                           turns: Sequence[ImportedTurn]) -> list[TurnRecord]:
        ids = [uuid.uuid4().hex for _ in turns]
        args: list = [session, namespace, repr(time.time()), len(turns)]
        for turn_id, turn in zip(ids, turns, strict=True):
            args += [turn_id, turn.user_text, turn.response, repr(float(turn.created)), turn.user_name or "",
                     turn.assistant_name or ""]
        reply = await self._script("IMPORT_TURNS", args, wait=5.0)  # a retry finds it done
        if reply[0] == b"forbidden":
            raise PermissionError(f"session {session!r} belongs to another user")
        first = int(reply[1])
        return [TurnRecord(turn_id, session, first + i, turn.user_text, turn.response, "complete",
                           float(turn.created), turn.user_name or None, turn.assistant_name or None)
                for i, (turn_id, turn) in enumerate(zip(ids, turns, strict=True))]

    async def supersede_turns(self: _Store, session: str, turn_ids: Sequence[str]) -> int:
        if not turn_ids:
            return 0
        return int(await self._script("SUPERSEDE_TURNS", [session, *turn_ids], wait=5.0))  # a retry finds them gone

    async def sessions(self: _Store, namespace: str, limit: int, offset: int = 0) -> list[SessionInfo]:
        if limit <= 0:
            return []
        # a character takes at most 4 bytes: the first TITLE_CHARS come whole, a cut one after them is dropped
        reply = await self._script("SESSIONS_PAGE", [namespace, max(0, offset), limit, 4 * TITLE_CHARS])
        return [SessionInfo(reply[i].decode(), float(reply[i + 1]), -float(reply[i + 2]), int(reply[i + 3]),
                            reply[i + 4].decode("utf-8", "ignore")[:TITLE_CHARS])
                for i in range(0, len(reply), 5)]

    async def memories(self: _Store, namespace: str, limit: int, offset: int = 0) -> list[Document]:
        if limit <= 0:
            return []
        reply = await self._script("MEMORIES_PAGE", [namespace, max(0, offset), limit])
        return [Document(int(reply[i]), namespace, _text(reply[i + 1]) or "", None, _text(reply[i + 2]),
                         _time(reply[i + 3]), _text(reply[i + 4]))
                for i in range(0, len(reply), 5) if reply[i + 1] is not None]

    async def memory(self: _Store, namespace: str, doc_id: int) -> Document | None:
        key = f"{self.prefix}d:{int(doc_id)}"
        found = await self.link.run(lambda r: r.hmget(key, ["ns", "text", "session", "created", "turn"]))
        if _text(found[0]) != namespace:
            return None
        return Document(int(doc_id), namespace, _text(found[1]) or "", None, _text(found[2]), _time(found[3]),
                        _text(found[4]))

    async def add_memory(self: _Store, namespace: str, text: str, embedding: np.ndarray, created: float,
                         session: str | None = None) -> Document:
        vector = np.ascontiguousarray(embedding, dtype=np.float32)
        # not retried: a lost reply may hide a memory that was added, and a retry would add it twice
        doc_id = await self._script("ADD_MEMORY", [namespace, text, vector.tobytes(), repr(float(created)),
                                                   session or ""])
        return Document(int(doc_id), namespace, text, vector, session or None, float(created))

    async def edit_memory(self: _Store, namespace: str, doc_id: int, text: str,
                          embedding: np.ndarray) -> Document | None:
        vector = np.ascontiguousarray(embedding, dtype=np.float32)
        kept = await self._script("EDIT_MEMORY", [namespace, int(doc_id), text, vector.tobytes()], wait=5.0)
        if kept is None:
            return None
        return Document(int(doc_id), namespace, text, vector, _text(kept[0]), _time(kept[1]), _text(kept[2]))

    async def delete_memory(self: _Store, namespace: str, doc_id: int) -> bool:
        return bool(await self._script("DELETE_MEMORY", [namespace, int(doc_id)]))

    async def index_existing(self: _Store) -> None:
        """Bring a Redis from an earlier version to this layout: per-namespace lists of sessions and documents,
        turns that name their recalled memories by id only."""
        key = f"{self.prefix}layout"
        if int(await self.link.run(lambda r: r.get(key)) or 0) >= LAYOUT:
            return
        counts = {"s": 0, "d": 0, "t": 0}
        for kind, script in (("s", "INDEX_SESSIONS"), ("d", "INDEX_DOCUMENTS"), ("t", None)):
            pattern, cut, scan = f"{_glob(self.prefix)}{kind}:*", len(self.prefix) + 2, 0
            while True:
                scan, keys = await self.link.run(
                    lambda r, scan=scan, pattern=pattern: r.scan(scan, match=pattern, count=_SCAN))
                if keys and script:
                    await self._script(script, [k[cut:] for k in keys])
                    counts[kind] += len(keys)
                elif keys:
                    counts[kind] += await _drop_memory_copies(self, keys, cut)
                if scan == 0:
                    break
        await self.link.run(lambda r: r.set(key, LAYOUT))
        if any(counts.values()):
            log.info("redis store upgraded: sessions and memories listed, turns' memory copies dropped",
                     sessions=counts["s"], documents=counts["d"], turns=counts["t"])


async def _drop_memory_copies(store: _Store, keys: list[bytes], cut: int) -> int:
    """Drop the memory copies from the details of the turns at `keys`; the number of turns changed."""
    async def details(r):
        pipe = r.pipeline(transaction=False)
        for k in keys:
            pipe.hget(k, "details")
        return await pipe.execute()

    args = []
    for k, old in zip(keys, await store.link.run(details), strict=True):
        if (new := memory_ids_only(old)) is not None:
            args += [k[cut:], old, new]
    if args:
        await store._script("REPLACE_DETAILS", args)
    return len(args) // 3
