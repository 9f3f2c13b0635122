"""The embedded store's tables, and how a database of an earlier release is brought to them."""

from __future__ import annotations

import sqlite3

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
    user_name TEXT,
    assistant_name TEXT,
    UNIQUE (session, seq)
);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    session TEXT,
    turn_id TEXT,
    source TEXT,
    text TEXT NOT NULL,
    embedding BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_session ON documents (session);
CREATE INDEX IF NOT EXISTS documents_turn ON documents (turn_id);
CREATE INDEX IF NOT EXISTS documents_source ON documents (source);
CREATE INDEX IF NOT EXISTS documents_namespace ON documents (namespace, created);
CREATE INDEX IF NOT EXISTS sessions_namespace ON sessions (namespace);
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

DOCUMENT_INDEXES = ("documents_session", "documents_turn", "documents_source", "documents_namespace")
# Columns added since the first release: (table, column, type), added to an older database at start.
ADDED_COLUMNS = (("turns", "user_name", "TEXT"), ("turns", "assistant_name", "TEXT"), ("turns", "details", "TEXT"),
                 ("sessions", "title", "TEXT"))


def create_or_migrate(con: sqlite3.Connection) -> None:
    """Create what is missing, and bring a database of an earlier release to this schema."""
    con.executescript(SCHEMA)
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 'documents'").fetchone()[0]
    if "turn_id TEXT UNIQUE" in sql:  # one memory per turn then; one per utterance now
        con.executescript("BEGIN IMMEDIATE; ALTER TABLE documents RENAME TO documents_old;"
                          + "".join(f"DROP INDEX IF EXISTS {index};" for index in DOCUMENT_INDEXES) + SCHEMA
                          + "INSERT INTO documents SELECT * FROM documents_old; DROP TABLE documents_old; COMMIT;")
    for table, column, kind in ADDED_COLUMNS:
        if column not in {r[1] for r in con.execute(f"PRAGMA table_info({table})")}:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    if con.execute("PRAGMA user_version").fetchone()[0] < 1:
        # Turns once stored a copy of each recalled memory's text, which outlived the memory's edit or
        # deletion; now they name memories by id (server.turn_details).
        con.executescript(f"BEGIN IMMEDIATE; {_MEMORY_IDS_ONLY}; PRAGMA user_version = 1; COMMIT;")


_MEMORY_IDS_ONLY = """
UPDATE turns SET details = json_set(details, '$.memories',
    (SELECT json_group_array(json_extract(value, '$.id')) FROM json_each(details, '$.memories')))
WHERE details IS NOT NULL AND json_valid(details) AND json_type(details, '$.memories') = 'array'
  AND EXISTS (SELECT 1 FROM json_each(details, '$.memories') WHERE type = 'object')
"""
