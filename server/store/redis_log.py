"""Reading a namespace's document log from Redis: its compacted snapshot, then the stream tail.

The stream `P log:<ns>` is trimmed once its entries are folded into the snapshot (redis_compactor), so
a reader starting from nothing loads the snapshot (the ids of live documents; their text and vectors
are in the document hashes, so nothing is stored twice) and then reads the stream after the entry the
snapshot covers. A reader whose cursor entry was trimmed gets LogExpired and starts over the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from server.protocols import Document, LogEntry, LogExpired
from server.store.redis_link import RedisLink, RedisUnavailable

_PAGE = 1000
# Each retry means the log was trimmed past the snapshot position between reading it and reading the
# tail, which takes a compaction that keeps less than a load lasts: a few attempts are plenty.
_LOAD_ATTEMPTS = 8


class ScriptRunner(Protocol):
    async def __call__(self, name: str, args: Sequence, *, wait: float = 0.0) -> Any: ...


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8")


def _time(value: bytes | None) -> float | None:
    return float(value) if value else None


def _split(packed: bytes, lengths: bytes) -> list[bytes]:
    """Cuts a concatenation back into its parts, given their comma-separated byte lengths."""
    parts, pos = [], 0
    for n in (int(x) for x in lengths.split(b",")) if lengths else ():
        parts.append(packed[pos:pos + n])
        pos += n
    return parts


class RedisLogReader:
    def __init__(self, link: RedisLink, prefix: str, script: ScriptRunner):
        self._link = link
        self._prefix = prefix
        self._script = script

    async def since(self, namespace: str, cursor: int | str | None) -> list[LogEntry]:
        if cursor in (None, 0, ""):
            return await self._load(namespace)
        entries = await self._tail(namespace, str(cursor))
        if entries is None:
            raise LogExpired(namespace)
        return entries

    async def _load(self, namespace: str) -> list[LogEntry]:
        for _ in range(_LOAD_ATTEMPTS):
            entries = await self._tail(namespace, "")  # the whole stream, while it was never compacted
            if entries is not None:
                return entries
            key = f"{self._prefix}snu:{namespace}"
            upto = _text(await self._link.run(lambda r, key=key: r.get(key)))
            if upto is None:
                continue
            # The scan sees every id live from `upto` to its end; ids added or removed meanwhile are
            # settled by the tail after `upto`, which replays their adds and dels.
            docs = await self._snapshot(namespace, upto)
            tail = await self._tail(namespace, upto)
            if tail is not None:
                # with nothing to apply, a no-op del (ids start at 1) still moves the reader's cursor
                return docs + tail or [LogEntry(upto, "del", Document(0, namespace, ""))]
        raise RedisUnavailable("the memory log is being compacted faster than it can be read; retry shortly")

    async def _snapshot(self, namespace: str, upto: str) -> list[LogEntry]:
        entries: list[LogEntry] = []
        scan = b"0"
        while True:
            reply = await self._script("SNAPSHOT_PAGE", [namespace, scan, _PAGE])
            scan = reply[0]
            ids = [int(i) for i in reply[1].split(b",")] if reply[1] else []
            texts, sessions, embs = _split(reply[3], reply[2]), _split(reply[5], reply[4]), _split(reply[7], reply[6])
            times, turns = reply[8].split(b",") if ids else [], _split(reply[10], reply[9])
            for doc_id, text, session, emb, created, turn in zip(ids, texts, sessions, embs, times, turns, strict=True):
                doc = Document(doc_id, namespace, text.decode(), np.frombuffer(emb, np.float32),
                               session.decode() or None, _time(created), turn.decode() or None)
                entries.append(LogEntry(upto, "add", doc))
            if scan == b"0":
                return entries

    async def _tail(self, namespace: str, cursor: str) -> list[LogEntry] | None:
        """Entries after `cursor` ('' for all), or None when some of them were trimmed away."""
        entries: list[LogEntry] = []
        while True:
            reply = await self._script("LOG_SINCE", [namespace, cursor, _PAGE])
            if len(reply) == 1:  # {'expired'}
                return None
            for i in range(0, len(reply), 8):
                entry_id, doc_id, op = reply[i].decode(), int(reply[i + 1]), reply[i + 2].decode()
                if op == "add":
                    doc = Document(doc_id, namespace, reply[i + 3].decode(), np.frombuffer(reply[i + 4], np.float32),
                                   _text(reply[i + 5]) or None, _time(reply[i + 6]), _text(reply[i + 7]) or None)
                else:
                    doc = Document(doc_id, namespace, "")
                entries.append(LogEntry(entry_id, op, doc))  # type: ignore[arg-type]
            if len(reply) < 8 * _PAGE:
                return entries
            cursor = entries[-1].cursor  # type: ignore[assignment]
