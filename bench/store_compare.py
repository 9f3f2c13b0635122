"""Retrieval latency and flush throughput: embedded (SQLite + FAISS) vs Redis, side by side in one run.

For each size (default 1k and 100k memories in one namespace) both stores are filled with the same
random unit 384-d vectors (bulk-written through the TurnStore's knowledge API, one transaction or Lua
script per 1,000), then measured through the same code the server runs:
  - search: `VectorStore.search(namespace, query, k=2)` with a warm index, p50/p99 over the queries,
    the stores taking turns query by query (for Redis this includes the round trip that checks the
    stream for newer entries);
  - catch-up: how long a fresh replica's index takes to replay the whole log (Redis: from the stream);
  - flush: `LongTermMemory.flush` of sessions of FLUSH_EVERY completed turns into the same namespace
    (plan, embed with a random embedder, atomic commit, index refresh): flushes/s, one at a time and
    16 sessions at once, in rounds that alternate between the stores.
A throwaway redis-server is started on a free loopback port unless --redis-url is given (use one
with the query engine, e.g. Redis Stack, to also measure REDIS_KNN server-side search with --knn).

FAISS runs single-threaded here (--faiss-threads 1): one query at a time gains nothing from OpenMP,
and with its threads every search that follows an I/O wait (the Redis round trip) pays a thread
wake-up that, on a busy 2-core machine, costs milliseconds and would be charged to the store.

    python bench/store_compare.py                 # 1k and 100k
    python bench/store_compare.py --sizes 1000 --queries 300
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

from server.config import RedisKnnMode  # noqa: E402
from server.memory.service import LongTermMemory  # noqa: E402
from server.metrics import Metrics  # noqa: E402
from server.protocols import KNOWLEDGE_NAMESPACE  # noqa: E402
from server.store.faiss_index import FaissVectorStore  # noqa: E402
from server.store.redis_link import RedisLink  # noqa: E402
from server.store.redis_turns import RedisTurnStore  # noqa: E402
from server.store.redis_vectors import RedisVectorStore  # noqa: E402
from server.store.sqlite_turns import SqliteTurnStore  # noqa: E402

DIM = 384
FLUSH_EVERY = 5
# Every memory lives in this one namespace: bulk-loaded chunks and flushed pairs alike.
NAMESPACE = KNOWLEDGE_NAMESPACE


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class RandomEmbedder:
    """Random unit vectors: the benchmark measures the stores, not the embedding model."""

    dim = DIM

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    async def embed(self, texts):
        return unit(self.rng, len(texts))

    async def close(self) -> None:
        return None


async def fill(store, size: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for start in range(0, size, 1000):
        n = min(1000, size - start)
        texts = [f"User: memory {start + i}\nResponse: noted {start + i}" for i in range(n)]
        await store.replace_knowledge(f"bulk-{start}", "v1", texts, unit(rng, n))
    return time.perf_counter() - started


async def time_searches(stores: dict, queries: np.ndarray) -> dict[str, list[float]]:
    """Query by query, every store in turn: machine noise (a 2-core box shared with other work) hits
    them alike instead of whichever store happened to run during a busy spell."""
    samples: dict[str, list[float]] = {kind: [] for kind in stores}
    for _, vectors in stores.values():
        await vectors.search(NAMESPACE, queries[0], 2)  # warm: the index is built before timing
    for q in queries:
        for kind, (_, vectors) in stores.items():
            started = time.perf_counter()
            hits = await vectors.search(NAMESPACE, q, 2)
            samples[kind].append(time.perf_counter() - started)
            assert len(hits) == 2
    return samples


async def time_flushes(stores: dict, sessions: int, concurrency: int, tag: str, rounds: int = 4) -> dict[str, float]:
    """Flushes/s of `sessions` sessions per store, in alternating rounds (same reason as above)."""
    spent = dict.fromkeys(stores, 0.0)
    per_round = max(1, sessions // rounds)
    for r in range(rounds):
        for kind, (store, vectors) in stores.items():
            memory = LongTermMemory(store, vectors, RandomEmbedder(7), Metrics(), FLUSH_EVERY, 2, 0)
            names = [f"{tag}-{r}-{i}" for i in range(per_round)]
            for name in names:  # the turns are written outside the timing: only the flush is measured
                for t in range(FLUSH_EVERY):
                    turn = await store.begin_turn(name, NAMESPACE, f"question {t} of {name}")
                    await store.finish_turn(turn.id, f"answer {t}", "complete")
            gate = asyncio.Semaphore(concurrency)

            async def one(name, memory=memory, gate=gate):
                async with gate:
                    assert await memory.flush(name) == FLUSH_EVERY

            started = time.perf_counter()
            await asyncio.gather(*(one(n) for n in names))
            spent[kind] += time.perf_counter() - started
    return {kind: per_round * rounds / seconds for kind, seconds in spent.items()}


def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] * 1000 if len(samples) > 1 else 0.0


async def open_store(kind: str, size: int, redis_url: str, workdir: Path):
    if kind == "embedded":
        store = SqliteTurnStore(workdir / f"{kind}-{size}" / "chat.sqlite3")
        await store.start()
        return store, FaissVectorStore(store.log_since, DIM)
    store = RedisTurnStore(RedisLink(redis_url), prefix=f"bench{size}{kind}:")
    await store.start()
    return store, RedisVectorStore(store, DIM, RedisKnnMode.ON if kind == "redis-knn" else RedisKnnMode.OFF)


async def measure(kinds: list[str], size: int, args, redis_url: str, workdir: Path) -> list[dict]:
    queries = unit(np.random.default_rng(size), args.queries)
    stores: dict = {}
    rows = {kind: {"store": kind, "size": size} for kind in kinds}
    try:
        for kind in kinds:
            store, vectors = stores[kind] = await open_store(kind, size, redis_url, workdir)
            rows[kind]["load_s"] = await fill(store, size, seed=size)
            await vectors.start()
            started = time.perf_counter()
            await vectors.refresh(NAMESPACE)  # a fresh replica replaying the whole log
            rows[kind]["catch_up_s"] = time.perf_counter() - started
        for kind, samples in (await time_searches(stores, queries)).items():
            rows[kind].update(p50_ms=pct(samples, 50), p99_ms=pct(samples, 99))
        for key, concurrency in (("flush_seq", 1), ("flush_par", 16)):
            for kind, rate in (await time_flushes(stores, args.flushes, concurrency, key)).items():
                rows[kind][key] = rate
    finally:
        for store, vectors in stores.values():
            await vectors.close()
            await store.close()
    return list(rows.values())


async def main_async(args) -> None:
    import faiss

    from tests.support.redis import RedisServer

    if args.faiss_threads > 0:
        faiss.omp_set_num_threads(args.faiss_threads)
    print(f"FAISS OpenMP threads: {faiss.omp_get_max_threads()}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="store-compare-") as tmp:
        workdir = Path(tmp)
        server = None
        redis_url = args.redis_url
        if redis_url is None:
            server = RedisServer(workdir / "redis").start()
            redis_url = server.url
        kinds = ["embedded", "redis"] + (["redis-knn"] if args.knn else [])
        rows = []
        try:
            for size in args.sizes:
                rows += await measure(kinds, size, args, redis_url, workdir)
                print(f"  measured {size:,}", file=sys.stderr, flush=True)
        finally:
            if server is not None:
                server.stop()
    header = (f"{'store':<10} {'memories':>9} {'search p50':>11} {'search p99':>11} {'catch-up':>9} "
              f"{'flush/s x1':>11} {'flush/s x16':>12} {'bulk load':>10}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['store']:<10} {r['size']:>9,} {r['p50_ms']:>9.3f}ms {r['p99_ms']:>9.3f}ms {r['catch_up_s']:>8.2f}s "
              f"{r['flush_seq']:>11.1f} {r['flush_par']:>12.1f} {r['load_s']:>9.2f}s")
    base = {r["size"]: r for r in rows if r["store"] == "embedded"}
    for r in rows:
        if r["store"] != "embedded":
            b = base[r["size"]]
            print(f"{r['store']} / embedded at {r['size']:,}: search p50 x{r['p50_ms'] / b['p50_ms']:.2f}, "
                  f"p99 x{r['p99_ms'] / b['p99_ms']:.2f}, flush/s x{r['flush_seq'] / b['flush_seq']:.2f} (one at a "
                  f"time), x{r['flush_par'] / b['flush_par']:.2f} (16 at once)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--flushes", type=int, default=100, help="sessions flushed per measurement")
    parser.add_argument("--redis-url", help="use this Redis instead of starting a throwaway redis-server")
    parser.add_argument("--knn", action="store_true", help="also measure REDIS_KNN=on (needs the query engine)")
    parser.add_argument("--faiss-threads", type=int, default=1, help="OpenMP threads for FAISS; 0: its default")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
