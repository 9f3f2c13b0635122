"""TurnStore on Redis: turns, the buffer, the flush watermark and the documents, shared by every replica.

Each change that touches several keys is one Lua script (server/store/redis_scripts.py), so a
replica killed at any moment leaves either all of it or none: a flush writes its documents, their
log entries and the new watermark together, after comparing the watermark it planned from, so two
replicas flushing one session produce one flush. Documents (text + float32 embedding) live in
hashes, and every add or delete is appended to the namespace's Redis stream, the log from which
each replica's FAISS indexes catch up (`log_since`, redis_log). The stream does not grow with history:
its entries are folded into a snapshot of the live document ids and trimmed (redis_compactor).

A turn holds its session's lease (SET PX, taken in begin_turn, renewed while it runs, dropped in
finish_turn), so a second turn on the session is refused on every replica, not only on this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Sequence

import numpy as np

from server.logs import get_logger
from server.protocols import KNOWLEDGE_NAMESPACE, Document, FlushPlan, LogEntry, TurnRecord
from server.store import redis_scripts as lua
from server.store.redis_compactor import LogCompactor
from server.store.redis_link import RedisLink, SessionLeased
from server.store.redis_log import RedisLogReader
from server.store.redis_memories import MEMORY_SCRIPTS, RedisMemories

log = get_logger(__name__)

# A finished reply is worth a short wait for Redis to come back (e.g. a restart) before it is lost.
_FINISH_WAIT = 5.0


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8")


class RedisTurnStore(RedisMemories):
    """The memory API's operations and turn imports come from RedisMemories (redis_memories)."""

    def __init__(self, link: RedisLink, prefix: str = "dongpo:", lease_ttl: float = 15.0, *,
                 compact_every: float = 60.0, log_keep: float = 600.0):
        """`compact_every`: seconds between log compactions (0: none); `log_keep`: seconds of stream kept
        after folding, so that a replica that read a namespace within them catches up from the tail."""
        self.link = link
        self.prefix = prefix
        self.lease_ms = max(1000, int(lease_ttl * 1000))
        self._scripts: dict[str, object] = {}
        self._running: dict[str, str] = {}  # turn id -> session: the leases this replica renews
        self._keeper: asyncio.Task | None = None
        self._log = RedisLogReader(link, prefix, self._script)
        self._compactor = LogCompactor(link, prefix, self._script, every=compact_every, keep=log_keep)
        self._compacting: asyncio.Task | None = None

    # ---------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self.link.start()
        client = self.link.client
        self._scripts = {name: client.register_script(getattr(lua, name)) for name in (
            "BEGIN_TURN", "FINISH_TURN", "READ_TURNS", "COMMIT_FLUSH", "FORGET_SESSION", "LOG_SINCE",
            "SNAPSHOT_PAGE", "COMPACT_LOG", "REPLACE_KNOWLEDGE", "DROP_KNOWLEDGE", "REAP_PENDING",
            "RENEW_LEASES")}
        self._scripts.update((name, client.register_script(source)) for name, source in MEMORY_SCRIPTS.items())
        await self.index_existing()
        self._keeper = asyncio.create_task(self._keep_leases(), name="redis-leases")
        if self._compactor.every > 0:
            self._compacting = asyncio.create_task(self._compactor.run(), name="redis-log-compaction")

    async def close(self) -> None:
        for task in (self._keeper, self._compacting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._keeper = self._compacting = None
        await self.link.close()

    async def _script(self, name: str, args: Sequence, *, wait: float = 0.0):
        script = self._scripts[name]
        return await self.link.run(lambda _client: script(keys=[], args=[self.prefix, *args]), wait=wait)

    async def _keep_leases(self) -> None:
        """Renew the leases of turns running here; now and then reap turns orphaned by dead replicas."""
        interval = self.lease_ms / 3000
        ticks = 0
        while True:
            await asyncio.sleep(interval)
            ticks += 1
            try:
                if self._running:
                    pairs = [v for tid, sid in list(self._running.items()) for v in (sid, tid)]
                    lost = await self._script("RENEW_LEASES", [self.lease_ms, *pairs])
                    for tid in lost:
                        log.warning("session lease taken over by another replica", turn=_text(tid))
                if ticks % 3 == 0:
                    await self.interrupt_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage is already logged by the link, which reconnects by itself
                log.debug("lease upkeep skipped", error=type(exc).__name__)

    # -------------------------------------------------------------------------------------- turns

    async def begin_turn(self, session: str, namespace: str, text: str) -> TurnRecord:
        turn_id = uuid.uuid4().hex
        reply = await self._script("BEGIN_TURN", [session, namespace, text, turn_id, repr(time.time()),
                                                  self.lease_ms])
        status = reply[0].decode()
        if status == "forbidden":
            raise PermissionError(f"session {session!r} belongs to another user")
        if status == "busy":
            raise SessionLeased()
        self._running[turn_id] = session
        return TurnRecord(turn_id, session, int(reply[1]), text, None, "pending", float(reply[2]))

    async def finish_turn(self, turn_id: str, response: str, status: str, details: str | None = None) -> None:
        try:
            applied = await self._script("FINISH_TURN", [turn_id, response, status, repr(time.time())],
                                         wait=_FINISH_WAIT)
        finally:
            self._running.pop(turn_id, None)
        if details is not None and int(applied or 0):
            # the turn's hash exists (FINISH_TURN applied to it) and only a forget of its session, refused
            # while the turn runs, deletes it: a field set now cannot outlive it
            await self.link.run(lambda r: r.hset(f"{self.prefix}t:{turn_id}", "details", details))

    async def rename_session(self, session: str, title: str) -> None:
        key = f"{self.prefix}s:{session}"

        async def rename(r):
            if await r.exists(key):  # a forgotten session is not brought back as a title alone
                await r.hset(key, "title", title)

        await self.link.run(rename)

    async def _read(self, session: str, mode: str) -> tuple[str | None, int, list[TurnRecord]]:
        reply = await self._script("READ_TURNS", [session, mode])
        namespace, flushed = _text(reply[0]), int(reply[1] or 0)
        turns = [TurnRecord(id=reply[i].decode(), session=session, seq=int(reply[i + 1]),
                            user_text=reply[i + 2].decode(), response=_text(reply[i + 3]),
                            status=reply[i + 4].decode(), created=float(reply[i + 5]),
                            user_name=_text(reply[i + 6]), assistant_name=_text(reply[i + 7]))
                 for i in range(2, len(reply), 8)]
        return namespace, flushed, turns

    async def buffer(self, session: str) -> list[TurnRecord]:
        return (await self._read(session, "buffer"))[2]

    async def history(self, session: str) -> list[TurnRecord]:
        turns = (await self._read(session, "history"))[2]
        if not turns:
            return turns
        keys = [f"{self.prefix}t:{t.id}" for t in turns]

        async def details(r):
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "details")
            return await pipe.execute()

        found = await self.link.run(details)
        return [dataclasses.replace(t, details=_text(d)) for t, d in zip(turns, found, strict=True)]

    async def session_namespace(self, session: str) -> str | None:
        return _text(await self.link.run(lambda r: r.hget(f"{self.prefix}s:{session}", "ns")))

    async def interrupt_pending(self) -> int:
        count = int(await self._script("REAP_PENDING", [repr(time.time())]))
        if count:
            log.warning("turns orphaned by a stopped replica marked interrupted", count=count)
        return count

    # ------------------------------------------------------------------------------------ flushes

    async def plan_flush(self, session: str, every: int) -> FlushPlan | None:
        namespace, flushed, turns = await self._read(session, "buffer")
        if namespace is None or len(turns) < every:
            return None
        return FlushPlan(session=session, namespace=namespace, after_seq=flushed, turns=tuple(turns))

    async def commit_flush(self, plan: FlushPlan, embeddings: np.ndarray) -> list[Document] | None:
        documents = plan.documents
        vectors = [np.ascontiguousarray(v, dtype=np.float32) for v in embeddings]
        args: list = [plan.session, plan.namespace, plan.after_seq, plan.upto_seq, repr(time.time()),
                      plan.turns[-1].id, len(documents)]
        for (turn, text), vector in zip(documents, vectors, strict=True):
            # a memory is dated by when it was said, not by when it was flushed
            args += [turn.id, text, vector.tobytes(), repr(float(turn.created))]
        # safe to retry: a second run finds the watermark moved and returns nil
        ids = await self._script("COMMIT_FLUSH", args, wait=_FINISH_WAIT)
        if ids is None:
            return None
        return [Document(int(doc_id), plan.namespace, text, vector, plan.session, turn.created, turn.id)
                for doc_id, (turn, text), vector in zip(ids, documents, vectors, strict=True)]

    async def sessions_needing_flush(self, every: int) -> list[str]:
        found = await self.link.run(lambda r: r.zrangebyscore(f"{self.prefix}unflushed", every, "+inf"))
        return [s.decode() for s in found]

    async def flush_count(self, session: str) -> int:
        return int(await self.link.run(lambda r: r.llen(f"{self.prefix}fl:{session}")))

    async def forget_session(self, session: str) -> int:
        removed = int(await self._script("FORGET_SESSION", [session]))
        if removed < 0:
            raise SessionLeased()
        return removed

    # ---------------------------------------------------------------------------------- documents

    async def log_since(self, namespace: str, cursor: int | str | None) -> list[LogEntry]:
        return await self._log.since(namespace, cursor)

    async def compact_logs(self) -> int:
        """Compact every namespace's log now (it also happens every `compact_every` s); returns entries trimmed."""
        return await self._compactor.sweep()

    async def namespaces(self) -> list[str]:
        return sorted(n.decode() for n in await self.link.run(lambda r: r.smembers(f"{self.prefix}ns")))

    async def replace_knowledge(self, source: str, digest: str, chunks: Sequence[str],
                                embeddings: np.ndarray) -> bool:
        args: list = [KNOWLEDGE_NAMESPACE, source, digest, repr(time.time()), len(chunks)]
        for text, vector in zip(chunks, embeddings, strict=True):
            args += [text, np.ascontiguousarray(vector, dtype=np.float32).tobytes()]
        return bool(await self._script("REPLACE_KNOWLEDGE", args))

    async def knowledge_sources(self) -> dict[str, str]:
        found = await self.link.run(lambda r: r.hgetall(f"{self.prefix}kb"))
        return {k.decode(): v.decode() for k, v in found.items()}

    async def drop_knowledge(self, source: str) -> None:
        await self._script("DROP_KNOWLEDGE", [KNOWLEDGE_NAMESPACE, source])
