"""Crash test: conversations against a real server that is SIGKILLed at random moments, over and over.

Drives N conversations (each turn a unique message) while killing `python -m server` with SIGKILL at
random moments K times, restarting it each time; then checks, in the server's own SQLite store, that
every acknowledged turn (one whose `start` frame arrived, or one of an import answered 200: an importer
imports past turns alongside) is stored exactly once and that every
flush happened exactly once (contiguous watermarks, exactly one memory per side that said something of
each flushed turn, nothing left unflushed).

    .venv/bin/python scripts/crash_test.py --model DIR [--conversations 20] [--kills 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from tests.support.client import connect
from tests.support.memory import memory_texts
from tests.support.servers import ServerProcess

FLUSH_EVERY = 5


async def conversation(server: ServerProcess, index: int, acked: dict[str, str], stop: asyncio.Event,
                       attempts: list[int]) -> None:
    """Keep chatting; reconnect whenever the server dies; remember every acknowledged turn."""
    n = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            try:
                client = await connect(http, server.ws_url)
                while not stop.is_set():
                    text = f"conversation {index} message {n}"
                    n += 1
                    attempts[0] += 1
                    await client.send({"type": "chat", "session": f"crash-{index}", "text": text})
                    while True:
                        frame = await client.receive(timeout=60)
                        if frame["type"] == "start":
                            acked[frame["turn"]] = text
                        if frame["type"] in ("end", "error"):
                            break
                    await asyncio.sleep(random.uniform(0, 0.2))
            except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError):
                await asyncio.sleep(0.3)


async def importer(server: ServerProcess, acked: dict[str, str], stop: asyncio.Event, imported: list[int]) -> None:
    """Keep importing small batches of past turns (POST /sessions/{id}/import, each message unique) into chats
    of their own; remember every turn of every import the server acknowledged (answered 200)."""
    n = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            batch = [{"user": f"import {n} message {i}", "assistant": f"imported reply {n}.{i}"} for i in range(3)]
            url = f"{server.url}/sessions/imported-{n % 4}/import"
            n += 1
            try:
                async with http.post(url, json={"turns": batch}, timeout=aiohttp.ClientTimeout(total=60)) as reply:
                    if reply.status == 200:
                        turn_ids = (await reply.json())["turns"]
                        acked.update(zip(turn_ids, (t["user"] for t in batch), strict=True))
                        imported[0] += len(turn_ids)
            except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError):
                await asyncio.sleep(0.3)
            await asyncio.sleep(random.uniform(0, 0.3))


def completed_memories(con: sqlite3.Connection, session: str, after: int, upto: int) -> Counter:
    """(turn id, text) of every memory the completed turns after..upto of the session must have become."""
    rows = con.execute("SELECT id, user_text, response, user_name, assistant_name FROM turns WHERE session = ? "
                       "AND seq > ? AND seq <= ? AND status = 'complete'", (session, after, upto)).fetchall()
    return Counter((turn_id, text) for turn_id, *sides in rows for text in memory_texts(*sides))


def check_flushes(con: sqlite3.Connection, session: str, flushed: int) -> list[str]:
    """Contiguous flushes, each recording the memories it wrote, and every flushed turn's memories stored
    exactly once: one per side that said something, none lost, none duplicated, none of an unflushed turn."""
    problems = []
    ranges = con.execute("SELECT from_seq, to_seq, documents FROM flushes WHERE session = ? ORDER BY id",
                         (session,)).fetchall()
    expected_from = 0
    for from_seq, to_seq, documents in ranges:
        if from_seq != expected_from:
            problems.append(f"{session}: flush from {from_seq} but the previous ended at {expected_from}")
        expected_from = to_seq
        said = sum(completed_memories(con, session, from_seq, to_seq).values())
        if documents != said:
            problems.append(f"{session}: flush {from_seq}..{to_seq} wrote {documents} documents for {said} memories")
    if expected_from != flushed:
        problems.append(f"{session}: watermark {flushed} but flushes end at {expected_from}")
    stored = Counter(con.execute("SELECT turn_id, text FROM documents WHERE session = ?", (session,)).fetchall())
    expected = completed_memories(con, session, 0, flushed)
    if stored != expected:
        problems.append(f"{session}: {sum((expected - stored).values())} memories lost and "
                        f"{sum((stored - expected).values())} duplicated or stray, of {sum(expected.values())}")
    return problems


def check(db: Path, acked: dict[str, str]) -> list[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    problems = []
    rows = con.execute("SELECT id, user_text, status FROM turns").fetchall()
    by_id = {r[0]: r for r in rows}
    for turn_id, text in acked.items():
        if turn_id not in by_id:
            problems.append(f"acknowledged turn lost: {turn_id} {text!r}")
        elif by_id[turn_id][1] != text:
            problems.append(f"turn {turn_id} holds {by_id[turn_id][1]!r}, expected {text!r}")
    texts = [r[1] for r in rows]
    problems += [f"message stored {texts.count(t)} times: {t!r}" for t in set(texts) if texts.count(t) > 1]
    problems += [f"turn left pending: {r[0]}" for r in rows if r[2] == "pending"]
    for session, flushed in con.execute("SELECT id, flushed_seq FROM sessions").fetchall():
        problems += check_flushes(con, session, flushed)
        waiting = con.execute("SELECT COUNT(*) FROM turns WHERE session = ? AND seq > ? AND status = 'complete'",
                              (session, flushed)).fetchone()[0]
        if waiting >= FLUSH_EVERY:
            problems.append(f"{session}: {waiting} completed turns were never flushed")
    con.close()
    return problems


async def run(model: Path, workdir: Path, conversations: int, kills: int, seed: int,
              embed_workers: str = "process") -> tuple[list[str], dict]:
    random.seed(seed)
    env = {"MODEL": str(model), "DATA_DIR": str(workdir / "data"), "LLM_BACKEND": "transformers",
           "MAX_NEW_TOKENS": "12", "CONTEXT_TOKENS": "2048", "FLUSH_EVERY": str(FLUSH_EVERY),
           "GEN_CONCURRENCY": "2", "LOG_LEVEL": "WARNING", "EMBED_WORKERS": embed_workers}
    server = ServerProcess(workdir, env).start()
    acked: dict[str, str] = {}
    attempts = [0]
    stop = asyncio.Event()
    imported = [0]
    tasks = [asyncio.create_task(conversation(server, i, acked, stop, attempts)) for i in range(conversations)]
    tasks.append(asyncio.create_task(importer(server, acked, stop, imported)))
    started = time.monotonic()
    try:
        for k in range(kills):
            await asyncio.sleep(random.uniform(0.5, 4.0))
            before = len(acked)
            server.kill()
            print(f"kill {k + 1}/{kills}: {before} turns acknowledged so far", flush=True)
            await asyncio.to_thread(server.start)
        await asyncio.sleep(3)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        # a clean stop, then a start: recovery finishes flushes that the last kill interrupted
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        await asyncio.sleep(2)
        await asyncio.to_thread(server.stop)
    finally:
        stop.set()
        server.stop()
    problems = check(workdir / "data" / "chat.sqlite3", acked)
    con = sqlite3.connect(workdir / "data" / "chat.sqlite3")
    flushes, documents = con.execute("SELECT COUNT(*), COALESCE(SUM(documents), 0) FROM flushes").fetchone()
    con.close()
    stats = {"seconds": round(time.monotonic() - started), "attempted": attempts[0], "acknowledged": len(acked),
             "imported": imported[0],
             "flushes": flushes, "documents": documents}
    return problems, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model directory (default: build a tiny one)")
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--embed-workers", choices=["process", "thread"], default="process")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        model = args.model
        if model is None:
            from tests.support.models import build_tiny_model

            model = build_tiny_model(workdir / "model")
        problems, stats = asyncio.run(run(model, workdir, args.conversations, args.kills, args.seed,
                                      args.embed_workers))
    print(f"{args.conversations} conversations, {args.kills} SIGKILLs in {stats['seconds']}s: "
          f"{stats['attempted']} turns attempted, {stats['acknowledged']} acknowledged ({stats['imported']} imported), "
          f"{stats['flushes']} flushes of {stats['documents']} documents")
    for problem in problems:
        print("PROBLEM:", problem)
    print("OK: every acknowledged turn stored once, every flush exactly once" if not problems
          else f"FAILED: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
