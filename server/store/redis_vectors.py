"""The VectorStore for STORE=redis: server-side KNN where Redis has a query engine (and each replica's word index,
fed by the log), else FAISS and the word index fed by the log.

Which one is decided at start, when the Redis server can be asked (REDIS_KNN=auto|on|off).
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


class RedisVectorStore:
    def __init__(self, turns: RedisTurnStore, dim: int, knn: RedisKnnMode = RedisKnnMode.AUTO):
        self.turns = turns
        self.dim = dim
        self.knn = knn
        self.backend: VectorStore | None = None
        self.words: VectorStore | None = None  # where search_text goes, when not to the backend

    async def start(self) -> None:
        available = self.knn != RedisKnnMode.OFF and await query_engine_available(self.turns.link)
        if self.knn == RedisKnnMode.ON and not available:
            raise StartupError("REDIS_KNN=on, but this Redis server has no query engine (FT.SEARCH): use Redis "
                               "Stack or Redis 8, or set REDIS_KNN=auto")
        if available:
            self.backend = RedisKnnVectorStore(self.turns.link, self.turns.prefix, self.dim)
            # Redis searches the vectors; the words index is each replica's, kept current from the log
            self.words = FaissVectorStore(self.turns.log_since, self.dim, vectors=False)
            await self.words.start()
        else:
            # no snapshots: a replica rebuilds from the Redis log at start, which stays the one source of truth
            self.backend = FaissVectorStore(self.turns.log_since, self.dim)
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
