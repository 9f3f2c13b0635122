"""Long-term memory: retrieval for a turn, and the flush of the short-term buffer into documents."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

from server.events import TurnCompleted
from server.failpoints import failpoint
from server.logs import get_logger
from server.metrics import Metrics
from server.protocols import KNOWLEDGE_NAMESPACE, Embedder, FlushPlan, Hit, TurnRecord, TurnStore, VectorStore

log = get_logger(__name__)

# Sessions recovered per embedding call: a usual backlog waits out the background linger once, and a
# huge one is not embedded all at once.
_RECOVER_GROUP = 256


def without_buffered(hits: list[Hit], buffer: Sequence[TurnRecord]) -> list[Hit]:
    """The memories that are not also turns of the buffer (a memory is one turn's pair_text, kept with
    that turn's session)."""
    held = {(t.session, t.pair_text) for t in buffer}
    return [h for h in hits if (h.doc.session, h.doc.text) not in held] if held else hits


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

    async def retrieve(self, namespace: str, vector: np.ndarray,
                       buffer: Sequence[TurnRecord] = ()) -> tuple[list[Hit], list[Hit]]:
        """The user's most similar past pairs, other than the turns of `buffer` (the prompt's short-term
        turns), and the most similar knowledge-base chunks."""
        started = time.perf_counter()
        # A flush that commits after the buffer was read has made its turns memories as well: the prompt
        # must not hold them twice, so search past them. One search after the other: an index in memory
        # answers without suspending, and a gather would cost two task hops for microseconds of work.
        found = await self.vectors.search(namespace, vector, self.top_k + len(buffer) if self.top_k else 0)
        memories = without_buffered(found, buffer)[:self.top_k]
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
                # None: another writer moved the watermark (or the session was forgotten); plan again
                written += await self._commit(plan, embeddings) or 0
        finally:
            del self._flushing[session]
            done.set()
        return written

    async def _commit(self, plan: FlushPlan, embeddings: np.ndarray) -> int | None:
        """Commit one planned flush; the number of documents written, None when the plan is stale."""
        await failpoint("flush.before_commit")
        docs = await self.turns.commit_flush(plan, embeddings)
        await failpoint("flush.after_commit")
        if docs is None:
            return None
        self.metrics.flushes.inc()
        self.metrics.flushed_documents.inc(len(docs))
        log.info("memory flushed", session=plan.session, documents=len(docs), upto=plan.upto_seq)
        await self.vectors.refresh(plan.namespace)
        return len(docs)

    async def recover(self) -> int:
        """Finish the flushes that a crash or a stop left undone; return documents written.

        Sessions are planned together and embedded in one call per group: each background embedding
        first waits out the lane's linger, which one session after the other paid once per session.
        """
        sessions = await self.turns.sessions_needing_flush(self.flush_every)
        written = 0
        for start in range(0, len(sessions), _RECOVER_GROUP):
            written += await self._flush_group(sessions[start:start + _RECOVER_GROUP])
        return written

    async def _flush_group(self, sessions: Sequence[str]) -> int:
        claimed = [s for s in sessions if s not in self._flushing]  # one flushing already finishes by itself
        for session in claimed:
            self._flushing[session] = asyncio.Event()
        written, stale = 0, []
        try:
            plans = [p for p in [await self.turns.plan_flush(s, self.flush_every) for s in claimed] if p]
            texts = [t.pair_text for plan in plans for t in plan.turns]
            embeddings = await self.embedder.embed(texts, background=True) if texts else None
            start = 0
            for plan in plans:
                count = await self._commit(plan, embeddings[start:start + len(plan.turns)])
                start += len(plan.turns)
                if count is None:
                    stale.append(plan.session)
                written += count or 0
        finally:
            for session in claimed:
                self._flushing.pop(session).set()
        for session in stale:  # another writer moved on meanwhile: what is left goes the usual way
            written += await self.flush(session)
        return written

    async def forget(self, session: str, namespace: str) -> int:
        """Delete a session's turns and the memories made of them; return how many memories went.

        The caller keeps turns off the session meanwhile; the index refresh drops the deleted memories
        from what `retrieve` can find.
        """
        removed = await self.turns.forget_session(session)
        await self.vectors.refresh(namespace)
        return removed
