"""The product's own memory, measured as a user meets it, for bench/memory_recall.py.

`through_api`: a real server (embedded store, default memory settings, a tiny local model that is never asked
anything) on 127.0.0.1; each conversation is imported session by session with `POST /sessions/{id}/import`
(its times and speakers' names) as the memories of its own user (`?user=`), and every question is asked with
`GET /memories?query=`. What comes back is scored like the other schemes: the answering turns it holds, and its
characters.

`retrieval_latency`: the cost a turn pays for retrieval at 10,000 memories of one user (the embedded store's
indexes, search + fusion + budget, the message's embedding excluded as for the other schemes), p50 and p99.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np


def _settings(tmp: Path, embedder: str = "auto"):
    from server.config import Settings
    from tests.support.models import build_tiny_model

    model = build_tiny_model(tmp / "model", poems=200)
    return Settings(_env_file=None, model=str(model), data_dir=tmp / "data", llm_backend="transformers",
                    context_tokens=2048, log_level="WARNING", embedder=embedder)


def _import(api: httpx.Client, meta: dict, turns: list[dict]) -> dict[str, int]:
    """Imports one conversation, a session per call; returns server turn id -> the data's turn number."""
    by_session = defaultdict(list)
    for t in turns:
        by_session[t["session"]].append(t)
    ids = {}
    for session, rows in by_session.items():
        body = {"turns": [{"user": t["user"], "assistant": t["assistant"], "time": t["time"],
                           "user_name": meta["user_name"], "assistant_name": meta["assistant_name"]} for t in rows]}
        reply = api.post(f"/sessions/{meta['conv']}-{session}/import", params={"user": meta["conv"]}, json=body)
        reply.raise_for_status()
        ids.update(zip(reply.json()["turns"], (t["turn"] for t in rows), strict=True))
    return ids


def through_api(convs, holds_evidence, embedder: str = "auto") -> tuple[list[dict], float]:
    """One row per question (as memory_recall.score makes them, with the API's round trip as `ms`), and the
    seconds the imports took."""
    from server.logs import configure_logging
    from tests.support.servers import ServerThread

    configure_logging("WARNING", "console")  # not a line per flush
    rows, import_seconds = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerThread(_settings(Path(tmp), embedder)).start()
        try:
            with httpx.Client(base_url=server.url, timeout=600) as api:
                for meta, turns, questions in convs:
                    started = time.perf_counter()
                    ids = _import(api, meta, turns)
                    import_seconds += time.perf_counter() - started
                    for q in questions:
                        started = time.perf_counter()
                        reply = api.get("/memories", params={"query": q["question"], "user": meta["conv"]})
                        ms = (time.perf_counter() - started) * 1000
                        reply.raise_for_status()
                        memories = reply.json()["memories"]
                        held = {ids[t] for m in memories for t in m["turns"]}
                        texts = [(tuple(ids[t] for t in m["turns"]), m["text"]) for m in memories]
                        answers, stale = set(q["answers"]), set(q["stale"])
                        rows.append({"lang": q["lang"], "kind": q["kind"], "docs": len(memories),
                                     "chars": sum(len(m["text"]) for m in memories), "rb": answers <= held,
                                     "turns": len(answers & held) / len(answers) if answers else float("nan"),
                                     "strict": holds_evidence(q, texts),
                                     "any": bool(answers & held), "stale": bool(stale & held) and not answers <= held,
                                     "ms": ms})
        finally:
            server.stop()
    return rows, import_seconds


async def _latency(texts: list[str], queries: list[str], dim: int, n: int) -> list[float]:
    from server.memory.ranking import RankingPolicy
    from server.memory.service import LongTermMemory
    from server.metrics import Metrics
    from server.store.faiss_index import FaissVectorStore
    from server.store.sqlite_turns import SqliteTurnStore

    rng = np.random.default_rng(0)

    def unit(rows: int) -> np.ndarray:
        v = rng.standard_normal((rows, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteTurnStore(Path(tmp) / "chat.sqlite3")
        await store.start()
        vectors = FaissVectorStore(store.log_since, dim)
        try:
            for text, vector in zip((texts * (n // len(texts) + 1))[:n], unit(n), strict=True):
                await store.add_memory("user:bench", text, vector, time.time())
            await vectors.refresh("user:bench")
            memory = LongTermMemory(store, vectors, None, Metrics(), 5, RankingPolicy(), 0)
            query_vectors = unit(len(queries))
            for q, v in zip(queries[:20], query_vectors, strict=False):  # warm-up
                await memory.recall("user:bench", q, v)
            times = []
            for q, v in zip(queries, query_vectors, strict=True):
                started = time.perf_counter()
                await memory.recall("user:bench", q, v)
                times.append((time.perf_counter() - started) * 1000)
            return times
        finally:
            await store.close()


def retrieval_latency(convs, n: int = 10_000, dim: int = 384) -> tuple[float, float]:
    """p50 and p99 ms of one turn's retrieval among `n` memories of one user (texts: the bench's messages)."""
    import asyncio

    texts = [f"{side}: {t[side]}" for _, turns, _ in convs for t in turns for side in ("user", "assistant")]
    queries = [q["question"] for _, _, qs in convs for q in qs]
    times = asyncio.run(_latency(texts, queries, dim, n))
    return statistics.median(times), float(np.percentile(times, 99))
