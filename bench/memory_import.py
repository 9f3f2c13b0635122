"""How fast a user's history becomes memories: a ChatGPT export and one long conversation, through the API.

A real server (embedded store, default settings: MiniLM unless --embedder, background linger 0.5 s) on
127.0.0.1, fresh for each measurement. The chats are the bench's own conversations (tests/data/memory_recall/,
or --data) cut into chats of 1-6 turns, as a ChatGPT export holds many short chats:
  export         the whole export in one `POST /import/chatgpt` (the server stores every chat, then flushes them
                 together: many chats per embedding call)
  chat by chat   the same chats, one `POST /sessions/{id}/import` each: one flush per chat, each waiting out the
                 flush lane's linger, which is how the export was imported before (the baseline)
  one long chat  one conversation's turns (--long, default 2,000) in a single `POST /sessions/{id}/import`
Each answers once its turns are committed and retrievable; the figures are turns per second and the ratio.

    python bench/memory_import.py                # ~2 minutes on a quiet 2-core machine
    python bench/memory_import.py --chats 100 --embedder static
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
for path in (str(BENCH.parent), str(BENCH)):
    if path not in sys.path:
        sys.path.insert(0, path)

from memory_api import _settings  # noqa: E402
from memory_recall import DATA, load  # noqa: E402


def chats(turns: list[dict], count: int, seed: int = 0) -> list[list[dict]]:
    """`count` chats of 1-6 consecutive turns each, taken in order from `turns` (wrapping around)."""
    rng, out, at = random.Random(seed), [], 0
    for _ in range(count):
        size = rng.randint(1, 6)
        out.append([turns[(at + i) % len(turns)] for i in range(size)])
        at += size
    return out


def export(conversations: list[list[dict]]) -> bytes:
    """The chats as a ChatGPT data export's conversations.json: one branch of user and assistant messages each."""
    out = []
    for n, turns in enumerate(conversations):
        mapping = {"root": {"id": "root", "message": None, "parent": None, "children": []}}
        parent, when = "root", 1_700_000_000 + n * 3600
        for i, turn in enumerate(turns):
            for role in ("user", "assistant"):
                node, when = f"{n}-{i}-{role}", when + 30
                mapping[node] = {"id": node, "parent": parent, "children": [], "message": {
                    "id": node, "author": {"role": role}, "create_time": when, "metadata": {},
                    "content": {"content_type": "text", "parts": [turn[role]]}}}
                mapping[parent]["children"].append(node)
                parent = node
        out.append({"title": f"chat {n}", "conversation_id": f"bench-{n}", "current_node": parent, "mapping": mapping})
    return json.dumps(out).encode()


def _body(turns: list[dict]) -> dict:
    return {"turns": [{"user": t["user"], "assistant": t["assistant"]} for t in turns]}


def timed(embedder: str, send) -> float:
    """Seconds `send(api)` takes on a fresh server, its model already loaded and warm."""
    from server.logs import configure_logging
    from tests.support.servers import ServerThread

    configure_logging("WARNING", "console")
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerThread(_settings(Path(tmp), embedder)).start()
        try:
            with httpx.Client(base_url=server.url, timeout=3600) as api:
                api.post("/memories", json={"text": "warm-up"}).raise_for_status()
                started = time.perf_counter()
                send(api)
                return time.perf_counter() - started
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=300, help="chats in the export")
    parser.add_argument("--long", type=int, default=2000, help="turns of the one long conversation")
    parser.add_argument("--embedder", choices=("minilm", "static"), default="minilm")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    turns = [t for _, conv, _ in load(args.data, None) for t in conv]
    cut = chats(turns, args.chats)
    count = sum(len(c) for c in cut)

    def by_export(api):
        reply = api.post("/import/chatgpt", content=export(cut))
        reply.raise_for_status()
        assert len(reply.json()["sessions"]) == len(cut)

    def by_chat(api):
        for n, chat in enumerate(cut):
            api.post(f"/sessions/bench-{n}/import", json=_body(chat)).raise_for_status()

    long = [turns[i % len(turns)] for i in range(args.long)]

    def one_long(api):
        assert len(api.post("/sessions/long/import", json=_body(long)).json()["turns"]) == len(long)

    print(f"{len(cut)} chats, {count} turns ({args.embedder}):")
    whole, each = timed(args.embedder, by_export), timed(args.embedder, by_chat)
    print(f"  export         {whole:7.1f} s  {count / whole:7.0f} turns/s  {each / whole:5.1f}× the baseline")
    print(f"  chat by chat   {each:7.1f} s  {count / each:7.0f} turns/s  (baseline)")
    seconds = timed(args.embedder, one_long)
    print(f"one chat of {len(long)} turns in one call: {seconds:.1f} s, {len(long) / seconds:.0f} turns/s")


if __name__ == "__main__":
    main()
