"""Long-term memory: retrieval for a turn, and the flush of the short-term buffer into documents."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence

import numpy as np

from server.estimate import approximate_tokens
from server.events import TurnCompleted
from server.failpoints import failpoint
from server.logs import get_logger
from server.memory.people import naming_people
from server.memory.ranking import DEPTH, RankingPolicy, fuse, within_budget, worth_recalling
from server.metrics import Metrics
from server.prompt import memory_order
from server.protocols import (
    KNOWLEDGE_NAMESPACE,
    Embedder,
    FlushPlan,
    Hit,
    ImportedTurn,
    TurnRecord,
    TurnStore,
    VectorStore,
)

log = get_logger(__name__)

# Sessions flushed per embedding call (recovery, imports): a usual backlog waits out the background linger
# once, and a huge one is not embedded all at once.
_FLUSH_GROUP = 256
# A memory's estimated tokens, remembered: a turn weighs up to 2 × DEPTH candidates against the budget, mostly the
# same memories turn after turn (the texts are the index's own objects, so their hashes are cached too).
_memory_tokens = functools.lru_cache(maxsize=8192)(approximate_tokens)
# Texts per background embedding call: a huge import does not hold the flush lane for minutes while other
# sessions' flushes wait behind it (they queue between its pieces).
_EMBED_PIECE = 1024


def without_buffered(hits: list[Hit], buffer: Sequence[TurnRecord]) -> list[Hit]:
    """The memories that are not made of turns of the buffer."""
    held = {t.id for t in buffer}
    return [h for h in hits if h.doc.turn not in held] if held else hits



class ImportPending(RuntimeError):
    """Imported turns were stored but could not be flushed into memory yet (embedder or store failed)."""

    def __init__(self, records: Sequence[TurnRecord], cause: BaseException):
        super().__init__(f"{len(records)} turns stored, not yet in memory: {cause!r}")
        self.records = list(records)
        self.cause = cause

class LongTermMemory:
    def __init__(self, turns: TurnStore, vectors: VectorStore, embedder: Embedder, metrics: Metrics,
                 flush_every: int, policy: RankingPolicy, knowledge_top_k: int, top_k: int | None = None):
        self.turns = turns
        self.vectors = vectors
        self.embedder = embedder
        self.metrics = metrics
        self.flush_every = flush_every
        self.policy = policy
        self.top_k = top_k  # at most this many memories; None: as many as fit the budget
        self.knowledge_top_k = knowledge_top_k
        self._flushing: dict[str, asyncio.Event] = {}

    async def retrieve(self, namespace: str, text: str, vector: np.ndarray,
                       buffer: Sequence[TurnRecord] = ()) -> tuple[list[Hit], list[Hit]]:
        """The user's memories for the message `text` (embedded: `vector`), other than the turns of `buffer`
        (the prompt's short-term turns), in prompt order; and the most similar knowledge-base chunks."""
        started = time.perf_counter()
        memories = await self.recall(namespace, text, vector, buffer)
        knowledge = await self.vectors.search(KNOWLEDGE_NAMESPACE, vector, self.knowledge_top_k)
        self.metrics.retrieval.observe(time.perf_counter() - started)
        return memories, knowledge

    async def recall(self, namespace: str, text: str, vector: np.ndarray, buffer: Sequence[TurnRecord] = (),
                     limit: int | None = None) -> list[Hit]:
        """What a turn with the message `text` puts in its prompt: fused, floored and budgeted (see
        `ranking`), in prompt order. One search after the other: an index in memory answers without
        suspending, and a gather would cost two task hops for microseconds of work."""
        if self.top_k == 0 or self.policy.budget_tokens <= 0 or not worth_recalling(text):
            return []
        dense = await self.vectors.search(namespace, vector, DEPTH)
        words = await self.vectors.search_text(namespace, text, DEPTH)
        people = await naming_people(text, functools.partial(self.vectors.search_text, namespace))
        # A flush that commits after the buffer was read has made its turns memories as well: the prompt
        # must not hold them twice.
        ranked = without_buffered(fuse(dense, words, text, self.policy, people), buffer)
        caps = [n for n in (limit, self.top_k) if n is not None]
        chosen = within_budget(ranked, self.policy.budget_tokens, _memory_tokens, min(caps) if caps else None)
        return memory_order(chosen)

    async def on_turn_completed(self, event: TurnCompleted) -> None:
        if event.status == "complete":
            await self.flush(event.session)

    async def flush(self, session: str, every: int | None = None) -> int:
        """Flush the session's buffer while it holds `every` turns (FLUSH_EVERY by default; 1 flushes all of
        it); return documents written.

        One flush per session runs at a time in this process; across processes (or after a crash)
        the store's compare-and-set on the watermark makes a second flush of the same turns a no-op.
        """
        while (running := self._flushing.get(session)) is not None:
            await running.wait()
            if every is None:
                return 0  # the running flush plans again before it stops: it takes what is due
        done = self._flushing[session] = asyncio.Event()
        written = 0
        try:
            while plan := await self.turns.plan_flush(session, every or self.flush_every):
                embeddings = await self._embed([text for _, text in plan.documents])
                # None: another writer moved the watermark (or the session was forgotten); plan again
                written += await self._commit(plan, embeddings) or 0
        finally:
            del self._flushing[session]
            done.set()
        return written

    async def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        pieces = [await self.embedder.embed(texts[i:i + _EMBED_PIECE], background=True)
                  for i in range(0, len(texts), _EMBED_PIECE)]
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

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
        return await self._flush_together(await self.turns.sessions_needing_flush(self.flush_every), self.flush_every)

    async def _flush_together(self, sessions: Sequence[str], every: int) -> int:
        """Flush the sessions' buffers while they hold `every` turns, a group of sessions per embedding call."""
        written = 0
        for start in range(0, len(sessions), _FLUSH_GROUP):
            written += await self._flush_group(sessions[start:start + _FLUSH_GROUP], every)
        return written

    async def _flush_group(self, sessions: Sequence[str], every: int) -> int:
        claimed = [s for s in sessions if s not in self._flushing]
        for session in claimed:
            self._flushing[session] = asyncio.Event()
        written, later = 0, [s for s in sessions if s not in claimed]  # flushing already: theirs, then the rest
        try:
            plans = [p for p in [await self.turns.plan_flush(s, every) for s in claimed] if p]
            texts = [text for plan in plans for _, text in plan.documents]
            embeddings = await self._embed(texts)
            start = 0
            for plan in plans:
                count = await self._commit(plan, embeddings[start:start + len(plan.documents)])
                start += len(plan.documents)
                if count is None:
                    later.append(plan.session)  # another writer moved on meanwhile
                written += count or 0
        finally:
            for session in claimed:
                self._flushing.pop(session).set()
        for session in later:  # what is left goes the usual way
            written += await self.flush(session, every)
        return written

    async def import_sessions(self, imports: Sequence[tuple[str, str, Sequence[ImportedTurn]]]
                              ) -> list[list[TurnRecord]]:
        """Store each (session, namespace, turns) as completed turns in order, then flush all of them into memory
        as live turns are flushed, many sessions per embedding call; returns, per session, its stored turns once
        they are retrievable. The caller keeps live turns off the sessions meanwhile."""
        stored: list[list[TurnRecord]] = []
        try:
            for session, namespace, turns in imports:  # no turns: only what the session holds unflushed
                stored.append(await self.turns.import_turns(session, namespace, turns) if turns else [])
            await self._flush_together([session for session, _, _ in imports], every=1)
        except Exception as exc:  # what is stored stays: the sessions' next flush makes it memories
            if len(stored) < len(imports) and not any(stored):
                raise  # nothing was stored
            raise ImportPending([r for records in stored for r in records], exc) from exc
        return stored

    async def forget(self, session: str, namespace: str) -> int:
        """Delete a session's turns and the memories made of them; return how many memories went.

        The caller keeps turns off the session meanwhile; the index refresh drops the deleted memories
        from what `retrieve` can find.
        """
        removed = await self.turns.forget_session(session)
        await self.vectors.refresh(namespace)
        return removed
