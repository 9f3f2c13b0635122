"""In-process FAISS indexes derived from a document log, one per namespace.

The log (SQLite `doc_log` or a Redis stream) is the source of truth; an index only remembers the
cursor of the last entry it applied, so bringing it up to date reads only newer entries, and a
replayed entry changes nothing (adds and removes are keyed by document id).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import faiss
import numpy as np

from common.files import atomic_write
from server.failpoints import thread_failpoint
from server.protocols import Document, Hit, LogEntry, LogExpired
from server.store.lexical import LexicalIndex

LogReader = Callable[[str, int | str | None], Awaitable[list[LogEntry]]]

# Searching a few thousand vectors takes microseconds: cheaper inline than a thread hop.
_INLINE_SEARCH_MAX = 20_000
_MAGIC = b"DPFX1"


@dataclass
class NamespaceIndex:
    """One namespace's documents: their vectors (FAISS), their words (BM25) and what a hit returns."""

    dim: int
    cursor: int | str | None = None
    index: faiss.IndexIDMap2 = None  # type: ignore[assignment]
    docs: dict[int, Document] = field(default_factory=dict)  # without their embeddings
    dirty: bool = False
    words: LexicalIndex = field(default_factory=LexicalIndex)
    vectors: bool = True  # False: words only (vectors are searched elsewhere, e.g. in Redis)
    embedder: str = ""  # the id of the embedder whose vectors it holds ("": a snapshot from before ids were kept)

    def __post_init__(self):
        if self.index is None:
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def apply(self, entries: list[LogEntry]) -> None:
        adds: dict[int, Document] = {}
        for entry in entries:
            doc_id = int(entry.doc.id)
            if entry.op == "add" and entry.doc.embedding is not None:
                adds[doc_id] = entry.doc
            else:
                adds.pop(doc_id, None)
                if doc_id in self.docs:
                    if self.vectors:
                        self.index.remove_ids(np.array([doc_id], dtype=np.int64))
                    self.words.remove(doc_id)
                    del self.docs[doc_id]
            self.cursor = entry.cursor
        fresh = {i: d for i, d in adds.items() if i not in self.docs}
        if fresh and self.vectors:
            ids = np.fromiter(fresh, dtype=np.int64, count=len(fresh))
            self.index.add_with_ids(np.stack([np.asarray(d.embedding, np.float32) for d in fresh.values()]), ids)
        if fresh:
            self._remember(fresh.values())
        self.dirty = self.dirty or bool(entries)

    def _remember(self, docs) -> None:
        docs = [replace(d, embedding=None) for d in docs]
        self.docs.update((d.id, d) for d in docs)
        self.words.add([(d.id, d.text) for d in docs])

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        return self.hits(*self.nearest(vector, k))

    def search_text(self, text: str, k: int) -> list[Hit]:
        return [Hit(self.docs[doc_id], score) for doc_id, score in self.words.search(text, k)]

    def nearest(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and document ids of the `k` nearest vectors (FAISS pads with id -1)."""
        k = min(k, self.index.ntotal)
        if k <= 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        scores, ids = self.index.search(np.asarray(vector, np.float32).reshape(1, -1), k)
        return scores[0], ids[0]

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> list[Hit]:
        return [Hit(self.docs[int(doc_id)], float(score))
                for score, doc_id in zip(scores, ids, strict=True) if doc_id >= 0]

    def to_bytes(self) -> bytes:
        docs = {str(i): [d.text, d.session, d.created, d.turn] for i, d in self.docs.items()}
        meta = json.dumps({"cursor": self.cursor, "dim": self.dim, "embedder": self.embedder, "texts": docs},
                          ensure_ascii=False).encode()
        blob = faiss.serialize_index(self.index).tobytes()
        return _MAGIC + struct.pack("<Q", len(meta)) + meta + blob

    @classmethod
    def from_bytes(cls, data: bytes, namespace: str) -> NamespaceIndex:
        if not data.startswith(_MAGIC):
            raise ValueError("not an index snapshot")
        (meta_len,) = struct.unpack_from("<Q", data, len(_MAGIC))
        start = len(_MAGIC) + 8
        meta = json.loads(data[start:start + meta_len])
        index = faiss.deserialize_index(np.frombuffer(data[start + meta_len:], dtype=np.uint8))
        loaded = cls(dim=meta["dim"], cursor=meta["cursor"], index=index, embedder=meta.get("embedder", ""))
        # snapshots before dates and turns were kept hold [text, session]
        loaded._remember(Document(int(i), namespace, v[0], None, *v[1:]) for i, v in meta["texts"].items())
        return loaded


def search_in_thread(index: NamespaceIndex, vector: np.ndarray, k: int) -> list[Hit]:
    found = index.nearest(vector, k)
    # tests widen the gap between FAISS's answer and the text lookup, where a concurrent removal shows
    thread_failpoint("faiss.search.lookup")
    return index.hits(*found)


class ThreadedSearches:
    """A namespace's searches running in worker threads.

    Any number of threads may read an index at once, but none while `apply` changes it on the loop:
    FAISS does not guard an index against a concurrent writer, and a removal between a search's
    answer and its text lookup would fail it. `apply` waits for `idle()` instead of taking a lock the
    threads hold, so the event loop never blocks on a search.
    """

    def __init__(self):
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def run(self, fn: Callable[..., list[Hit]], *args) -> Awaitable[list[Hit]]:
        """Counted from this call, not from the thread's start, so no `apply` slips in between."""
        self._running += 1
        self._idle.clear()
        job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        job.add_done_callback(self._finished)
        # a caller that is cancelled leaves the thread reading: it stays counted until the thread ends
        return asyncio.shield(job)

    def _finished(self, job: asyncio.Future) -> None:
        self._running -= 1
        if not self._running:
            self._idle.set()
        if not job.cancelled():
            job.exception()  # marks it retrieved: an abandoned search's error was its caller's to see

    async def idle(self) -> None:
        await self._idle.wait()


class FaissVectorStore:
    """VectorStore over per-namespace FAISS indexes, kept current from `read_log` before each search.

    With `snapshot_dir`, indexes are saved atomically (write, fsync, rename) so a restart replays only
    the log entries written since the last snapshot instead of the whole history.
    """

    def __init__(self, read_log: LogReader, dim: int, snapshot_dir: Path | None = None,
                 snapshot_interval: float = 5.0, vectors: bool = True, embedder_id: str = ""):
        # One query at a time gains nothing from OpenMP threads, and waking them after every I/O wait
        # costs milliseconds on a busy machine; concurrency comes from serving many turns instead.
        faiss.omp_set_num_threads(1)
        self._read_log = read_log
        self.dim = dim
        self.embedder_id = embedder_id  # snapshots of another embedder's vectors are rebuilt from the log
        self.vectors = vectors  # False: only `search_text` (a words index beside vectors searched elsewhere)
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self.snapshot_interval = snapshot_interval
        self._indexes: dict[str, NamespaceIndex] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._threaded: dict[str, ThreadedSearches] = {}
        self._saver: asyncio.Task | None = None

    async def start(self) -> None:
        if self.snapshot_dir is not None:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            self._saver = asyncio.create_task(self._save_periodically())

    async def close(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
            await asyncio.gather(self._saver, return_exceptions=True)
            self._saver = None
        await self.save()

    def _empty(self) -> NamespaceIndex:
        return NamespaceIndex(self.dim, vectors=self.vectors, embedder=self.embedder_id)

    def _path(self, namespace: str) -> Path:
        assert self.snapshot_dir is not None
        return self.snapshot_dir / (hashlib.sha256(namespace.encode()).hexdigest()[:32] + ".faiss")

    def _load(self, namespace: str) -> NamespaceIndex:
        if self.snapshot_dir is not None:
            path = self._path(namespace)
            try:
                index = NamespaceIndex.from_bytes(path.read_bytes(), namespace)
                # the log's documents are this embedder's (server/memory/embedders.py re-embedded them if they
                # were not): a snapshot of another's vectors would mix them; one from before ids goes by its width
                if index.dim == self.dim and index.embedder in ("", self.embedder_id):
                    index.embedder = self.embedder_id
                    return index
            except FileNotFoundError:
                pass
            except (ValueError, RuntimeError, KeyError, json.JSONDecodeError):
                path.unlink(missing_ok=True)  # a damaged snapshot is rebuilt from the log
        return self._empty()

    async def refresh(self, namespace: str) -> NamespaceIndex:
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            index = self._indexes.get(namespace)
            if index is None:
                return await self._rebuild(namespace, await asyncio.to_thread(self._load, namespace))
            try:
                entries = await self._read_log(namespace, index.cursor)
            except LogExpired:
                # the log was compacted past this index's cursor: what it missed may include deletes,
                # so start over from the compacted state rather than patch the old index
                return await self._rebuild(namespace, self._empty())
            if entries:
                # holding the lock keeps new searches out (they refresh first) while these finish
                await self._searches(namespace).idle()
                index.apply(entries)
            return index

    def _searches(self, namespace: str) -> ThreadedSearches:
        return self._threaded.setdefault(namespace, ThreadedSearches())

    async def _rebuild(self, namespace: str, index: NamespaceIndex) -> NamespaceIndex:
        """Catch up an index nobody searches yet, then publish it. A whole log or snapshot can take
        seconds to apply, so that happens in a thread, which is safe only while the index is private."""
        try:
            entries = await self._read_log(namespace, index.cursor)
        except LogExpired:  # a snapshot on disk older than the compacted log
            index = self._empty()
            entries = await self._read_log(namespace, None)
        if entries:
            await asyncio.to_thread(index.apply, entries)
        self._indexes[namespace] = index
        return index

    async def search(self, namespace: str, vector: np.ndarray, k: int) -> list[Hit]:
        if k <= 0:
            return []
        index = await self.refresh(namespace)
        if index.index.ntotal > _INLINE_SEARCH_MAX:
            # counted before this coroutine yields again, so no `apply` can run before the thread ends
            return await self._searches(namespace).run(search_in_thread, index, vector, k)
        return index.search(vector, k)

    async def search_text(self, namespace: str, text: str, k: int) -> list[Hit]:
        if k <= 0:
            return []
        index = await self.refresh(namespace)
        # FTS5 answers in C in well under a millisecond at user scale: inline, like small vector searches
        return index.search_text(text, k)

    def size(self, namespace: str) -> int:
        index = self._indexes.get(namespace)
        return index.index.ntotal if index else 0

    async def save(self) -> None:
        if self.snapshot_dir is None:
            return
        for namespace, index in list(self._indexes.items()):
            if not index.dirty:
                continue
            async with self._locks[namespace]:
                data = await asyncio.to_thread(index.to_bytes)
                index.dirty = False
            await asyncio.to_thread(atomic_write, self._path(namespace), data)

    async def _save_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.snapshot_interval)
            await self.save()

