"""The TurnStore contract, run against the embedded SQLite store and the Redis store alike: whatever
the pipeline sees through the seam (buffer, flush, log, forget, knowledge) must be the same."""

import numpy as np
import pytest

from server.protocols import KNOWLEDGE_NAMESPACE
from server.store.faiss_index import FaissVectorStore
from server.store.sqlite_turns import SqliteTurnStore

pytestmark = pytest.mark.redis

DIM = 16


def unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=["embedded", "redis"])
async def store(request, tmp_path, replica):
    if request.param == "redis":
        yield await replica()
        return
    sqlite = SqliteTurnStore(tmp_path / "chat.sqlite3")
    await sqlite.start()
    yield sqlite
    await sqlite.close()


async def complete_turns(store, session: str, texts: list[str], namespace: str | None = None):
    turns = []
    for text in texts:
        turn = await store.begin_turn(session, namespace or f"session:{session}", text)
        await store.finish_turn(turn.id, f"reply to {text}", "complete")
        turns.append(turn)
    return turns


async def test_turns_are_numbered_per_session_and_only_completed_ones_enter_the_buffer(store):
    await complete_turns(store, "a", ["one", "two"])
    pending = await store.begin_turn("a", "session:a", "three")
    assert pending.seq == 3 and pending.status == "pending"
    assert [(t.seq, t.user_text, t.response) for t in await store.buffer("a")] == [
        (1, "one", "reply to one"), (2, "two", "reply to two")]
    await store.finish_turn(pending.id, "partial", "interrupted")
    history = await store.history("a")
    assert [(t.seq, t.status, t.response) for t in history] == [
        (1, "complete", "reply to one"), (2, "complete", "reply to two"), (3, "interrupted", "partial")]
    assert [t.seq for t in await store.buffer("a")] == [1, 2]
    assert await store.history("nobody") == [] and await store.buffer("nobody") == []
    assert await store.session_namespace("a") == "session:a"
    assert await store.session_namespace("nobody") is None


async def test_a_session_belongs_to_the_namespace_of_its_first_turn(store):
    await complete_turns(store, "mine", ["hello"], namespace="user:alice")
    with pytest.raises(PermissionError):
        await store.begin_turn("mine", "user:mallory", "let me in")
    assert [t.user_text for t in await store.history("mine")] == ["hello"]


async def test_a_flush_commits_once_and_replaying_the_same_plan_changes_nothing(store):
    turns = await complete_turns(store, "f", [f"message {i}" for i in range(5)])
    assert await store.plan_flush("f", 6) is None
    assert await store.sessions_needing_flush(5) == ["f"]
    plan = await store.plan_flush("f", 5)
    assert (plan.after_seq, plan.upto_seq, plan.namespace) == (0, 5, "session:f")
    vectors = unit_vectors(5, seed=1)

    docs = await store.commit_flush(plan, vectors)
    assert [d.text for d in docs] == [t.pair_text for t in plan.turns]
    assert plan.turns[0].pair_text == f"User: {turns[0].user_text}\nResponse: reply to {turns[0].user_text}"
    assert await store.commit_flush(plan, vectors) is None  # a second replica, or a retry after a crash
    assert await store.flush_count("f") == 1
    assert await store.buffer("f") == [] and await store.plan_flush("f", 5) is None
    assert await store.sessions_needing_flush(5) == []

    log = await store.log_since("session:f", None)
    assert [(e.op, e.doc.id, e.doc.session) for e in log] == [("add", d.id, "f") for d in docs]
    np.testing.assert_array_equal(np.stack([e.doc.embedding for e in log]), vectors)
    assert await store.log_since("session:f", log[-1].cursor) == []
    assert "session:f" in await store.namespaces()

    await complete_turns(store, "f", ["six"])
    assert [t.seq for t in await store.buffer("f")] == [6]


async def test_forgetting_a_session_removes_its_memories_from_every_index(store):
    await complete_turns(store, "gone", [f"secret {i}" for i in range(5)])
    plan = await store.plan_flush("gone", 5)
    vectors = unit_vectors(5, seed=2)
    docs = await store.commit_flush(plan, vectors)
    index = FaissVectorStore(store.log_since, DIM)
    assert (await index.search("session:gone", vectors[3], 1))[0].doc.id == docs[3].id

    assert await store.forget_session("gone") == 5
    assert await index.search("session:gone", vectors[3], 5) == []
    assert await store.history("gone") == [] and await store.flush_count("gone") == 0
    assert await store.session_namespace("gone") is None
    fresh = FaissVectorStore(store.log_since, DIM)  # a replica (or a restart) replaying the whole log
    assert await fresh.search("session:gone", vectors[3], 5) == []
    assert all(e.op == "del" and e.doc.text == "" for e in await store.log_since("session:gone", None))


async def test_knowledge_files_are_replaced_by_digest_and_dropped(store):
    index = FaissVectorStore(store.log_since, DIM)
    first = unit_vectors(2, seed=3)
    assert await store.replace_knowledge("faq.md", "d1", ["User: a\nResponse: b", "User: c\nResponse: d"], first)
    assert not await store.replace_knowledge("faq.md", "d1", ["ignored"], unit_vectors(1, seed=9))
    assert await store.knowledge_sources() == {"faq.md": "d1"}
    assert (await index.search(KNOWLEDGE_NAMESPACE, first[1], 1))[0].doc.text == "User: c\nResponse: d"

    second = unit_vectors(1, seed=4)
    assert await store.replace_knowledge("faq.md", "d2", ["User: e\nResponse: f"], second)
    assert [h.doc.text for h in await index.search(KNOWLEDGE_NAMESPACE, first[1], 5)] == ["User: e\nResponse: f"]
    await store.drop_knowledge("faq.md")
    assert await store.knowledge_sources() == {}
    assert await index.search(KNOWLEDGE_NAMESPACE, second[0], 5) == []


async def test_a_flush_planned_before_a_forget_never_commits_into_the_recreated_session(store):
    await complete_turns(store, "again", [f"forgotten secret {i}" for i in range(5)])
    stale = await store.plan_flush("again", 5)  # a background flush, embedding while the user forgets
    assert await store.forget_session("again") == 0
    fresh = await complete_turns(store, "again", [f"new start {i}" for i in range(5)])

    assert await store.commit_flush(stale, unit_vectors(5, seed=5)) is None
    assert [t.id for t in await store.buffer("again")] == [t.id for t in fresh]
    assert await store.sessions_needing_flush(5) == ["again"]
    plan = await store.plan_flush("again", 5)
    assert (plan.after_seq, [t.id for t in plan.turns]) == (0, [t.id for t in fresh])
    docs = await store.commit_flush(plan, unit_vectors(5, seed=6))
    assert [d.text for d in docs] == [t.pair_text for t in plan.turns]
    assert await store.flush_count("again") == 1
    log = await store.log_since("session:again", None)
    assert [e.doc.text for e in log] == [t.pair_text for t in plan.turns]
