"""The memory API's operations and turn imports on the SQLite store, as transactions on its connection.

Kept apart from `sqlite_turns.py` (the turn lifecycle); `SqliteTurnStore` runs these through its one thread.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence

import numpy as np

from server.protocols import Document, ImportedTurn, SessionInfo, TurnRecord

LogWriter = Callable[[sqlite3.Connection, str, str, Sequence[int]], None]
_MEMORY_COLUMNS = "id, namespace, text, session, created, turn_id"
TITLE_CHARS = 80


def _memory(row) -> Document:
    return Document(row[0], row[1], row[2], None, row[3], row[4], row[5])


def list_memories(con: sqlite3.Connection, namespace: str, limit: int, offset: int) -> list[Document]:
    rows = con.execute(f"SELECT {_MEMORY_COLUMNS} FROM documents WHERE namespace = ? "
                       "ORDER BY created DESC, id DESC LIMIT ? OFFSET ?", (namespace, limit, offset))
    return [_memory(r) for r in rows]


def get_memory(con: sqlite3.Connection, namespace: str, doc_id: int) -> Document | None:
    row = con.execute(f"SELECT {_MEMORY_COLUMNS} FROM documents WHERE id = ? AND namespace = ?",
                      (doc_id, namespace)).fetchone()
    return _memory(row) if row else None


def add_memory(con: sqlite3.Connection, log: LogWriter, namespace: str, text: str, embedding: np.ndarray,
               created: float, session: str | None) -> Document:
    vector = np.ascontiguousarray(embedding, dtype=np.float32)
    cur = con.execute("INSERT INTO documents (namespace, session, text, embedding, created) VALUES (?, ?, ?, ?, ?)",
                      (namespace, session, text, vector.tobytes(), created))
    log(con, namespace, "add", [cur.lastrowid])
    return Document(cur.lastrowid, namespace, text, vector, session, created)


def edit_memory(con: sqlite3.Connection, log: LogWriter, namespace: str, doc_id: int, text: str,
                embedding: np.ndarray) -> Document | None:
    old = get_memory(con, namespace, doc_id)
    if old is None:
        return None
    vector = np.ascontiguousarray(embedding, dtype=np.float32)
    con.execute("UPDATE documents SET text = ?, embedding = ? WHERE id = ?", (text, vector.tobytes(), doc_id))
    # an index drops the old words and vector on the del, and takes the new ones on the add
    log(con, namespace, "del", [doc_id])
    log(con, namespace, "add", [doc_id])
    return Document(doc_id, namespace, text, vector, old.session, old.created, old.turn)


def delete_memory(con: sqlite3.Connection, log: LogWriter, namespace: str, doc_id: int) -> bool:
    if con.execute("DELETE FROM documents WHERE id = ? AND namespace = ?", (doc_id, namespace)).rowcount == 0:
        return False
    log(con, namespace, "del", [doc_id])
    return True


def import_turns(con: sqlite3.Connection, session: str, namespace: str,
                 turns: Sequence[ImportedTurn]) -> list[TurnRecord]:
    row = con.execute("SELECT namespace, next_seq FROM sessions WHERE id = ?", (session,)).fetchone()
    if row is None:
        seq = 1
        con.execute("INSERT INTO sessions (id, namespace, created, next_seq) VALUES (?, ?, ?, 1)",
                    (session, namespace, time.time()))
    elif row[0] != namespace:
        raise PermissionError(f"session {session!r} belongs to another user")
    else:
        seq = row[1]
    records = []
    for turn in turns:
        record = TurnRecord(uuid.uuid4().hex, session, seq, turn.user_text, turn.response, "complete", turn.created,
                            turn.user_name, turn.assistant_name)
        con.execute("INSERT INTO turns (id, session, seq, user_text, response, status, created, completed, "
                    "user_name, assistant_name) VALUES (?, ?, ?, ?, ?, 'complete', ?, ?, ?, ?)",
                    (record.id, session, seq, turn.user_text, turn.response, turn.created, turn.created,
                     turn.user_name, turn.assistant_name))
        records.append(record)
        seq += 1
    con.execute("UPDATE sessions SET next_seq = ? WHERE id = ?", (seq, session))
    return records


def supersede_turns(con: sqlite3.Connection, log: LogWriter, session: str, turn_ids: Sequence[str]) -> int:
    removed = 0
    for turn_id in turn_ids:
        row = con.execute("SELECT status FROM turns WHERE id = ? AND session = ?", (turn_id, session)).fetchone()
        if row is None or row[0] == "pending":  # a running turn is its request's to finish
            continue
        docs = con.execute("SELECT id, namespace FROM documents WHERE turn_id = ?", (turn_id,)).fetchall()
        for doc_id, namespace in docs:
            log(con, namespace, "del", [doc_id])
        con.execute("DELETE FROM documents WHERE turn_id = ?", (turn_id,))
        con.execute("DELETE FROM turns WHERE id = ?", (turn_id,))
        removed += len(docs)
    return removed


def list_sessions(con: sqlite3.Connection, namespace: str, limit: int, offset: int) -> list[SessionInfo]:
    rows = con.execute(
        """SELECT s.id, s.created, COALESCE(MAX(t.created), s.created) AS updated, COUNT(t.id),
                  COALESCE(s.title, (SELECT user_text FROM turns f WHERE f.session = s.id ORDER BY f.seq LIMIT 1))
           FROM sessions s LEFT JOIN turns t ON t.session = s.id WHERE s.namespace = ?
           GROUP BY s.id ORDER BY updated DESC, s.id LIMIT ? OFFSET ?""", (namespace, limit, offset))
    return [SessionInfo(r[0], r[1], r[2], r[3], (r[4] or "")[:TITLE_CHARS]) for r in rows]


# Which embedder wrote the documents' vectors (server/memory/embedders.py keeps them from mixing).
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def recorded_embedder(con: sqlite3.Connection) -> tuple[str | None, int | None]:
    """The recorded embedder id, and the width of a stored vector (None when there is no document)."""
    con.execute(_META)
    row = con.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
    blob = con.execute("SELECT embedding FROM documents LIMIT 1").fetchone()
    return (row[0] if row else None), (len(blob[0]) // 4 if blob else None)


def record_embedder(con: sqlite3.Connection, embedder_id: str) -> None:
    con.execute(_META)
    con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('embedder', ?)", (embedder_id,))


def documents_after(con: sqlite3.Connection, after_id: int, limit: int) -> list[tuple[int, str]]:
    return con.execute("SELECT id, text FROM documents WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()


def replace_embeddings(con: sqlite3.Connection, rows: Sequence[tuple[int, np.ndarray]]) -> None:
    """New vectors for the same texts; no log entries: indexes are rebuilt (their snapshots name the old model)."""
    con.executemany("UPDATE documents SET embedding = ? WHERE id = ?",
                    [(np.ascontiguousarray(v, dtype=np.float32).tobytes(), doc_id) for doc_id, v in rows])
