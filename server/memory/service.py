"""Long-term memory: retrieval for a turn, and the flush of the short-term buffer into documents."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from server.events import TurnCompleted
from server.failpoints import failpoint
from server.logs import get_logger
from server.metrics import Metrics
from server.protocols import KNOWLEDGE_NAMESPACE, Embedder, Hit, TurnStore, VectorStore

log = get_logger(__name__)


class LongTermMemory:
    def __init__(self, turns: TurnStore, vectors: VectorStore, embedder: Embedder, metrics: Metrics,
                 flush_every: int, top_k: int, knowledge_top_k: int):
        self.turns = turns
        self.vectors = vectors
        self.embedder = embedder
        self.metrics = metrics
        self.flush_every = flush_every
        self.top_k = top_k
        self.knowledge_top_k = knowledge_top_k
        self._flushing: dict[str, asyncio.Event] = {}

    async def retrieve(self, namespace: str, vector: np.ndarray) -> tuple[list[Hit], list[Hit]]:
        """The user's most similar past pairs and the most similar knowledge-base chunks."""
        started = time.perf_counter()
        # one after the other: an index in memory answers without suspending, and a gather would cost
        # two task hops through the event loop for microseconds of work
        memories = await self.vectors.search(namespace, vector, self.top_k)
        knowledge = await self.vectors.search(KNOWLEDGE_NAMESPACE, vector, self.knowledge_top_k)
        self.metrics.retrieval.observe(time.perf_counter() - started)
        return memories, knowledge

    async def on_turn_completed(self, event: TurnCompleted) -> None:
        if event.status == "complete":
            await self.flush(event.session)

    async def flush(self, session: str) -> int:
        """Flush the session's buffer while it holds FLUSH_EVERY turns; return documents written.

        One flush per session runs at a time in this process; across processes (or after a crash)
        the store's compare-and-set on the watermark makes a second flush of the same turns a no-op.
        """
        running = self._flushing.get(session)
        if running is not None:
            await running.wait()
            return 0
        done = self._flushing[session] = asyncio.Event()
        written = 0
        try:
            while plan := await self.turns.plan_flush(session, self.flush_every):
                embeddings = await self.embedder.embed([t.pair_text for t in plan.turns], background=True)
                await failpoint("flush.before_commit")
                docs = await self.turns.commit_flush(plan, embeddings)
                await failpoint("flush.after_commit")
                if docs is None:
                    continue  # another writer moved the watermark; plan again from the new one
                written += len(docs)
                self.metrics.flushes.inc()
                self.metrics.flushed_documents.inc(len(docs))
                log.info("memory flushed", session=session, documents=len(docs), upto=plan.upto_seq)
                await self.vectors.refresh(plan.namespace)
        finally:
            del self._flushing[session]
            done.set()
        return written

    async def recover(self) -> None:
        """Finish flushes that a crash interrupted before their commit."""
        for session in await self.turns.sessions_needing_flush(self.flush_every):
            await self.flush(session)

    async def forget(self, session: str, namespace: str) -> int:
        """Delete a session's turns and the memories made of them; return how many memories went.

        The caller keeps turns off the session meanwhile; the index refresh drops the deleted memories
        from what `retrieve` can find.
        """
        removed = await self.turns.forget_session(session)
        await self.vectors.refresh(namespace)
        return removed
