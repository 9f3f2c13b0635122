"""`python -m trainer --from-server-db DATA_DIR --out chats.jsonl [--user NAME]`: the chat server's stored
conversations as training chats.

Each of the user's chats becomes one `{"messages": [...]}` record of its completed turns in order (turns that
were interrupted, failed or are still running are left out, as are empty sides of imported turns). The
database is opened read-only, so this runs safely beside a live server. The trainer never imports the
server: the few tables read here (`sessions`, `turns` in DATA_DIR/chat.sqlite3) are the server's storage
contract, kept by server/store/sqlite_turns.py.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from common.files import atomic_write
from trainer.errors import TrainerError

DB_FILE = "chat.sqlite3"
LOCAL_USER = "local"  # the user of a server without SERVER_TOKENS


def _connect(data_dir: Path) -> sqlite3.Connection:
    db = data_dir / DB_FILE
    if not db.is_file():
        raise TrainerError(f"--from-server-db {data_dir}: no {DB_FILE} there (give the server's DATA_DIR; "
                           f"STORE=redis keeps its turns in Redis instead)")
    try:
        return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise TrainerError(f"cannot open {db}: {exc}") from exc


def user_chats(data_dir: str | Path, user: str = LOCAL_USER) -> list[list[dict[str, str]]]:
    """The user's chats, oldest first, each as a message list of its completed turns."""
    data_dir = Path(data_dir).expanduser()
    con = _connect(data_dir)
    try:
        rows = con.execute(
            "SELECT t.session, t.user_text, t.response FROM turns t JOIN sessions s ON s.id = t.session "
            "WHERE s.namespace = ? AND t.status = 'complete' ORDER BY s.created, t.session, t.seq",
            (f"user:{user}",)).fetchall()
        users = [r[0] for r in con.execute(
            "SELECT DISTINCT substr(namespace, 6) FROM sessions WHERE namespace LIKE 'user:%' ORDER BY 1")]
    except sqlite3.Error as exc:
        raise TrainerError(f"cannot read {data_dir / DB_FILE}: {exc}") from exc
    finally:
        con.close()
    chats: dict[str, list[dict[str, str]]] = {}
    for session, user_text, response in rows:
        messages = chats.setdefault(session, [])
        if user_text:
            messages.append({"role": "user", "content": user_text})
        if response:
            messages.append({"role": "assistant", "content": response})
    found = [m for m in chats.values() if any(x["role"] == "assistant" for x in m)]
    if not found:
        others = f"; users with chats there: {', '.join(users)}" if users else ""
        raise TrainerError(f"no completed turns of user {user!r} in {data_dir / DB_FILE}{others}")
    return found


def export_chats(data_dir: str | Path, out: str | Path, user: str = LOCAL_USER) -> int:
    """Write the user's chats as messages JSONL (what `--data` reads); return how many."""
    chats = user_chats(data_dir, user)
    text = "".join(json.dumps({"messages": m}, ensure_ascii=False) + "\n" for m in chats)
    atomic_write(Path(out), text.encode("utf-8"))
    return len(chats)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer --from-server-db",
                                     description="Export a user's chats from the server's DATA_DIR as messages "
                                                 "JSONL for --data.")
    parser.add_argument("--from-server-db", required=True, metavar="DATA_DIR", help="the chat server's DATA_DIR")
    parser.add_argument("--out", required=True, help="the JSONL file to write")
    parser.add_argument("--user", default=LOCAL_USER,
                        help=f"whose chats (default {LOCAL_USER!r}, the user of a server without SERVER_TOKENS)")
    args = parser.parse_args(argv)
    count = export_chats(args.from_server_db, args.out, args.user)
    print(f"wrote {count} chats of user {args.user!r} to {args.out}", file=sys.stderr)
    return 0
