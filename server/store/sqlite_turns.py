"""TurnStore on SQLite: the embedded source of truth for turns, documents and the flush watermark.

Documents and the watermark move in one transaction, and every document change is appended to
`doc_log`, from which vector indexes are derived; so a crash at any point neither loses nor
duplicates a memory.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import aiosqlite
import numpy as np

from server.protocols import KNOWLEDGE_NAMESPACE, Document, FlushPlan, LogEntry, TurnRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    created REAL NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1,
    flushed_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS turns (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    user_text TEXT NOT NULL,
    response TEXT,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    completed REAL,
    UNIQUE (session, seq)
);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    session TEXT,
    turn_id TEXT UNIQUE,
    source TEXT,
    text TEXT NOT NULL,
    embedding BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_session ON documents (session);
CREATE INDEX IF NOT EXISTS documents_source ON documents (source);
CREATE TABLE IF NOT EXISTS doc_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    doc_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS doc_log_namespace ON doc_log (namespace, seq);
CREATE TABLE IF NOT EXISTS flushes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    from_seq INTEGER NOT NULL,
    to_seq INTEGER NOT NULL,
    documents INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS knowledge (
    source TEXT PRIMARY KEY,
    digest TEXT NOT NULL
);
"""

_TURN_COLUMNS = "id, session, seq, user_text, response, status, created"


def _turn(row) -> TurnRecord:
    return TurnRecord(id=row[0], session=row[1], seq=row[2], user_text=row[3], response=row[4],
                      status=row[5], created=row[6])


