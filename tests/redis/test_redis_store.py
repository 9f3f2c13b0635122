"""The Redis TurnStore as several replicas see it: one flush per plan, session leases, the shared log,
Redis outages, and the optional server-side KNN."""

import asyncio
import signal
import time

import numpy as np
import pytest

from server.config import RedisKnnMode, Settings
from server.errors import ClientError, StartupError
from server.protocols import ImportedTurn, SessionBusy, StoreUnavailable
from server.store.faiss_index import FaissVectorStore
from server.store.redis_link import RedisLink
from server.store.redis_turns import RedisTurnStore
from server.store.redis_vectors import RedisVectorStore
from tests.redis.test_store_contract import DIM, complete_turns, unit_vectors, vectors_for
from tests.support.redis import RedisServer, flushes, search_server_command

pytestmark = pytest.mark.redis


async def test_replicas_committing_the_same_flush_at_once_write_it_once(replica, redis_server, prefix):
    replicas = [await replica() for _ in range(4)]
    await complete_turns(replicas[0], "race", [f"m{i}" for i in range(5)])
    plans = await asyncio.gather(*(r.plan_flush("race", 5) for r in replicas))
    vectors = vectors_for(plans[0], seed=5)
    results = await asyncio.gather(*(r.commit_flush(p, vectors) for r, p in zip(replicas, plans, strict=True)))
    assert sum(r is not None for r in results) == 1
    assert flushes(redis_server.url, prefix, "race") == [(0, 5, 10)]  # a memory per side of each turn
    log = await replicas[3].log_since("session:race", None)
    assert sorted(e.doc.id for e in log) == sorted(d.id for d in next(r for r in results if r))


async def test_a_second_turn_on_a_session_is_refused_on_every_replica_until_the_first_ends(replica):
    a, b = await replica(), await replica()
    running = await a.begin_turn("busy", "session:busy", "first")
    with pytest.raises(SessionBusy) as refused:
        await b.begin_turn("busy", "session:busy", "second")
    assert isinstance(refused.value, ClientError) and refused.value.code == "turn_in_progress"
    with pytest.raises(SessionBusy):
        await b.forget_session("busy")
    assert [t.user_text for t in await b.history("busy")] == ["first"]  # the refused message left no trace

    await a.finish_turn(running.id, "done", "complete")
    second = await b.begin_turn("busy", "session:busy", "second")
    assert second.seq == 2


async def test_a_running_turn_keeps_its_lease_and_a_dead_replicas_lease_expires(replica):
    a, b = await replica(lease_ttl=1.0), await replica(lease_ttl=1.0)
    await a.begin_turn("long", "session:long", "a long answer")
    await asyncio.sleep(2.0)  # two lease lifetimes: A renews it while the turn runs
    with pytest.raises(SessionBusy):
        await b.begin_turn("long", "session:long", "meanwhile")

    await a.close()  # the replica dies mid-turn: nobody renews, nobody finishes
    assert await b.interrupt_pending() == 0  # the lease has not expired yet: the turn may still be running
    # the surviving replica reaps the orphan by itself once the lease has expired
    deadline = time.monotonic() + 5
    while (await b.history("long"))[0].status == "pending":
        assert time.monotonic() < deadline, "the orphaned turn was never marked interrupted"
        await asyncio.sleep(0.1)
    assert [(t.status, t.response) for t in await b.history("long")] == [("interrupted", "")]
    assert (await b.begin_turn("long", "session:long", "again")).seq == 2


async def test_an_index_on_one_replica_catches_up_with_flushes_and_forgets_made_on_another(replica):
    a, b = await replica(), await replica()
    index_b = FaissVectorStore(b.log_since, DIM)
    assert await index_b.search("session:x", unit_vectors(1, 0)[0], 2) == []
    await complete_turns(a, "x", [f"fact {i}" for i in range(5)])
    plan = await a.plan_flush("x", 5)
    vectors = vectors_for(plan, seed=6)
    docs = await a.commit_flush(plan, vectors)
    hits = await index_b.search("session:x", vectors[4], 2)
    assert hits[0].doc.id == docs[4].id and hits[0].doc.text == docs[4].text
    cursor = index_b._indexes["session:x"].cursor
    assert await b.log_since("session:x", cursor) == []  # reads only what is newer than it applied

    await a.forget_session("x")
    assert await index_b.search("session:x", vectors[4], 5) == []


