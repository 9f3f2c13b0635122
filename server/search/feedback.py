"""Corrections of the search decision collected from use: "this turn should (not) have searched".

Each one is a line of <DATA_DIR>/search/feedback.jsonl in the labelled-set format (text, search, lang, kind,
context), plus where it came from (turn, session, namespace, time), so that `python -m server.search.train`
reads it as it reads the shipped set: the user's label wins for that message. A second correction of the same
turn is appended too; the later line wins when training.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import orjson

from server.protocols import TurnRecord
from server.search.features import language

FEEDBACK_FILE = Path("search") / "feedback.jsonl"


def feedback_row(turn: TurnRecord, previous: TurnRecord | None, should_search: bool, namespace: str) -> dict:
    row: dict = {"text": turn.user_text, "search": should_search, "lang": language(turn.user_text),
                 "kind": "feedback"}
    if previous is not None:
        row["context"] = {"user": previous.user_text, "bot": previous.response or ""}
    return row | {"turn": turn.id, "session": turn.session, "namespace": namespace, "time": round(time.time(), 3)}


class FeedbackLog:
    """Appends one line per correction; appends from one process are serialised, and each is one write()."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = asyncio.Lock()

    async def append(self, row: dict) -> None:
        line = orjson.dumps(row) + b"\n"
        async with self._lock:
            await asyncio.to_thread(self._write, line)

    def _write(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: replicas sharing DATA_DIR each add whole lines
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