def _vec(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


class SqliteTurnStore:
    """One aiosqlite connection (its own thread), WAL mode, every write in an IMMEDIATE transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a turn acknowledged to the client survives power loss, not only a killed process.
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.executescript(SCHEMA)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("SqliteTurnStore used before start()")
        return self._db

    async def _transaction(self, work):
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            result = await work(self.db)
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        await self.db.execute("COMMIT")
        return result

    async def begin_turn(self, session: str, namespace: str, text: str) -> TurnRecord:
        now = time.time()
        turn_id = uuid.uuid4().hex

        async def work(db):
            async with db.execute("SELECT namespace, next_seq FROM sessions WHERE id = ?", (session,)) as cur:
                row = await cur.fetchone()
            if row is None:
                seq = 1
                await db.execute("INSERT INTO sessions (id, namespace, created, next_seq) VALUES (?, ?, ?, 2)",
                                 (session, namespace, now))
            else:
                if row[0] != namespace:
                    raise PermissionError(f"session {session!r} belongs to another user")
                seq = row[1]
                await db.execute("UPDATE sessions SET next_seq = ? WHERE id = ?", (seq + 1, session))
            await db.execute(
                "INSERT INTO turns (id, session, seq, user_text, status, created) VALUES (?, ?, ?, ?, 'pending', ?)",
                (turn_id, session, seq, text, now))
            return TurnRecord(turn_id, session, seq, text, None, "pending", now)

        return await self._transaction(work)

    async def finish_turn(self, turn_id: str, response: str, status: str) -> None:
        await self.db.execute("UPDATE turns SET response = ?, status = ?, completed = ? WHERE id = ?",
                              (response, status, time.time(), turn_id))

    async def _turns(self, sql: str, args) -> list[TurnRecord]:
        async with self.db.execute(sql, args) as cur:
            return [_turn(r) for r in await cur.fetchall()]

    async def buffer(self, session: str) -> list[TurnRecord]:
        return await self._turns(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE session = ? AND status = 'complete' AND seq > "
            "(SELECT flushed_seq FROM sessions WHERE id = ?) ORDER BY seq", (session, session))

    async def history(self, session: str) -> list[TurnRecord]:
        return await self._turns(f"SELECT {_TURN_COLUMNS} FROM turns WHERE session = ? ORDER BY seq", (session,))

    async def session_namespace(self, session: str) -> str | None:
        async with self.db.execute("SELECT namespace FROM sessions WHERE id = ?", (session,)) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def plan_flush(self, session: str, every: int) -> FlushPlan | None:
        async with self.db.execute("SELECT namespace, flushed_seq FROM sessions WHERE id = ?", (session,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        turns = await self.buffer(session)
        if len(turns) < every:
            return None
        return FlushPlan(session=session, namespace=row[0], after_seq=row[1], turns=tuple(turns))

    async def commit_flush(self, plan: FlushPlan, embeddings: np.ndarray) -> list[Document] | None:
        now = time.time()

        async def work(db):
            async with db.execute("SELECT flushed_seq FROM sessions WHERE id = ?", (plan.session,)) as cur:
                row = await cur.fetchone()
            if row is None or row[0] != plan.after_seq:
                return None  # someone else flushed (or forgot) this session meanwhile
            docs = []
            for turn, vector in zip(plan.turns, embeddings, strict=True):
                text = turn.pair_text
                vector = np.ascontiguousarray(vector, dtype=np.float32)
                cur = await db.execute(
                    "INSERT INTO documents (namespace, session, turn_id, text, embedding, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (plan.namespace, plan.session, turn.id, text, vector.tobytes(), now))
                doc_id = cur.lastrowid
                await db.execute("INSERT INTO doc_log (namespace, op, doc_id) VALUES (?, 'add', ?)",
                                 (plan.namespace, doc_id))
                docs.append(Document(doc_id, plan.namespace, text, vector, plan.session))
            await db.execute("UPDATE sessions SET flushed_seq = ? WHERE id = ?", (plan.upto_seq, plan.session))
            await db.execute(
                "INSERT INTO flushes (session, from_seq, to_seq, documents, at) VALUES (?, ?, ?, ?, ?)",
                (plan.session, plan.after_seq, plan.upto_seq, len(docs), now))
            return docs

        return await self._transaction(work)

    async def sessions_needing_flush(self, every: int) -> list[str]:
        sql = """SELECT s.id FROM sessions s JOIN turns t ON t.session = s.id
                 WHERE t.status = 'complete' AND t.seq > s.flushed_seq
                 GROUP BY s.id HAVING COUNT(*) >= ?"""
        async with self.db.execute(sql, (every,)) as cur:
            return [r[0] for r in await cur.fetchall()]

    async def forget_session(self, session: str) -> int:
        async def work(db):
            async with db.execute("SELECT id, namespace FROM documents WHERE session = ?", (session,)) as cur:
                docs = await cur.fetchall()
            await db.executemany("INSERT INTO doc_log (namespace, op, doc_id) VALUES (?, 'del', ?)",
                                 [(ns, doc_id) for doc_id, ns in docs])
            await db.execute("DELETE FROM documents WHERE session = ?", (session,))
            await db.execute("DELETE FROM turns WHERE session = ?", (session,))
            await db.execute("DELETE FROM flushes WHERE session = ?", (session,))
            await db.execute("DELETE FROM sessions WHERE id = ?", (session,))
            return len(docs)

        return await self._transaction(work)

    async def log_since(self, namespace: str, cursor: int | str | None) -> list[LogEntry]:
        sql = """SELECT l.seq, l.op, l.doc_id, d.text, d.embedding, d.session FROM doc_log l
                 LEFT JOIN documents d ON d.id = l.doc_id AND l.op = 'add'
                 WHERE l.namespace = ? AND l.seq > ? ORDER BY l.seq"""
        async with self.db.execute(sql, (namespace, int(cursor or 0))) as cur:
            rows = await cur.fetchall()
        entries = []
        for seq, op, doc_id, text, blob, session in rows:
            if op == "add" and text is None:
                # added then deleted: a 'del' entry for it follows; still advance the cursor past it
                entries.append(LogEntry(seq, "del", Document(doc_id, namespace, "")))
                continue
            vector = _vec(blob) if blob is not None else None
            entries.append(LogEntry(seq, op, Document(doc_id, namespace, text or "", vector, session)))
        return entries

    async def namespaces(self) -> list[str]:
        async with self.db.execute("SELECT DISTINCT namespace FROM doc_log") as cur:
            return [r[0] for r in await cur.fetchall()]

    async def replace_knowledge(self, source: str, digest: str, chunks: Sequence[str],
                                embeddings: np.ndarray) -> bool:
        now = time.time()

        async def work(db):
            async with db.execute("SELECT digest FROM knowledge WHERE source = ?", (source,)) as cur:
                row = await cur.fetchone()
            if row is not None and row[0] == digest:
                return False
            await self._delete_knowledge(db, source)
            for text, vector in zip(chunks, embeddings, strict=True):
                cur = await db.execute(
                    "INSERT INTO documents (namespace, source, text, embedding, created) VALUES (?, ?, ?, ?, ?)",
                    (KNOWLEDGE_NAMESPACE, source, text, np.asarray(vector, np.float32).tobytes(), now))
                await db.execute("INSERT INTO doc_log (namespace, op, doc_id) VALUES (?, 'add', ?)",
                                 (KNOWLEDGE_NAMESPACE, cur.lastrowid))
            await db.execute("INSERT OR REPLACE INTO knowledge (source, digest) VALUES (?, ?)", (source, digest))
            return True

        return await self._transaction(work)

    @staticmethod
    async def _delete_knowledge(db, source: str) -> None:
        async with db.execute("SELECT id FROM documents WHERE source = ?", (source,)) as cur:
            ids = [r[0] for r in await cur.fetchall()]
        await db.executemany("INSERT INTO doc_log (namespace, op, doc_id) VALUES (?, 'del', ?)",
                             [(KNOWLEDGE_NAMESPACE, i) for i in ids])
        await db.execute("DELETE FROM documents WHERE source = ?", (source,))
        await db.execute("DELETE FROM knowledge WHERE source = ?", (source,))

    async def knowledge_sources(self) -> dict[str, str]:
        async with self.db.execute("SELECT source, digest FROM knowledge") as cur:
            return dict(await cur.fetchall())

    async def drop_knowledge(self, source: str) -> None:
        await self._transaction(lambda db: self._delete_knowledge(db, source))

    async def interrupt_pending(self) -> int:
        cur = await self.db.execute(
            "UPDATE turns SET status = 'interrupted', response = COALESCE(response, ''), completed = ? "
            "WHERE status = 'pending'", (time.time(),))
        return cur.rowcount

    async def flush_count(self, session: str) -> int:
        async with self.db.execute("SELECT COUNT(*) FROM flushes WHERE session = ?", (session,)) as cur:
            return (await cur.fetchone())[0]
