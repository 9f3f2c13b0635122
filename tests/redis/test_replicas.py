"""Scale-out acceptance: several `python -m server` replicas sharing one Redis (STORE=redis)."""

import asyncio
import json
import signal
import time

import aiohttp
import httpx
import pytest

from server.store.redis_link import RedisLink
from server.store.redis_turns import RedisTurnStore
from tests.server.test_durability import server_env
from tests.server.test_memory import TOPICS
from tests.support.client import ChatClient, Turn, connect
from tests.support.memory import history_memories
from tests.support.redis import RedisServer, documents, flushes, wait_for_documents
from tests.support.servers import ServerProcess, wait_healthy

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PREFIX = "replicas:"
FOLLOW_UPS = ["Any tips to push my deadlift record at the gym past 180 kg?",
              "Is a ginger cat like Marmalade hard to look after?"]


def replica_env(model_dir, data_dir, redis_url: str, **extra) -> dict[str, str]:
    # greedy decoding: the same prompt gives the same reply on any replica, so replies compare prompts;
    # each chat remembers only itself, so that chats compared with each other see the same memories
    return server_env(model_dir, data_dir, STORE="redis", REDIS_URL=redis_url, REDIS_PREFIX=PREFIX,
                      TEMPERATURE="0", MAX_NEW_TOKENS="12", REDIS_LEASE_TTL="5", MEMORY_SCOPE="session", **extra)


def memories_of(history: list[dict], docs: list[dict]) -> None:
    """The session's documents are exactly the memories its flushed turns said: one per side that said
    something, each from its own turn, none lost, none duplicated."""
    assert sorted((d["seq"], d["text"]) for d in docs) == sorted(history_memories(history))


def user_memory(docs: list[dict], text: str) -> int:
    """The id of the memory of the user's message `text`."""
    return next(d["id"] for d in docs if d["text"] == f"User: {text}")


def start_all(servers: list[ServerProcess], extra_env: dict[str, str] | None = None) -> None:
    for server in servers:
        server.start(extra_env, wait=False)
    for server in servers:
        wait_healthy(server.url, proc=server.proc)


@pytest.fixture(scope="module")
def cluster(tiny_model_dir, tmp_path_factory):
    """One Redis (AOF, fsync always) and two replicas, A and B; B waits a little before generating, so
    that a turn can be caught running there."""
    root = tmp_path_factory.mktemp("cluster")
    redis_server = RedisServer(root / "redis", aof=True).start()
    replicas = [ServerProcess(root / name, replica_env(tiny_model_dir, root / name / "data", redis_server.url,
                                                       **extra))
                for name, extra in (("a", {}), ("b", {"FAILPOINTS": "generate.before=sleep:0.8"}))]
    try:
        start_all(replicas)
        yield redis_server, replicas
    finally:
        for replica in replicas:
            replica.stop()
        redis_server.stop()


async def run_turns(plan: list[tuple[ChatClient, str, str]], flush_after: int = 5,
                    redis_url: str | None = None) -> list[Turn]:
    turns = []
    for i, (client, session, text) in enumerate(plan, start=1):
        turn = await client.turn(session, text)
        assert turn.end is not None, turn.frames
        turns.append(turn)
        if i == flush_after:  # the flush runs in the background: let it land before retrieval is checked
            await asyncio.to_thread(wait_for_documents, redis_url, PREFIX, session, 5)
    return turns


