"""The SQLite TurnStore: ownership of sessions and the compare-and-set flush."""

import sqlite3

import numpy as np
import pytest

from server.store.sqlite_turns import SqliteTurnStore


@pytest.fixture
async def store(tmp_path):
    s = SqliteTurnStore(tmp_path / "turns.sqlite3")
    await s.start()
    yield s
    await s.close()


async def complete_turns(store, session, n, namespace=None):
    for i in range(n):
        t = await store.begin_turn(session, namespace or f"session:{session}", f"message {i}")
        await store.finish_turn(t.id, f"reply {i}", "complete")


async def test_a_session_belongs_to_the_namespace_that_started_it(store):
    await store.begin_turn("s", "user:alice", "hello")
    with pytest.raises(PermissionError):
        await store.begin_turn("s", "user:mallory", "let me in")


async def test_two_flushes_planned_from_the_same_watermark_commit_once(store):
    await complete_turns(store, "s", 5)
    first = await store.plan_flush("s", 5)
    second = await store.plan_flush("s", 5)
    vectors = np.ones((len(first.documents), 4), np.float32)
    assert len(await store.commit_flush(first, vectors)) == 10  # a memory per message
    assert await store.commit_flush(second, vectors) is None
    assert await store.flush_count("s") == 1
    assert await store.buffer("s") == []
    assert await store.plan_flush("s", 5) is None


async def test_only_completed_turns_count_towards_a_flush(store):
    await complete_turns(store, "s", 4)
    failed = await store.begin_turn("s", "session:s", "this one fails")
    await store.finish_turn(failed.id, "", "failed")
    assert await store.plan_flush("s", 5) is None
    await complete_turns(store, "s", 1)
    plan = await store.plan_flush("s", 5)
    assert [t.seq for t in plan.turns] == [1, 2, 3, 4, 6]


async def test_pending_turns_left_by_a_crash_become_interrupted(store):
    await store.begin_turn("s", "session:s", "the server died here")
    assert await store.interrupt_pending() == 1
    assert [t.status for t in await store.history("s")] == ["interrupted"]


async def test_a_forgotten_session_leaves_no_trace_in_the_database_file_or_its_wal(store, tmp_path):
    secret = "zanzibar-quokka-7731"

    async def tell(count: int, what: str) -> None:
        for i in range(count):
            turn = await store.begin_turn("secret", "session:secret", f"{secret} {what} {i}")
            await store.finish_turn(turn.id, f"noted: {secret} {what} {i}", "complete")

    await tell(5, "early")
    plan = await store.plan_flush("secret", 5)
    await store.commit_flush(plan, np.ones((len(plan.documents), 4), np.float32))
    outside = sqlite3.connect(store.path)  # as an operator (or SQLite's auto-checkpoint) would
    outside.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    outside.close()
    await tell(2, "late")  # these stay in the WAL only
    await complete_turns(store, "kept", 1)

    def files_holding(text: str) -> list[str]:
        files = [store.path, store.path.with_name(store.path.name + "-wal")]
        return [f.name for f in files if f.exists() and text.encode() in f.read_bytes()]

    assert files_holding(secret) == ["turns.sqlite3", "turns.sqlite3-wal"]
    await store.forget_session("secret")
    assert files_holding(secret) == []
    assert files_holding("reply 0") and [t.response for t in await store.history("kept")] == ["reply 0"]


async def test_turns_of_an_earlier_release_keep_their_recalled_memories_by_id_only(tmp_path):
    """Turns once stored a copy of each recalled memory's text; at start the copies go, the ids stay."""
    path = tmp_path / "turns.sqlite3"
    store = SqliteTurnStore(path)
    await store.start()
    turn = await store.begin_turn("s", "user:u", "do you remember?")
    await store.close()
    old = '{"memories": [{"id": 7, "text": "User: my PIN is 4711", "created": 1.0}], "search": {"query": "q"}}'
    con = sqlite3.connect(path)
    con.execute("UPDATE turns SET details = ? WHERE id = ?", (old, turn.id))
    con.execute("PRAGMA user_version = 0")
    con.commit()
    con.close()

    store = SqliteTurnStore(path)
    await store.start()
    try:
        (stored,) = await store.history("s")
    finally:
        await store.close()
    assert stored.details is not None and "4711" not in stored.details
    assert sqlite3.connect(path).execute("SELECT json(details) FROM turns").fetchone()[0] == \
        '{"memories":[7],"search":{"query":"q"}}'
