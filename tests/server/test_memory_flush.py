"""The flush of buffers into long-term memory, against the real SQLite store: a forget while a flush
embeds, and the start-up recovery of many sessions at once."""

import asyncio
import time

import numpy as np
import pytest

from server.memory.embedder import SentenceTransformerEmbedder
from server.memory.ranking import RankingPolicy
from server.memory.service import LongTermMemory
from server.metrics import Metrics
from server.store.sqlite_turns import SqliteTurnStore

DIM = 8


def unit_vectors(rows: int) -> np.ndarray:
    vectors = np.random.default_rng(rows).standard_normal((rows, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class NoIndex:
    """A vector store that finds nothing: these tests look at what the store commits."""

    async def refresh(self, namespace: str) -> None:
        return None

    async def search(self, namespace: str, vector: np.ndarray, k: int) -> list:
        return []


class GatedEmbedder:
    """Holds every embedding until the test opens the gate, so a test can act while a flush embeds."""

    dim = DIM

    def __init__(self):
        self.gate = asyncio.Event()
        self.embedding = asyncio.Event()

    async def embed(self, texts, background: bool = False) -> np.ndarray:
        self.embedding.set()
        await self.gate.wait()
        return unit_vectors(len(texts))

    async def close(self) -> None:
        return None


@pytest.fixture
async def store(tmp_path):
    s = SqliteTurnStore(tmp_path / "chat.sqlite3")
    await s.start()
    yield s
    await s.close()


async def complete_turns(store, session: str, texts: list[str]) -> None:
    for text in texts:
        turn = await store.begin_turn(session, f"session:{session}", text)
        await store.finish_turn(turn.id, f"reply to {text}", "complete")


async def added_texts(store, namespace: str) -> list[str]:
    live: dict[int, str] = {}
    for entry in await store.log_since(namespace, None):
        if entry.op == "add":
            live[entry.doc.id] = entry.doc.text
        else:
            live.pop(entry.doc.id, None)
    return list(live.values())


async def test_a_forget_during_a_flush_keeps_the_forgotten_turns_out_and_flushes_the_new_conversation(store):
    embedder = GatedEmbedder()
    memory = LongTermMemory(store, NoIndex(), embedder, Metrics(), flush_every=5, policy=RankingPolicy(),
                            knowledge_top_k=0)
    await complete_turns(store, "s", [f"forgotten secret {i}" for i in range(5)])
    flushing = asyncio.create_task(memory.flush("s"))
    await embedder.embedding.wait()  # the flush has planned the 5 turns and is embedding them

    await memory.forget("s", "session:s")
    await complete_turns(store, "s", [f"new start {i}" for i in range(5)])
    embedder.gate.set()
    assert await flushing == 10  # a memory per message

    texts = await added_texts(store, "session:s")
    assert [t for t in texts if t.startswith("User: ")] == [f"User: new start {i}" for i in range(5)]
    assert not any("forgotten" in t for t in texts)
    assert await store.buffer("s") == [] and await store.sessions_needing_flush(5) == []


@pytest.fixture(scope="module")
def lingering_embedder():
    """The packaged embedder with a long background linger: a flush's embedding waits it out first."""
    loop = asyncio.new_event_loop()
    embedder = SentenceTransformerEmbedder(background_linger=1.0)
    loop.run_until_complete(embedder.start())
    yield embedder, loop
    loop.run_until_complete(embedder.close())
    loop.close()


def test_recovering_many_sessions_costs_about_one_linger_not_one_per_session(lingering_embedder, tmp_path):
    embedder, loop = lingering_embedder
    sessions = [f"crashed-{n}" for n in range(10)]

    async def scenario() -> float:
        store = SqliteTurnStore(tmp_path / "chat.sqlite3")
        await store.start()
        try:
            for session in sessions:
                await complete_turns(store, session, [f"{session} said {i}" for i in range(5)])
            memory = LongTermMemory(store, NoIndex(), embedder, Metrics(), flush_every=5, policy=RankingPolicy(),
                                    knowledge_top_k=0)
            started = time.perf_counter()
            await memory.recover()
            elapsed = time.perf_counter() - started
            assert await store.sessions_needing_flush(5) == []
            assert [await store.flush_count(s) for s in sessions] == [1] * len(sessions)
            return elapsed
        finally:
            await store.close()

    elapsed = loop.run_until_complete(scenario())
    # one linger (1 s) plus encoding 50 short texts; one linger per session would be 10 s
    assert elapsed < 3.0, f"recovery took {elapsed:.1f} s for {len(sessions)} sessions"


class CountingEmbedder:
    """Random unit vectors; counts the calls, each a batch the real lanes would encode."""

    dim = DIM

    def __init__(self):
        self.calls: list[int] = []

    async def embed(self, texts, background: bool = False) -> np.ndarray:
        self.calls.append(len(texts))
        return unit_vectors(len(texts))


async def test_importing_many_chats_embeds_them_together_and_leaves_none_unflushed(store):
    from server.protocols import ImportedTurn

    embedder = CountingEmbedder()
    memory = LongTermMemory(store, NoIndex(), embedder, Metrics(), flush_every=5, policy=RankingPolicy(),
                            knowledge_top_k=0)
    chats = [(f"chat-{n}", "user:local", [ImportedTurn(f"chat {n} question {i}", f"answer {i}", 100.0 * n + i)
                                          for i in range(1 + n % 3)]) for n in range(40)]

    stored = await memory.import_sessions(chats)

    assert [len(records) for records in stored] == [len(turns) for _, _, turns in chats]
    assert embedder.calls == [2 * sum(len(turns) for _, _, turns in chats)]  # one call, not one per chat
    assert [await store.buffer(session) for session, _, _ in chats] == [[]] * len(chats)
    texts = await added_texts(store, "user:local")
    assert "User: chat 39 question 0" in texts and len(texts) == embedder.calls[0]


async def test_a_huge_import_is_embedded_in_pieces_so_other_flushes_queue_between_them(store):
    from server.protocols import ImportedTurn

    embedder = CountingEmbedder()
    memory = LongTermMemory(store, NoIndex(), embedder, Metrics(), flush_every=5, policy=RankingPolicy(),
                            knowledge_top_k=0)
    turns = [ImportedTurn(f"message {i}", f"reply {i}", float(i)) for i in range(600)]

    [records] = await memory.import_sessions([("long", "user:local", turns)])

    assert len(records) == 600 and embedder.calls == [1024, 176]
    assert len(await added_texts(store, "user:local")) == 1200