async def test_while_redis_is_down_calls_fail_fast_and_the_store_recovers_by_itself(tmp_path, prefix, capsys):
    password = "s3cret-redis-pass"
    server = RedisServer(tmp_path, aof=True, password=password).start()
    store = RedisTurnStore(RedisLink(server.url, start_timeout=5), prefix=prefix)
    try:
        await store.start()
        before = await complete_turns(store, "outage", ["one", "two"])
        server.stop(signal.SIGKILL)  # a crash: appendfsync always keeps every acknowledged write

        for _ in range(2):
            started = time.perf_counter()
            with pytest.raises(StoreUnavailable) as down:
                await store.begin_turn("outage", "session:outage", "lost?")
            assert time.perf_counter() - started < 1.0
            assert isinstance(down.value, ClientError) and down.value.code == "store_unavailable"
            assert password not in str(down.value)

        server.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                third = await store.begin_turn("outage", "session:outage", "three")
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not reconnect by itself"
                await asyncio.sleep(0.1)
        await store.finish_turn(third.id, "back", "complete")
        history = await store.history("outage")
        assert [t.id for t in history] == [t.id for t in before] + [third.id]
        assert [t.seq for t in history] == [1, 2, 3]
    finally:
        await store.close()
        server.stop()
    assert password not in capsys.readouterr().out
    assert password in Settings(_env_file=None, redis_url=server.url).secret_values()  # scrubbed from logs


async def test_a_finished_reply_waits_for_a_short_redis_restart_instead_of_being_lost(tmp_path, prefix):
    server = RedisServer(tmp_path, aof=True).start()
    store = RedisTurnStore(RedisLink(server.url, start_timeout=5), prefix=prefix)
    try:
        await store.start()
        turn = await store.begin_turn("blip", "session:blip", "hello")
        server.stop()
        with pytest.raises(StoreUnavailable):
            await store.buffer("blip")  # marks the link down
        finishing = asyncio.create_task(store.finish_turn(turn.id, "the reply", "complete"))
        await asyncio.sleep(0.5)
        assert not finishing.done()
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(finishing, 10)
        assert [(t.status, t.response) for t in await store.history("blip")] == [("complete", "the reply")]
    finally:
        await store.close()
        server.stop()


async def test_redis_without_a_query_engine_uses_faiss_and_refuses_knn_on(replica):
    store = await replica()
    auto = RedisVectorStore(store, DIM, RedisKnnMode.AUTO)
    await auto.start()
    assert isinstance(auto.backend, FaissVectorStore)
    with pytest.raises(StartupError, match="no query engine"):
        await RedisVectorStore(store, DIM, RedisKnnMode.ON).start()


@pytest.mark.skipif(search_server_command() is None,
                    reason="set TEST_REDIS_SEARCH_SERVER to a Redis with the query engine (Redis Stack / Redis 8)")
async def test_server_side_knn_returns_what_faiss_returns(tmp_path, prefix):
    server = RedisServer(tmp_path, command=search_server_command()).start()
    store = RedisTurnStore(RedisLink(server.url, start_timeout=5), prefix=prefix)
    try:
        await store.start()
        knn = RedisVectorStore(store, DIM, RedisKnnMode.ON)
        await knn.start()
        faiss_index = FaissVectorStore(store.log_since, DIM)
        for session in ("k1", "k2"):
            await complete_turns(store, session, [f"{session} fact {i}" for i in range(5)])
            plan = await store.plan_flush(session, 5)
            await store.commit_flush(plan, vectors_for(plan, seed=len(session)))
        for query in unit_vectors(5, seed=11):
            expected = await faiss_index.search("session:k1", query, 3)
            got = await knn.search("session:k1", query, 3)
            assert [(h.doc.id, h.doc.text, h.doc.session, h.doc.created, h.doc.turn) for h in got] == \
                   [(h.doc.id, h.doc.text, h.doc.session, h.doc.created, h.doc.turn) for h in expected]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in expected], atol=1e-5)
        await store.forget_session("k1")
        assert await knn.search("session:k1", unit_vectors(1, 0)[0], 3) == []
        assert len(await knn.search("session:k2", unit_vectors(1, 0)[0], 3)) == 3
        await knn.close()
    finally:
        await store.close()
        server.stop()


