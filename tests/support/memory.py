"""Reading a server's SQLite store directly, as an operator would, to check what it holds."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx

from server.protocols import TurnRecord


def documents(data_dir: Path, session: str | None = None) -> list[dict]:
    con = sqlite3.connect(f"file:{Path(data_dir) / 'chat.sqlite3'}?mode=ro", uri=True)
    try:
        sql = "SELECT d.id, d.namespace, d.session, d.turn_id, d.text, t.seq FROM documents d " \
              "LEFT JOIN turns t ON t.id = d.turn_id"
        rows = con.execute(sql + (" WHERE d.session = ?" if session else "") + " ORDER BY d.id",
                           (session,) if session else ()).fetchall()
    finally:
        con.close()
    return [dict(zip(("id", "namespace", "session", "turn_id", "text", "seq"), r, strict=True)) for r in rows]


def flushes(data_dir: Path, session: str) -> list[tuple[int, int, int]]:
    con = sqlite3.connect(f"file:{Path(data_dir) / 'chat.sqlite3'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT from_seq, to_seq, documents FROM flushes WHERE session = ? ORDER BY id",
                           (session,)).fetchall()
    finally:
        con.close()


def metric(base_url: str, name: str) -> float:
    for line in httpx.get(f"{base_url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for_metric(base_url: str, name: str, at_least: float, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = metric(base_url, name)
        if value >= at_least:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not reach {at_least}")


def wait_for_documents(data_dir: Path, session: str, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        docs = documents(data_dir, session)
        if len(docs) >= count:
            return docs
        time.sleep(0.1)
    raise TimeoutError(f"session {session} did not reach {count} documents")


def memory_texts(user: str | None, response: str | None, user_name: str | None = None,
                 assistant_name: str | None = None) -> list[str]:
    """The memories a completed turn becomes, as the store's flush makes them (TurnRecord.memory_texts: one per
    side that said something, led by its speaker, a long one in pieces; a reply of nothing or of only
    whitespace, which a tiny random model may give, becomes none)."""
    return TurnRecord("", "", 0, user or "", response, "complete", 0.0, user_name, assistant_name).memory_texts


def history_memories(history: list[dict]) -> list[tuple[int, str]]:
    """(seq, text) of the memories the completed turns of a `/sessions/{id}/history` answer become, in order."""
    return [(t["seq"], text) for t in history if t["status"] == "complete"
            for text in memory_texts(t["user"], t["response"])]
