"""Replica catch-up in STORE=redis: from the compacted log (snapshot + stream tail) vs. replaying the whole stream.

Two key prefixes on one Redis get the same history: `--n` memories written in batches of 1,000 (bulk-written
through the TurnStore's knowledge API, one Lua script per batch, into one namespace), then `--forget` of the
batches forgotten again (spread over the history), as sessions and re-imported knowledge files are. One prefix
is then compacted (fold into the snapshot, trim the stream); the other never is. Both then get the same short
tail (`--tail` more memories and one forgotten batch). Catch-up is what a replica joining now does first: a
fresh FAISS index brought up to date through `VectorStore.refresh` (the same code the server runs), measured
on both prefixes in turns (`--repeat`, medians), and checked to end with the same live memories.

What compaction saves is the forgotten history: with `--forget 0` both read about the same documents. What
it bounds in every case is the stream itself (entries and Redis memory), printed too.

    python bench/redis_catchup.py                    # 100k memories, 32-d
    python bench/redis_catchup.py --n 1000000        # the million-memory case (a few GiB of RAM, minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from server.protocols import KNOWLEDGE_NAMESPACE  # noqa: E402
from server.store.faiss_index import FaissVectorStore  # noqa: E402
from server.store.redis_link import RedisLink  # noqa: E402
from server.store.redis_turns import RedisTurnStore  # noqa: E402

NS = KNOWLEDGE_NAMESPACE
BATCH = 1000


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def write(stores: list[RedisTurnStore], first: int, n: int, dim: int, seed: int) -> list[str]:
    """`n` memories from number `first` on, the same in every store; returns the batch (source) names."""
    rng, sources = np.random.default_rng(seed), []
    for start in range(first, first + n, BATCH):
        count = min(BATCH, first + n - start)
        texts = [f"User: memory {start + i}\nResponse: noted {start + i}" for i in range(count)]
        vectors, source = unit(rng, count, dim), f"batch-{start}"
        for store in stores:
            await store.replace_knowledge(source, "v1", texts, vectors)
        sources.append(source)
    return sources


async def forget(stores: list[RedisTurnStore], sources: list[str], fraction: float) -> int:
    """Forgets `fraction` of the batches, spread evenly over the history; returns how many."""
    chosen = [s for i, s in enumerate(sources) if int((i + 1) * fraction) > int(i * fraction)]
    for source in chosen:
        for store in stores:
            await store.drop_knowledge(source)
    return len(chosen)


async def catch_up(store: RedisTurnStore, dim: int) -> tuple[float, set[int]]:
    index = FaissVectorStore(store.log_since, dim)
    started = time.perf_counter()
    built = await index.refresh(NS)
    return time.perf_counter() - started, set(built.texts)


async def log_stats(store: RedisTurnStore) -> tuple[int, int, int]:
    """Stream entries, stream bytes and snapshot (live id set) bytes in Redis."""
    stream, snapshot = f"{store.prefix}log:{NS}", f"{store.prefix}sn:{NS}"
    length = await store.link.run(lambda r: r.xlen(stream))
    sizes = [await store.link.run(lambda r, k=k: r.memory_usage(k, samples=0)) for k in (stream, snapshot)]
    return int(length), int(sizes[0] or 0), int(sizes[1] or 0)


async def measure(redis_url: str, args) -> None:
    full, snap = (RedisTurnStore(RedisLink(redis_url, timeout=30), prefix=p, compact_every=0, log_keep=0)
                  for p in ("full:", "snap:"))
    for store in (full, snap):
        await store.start()
    try:
        started = time.perf_counter()
        sources = await write([full, snap], 0, args.n, args.dim, seed=1)
        forgotten = await forget([full, snap], sources, args.forget)
        print(f"history written in {time.perf_counter() - started:.1f}s: {args.n:,} memories, "
              f"{forgotten * BATCH:,} of them forgotten", file=sys.stderr, flush=True)
        started = time.perf_counter()
        trimmed = await snap.compact_logs()
        compact_s = time.perf_counter() - started
        tail = await write([full, snap], args.n, args.tail, args.dim, seed=2)
        await forget([full, snap], tail[:1], 1.0)

        times: dict[str, list[float]] = {"full": [], "snap": []}
        for _ in range(args.repeat):  # in turns, so that machine noise hits both alike
            for name, store in (("full", full), ("snap", snap)):
                seconds, live = await catch_up(store, args.dim)
                times[name].append(seconds)
                if name == "full":
                    expected = live
                elif live != expected:
                    raise AssertionError("the compacted log and the full stream disagree on the live memories")
        report(args, len(expected), compact_s, trimmed, times,
               {name: await log_stats(store) for name, store in (("full", full), ("snap", snap))})
    finally:
        for store in (full, snap):
            await store.close()


def report(args, live: int, compact_s: float, trimmed: int, times: dict, logs: dict) -> None:
    full_s, snap_s = (statistics.median(times[k]) for k in ("full", "snap"))
    print(f"memories written {args.n + args.tail:,}, live {live:,}, dim {args.dim}, tail {args.tail:,} "
          f"written after compaction (+{min(args.tail, BATCH):,} forgotten)")
    print(f"compaction: {compact_s:.2f}s, {trimmed:,} stream entries trimmed")
    print(f"{'catch-up from':<24} {'median':>8} {'runs':>18} {'stream entries':>15} {'stream bytes':>13} "
          f"{'snapshot bytes':>15}")
    for name, label, seconds in (("full", "the whole stream", full_s), ("snap", "snapshot + stream tail", snap_s)):
        runs = " ".join(f"{t:.2f}" for t in times[name])
        print(f"{label:<24} {seconds:>7.2f}s {runs:>18} {logs[name][0]:>15,} {logs[name][1]:>13,} {logs[name][2]:>15,}")
    print(f"snapshot catch-up is x{full_s / snap_s:.2f} faster than replaying the stream; "
          f"the stream is x{logs['full'][0] / max(1, logs['snap'][0]):.0f} shorter")


async def main_async(args) -> None:
    from tests.support.redis import RedisServer

    with tempfile.TemporaryDirectory(prefix="redis-catchup-") as tmp:
        server = None
        redis_url = args.redis_url
        if redis_url is None:
            server = RedisServer(Path(tmp) / "redis").start()
            redis_url = server.url
        try:
            await measure(redis_url, args)
        finally:
            if server is not None:
                server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="memories in the history before compaction")
    parser.add_argument("--dim", type=int, default=32, help="embedding dimension")
    parser.add_argument("--forget", type=float, default=0.5, help="share of the history forgotten again (0..1)")
    parser.add_argument("--tail", type=int, default=1000, help="memories written after the compaction")
    parser.add_argument("--repeat", type=int, default=3, help="catch-ups measured per log, in turns")
    parser.add_argument("--redis-url", help="use this Redis (keys under full: and snap:) instead of a throwaway one")
    args = parser.parse_args()
    if not 0 <= args.forget <= 1:
        parser.error("--forget is a share between 0 and 1")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
