"""The TurnStore contract, run against the embedded SQLite store and the Redis store alike: whatever
the pipeline sees through the seam (buffer, flush, log, forget, knowledge) must be the same."""

import numpy as np
import pytest

from server.protocols import KNOWLEDGE_NAMESPACE, ImportedTurn
from server.store.faiss_index import FaissVectorStore
from server.store.sqlite_turns import SqliteTurnStore

pytestmark = pytest.mark.redis

DIM = 16


def unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def vectors_for(plan, seed: int) -> np.ndarray:
    """One embedding per document the plan writes (a turn becomes one memory per side that said something)."""
    return unit_vectors(len(plan.documents), seed)


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
    vectors = vectors_for(plan, seed=1)

    docs = await store.commit_flush(plan, vectors)
    assert [(d.turn, d.text) for d in docs] == [(t.id, text) for t, text in plan.documents]
    assert [text for _, text in plan.documents[:2]] == ["User: message 0", "Assistant: reply to message 0"]
    assert [d.turn for d in docs[::2]] == [t.id for t in turns]
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
    vectors = vectors_for(plan, seed=2)
    docs = await store.commit_flush(plan, vectors)
    index = FaissVectorStore(store.log_since, DIM)
    assert (await index.search("session:gone", vectors[3], 1))[0].doc.id == docs[3].id

    assert await store.forget_session("gone") == 10
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

    assert await store.commit_flush(stale, vectors_for(stale, seed=5)) is None
    assert [t.id for t in await store.buffer("again")] == [t.id for t in fresh]
    assert await store.sessions_needing_flush(5) == ["again"]
    plan = await store.plan_flush("again", 5)
    assert (plan.after_seq, [t.id for t in plan.turns]) == (0, [t.id for t in fresh])
    docs = await store.commit_flush(plan, vectors_for(plan, seed=6))
    assert [d.text for d in docs] == [text for _, text in plan.documents]
    assert await store.flush_count("again") == 1
    log = await store.log_since("session:again", None)
    assert [e.doc.text for e in log] == [text for _, text in plan.documents]


# ------------------------------------------------------------------ imports, sessions and the memory API

async def import_chat(store, session: str, namespace: str, times: list[float], names=("Alice", "Bot")):
    turns = [ImportedTurn(f"question {i} about {session}", f"answer {i}", at, *names) for i, at in enumerate(times)]
    return await store.import_turns(session, namespace, turns)


def fields(turn):
    return (turn.id, turn.session, turn.seq, turn.user_text, turn.response, turn.status, turn.created, turn.user_name,
            turn.assistant_name)


async def test_imported_turns_follow_the_existing_ones_complete_in_order_with_their_speakers_and_times(store):
    live = await complete_turns(store, "imp", ["live first"], namespace="user:ann")
    turns = [ImportedTurn("hi", "hello there", 1000.5, "Ann", "Sage"),
             ImportedTurn("", "an opening by the assistant", 2000.25, None, "Sage"),
             ImportedTurn("bye", "", 3000.125)]
    records = await store.import_turns("imp", "user:ann", turns)

    assert [(r.seq, r.status, r.created, r.user_name, r.assistant_name) for r in records] == [
        (2, "complete", 1000.5, "Ann", "Sage"), (3, "complete", 2000.25, None, "Sage"),
        (4, "complete", 3000.125, None, None)]
    history = await store.history("imp")
    assert [fields(t) for t in history[1:]] == [fields(r) for r in records]
    assert [t.id for t in history] == [live[0].id] + [r.id for r in records]
    assert [fields(t) for t in await store.buffer("imp")] == [fields(t) for t in history]
    assert [t.memory_texts for t in history[1:]] == [
        ["Ann: hi", "Sage: hello there"], ["Sage: an opening by the assistant"], ["User: bye"]]
    assert await store.sessions_needing_flush(4) == ["imp"]
    assert (await store.begin_turn("imp", "user:ann", "after the import")).seq == 5


async def test_a_flush_dates_each_memory_by_when_its_turn_was_said_and_names_the_turn(store):
    records = await import_chat(store, "old", "user:bo", [1000.0, 2000.0])
    plan = await store.plan_flush("old", 1)
    docs = await store.commit_flush(plan, vectors_for(plan, seed=11))
    expected = [(r.id, r.created, text) for r in records for text in (f"Alice: {r.user_text}", f"Bot: {r.response}")]
    assert [(d.turn, d.created, d.text) for d in docs] == expected
    log = await store.log_since("user:bo", None)
    assert [(e.doc.turn, e.doc.created, e.doc.text, e.doc.session) for e in log] == [(*x, "old") for x in expected]
    listed = await store.memories("user:bo", 10)  # the later turn first; its two sides by id, the later first
    assert [(m.id, m.turn, m.created) for m in listed] == [(d.id, d.turn, d.created) for d in reversed(docs)]


