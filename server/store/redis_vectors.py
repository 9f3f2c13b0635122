"""The VectorStore for STORE=redis: server-side KNN where Redis has a query engine (and each replica's word index,
fed by the log), else FAISS and the word index fed by the log.

Which one is decided at start, when the Redis server can be asked (REDIS_KNN=auto|on|off).

The documents' vectors are one embedder's: the first replica records its id (`<prefix>embedder`), and a replica
started with another embedder refuses to start instead of mixing vectors that cannot be compared. (Re-embedding
is left to the embedded store, which one process owns: here replicas of the old embedder may still be writing.)
"""

from __future__ import annotations

import numpy as np

from server.config import RedisKnnMode
from server.errors import StartupError
from server.logs import get_logger
from server.protocols import Hit, VectorStore
from server.store.faiss_index import FaissVectorStore
from server.store.redis_knn import RedisKnnVectorStore, query_engine_available
from server.store.redis_turns import RedisTurnStore

log = get_logger(__name__)


class EmbedderMismatch(StartupError):
    pass


class RedisVectorStore:
    def __init__(self, turns: RedisTurnStore, dim: int, knn: RedisKnnMode = RedisKnnMode.AUTO, embedder_id: str = ""):
        self.turns = turns
        self.dim = dim
        self.embedder_id = embedder_id
        self.knn = knn
        self.backend: VectorStore | None = None
        self.words: VectorStore | None = None  # where search_text goes, when not to the backend

    async def _check_embedder(self) -> None:
        key = f"{self.turns.prefix}embedder"
        link = self.turns.link
        recorded = await link.run(lambda r: r.get(key))
        if recorded is None:
            width = await self._stored_width()
            if width is not None and width != self.dim:
                recorded = f"another model ({width}-d vectors, from before embedder ids were recorded)".encode()
            else:  # no documents, or a release before ids that had the same model (only one was offered)
                await link.run(lambda r: r.set(key, self.embedder_id, nx=True))
                recorded = await link.run(lambda r: r.get(key))
        recorded = recorded.decode() if isinstance(recorded, bytes) else recorded
        if recorded != self.embedder_id:
            raise EmbedderMismatch(
                f"the memories in Redis ({self.turns.prefix}*) were embedded by {recorded}, but this server embeds "
                f"with {self.embedder_id}: set EMBEDDER (and EMBED_MODEL) as the other replicas have them, or give "
                "this embedder its own REDIS_PREFIX (its memories start empty)")

    async def _stored_width(self) -> int | None:
        """The width of one stored document's vector, or None when there is none."""
        pattern = f"{self.turns.prefix}d:*"

        async def first(r):
            async for key in r.scan_iter(match=pattern, count=1000):
                return await r.hget(key, "emb")
            return None

        blob = await self.turns.link.run(first)
        return len(blob) // 4 if blob else None

    async def start(self) -> None:
        if self.embedder_id:
            await self._check_embedder()
        available = self.knn != RedisKnnMode.OFF and await query_engine_available(self.turns.link)
        if self.knn == RedisKnnMode.ON and not available:
            raise StartupError("REDIS_KNN=on, but this Redis server has no query engine (FT.SEARCH): use Redis "
                               "Stack or Redis 8, or set REDIS_KNN=auto")
        if available:
            self.backend = RedisKnnVectorStore(self.turns.link, self.turns.prefix, self.dim)
            # Redis searches the vectors; the words index is each replica's, kept current from the log
            self.words = FaissVectorStore(self.turns.log_since, self.dim, vectors=False, embedder_id=self.embedder_id)
            await self.words.start()
        else:
            # no snapshots: a replica rebuilds from the Redis log at start, which stays the one source of truth
            self.backend = FaissVectorStore(self.turns.log_since, self.dim, embedder_id=self.embedder_id)
        await self.backend.start()
        log.info("vector store ready", kind="redis-knn" if available else "faiss-from-redis-log")

    @property
    def _store(self) -> VectorStore:
        if self.backend is None:
            raise RuntimeError("RedisVectorStore used before start()")
        return self.backend

    async def close(self) -> None:
        for store in (self.words, self.backend):
            if store is not None:
                await store.close()

    async def search(self, namespace: str, vector: np.ndarray, k: int) -> list[Hit]:
        return await self._store.search(namespace, vector, k)

    async def search_text(self, namespace: str, text: str, k: int) -> list[Hit]:
        return await (self.words or self._store).search_text(namespace, text, k)

    async def refresh(self, namespace: str) -> None:
        await self._store.refresh(namespace)