async def test_turns_alternating_between_two_replicas_behave_exactly_as_on_one(cluster):
    redis_server, (a, b) = cluster
    conversation = TOPICS + FOLLOW_UPS
    async with aiohttp.ClientSession() as http:
        on_a, on_b = await connect(http, a.ws_url), await connect(http, b.ws_url)
        solo = await run_turns([(on_a, "solo", text) for text in conversation], redis_url=redis_server.url)
        duo = await run_turns([((on_a, on_b)[i % 2], "duo", text) for i, text in enumerate(conversation)],
                              redis_url=redis_server.url)

    solo_docs, duo_docs = (documents(redis_server.url, PREFIX, s) for s in ("solo", "duo"))
    memories_of(httpx.get(f"{a.url}/sessions/duo/history").json()["turns"][:5], duo_docs)
    for session in ("solo", "duo"):
        assert flushes(redis_server.url, PREFIX, session) == [(0, 5, len(duo_docs))]
    assert [(d["seq"], d["text"]) for d in duo_docs] == [(d["seq"], d["text"]) for d in solo_docs]
    assert [d["text"] for d in duo_docs if d["text"].startswith("User: ")] == [f"User: {t}" for t in TOPICS]

    # same buffer and same memories in every prompt, hence the same greedy replies and prompt sizes
    texts = {d["id"]: d["text"] for d in solo_docs + duo_docs}
    for one, two in zip(solo, duo, strict=True):
        assert two.end["text"] == one.end["text"]
        assert two.end["usage"] == one.end["usage"]
        assert [texts[i] for i in two.end["memories"]] == [texts[i] for i in one.end["memories"]]
    sixth, seventh = duo[5].end, duo[6].end
    assert sixth["memories"][0] == user_memory(duo_docs, TOPICS[2])  # the deadlift, flushed by replica A
    assert seventh["memories"][0] == user_memory(duo_docs, TOPICS[1])  # the cat, retrieved on A after B's turn
    store = RedisTurnStore(RedisLink(redis_server.url), prefix=PREFIX)
    await store.start()
    try:  # the buffer restarted after the flush, for both replicas alike
        assert [t.seq for t in await store.buffer("duo")] == [6, 7]
    finally:
        await store.close()

    histories = [httpx.get(f"{r.url}/sessions/duo/history").json()["turns"] for r in (a, b)]
    assert histories[0] == histories[1]
    assert [(t["seq"], t["status"], t["response"]) for t in histories[0]] == [
        (i, "complete", turn.end["text"]) for i, turn in enumerate(duo, start=1)]


async def test_a_redis_restart_mid_conversation_gives_clear_errors_then_full_service(cluster):
    redis_server, (a, b) = cluster
    session = "through-restart"
    async with aiohttp.ClientSession() as http:
        on_a, on_b = await connect(http, a.ws_url), await connect(http, b.ws_url)
        before = await run_turns([(on_a, session, TOPICS[0]), (on_b, session, TOPICS[1]),
                                  (on_a, session, TOPICS[2])])
        redis_server.stop(signal.SIGKILL)  # a crash; AOF with fsync always keeps every committed turn

        for client in (on_a, on_b, on_a):
            started = time.perf_counter()
            refused = await client.turn(session, "are you there?")
            assert refused.error is not None and refused.error["code"] == "store_unavailable", refused.frames
            assert time.perf_counter() - started < 2.0
            assert not any(f["type"] == "start" for f in refused.frames)  # nothing was stored
        assert httpx.get(f"{a.url}/health").status_code == 200

        await asyncio.to_thread(redis_server.start)
        deadline = time.monotonic() + 15
        after: list[Turn] = []
        for client, text in ((on_b, TOPICS[3]), (on_a, TOPICS[4]), (on_b, FOLLOW_UPS[0])):
            while True:
                turn = await client.turn(session, text)
                if turn.end is not None:
                    break
                assert turn.error["code"] == "store_unavailable" and time.monotonic() < deadline, turn.frames
                await asyncio.sleep(0.2)  # the replica is still reconnecting
            after.append(turn)
            if text == TOPICS[4]:
                await asyncio.to_thread(wait_for_documents, redis_server.url, PREFIX, session, 5)

    history = httpx.get(f"{b.url}/sessions/{session}/history").json()["turns"]
    assert [(t["seq"], t["user"], t["status"]) for t in history] == [
        (i, text, "complete") for i, text in enumerate(TOPICS + FOLLOW_UPS[:1], start=1)]
    assert [t["turn"] for t in history] == [t.end["turn"] for t in before + after]
    docs = documents(redis_server.url, PREFIX, session)
    memories_of([t for t in history if t["seq"] <= 5], docs)
    assert flushes(redis_server.url, PREFIX, session) == [(0, 5, len(docs))]
    assert after[-1].end["memories"][0] == user_memory(docs, TOPICS[2])


async def test_a_turn_running_on_one_replica_refuses_the_same_session_on_the_other(cluster):
    _, (a, b) = cluster
    async with aiohttp.ClientSession() as http:
        on_a, on_b = await connect(http, a.ws_url), await connect(http, b.ws_url)
        await on_b.send({"type": "chat", "session": "exclusive", "text": "a long story please"})
        assert (await on_b.receive())["type"] == "start"
        refused = await on_a.turn("exclusive", "me too")
        assert [f["type"] for f in refused.frames] == ["error"] and refused.error["code"] == "turn_in_progress"
        running = await on_b.collect()
        assert running.end is not None
        after = await on_a.turn("exclusive", "my turn now?")  # the lease went with the end of B's turn
        assert after.end is not None
    history = httpx.get(f"{a.url}/sessions/exclusive/history").json()["turns"]
    assert [(t["user"], t["status"]) for t in history] == [("a long story please", "complete"),
                                                            ("my turn now?", "complete")]