async def test_an_import_into_another_namespaces_session_is_refused_and_writes_nothing(store):
    await complete_turns(store, "owned", ["mine"], namespace="user:alice")
    before = [fields(t) for t in await store.history("owned")]
    with pytest.raises(PermissionError):
        await import_chat(store, "owned", "user:mallory", [1.0, 2.0])
    assert [fields(t) for t in await store.history("owned")] == before
    assert await store.sessions_needing_flush(2) == [] and await store.sessions("user:mallory", 10) == []
    assert (await store.begin_turn("owned", "user:alice", "still mine")).seq == 2


async def test_an_empty_import_creates_the_session_for_its_namespace(store):
    assert await store.import_turns("empty", "user:cy", []) == []
    assert await store.session_namespace("empty") == "user:cy"
    [info] = await store.sessions("user:cy", 10)
    assert (info.id, info.turns, info.title, info.updated) == ("empty", 0, "", info.created)
    with pytest.raises(PermissionError):
        await store.begin_turn("empty", "user:mallory", "mine now?")
    assert (await store.begin_turn("empty", "user:cy", "first")).seq == 1


async def test_sessions_are_listed_most_recently_active_first_with_counts_and_titles_per_namespace(store):
    long_first = "x" * 79 + "ü" + "tail that no title shows"
    await store.import_turns("old", "user:dee", [ImportedTurn(long_first, "a", 100.0), ImportedTurn("q", "b", 200.0)])
    await import_chat(store, "tie-b", "user:dee", [300.0])
    await import_chat(store, "tie-a", "user:dee", [250.0, 300.0])
    await complete_turns(store, "live", ["live one", "live two"], namespace="user:dee")
    await complete_turns(store, "elsewhere", ["not dee's"], namespace="user:eve")

    listed = await store.sessions("user:dee", 10)
    assert [(s.id, s.turns) for s in listed] == [("live", 2), ("tie-a", 2), ("tie-b", 1), ("old", 2)]
    assert [s.updated for s in listed[1:]] == [300.0, 300.0, 200.0]
    assert listed[0].updated == (await store.history("live"))[-1].created
    assert listed[3].title == long_first[:80] and listed[0].title == "live one"
    assert all(s.created > 1_000_000_000 for s in listed)  # when the session was made here, not its turns' times
    assert [s.id for s in await store.sessions("user:dee", 2, 1)] == ["tie-a", "tie-b"]
    assert await store.sessions("user:dee", 10, 4) == [] and await store.sessions("user:dee", 0) == []
    assert [s.id for s in await store.sessions("user:eve", 10)] == ["elsewhere"]

    await complete_turns(store, "old", ["back again"], namespace="user:dee")
    assert [s.id for s in await store.sessions("user:dee", 2)] == ["old", "live"]
    await store.forget_session("old")
    assert [s.id for s in await store.sessions("user:dee", 10)] == ["live", "tie-a", "tie-b"]


async def add_memories(store, namespace: str, texts: list[str], times: list[float], seed: int = 20):
    vectors = unit_vectors(len(texts), seed)
    return [await store.add_memory(namespace, text, v, at) for text, v, at in zip(texts, vectors, times, strict=True)]


async def test_memories_are_listed_newest_first_then_by_id_a_page_at_a_time_and_only_the_namespaces_own(store):
    # twelve at one time: ties order by id, 12 before 9 (not as text would sort them)
    tied = await add_memories(store, "user:fay", [f"tied {i}" for i in range(12)], [500.0] * 12)
    early, late = await add_memories(store, "user:fay", ["early", "late"], [100.0, 900.0], seed=21)
    await add_memories(store, "user:gus", ["gus's"], [1000.0], seed=22)

    listed = await store.memories("user:fay", 20)
    assert [d.id for d in listed] == [late.id] + [d.id for d in reversed(tied)] + [early.id]
    assert all(d.embedding is None and d.namespace == "user:fay" for d in listed)
    assert [(d.text, d.created, d.turn) for d in listed[:2]] == [("late", 900.0, None), ("tied 11", 500.0, None)]
    pages = [await store.memories("user:fay", 5, offset) for offset in (0, 5, 10, 15)]
    assert [d.id for page in pages for d in page] == [d.id for d in listed] and pages[3] == []
    assert await store.memories("user:fay", 0) == []
    assert [d.text for d in await store.memories("user:gus", 20)] == ["gus's"]
    assert await store.memories("user:nobody", 20) == []