async def test_a_redis_written_before_the_session_and_memory_lists_existed_gets_them_at_start(
        replica, redis_server, prefix):
    old = await replica()
    await complete_turns(old, "first", ["one", "two"], namespace="user:up")
    await old.import_turns("second", "user:up", [ImportedTurn("imported", "reply", 50.0)])
    plan = await old.plan_flush("first", 2)
    await old.commit_flush(plan, vectors_for(plan, seed=80))
    await old.add_memory("user:up", "by hand", unit_vectors(1, seed=81)[0], 60.0)
    sessions, memories = await old.sessions("user:up", 10), await old.memories("user:up", 10)
    assert len(sessions) == 2 and len(memories) == 5
    with redis_server.client() as r:  # as the previous version left it: no lists, no layout mark
        r.delete(f"{prefix}nss:user:up", f"{prefix}nsd:user:up", f"{prefix}layout")

    upgraded = await replica()
    assert await upgraded.sessions("user:up", 10) == sessions
    assert [(d.id, d.text, d.created, d.turn) for d in await upgraded.memories("user:up", 10)] == [
        (d.id, d.text, d.created, d.turn) for d in memories]


async def test_turns_of_an_earlier_release_keep_their_recalled_memories_by_id_only(replica, redis_server, prefix):
    """Turns once stored a copy of each recalled memory's text; at start the copies go, the ids stay."""
    old = await replica()
    copied = await old.begin_turn("s", "user:u", "do you remember?")
    current = await old.begin_turn("s2", "user:u", "and now?")
    old_details = '{"memories": [{"id": 7, "text": "User: my PIN is 4711", "created": 1.0}], "search": {"query": "q"}}'
    with redis_server.client() as r:  # as the previous version left them
        r.hset(f"{prefix}t:{copied.id}", "details", old_details)
        r.hset(f"{prefix}t:{current.id}", "details", '{"memories": [8]}')
        r.set(f"{prefix}layout", 2)

    upgraded = await replica()
    (turn,) = await upgraded.history("s")
    assert turn.details == '{"memories":[7],"search":{"query":"q"}}'
    with redis_server.client() as r:
        assert r.hget(f"{prefix}t:{current.id}", "details") == '{"memories": [8]}'  # untouched
        assert not any("4711" in (r.hget(key, "details") or "") for key in r.scan_iter(match=f"{prefix}t:*"))
        assert r.get(f"{prefix}layout") == "3"


async def test_forgetting_deleting_and_dropping_everything_leaves_only_the_logs_and_counters(
        replica, redis_server, prefix):
    store = await replica()
    await complete_turns(store, "chat", ["one", "two"], namespace="user:all")
    for session, seed in (("chat", 90), ("imported", 91)):
        if session == "imported":
            await store.import_turns("imported", "user:all", [ImportedTurn("q", "a", 5.0, "Me", "It")])
        plan = await store.plan_flush(session, 1)
        await store.commit_flush(plan, vectors_for(plan, seed))
    by_hand = await store.add_memory("user:all", "by hand", unit_vectors(1, seed=92)[0], 9.0, session="notes")
    await store.add_memory("user:all", "of a session", unit_vectors(1, seed=93)[0], 9.0, session="chat")
    edited = (await store.memories("user:all", 10))[-1]
    await store.edit_memory("user:all", edited.id, "edited", unit_vectors(1, seed=94)[0])
    await store.replace_knowledge("faq.md", "d1", ["chunk"], unit_vectors(1, seed=95))
    await store.replace_knowledge("faq.md", "d2", ["new chunk"], unit_vectors(1, seed=96))

    assert await store.forget_session("chat") == 5 and await store.forget_session("imported") == 2
    assert await store.delete_memory("user:all", by_hand.id)  # its session, never forgotten, keeps nothing of it
    await store.drop_knowledge("faq.md")
    with redis_server.client() as r:
        left = {key[len(prefix):] for key in r.scan_iter(match=f"{prefix}*")}
    assert left == {"docid", "layout", "ns", "log:user:all", "log:kb"}
