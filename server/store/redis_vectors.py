"""The VectorStore for STORE=redis: server-side KNN where Redis has a query engine, else FAISS fed by the log.

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

    async def start(self) -> None:
        available = self.knn != RedisKnnMode.OFF and await query_engine_available(self.turns.link)
        if self.knn == RedisKnnMode.ON and not available:
            raise StartupError("REDIS_KNN=on, but this Redis server has no query engine (FT.SEARCH): use Redis "
                               "Stack or Redis 8, or set REDIS_KNN=auto")
        if available:
            self.backend = RedisKnnVectorStore(self.turns.link, self.turns.prefix, self.dim)
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
        if self.backend is not None:
            await self.backend.close()

    async def search(self, namespace: str, vector: np.ndarray, k: int) -> list[Hit]:
        return await self._store.search(namespace, vector, k)

    async def refresh(self, namespace: str) -> None:
        await self._store.refresh(namespace)