async def test_a_memory_added_by_hand_reads_back_and_reaches_the_indexes(store):
    vector = unit_vectors(1, seed=30)[0]
    added = await store.add_memory("user:hal", "Hal keeps bees on the roof", vector, 1234.5, session="hives")
    assert (added.namespace, added.text, added.session, added.created, added.turn) == (
        "user:hal", "Hal keeps bees on the roof", "hives", 1234.5, None)
    got = await store.memory("user:hal", added.id)
    assert (got.id, got.text, got.session, got.created, got.turn) == (added.id, added.text, "hives", 1234.5, None)
    assert await store.memory("user:hal", added.id + 1000) is None

    index = FaissVectorStore(store.log_since, DIM)
    assert [h.doc.id for h in await index.search_text("user:hal", "bees", 5)] == [added.id]
    [hit] = await index.search("user:hal", vector, 5)
    assert (hit.doc.id, hit.doc.created, hit.doc.session) == (added.id, 1234.5, "hives")
    [entry] = await store.log_since("user:hal", None)
    assert (entry.op, entry.doc.id, entry.doc.created, entry.doc.turn) == ("add", added.id, 1234.5, None)
    assert "user:hal" in await store.namespaces()

    older = await store.add_memory("user:hal", "Hal's older note", unit_vectors(1, seed=31)[0], 1000.0)
    assert await store.forget_session("hives") == 1  # a memory of a session goes with it
    assert await store.memory("user:hal", added.id) is None
    assert [d.id for d in await store.memories("user:hal", 1)] == [older.id]
    assert await index.search_text("user:hal", "bees", 5) == []


async def test_an_edited_memory_keeps_its_id_date_and_turn_and_indexes_forget_its_old_text(store):
    await store.import_turns("trip", "user:ida", [ImportedTurn("a question about the trip", "", 4000.0)])
    old_vector, new_vector = unit_vectors(2, seed=40)
    [flushed] = await store.commit_flush(await store.plan_flush("trip", 1), old_vector[None, :])
    index = FaissVectorStore(store.log_since, DIM)
    assert [h.doc.id for h in await index.search_text("user:ida", "question trip", 5)] == [flushed.id]

    edited = await store.edit_memory("user:ida", flushed.id, "Ida flew to Lisbon in May", new_vector)
    assert (edited.id, edited.text, edited.created, edited.turn, edited.session) == (
        flushed.id, "Ida flew to Lisbon in May", 4000.0, flushed.turn, "trip")
    got = await store.memory("user:ida", flushed.id)
    assert (got.text, got.created, got.turn, got.session) == (edited.text, 4000.0, flushed.turn, "trip")
    assert [(d.id, d.text) for d in await store.memories("user:ida", 5)] == [(flushed.id, edited.text)]

    for view in (index, FaissVectorStore(store.log_since, DIM)):  # followed, and replayed from the start
        assert await view.search_text("user:ida", "question trip", 5) == []
        assert [h.doc.text for h in await view.search_text("user:ida", "Lisbon", 5)] == [edited.text]
        assert [(h.doc.id, h.doc.text) for h in await view.search("user:ida", old_vector, 5)] == [
            (flushed.id, edited.text)]
        [hit] = await view.search("user:ida", new_vector, 1)
        assert hit.score == pytest.approx(1.0) and hit.doc.created == 4000.0


async def test_a_deleted_memory_is_gone_from_reads_lists_and_indexes(store):
    kept, gone = await add_memories(store, "user:jo", ["Jo plays the oboe", "Jo hates olives"], [1.0, 2.0])
    index = FaissVectorStore(store.log_since, DIM)
    assert [h.doc.id for h in await index.search_text("user:jo", "olives", 5)] == [gone.id]

    assert await store.delete_memory("user:jo", gone.id)
    assert not await store.delete_memory("user:jo", gone.id)
    assert await store.memory("user:jo", gone.id) is None
    assert [d.id for d in await store.memories("user:jo", 1)] == [kept.id]  # the newer one left no gap
    vector = unit_vectors(2, seed=20)[1]
    for view in (index, FaissVectorStore(store.log_since, DIM)):
        assert await view.search_text("user:jo", "olives", 5) == []
        assert [h.doc.id for h in await view.search("user:jo", vector, 5)] == [kept.id]


