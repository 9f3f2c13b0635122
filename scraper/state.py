"""Crawl state in SQLite under --out: every discovered URL with its status and parsed result.

Each page's result is committed as soon as it is known (several finished pages may share one
transaction), in WAL mode with full sync, so a crash or SIGKILL loses at most pages that were
still in flight; they are simply fetched again on --resume.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scraper.discovery import WorkLink

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pages (
    url        TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL UNIQUE,
    link_title TEXT NOT NULL,
    volume     TEXT,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'done', 'missing', 'failed')),
    kind       TEXT CHECK (kind IN ('work', 'stub')),
    title      TEXT,
    text       TEXT,
    canonical  TEXT,
    note       TEXT,
    transient  INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    attempts   INTEGER NOT NULL DEFAULT 0,
    updated_at REAL
);
CREATE INDEX IF NOT EXISTS pages_todo ON pages (status, seq);
"""


class StateError(RuntimeError):
    """The state file cannot be used as asked (exists without --resume, other index, newer schema)."""


@dataclass(frozen=True, slots=True)
class PageResult:
    url: str
    status: str  # done | missing | failed
    kind: str | None = None  # work | stub, for done
    title: str | None = None
    text: str | None = None
    canonical: str | None = None
    note: str | None = None  # stub reason or failure reason
    transient: bool = False
    http_status: int | None = None
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class Todo:
    url: str
    seq: int


@dataclass(frozen=True, slots=True)
class Counts:
    total: int = 0
    pending: int = 0
    works: int = 0
    stubs: int = 0
    missing: int = 0
    failed_transient: int = 0
    failed_permanent: int = 0

    @property
    def done(self) -> int:
        return self.works + self.stubs

    @property
    def settled(self) -> int:
        """Pages with a final answer in this state (nothing left to retry)."""
        return self.works + self.stubs + self.missing + self.failed_permanent


@dataclass(frozen=True, slots=True)
class WorkRow:
    seq: int
    url: str
    title: str
    text: str
    canonical: str
    volume: str | None


class State:
    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @staticmethod
    def exists(path: Path) -> bool:
        return path.is_file() and path.stat().st_size > 0

    @classmethod
    def open(cls, path: Path) -> State:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The writer commits from a worker thread; only one thread touches the connection at a time.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            version = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if version is None:
                conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif version[0] != SCHEMA_VERSION:
                raise StateError(f"{path}: state schema {version[0]} is not {SCHEMA_VERSION}; use --force")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StateError(f"{path}: not a usable crawl state ({exc}); use --force to start over") from exc
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    @staticmethod
    def remove(path: Path) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        self._conn.close()

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def index_url(self) -> str | None:
        return self.meta("index_url")

    @property
    def discovered(self) -> bool:
        return self.meta("discovered") == "1"

    def save_discovery(self, index_url: str, links: Iterable[WorkLink]) -> None:
        """All links and the 'discovered' mark in one transaction: a crash leaves none or all."""
        now = time.time()
        rows = [
            (
                link.url,
                seq,
                link.title,
                link.volume,
                "missing" if link.missing else "pending",
                "red link (page does not exist)" if link.missing else None,
                now,
            )
            for seq, link in enumerate(links)
        ]
        with self._transaction():
            self._conn.execute("DELETE FROM pages")
            self._conn.executemany(
                "INSERT INTO pages (url, seq, link_title, volume, status, note, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('index_url', ?)", (index_url,))
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('discovered', '1')")

    def todo(self) -> list[Todo]:
        rows = self._conn.execute(
            "SELECT url, seq FROM pages WHERE status='pending' OR (status='failed' AND transient=1) ORDER BY seq"
        ).fetchall()
        return [Todo(url, seq) for url, seq in rows]

    def commit(self, results: Iterable[PageResult]) -> None:
        now = time.time()
        rows = [
            (
                r.status,
                r.kind,
                r.title,
                r.text,
                r.canonical,
                r.note,
                int(r.transient),
                r.http_status,
                r.attempts,
                now,
                r.url,
            )
            for r in results
        ]
        with self._transaction():
            self._conn.executemany(
                "UPDATE pages SET status=?, kind=?, title=?, text=?, canonical=?, note=?, transient=?,"
                " http_status=?, attempts=attempts+?, updated_at=? WHERE url=?",
                rows,
            )

    def counts(self) -> Counts:
        row = self._conn.execute(
            """SELECT COUNT(*),
                      COALESCE(SUM(status='pending'), 0),
                      COALESCE(SUM(status='done' AND kind='work'), 0),
                      COALESCE(SUM(status='done' AND kind='stub'), 0),
                      COALESCE(SUM(status='missing'), 0),
                      COALESCE(SUM(status='failed' AND transient=1), 0),
                      COALESCE(SUM(status='failed' AND transient=0), 0)
               FROM pages"""
        ).fetchone()
        return Counts(*row)

    def works(self) -> Iterator[WorkRow]:
        rows = self._conn.execute(
            "SELECT seq, url, title, text, canonical, volume FROM pages"
            " WHERE status='done' AND kind='work' ORDER BY seq"
        )
        for row in rows:
            yield WorkRow(*row)

    def failures(self, limit: int = 10) -> list[tuple[str, str, bool]]:
        rows = self._conn.execute(
            "SELECT url, COALESCE(note, ''), transient FROM pages WHERE status='failed' ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [(url, note, bool(transient)) for url, note, transient in rows]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
