"""What the memory API does: a user's memories seen, searched, added, edited, deleted, exported and imported
(past chats come in as turns: `LongTermMemory.import_turns`). Every change goes through the store's document
log, and the namespace's index is refreshed before the call returns: what the caller sees next is what a turn
would see next.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from server.memory.service import LongTermMemory
from server.protocols import Document, Hit

# Memories embedded per call when importing, and read per page when exporting.
_BATCH = 256


@dataclass(frozen=True, slots=True)
class NewMemory:
    text: str
    created: float | None = None  # None: now
    session: str | None = None


class MemoryControl:
    def __init__(self, memory: LongTermMemory):
        self.memory = memory
        self.turns = memory.turns
        self.vectors = memory.vectors
        self.embedder = memory.embedder

    async def search(self, namespace: str, query: str, limit: int | None = None) -> list[Hit]:
        """Exactly what a turn with the message `query` would put in its prompt, in prompt order."""
        vector = (await self.embedder.embed([query]))[0]
        return await self.memory.recall(namespace, query, vector, limit=limit)

    async def list(self, namespace: str, limit: int, offset: int = 0) -> list[Document]:
        return await self.turns.memories(namespace, limit, offset)

    async def get(self, namespace: str, doc_id: int) -> Document | None:
        return await self.turns.memory(namespace, doc_id)

    async def add(self, namespace: str, items: Sequence[NewMemory]) -> list[Document]:
        """Add memories by hand (or from an export), embedded `_BATCH` at a time."""
        added = []
        for start in range(0, len(items), _BATCH):
            batch = items[start:start + _BATCH]
            vectors = await self.embedder.embed([m.text for m in batch], background=True)
            for item, vector in zip(batch, vectors, strict=True):
                added.append(await self.turns.add_memory(namespace, item.text, vector, item.created or time.time(),
                                                         item.session))
        await self.vectors.refresh(namespace)
        return added

    async def edit(self, namespace: str, doc_id: int, text: str) -> Document | None:
        vector = (await self.embedder.embed([text]))[0]
        edited = await self.turns.edit_memory(namespace, doc_id, text, vector)
        await self.vectors.refresh(namespace)
        return edited

    async def delete(self, namespace: str, doc_id: int) -> bool:
        deleted = await self.turns.delete_memory(namespace, doc_id)
        await self.vectors.refresh(namespace)
        return deleted

    async def export(self, namespace: str) -> AsyncIterator[Document]:
        offset = 0
        while page := await self.turns.memories(namespace, _BATCH, offset):
            for doc in page:
                yield doc
            offset += len(page)