async def test_another_namespace_can_neither_read_nor_edit_nor_delete_a_memory(store):
    [mine] = await add_memories(store, "user:kim", ["Kim's door code is 4711"], [10.0])
    head = (await store.log_since("user:kim", None))[-1].cursor
    assert await store.memory("user:lex", mine.id) is None
    assert await store.edit_memory("user:lex", mine.id, "overwritten", unit_vectors(1, seed=50)[0]) is None
    assert not await store.delete_memory("user:lex", mine.id)

    got = await store.memory("user:kim", mine.id)
    assert (got.text, got.created) == ("Kim's door code is 4711", 10.0)
    assert await store.log_since("user:kim", head) == []  # nothing logged for the owner's indexes either
    assert await store.log_since("user:lex", None) == [] and await store.memories("user:lex", 5) == []
    [hit] = await FaissVectorStore(store.log_since, DIM).search("user:kim", mine.embedding, 1)
    assert hit.doc.text == "Kim's door code is 4711"


async def test_knowledge_chunks_are_listed_under_the_knowledge_namespace_until_dropped(store):
    await store.replace_knowledge("faq.md", "d1", ["chunk one", "chunk two"], unit_vectors(2, seed=60))
    assert sorted(d.text for d in await store.memories(KNOWLEDGE_NAMESPACE, 10)) == ["chunk one", "chunk two"]
    await store.replace_knowledge("faq.md", "d2", ["chunk three"], unit_vectors(1, seed=61))
    assert [d.text for d in await store.memories(KNOWLEDGE_NAMESPACE, 10)] == ["chunk three"]
    await store.drop_knowledge("faq.md")
    assert await store.memories(KNOWLEDGE_NAMESPACE, 10) == []


async def test_superseding_turns_removes_them_their_memories_and_their_place_in_the_buffer(store):
    """A regenerated or edited exchange replaces the one before it: flushed or buffered, the old turn goes with
    every memory made of it; pending turns and other sessions' turns stay."""
    flushed = await complete_turns(store, "re", ["one", "two"], namespace="user:u")
    plan = await store.plan_flush("re", 2)
    vectors = vectors_for(plan, seed=5)
    docs = await store.commit_flush(plan, vectors)
    index = FaissVectorStore(store.log_since, DIM)
    assert len(await index.search("user:u", vectors[2], 4)) == 4
    buffered = await complete_turns(store, "re", ["three", "four"], namespace="user:u")
    other = await complete_turns(store, "elsewhere", ["two"], namespace="user:u")
    running = await store.begin_turn("re", "user:u", "five")

    removed = await store.supersede_turns("re", [flushed[1].id, buffered[0].id, other[0].id, running.id, "nope"])
    assert removed == 2, "the two memories of the flushed turn 'two'"
    assert [t.user_text for t in await store.history("re")] == ["one", "four", "five"]
    assert [t.user_text for t in await store.buffer("re")] == ["four"]
    assert [t.user_text for t in await store.history("elsewhere")] == ["two"]
    assert {d.id for d in await store.memories("user:u", 10)} == {docs[0].id, docs[1].id}
    assert await store.memory("user:u", docs[2].id) is None and await store.memory("user:u", docs[3].id) is None
    assert {h.doc.id for h in await index.search("user:u", vectors[2], 4)} == {docs[0].id, docs[1].id}
    assert await store.sessions_needing_flush(2) == [], "one buffered turn left, not two"
    await store.finish_turn(running.id, "reply to five", "complete")
    assert [t.user_text for t in (await store.plan_flush("re", 2)).turns] == ["four", "five"]
    assert await store.supersede_turns("re", []) == 0


async def test_a_turns_details_and_a_sessions_own_title_are_kept_and_read_back(store):
    """What a turn showed besides its reply (recalled memories, search) comes back with its history (the web UI
    shows it again after a reload); a renamed chat lists under its new title."""
    details = '{"memories": [{"id": 1, "text": "User: 東坡 likes pork", "created": 1.0}]}'
    first = await store.begin_turn("d", "user:u", "first message")
    await store.finish_turn(first.id, "reply", "complete", details)
    second = await store.begin_turn("d", "user:u", "second")
    await store.finish_turn(second.id, "", "failed")
    assert [t.details for t in await store.history("d")] == [details, None]
    assert [s.title for s in await store.sessions("user:u", 10)] == ["first message"]
    await store.rename_session("d", "Pork 東坡肉")
    await store.rename_session("nobody", "not created by a rename")
    assert [s.title for s in await store.sessions("user:u", 10)] == ["Pork 東坡肉"]
    assert await store.session_namespace("nobody") is None
