"""TurnStore on SQLite: the embedded source of truth for turns, documents and the flush watermark.

Documents and the watermark move in one transaction, and every document change is appended to
`doc_log`, from which vector indexes are derived; so a crash at any point neither loses nor
duplicates a memory.
"""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TypeVar

import numpy as np

from server.errors import StartupError
from server.protocols import KNOWLEDGE_NAMESPACE, Document, FlushPlan, ImportedTurn, LogEntry, SessionInfo, TurnRecord
from server.store import sqlite_memories as mem
from server.store.sqlite_schema import create_or_migrate

T = TypeVar("T")

_TURN_COLUMNS = "id, session, seq, user_text, response, status, created, user_name, assistant_name, details"


def _turn(row) -> TurnRecord:
    return TurnRecord(*row)


def _vec(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


class DataDirInUse(StartupError):
    pass


def _lock_exclusively(path: Path) -> IO:
    """One server per database: a second one would serve stale indexes and race the flush."""
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirInUse(f"{path.parent} is in use by another server process; give each server its own "
                           "DATA_DIR, or use STORE=redis to run several replicas") from None
    return handle


class SqliteTurnStore:
    """sqlite3 on one dedicated thread: each operation runs start to finish there, so transactions
    never interleave and the event loop pays one thread hop per operation, not per statement."""

    def __init__(self, path: Path, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self.synchronous = synchronous
        self._con: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        # Last doc_log entry per namespace, loaded at start and kept by every write. One process owns the
        # database (DATA_DIR is locked), so an index already at the head needs no query before a search.
        self._log_heads: dict[str, int] = {}
        self._lock: IO | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    def _call(self, fn):
        if self._con is None:
            raise RuntimeError("SqliteTurnStore used before start()")
        return fn(self._con)

    async def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def work(con):
            con.execute("BEGIN IMMEDIATE")
            try:
                result = fn(con)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            return result

        return await self._run(work)

    async def start(self) -> None:
        def connect():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_exclusively(self.path.with_suffix(".lock"))
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: every committed transaction survives a killed process; FULL also survives
            # power loss, at the cost of an fsync per commit.
            con.execute(f"PRAGMA synchronous={self.synchronous}")
            con.execute("PRAGMA busy_timeout=5000")
            # a forgotten turn must not stay readable in the free space of the pages it was deleted from
            con.execute("PRAGMA secure_delete=ON")
            create_or_migrate(con)
            self._log_heads.update(con.execute("SELECT namespace, MAX(seq) FROM doc_log GROUP BY namespace"))
            self._con = con

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        if self._con is not None:
            await self._run(lambda con: con.close())
            self._con = None
        self._executor.shutdown(wait=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    async def begin_turn(self, session: str, namespace: str, text: str) -> TurnRecord:
        now = time.time()
        turn_id = uuid.uuid4().hex

        def work(con):
            row = con.execute("SELECT namespace, next_seq FROM sessions WHERE id = ?", (session,)).fetchone()
            if row is None:
                seq = 1
                con.execute("INSERT INTO sessions (id, namespace, created, next_seq) VALUES (?, ?, ?, 2)",
                            (session, namespace, now))
            else:
                if row[0] != namespace:
                    raise PermissionError(f"session {session!r} belongs to another user")
                seq = row[1]
                con.execute("UPDATE sessions SET next_seq = ? WHERE id = ?", (seq + 1, session))
            con.execute(
                "INSERT INTO turns (id, session, seq, user_text, status, created) VALUES (?, ?, ?, ?, 'pending', ?)",
                (turn_id, session, seq, text, now))
            return TurnRecord(turn_id, session, seq, text, None, "pending", now)

        return await self._transaction(work)

    async def finish_turn(self, turn_id: str, response: str, status: str, details: str | None = None) -> None:
        await self._run(lambda con: con.execute(
            "UPDATE turns SET response = ?, status = ?, completed = ?, details = COALESCE(?, details) WHERE id = ?",
            (response, status, time.time(), details, turn_id)))

    async def rename_session(self, session: str, title: str) -> None:
        await self._run(lambda con: con.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session)))

    @staticmethod
    def _buffer(con, session: str) -> list[TurnRecord]:
        rows = con.execute(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE session = ? AND status = 'complete' AND seq > "
            "(SELECT flushed_seq FROM sessions WHERE id = ?) ORDER BY seq", (session, session)).fetchall()
        return [_turn(r) for r in rows]

    async def buffer(self, session: str) -> list[TurnRecord]:
        return await self._run(lambda con: self._buffer(con, session))

    async def history(self, session: str) -> list[TurnRecord]:
        return await self._run(lambda con: [_turn(r) for r in con.execute(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE session = ? ORDER BY seq", (session,))])

    async def session_namespace(self, session: str) -> str | None:
        row = await self._run(lambda con: con.execute(
            "SELECT namespace FROM sessions WHERE id = ?", (session,)).fetchone())
        return row[0] if row else None

    async def sessions(self, namespace: str, limit: int, offset: int = 0) -> list[SessionInfo]:
        return await self._run(lambda con: mem.list_sessions(con, namespace, limit, offset))

    async def plan_flush(self, session: str, every: int) -> FlushPlan | None:
        def work(con):
            row = con.execute("SELECT namespace, flushed_seq FROM sessions WHERE id = ?", (session,)).fetchone()
            if row is None:
                return None
            turns = self._buffer(con, session)
            if len(turns) < every:
                return None
            return FlushPlan(session=session, namespace=row[0], after_seq=row[1], turns=tuple(turns))

        return await self._run(work)

    async def commit_flush(self, plan: FlushPlan, embeddings: np.ndarray) -> list[Document] | None:
        now = time.time()

        def work(con):
            row = con.execute("SELECT flushed_seq FROM sessions WHERE id = ?", (plan.session,)).fetchone()
            if row is None or row[0] != plan.after_seq or not self._holds(con, plan):
                return None  # someone else flushed (or forgot) this session meanwhile
            docs = []
            for (turn, text), vector in zip(plan.documents, embeddings, strict=True):
                vector = np.ascontiguousarray(vector, dtype=np.float32)
                # a memory is dated by when it was said, not by when it was flushed
                cur = con.execute(
                    "INSERT INTO documents (namespace, session, turn_id, text, embedding, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (plan.namespace, plan.session, turn.id, text, vector.tobytes(), turn.created))
                self._log(con, plan.namespace, "add", [cur.lastrowid])
                docs.append(Document(cur.lastrowid, plan.namespace, text, vector, plan.session, turn.created,
                                     turn.id))
            con.execute("UPDATE sessions SET flushed_seq = ? WHERE id = ?", (plan.upto_seq, plan.session))
            con.execute("INSERT INTO flushes (session, from_seq, to_seq, documents, at) VALUES (?, ?, ?, ?, ?)",
                        (plan.session, plan.after_seq, plan.upto_seq, len(docs), now))
            return docs

        return await self._transaction(work)

    @staticmethod
    def _holds(con, plan: FlushPlan) -> bool:
        """Whether the session still holds the planned turns. A forgotten session recreated since then
        has the same id and watermark, but new turns: its old ones went with the forget."""
        return con.execute("SELECT 1 FROM turns WHERE id = ? AND session = ?",
                           (plan.turns[-1].id, plan.session)).fetchone() is not None

    async def sessions_needing_flush(self, every: int) -> list[str]:
        sql = """SELECT s.id FROM sessions s JOIN turns t ON t.session = s.id
                 WHERE t.status = 'complete' AND t.seq > s.flushed_seq
                 GROUP BY s.id HAVING COUNT(*) >= ?"""
        return await self._run(lambda con: [r[0] for r in con.execute(sql, (every,))])

    async def forget_session(self, session: str) -> int:
        def work(con):
            docs = con.execute("SELECT id, namespace FROM documents WHERE session = ?", (session,)).fetchall()
            for doc_id, ns in docs:
                self._log(con, ns, "del", [doc_id])
            for table, column in (("documents", "session"), ("turns", "session"), ("flushes", "session"),
                                  ("sessions", "id")):
                con.execute(f"DELETE FROM {table} WHERE {column} = ?", (session,))
            return len(docs)

        removed = await self._transaction(work)
        await self._scrub()
        return removed

    async def _scrub(self) -> None:
        """After a delete, the WAL still holds earlier versions of the deleted pages: fold it into the database
        (whose pages secure_delete has zeroed) and empty it."""
        await self._run(lambda con: con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())

    def _log(self, con, namespace: str, op: str, doc_ids: Sequence[int]) -> None:
        for doc_id in doc_ids:
            cur = con.execute("INSERT INTO doc_log (namespace, op, doc_id) VALUES (?, ?, ?)", (namespace, op, doc_id))
            self._log_heads[namespace] = cur.lastrowid

    async def log_since(self, namespace: str, cursor: int | str | None) -> list[LogEntry]:
        if int(cursor or 0) >= self._log_heads.get(namespace, 0):
            return []
        sql = """SELECT l.seq, l.op, l.doc_id, d.text, d.embedding, d.session, d.created, d.turn_id FROM doc_log l
                 LEFT JOIN documents d ON d.id = l.doc_id AND l.op = 'add'
                 WHERE l.namespace = ? AND l.seq > ? ORDER BY l.seq"""
        rows = await self._run(lambda con: con.execute(sql, (namespace, int(cursor or 0))).fetchall())
        entries = []
        for seq, op, doc_id, text, blob, session, created, turn in rows:
            if op == "add" and text is None:
                # added then deleted: a 'del' entry for it follows; still advance the cursor past it
                entries.append(LogEntry(seq, "del", Document(doc_id, namespace, "")))
                continue
            vector = _vec(blob) if blob is not None else None
            entries.append(LogEntry(seq, op, Document(doc_id, namespace, text or "", vector, session, created,
                                                      turn)))
        return entries

    async def namespaces(self) -> list[str]:
        return await self._run(lambda con: [r[0] for r in con.execute("SELECT DISTINCT namespace FROM doc_log")])

    async def replace_knowledge(self, source: str, digest: str, chunks: Sequence[str],
                                embeddings: np.ndarray) -> bool:
        now = time.time()

        def work(con):
            row = con.execute("SELECT digest FROM knowledge WHERE source = ?", (source,)).fetchone()
            if row is not None and row[0] == digest:
                return False
            self._delete_knowledge(con, source)
            for text, vector in zip(chunks, embeddings, strict=True):
                cur = con.execute(
                    "INSERT INTO documents (namespace, source, text, embedding, created) VALUES (?, ?, ?, ?, ?)",
                    (KNOWLEDGE_NAMESPACE, source, text, np.asarray(vector, np.float32).tobytes(), now))
                self._log(con, KNOWLEDGE_NAMESPACE, "add", [cur.lastrowid])
            con.execute("INSERT OR REPLACE INTO knowledge (source, digest) VALUES (?, ?)", (source, digest))
            return True

        return await self._transaction(work)

    def _delete_knowledge(self, con, source: str) -> None:
        ids = [r[0] for r in con.execute("SELECT id FROM documents WHERE source = ?", (source,))]
        self._log(con, KNOWLEDGE_NAMESPACE, "del", ids)
        con.execute("DELETE FROM documents WHERE source = ?", (source,))
        con.execute("DELETE FROM knowledge WHERE source = ?", (source,))

    async def knowledge_sources(self) -> dict[str, str]:
        return await self._run(lambda con: dict(con.execute("SELECT source, digest FROM knowledge").fetchall()))

    async def drop_knowledge(self, source: str) -> None:
        await self._transaction(lambda con: self._delete_knowledge(con, source))

    async def interrupt_pending(self) -> int:
        return await self._run(lambda con: con.execute(
            "UPDATE turns SET status = 'interrupted', response = COALESCE(response, ''), completed = ? "
            "WHERE status = 'pending'", (time.time(),)).rowcount)

    async def flush_count(self, session: str) -> int:
        return await self._run(lambda con: con.execute(
            "SELECT COUNT(*) FROM flushes WHERE session = ?", (session,)).fetchone()[0])

    async def import_turns(self, session: str, namespace: str, turns: Sequence[ImportedTurn]) -> list[TurnRecord]:
        return await self._transaction(lambda con: mem.import_turns(con, session, namespace, turns))

    async def supersede_turns(self, session: str, turn_ids: Sequence[str]) -> int:
        return await self._transaction(lambda con: mem.supersede_turns(con, self._log, session, turn_ids))

    # The embedder that wrote the vectors, and re-embedding under another (server/memory/embedders.py).
    async def recorded_embedder(self) -> tuple[str | None, int | None]:
        return await self._transaction(mem.recorded_embedder)

    async def record_embedder(self, embedder_id: str) -> None:
        await self._transaction(lambda con: mem.record_embedder(con, embedder_id))

    async def documents_after(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        return await self._run(lambda con: mem.documents_after(con, after_id, limit))

    async def replace_embeddings(self, rows: Sequence[tuple[int, np.ndarray]]) -> None:
        await self._transaction(lambda con: mem.replace_embeddings(con, rows))

    async def memories(self, namespace: str, limit: int, offset: int = 0) -> list[Document]:
        return await self._run(lambda con: mem.list_memories(con, namespace, limit, offset))

    async def memory(self, namespace: str, doc_id: int) -> Document | None:
        return await self._run(lambda con: mem.get_memory(con, namespace, doc_id))

    async def add_memory(self, namespace: str, text: str, embedding: np.ndarray, created: float,
                         session: str | None = None) -> Document:
        return await self._transaction(
            lambda con: mem.add_memory(con, self._log, namespace, text, embedding, created, session))

    async def edit_memory(self, namespace: str, doc_id: int, text: str, embedding: np.ndarray) -> Document | None:
        edited = await self._transaction(
            lambda con: mem.edit_memory(con, self._log, namespace, doc_id, text, embedding))
        await self._scrub()
        return edited

    async def delete_memory(self, namespace: str, doc_id: int) -> bool:
        deleted = await self._transaction(lambda con: mem.delete_memory(con, self._log, namespace, doc_id))
        await self._scrub()
        return deleted
