"""Build the TurnStore and VectorStore named by STORE."""

from __future__ import annotations

from server.config import Settings, StoreKind
from server.memory.faiss_index import FaissVectorStore
from server.protocols import TurnStore, VectorStore


def create_turn_store(settings: Settings) -> TurnStore:
    if settings.store == StoreKind.EMBEDDED:
        from server.store.sqlite_turns import SqliteTurnStore

        return SqliteTurnStore(settings.data_dir / "chat.sqlite3")
    raise ValueError(f"STORE={settings.store.value} is not available in this build")


def create_vector_store(settings: Settings, turns: TurnStore, dim: int) -> VectorStore:
    return FaissVectorStore(turns.log_since, dim, snapshot_dir=settings.data_dir / "faiss")
