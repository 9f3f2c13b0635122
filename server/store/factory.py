"""Build the TurnStore and VectorStore named by STORE."""

from __future__ import annotations

from server.config import Settings, StoreKind
from server.protocols import TurnStore, VectorStore
from server.store.faiss_index import FaissVectorStore


def create_turn_store(settings: Settings) -> TurnStore:
    if settings.store == StoreKind.EMBEDDED:
        from server.store.sqlite_turns import SqliteTurnStore

        return SqliteTurnStore(settings.data_dir / "chat.sqlite3", synchronous=settings.sqlite_synchronous)
    from server.store.redis_link import RedisLink
    from server.store.redis_turns import RedisTurnStore

    link = RedisLink(settings.redis_url, max_connections=settings.redis_max_connections,
                     timeout=settings.redis_timeout, start_timeout=settings.redis_start_timeout)
    return RedisTurnStore(link, prefix=settings.redis_prefix, lease_ttl=settings.redis_lease_ttl)


def create_vector_store(settings: Settings, turns: TurnStore, dim: int, embedder_id: str = "") -> VectorStore:
    if settings.store == StoreKind.REDIS:
        from server.store.redis_turns import RedisTurnStore
        from server.store.redis_vectors import RedisVectorStore

        if not isinstance(turns, RedisTurnStore):
            raise TypeError("STORE=redis needs the Redis TurnStore, whose log and connection it shares")
        return RedisVectorStore(turns, dim, settings.redis_knn, embedder_id)
    return FaissVectorStore(turns.log_since, dim, snapshot_dir=settings.data_dir / "faiss", embedder_id=embedder_id)