def assert_each_flushed_turn_has_exactly_its_memories(redis_url: str, session: str, history: list[dict]) -> int:
    """One memory per side that said something of each flushed turn: none lost, none duplicated."""
    records = flushes(redis_url, PREFIX, session)
    assert [r[0] for r in records] == [0] + [r[1] for r in records[:-1]], records  # contiguous, no overlap
    watermark = records[-1][1] if records else 0
    docs = documents(redis_url, PREFIX, session)
    assert len({(d["turn_id"], d["text"]) for d in docs}) == len(docs), "a memory was duplicated"
    memories_of([t for t in history if t["seq"] <= watermark], docs)  # a memory was lost or duplicated
    assert sum(r[2] for r in records) == len(docs)
    return len(docs)


def flushed_by(server: ServerProcess, session: str) -> bool:
    """Whether the replica logged a finished flush of `session` (it logs one after commit + failpoint)."""
    for line in server.logs().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "memory flushed" and entry.get("session") == session:
            return True
    return False


@pytest.mark.timeout(600)
async def test_replicas_killed_during_flushes_ten_times_lose_and_duplicate_nothing(cluster, tiny_model_dir, tmp_path):
    """A replica is SIGKILLed inside a flush, alternately before its commit and after it (the flush
    failpoints hold it there), while replica A carries on with the conversation.
    Two killable replicas take turns so that one restarts while the other is used."""
    redis_server, (a, _) = cluster
    env = replica_env(tiny_model_dir, tmp_path / "data", redis_server.url,
                      FAILPOINTS="flush.before_commit=sleep:0.5;flush.after_commit=sleep:1")
    killers = [ServerProcess(tmp_path / f"k{i}", env) for i in range(2)]
    began = time.monotonic()
    start_all(killers)
    phases = []
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(10):
                killer, session, after_commit = killers[i % 2], f"killed-{i}", i % 2 == 1
                await asyncio.to_thread(wait_healthy, killer.url, 120, killer.proc)
                # a fresh connection each round: an idle one would miss the server's heartbeat while we wait
                on_a = await connect(http, a.ws_url)
                await run_turns([(on_a, session, text) for text in TOPICS[:4]])
                on_killer = await connect(http, killer.ws_url)
                fifth = await on_killer.turn(session, TOPICS[4])
                assert fifth.end is not None  # the reply is committed before the flush starts
                if after_commit:
                    await asyncio.to_thread(wait_for_documents, redis_server.url, PREFIX, session, 5, 10)
                else:
                    await asyncio.sleep(0.1)
                killer.kill()
                committed = documents(redis_server.url, PREFIX, session)
                history = httpx.get(f"{a.url}/sessions/{session}/history").json()["turns"]
                said = len(history_memories(history))  # one memory per side that said something
                phases.append("all" if committed and len(committed) == said else len(committed))
                print(f"kill {i + 1}: {'after' if after_commit else 'before'} commit, {time.monotonic() - began:.1f}s")
                assert len(committed) == (said if after_commit else 0)  # all of the flush or none of it
                assert not flushed_by(killer, session), "the kill came after the flush had finished"
                await on_killer.ws.close()
                killer.start(wait=False)  # restarts while the other killer is used

                # the conversation goes on on A: its next turn completes the interrupted flush if needed
                sixth = await run_turns([(on_a, session, FOLLOW_UPS[0])])
                docs = await asyncio.to_thread(wait_for_documents, redis_server.url, PREFIX, session, 5)
                history = httpx.get(f"{a.url}/sessions/{session}/history").json()["turns"]
                assert [t["status"] for t in history] == ["complete"] * 6
                assert_each_flushed_turn_has_exactly_its_memories(redis_server.url, session, history)
                if after_commit:  # what the killed replica committed, A retrieves
                    assert sixth[0].end["memories"][0] == user_memory(docs, TOPICS[2])
                await on_a.ws.close()
    finally:
        for killer in killers:
            killer.stop()
    assert phases == [0, "all"] * 5
