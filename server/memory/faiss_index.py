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
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from scraper.corpus import atomic_write
from server.protocols import Document, Hit, LogEntry

LogReader = Callable[[str, int | str | None], Awaitable[list[LogEntry]]]

# Searching a few thousand vectors takes microseconds: cheaper inline than a thread hop.
_INLINE_SEARCH_MAX = 20_000
_MAGIC = b"DPFX1"


@dataclass
class NamespaceIndex:
    dim: int
    cursor: int | str | None = None
    index: faiss.IndexIDMap2 = None  # type: ignore[assignment]
    texts: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    dirty: bool = False

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
                if doc_id in self.texts:
                    self.index.remove_ids(np.array([doc_id], dtype=np.int64))
                    del self.texts[doc_id]
            self.cursor = entry.cursor
        fresh = {i: d for i, d in adds.items() if i not in self.texts}
        if fresh:
            ids = np.fromiter(fresh, dtype=np.int64, count=len(fresh))
            vectors = np.stack([np.asarray(d.embedding, np.float32) for d in fresh.values()])
            self.index.add_with_ids(vectors, ids)
            for i, d in fresh.items():
                self.texts[i] = (d.text, d.session)
        self.dirty = self.dirty or bool(entries)

    def search(self, namespace: str, vector: np.ndarray, k: int) -> list[Hit]:
        k = min(k, self.index.ntotal)
        if k <= 0:
            return []
        scores, ids = self.index.search(np.asarray(vector, np.float32).reshape(1, -1), k)
        hits = []
        for score, doc_id in zip(scores[0], ids[0], strict=True):
            if doc_id < 0:
                continue
            text, session = self.texts[int(doc_id)]
            hits.append(Hit(Document(int(doc_id), namespace, text, None, session), float(score)))
        return hits

    def to_bytes(self) -> bytes:
        meta = json.dumps({"cursor": self.cursor, "dim": self.dim,
                           "texts": {str(k): v for k, v in self.texts.items()}}, ensure_ascii=False).encode()
        blob = faiss.serialize_index(self.index).tobytes()
        return _MAGIC + struct.pack("<Q", len(meta)) + meta + blob

    @classmethod
    def from_bytes(cls, data: bytes) -> NamespaceIndex:
        if not data.startswith(_MAGIC):
            raise ValueError("not an index snapshot")
        (meta_len,) = struct.unpack_from("<Q", data, len(_MAGIC))
        start = len(_MAGIC) + 8
        meta = json.loads(data[start:start + meta_len])
        index = faiss.deserialize_index(np.frombuffer(data[start + meta_len:], dtype=np.uint8))
        texts = {int(k): (v[0], v[1]) for k, v in meta["texts"].items()}
        return cls(dim=meta["dim"], cursor=meta["cursor"], index=index, texts=texts)


class FaissVectorStore:
    """VectorStore over per-namespace FAISS indexes, kept current from `read_log` before each search.

    With `snapshot_dir`, indexes are saved atomically (write, fsync, rename) so a restart replays only
    the log entries written since the last snapshot instead of the whole history.
    """

    def __init__(self, read_log: LogReader, dim: int, snapshot_dir: Path | None = None,
                 snapshot_interval: float = 5.0):
        # One query at a time gains nothing from OpenMP threads, and waking them after every I/O wait
        # costs milliseconds on a busy machine; concurrency comes from serving many turns instead.
        faiss.omp_set_num_threads(1)
        self._read_log = read_log
        self.dim = dim
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self.snapshot_interval = snapshot_interval
        self._indexes: dict[str, NamespaceIndex] = {}
        self._locks: dict[str, asyncio.Lock] = {}
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

    def _path(self, namespace: str) -> Path:
        assert self.snapshot_dir is not None
        return self.snapshot_dir / (hashlib.sha256(namespace.encode()).hexdigest()[:32] + ".faiss")

    def _load(self, namespace: str) -> NamespaceIndex:
        if self.snapshot_dir is not None:
            path = self._path(namespace)
            try:
                index = NamespaceIndex.from_bytes(path.read_bytes())
                if index.dim == self.dim:
                    return index
            except FileNotFoundError:
                pass
            except (ValueError, RuntimeError, KeyError, json.JSONDecodeError):
                path.unlink(missing_ok=True)  # a damaged snapshot is rebuilt from the log
        return NamespaceIndex(self.dim)

    async def refresh(self, namespace: str) -> NamespaceIndex:
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            index = self._indexes.get(namespace)
            if index is None:
                index = await asyncio.to_thread(self._load, namespace)
                self._indexes[namespace] = index
            entries = await self._read_log(namespace, index.cursor)
            if entries:
                index.apply(entries)
            return index

    async def search(self, namespace: str, vector: np.ndarray, k: int) -> list[Hit]:
        if k <= 0:
            return []
        index = await self.refresh(namespace)
        if index.index.ntotal > _INLINE_SEARCH_MAX:
            return await asyncio.to_thread(index.search, namespace, vector, k)
        return index.search(namespace, vector, k)

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

