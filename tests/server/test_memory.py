"""Short-term buffer, flushes into long-term memory, retrieval, and isolation between users."""

import aiohttp
import httpx
import pytest

from server import failpoints
from server.app import Hooks
from tests.server.conftest import make_settings
from tests.support.client import connect
from tests.support.memory import documents, flushes, wait_for_documents, wait_for_metric
from tests.support.servers import ServerThread

TOPICS = [
    "My sister Alice is getting married in Lisbon next June.",
    "I adopted a ginger cat called Marmalade last week.",
    "My deadlift personal record is 180 kg at the gym.",
    "I am learning the violin and Bach partitas are hard.",
    "Our database migration to PostgreSQL failed twice at work.",
]


@pytest.fixture(scope="module")
def memory_server(tiny_model_dir, tmp_path_factory):
    prompts = []
    data_dir = tmp_path_factory.mktemp("memory-data")
    # each chat remembers only itself here, so that chats stand for users without tokens
    server = ServerThread(make_settings(tiny_model_dir, data_dir, memory_scope="session"),
                          Hooks(on_prompt=prompts.append)).start()
    server.prompts = prompts
    server.data_dir = data_dir
    yield server
    server.stop()


async def test_five_turns_flush_once_into_a_memory_per_message_and_the_next_turns_retrieve_the_right_one(
        memory_server):
    session = "memory-topics"
    async with aiohttp.ClientSession() as http:
        client = await connect(http, memory_server.ws_url)
        replies = [(await client.turn(session, text)).end["text"] for text in TOPICS]
        wait_for_metric(memory_server.url, "chat_memory_flushes_total", 1)
        said = sum(1 for reply in replies if reply.strip())  # a reply of only spaces is not worth a memory
        docs = wait_for_documents(memory_server.data_dir, session, 5 + said)
        user_docs = [d for d in docs if d["text"].startswith("User: ")]
        assert [d["seq"] for d in user_docs] == [1, 2, 3, 4, 5]
        assert [d["text"] for d in user_docs] == [f"User: {text}" for text in TOPICS]
        assert sorted(d["text"] for d in docs if d not in user_docs) == sorted(
            f"Assistant: {reply.strip()}" for reply in replies if reply.strip())  # as said, without edge spaces
        assert flushes(memory_server.data_dir, session) == [(0, 5, 5 + said)]
        docs = user_docs

        sixth = await client.turn(session, "Any tips to push my deadlift record at the gym past 180 kg?")
        assert sixth.end["memories"][0] == docs[2]["id"]
        seventh = await client.turn(session, "Is a ginger cat like Marmalade hard to look after?")
        assert seventh.end["memories"][0] == docs[1]["id"]

    # the buffer restarted after the flush: the 6th turn's prompt holds no pre-flush turn
    sixth_prompt = next(p for p in memory_server.prompts if "push my deadlift" in p.messages[-1].content)
    buffer_users = [m.content for m in sixth_prompt.messages[1:-1] if m.role == "user"]
    assert buffer_users == []
    assert "My deadlift personal record is 180 kg" in sixth_prompt.messages[0].content  # retrieved memory


async def test_the_short_term_buffer_goes_into_every_prompt(memory_server):
    session = "memory-buffer"
    async with aiohttp.ClientSession() as http:
        client = await connect(http, memory_server.ws_url)
        first = await client.turn(session, "Remember the word pomegranate.")
        await client.turn(session, "What word did I ask you to remember?")
    prompt = next(p for p in memory_server.prompts if p.messages[-1].content == "What word did I ask you to remember?")
    assert [(m.role, m.content) for m in prompt.messages[1:]] == [
        ("user", "Remember the word pomegranate."), ("assistant", first.end["text"]),
        ("user", "What word did I ask you to remember?")]


async def test_two_users_never_retrieve_each_others_memories(memory_server):
    secrets = {"user-a": "my bank PIN is 4921 and my dog is Biscuit",
               "user-b": "my locker code is 7713 and my horse is Thunder"}
    async with aiohttp.ClientSession() as http:
        client = await connect(http, memory_server.ws_url)
        for session, secret in secrets.items():
            for i in range(5):
                await client.turn(session, f"note {i}: {secret}")
        for session in secrets:
            wait_for_documents(memory_server.data_dir, session, 5)
        prompts_before = len(memory_server.prompts)
        a_asks = await client.turn("user-a", "what is my locker code and my horse's name?")
        b_asks = await client.turn("user-b", "what is my bank PIN and my dog's name?")
    ids = {d["id"]: d["session"] for d in documents(memory_server.data_dir)}
    assert a_asks.end["memories"] and all(ids[i] == "user-a" for i in a_asks.end["memories"])
    assert b_asks.end["memories"] and all(ids[i] == "user-b" for i in b_asks.end["memories"])
    a_prompt, b_prompt = memory_server.prompts[prompts_before:prompts_before + 2]
    a_text = "\n".join(m.content for m in a_prompt.messages)
    b_text = "\n".join(m.content for m in b_prompt.messages)
    assert "7713" not in a_text and "Thunder" not in a_text and "4921" in a_text
    assert "4921" not in b_text and "Biscuit" not in b_text and "7713" in b_text


async def test_forgetting_a_session_removes_its_memories_from_retrieval(memory_server):
    session = "memory-forget"
    async with aiohttp.ClientSession() as http:
        client = await connect(http, memory_server.ws_url)
        for i in range(5):
            await client.turn(session, f"fact {i}: the treasure is buried under the old oak tree")
        assert len({d["turn_id"] for d in wait_for_documents(memory_server.data_dir, session, 5)}) == 5
        assert httpx.delete(f"{memory_server.url}/sessions/{session}").status_code == 200
        again = await client.turn(session, "where is the treasure buried?")
    assert again.end["memories"] == []
    assert documents(memory_server.data_dir, session) == []


async def test_a_flush_committing_while_a_turn_is_prepared_never_puts_a_turn_in_its_prompt_twice(memory_server,
                                                                                                 monkeypatch):
    session, question = "memory-race", "Which locker did I say was mine?"
    facts = [f"race fact {i}: my locker is number {i}{i}{i} in the east hall" for i in range(5)]
    async with aiohttp.ClientSession() as http:
        client = await connect(http, memory_server.ws_url)
        for text in facts[:4]:
            assert (await client.turn(session, text)).end is not None
        # the fifth turn's flush commits a little late: after the next turn has read its buffer (turns 1-5),
        # and, with that turn held before retrieval, before it retrieves
        monkeypatch.setitem(failpoints._ARMED, "flush.before_commit", "sleep:0.5")
        assert (await client.turn(session, facts[4])).end is not None
        monkeypatch.setitem(failpoints._ARMED, "turn.before_retrieve", "sleep:3")
        sixth = await client.turn(session, question)
    assert len({d["turn_id"] for d in documents(memory_server.data_dir, session)}) == 5  # the flush did commit
    prompt = next(p for p in memory_server.prompts if p.messages[-1].content == question)
    text = "\n".join(m.content for m in prompt.messages)
    assert [text.count(fact) for fact in facts] == [1] * 5
    assert sixth.end["memories"] == []


async def test_without_tokens_a_new_chat_recalls_what_an_earlier_chat_told_the_single_local_user(tiny_model_dir,
                                                                                                 tmp_path):
    server = ServerThread(make_settings(tiny_model_dir, tmp_path, memory_top_k=None)).start()  # the defaults
    try:
        async with aiohttp.ClientSession() as http:
            client = await connect(http, server.ws_url)
            for text in TOPICS:
                assert (await client.turn("first-chat", text)).end is not None
            docs = wait_for_documents(tmp_path, "first-chat", 5)
            cat = next(d for d in docs if d["text"] == f"User: {TOPICS[1]}")
            assert cat["namespace"] == "user:local"
            later = await client.turn("new-chat", "Do you remember my cat Marmalade?")
        assert cat["id"] in later.end["memories"]
        assert httpx.get(f"{server.url}/sessions/first-chat/history").status_code == 200
        assert [s["id"] for s in httpx.get(f"{server.url}/sessions").json()["sessions"]] == ["new-chat", "first-chat"]
    finally:
        server.stop()


def _recalled_in_history(server: ServerThread, session: str) -> dict[int, str]:
    turns = httpx.get(f"{server.url}/sessions/{session}/history").json()["turns"]
    return {m["id"]: m["text"] for t in turns for m in t.get("memories", ())}


async def test_a_turns_history_shows_its_memories_as_they_read_now_never_an_edited_or_deleted_copy(tiny_model_dir,
                                                                                                  tmp_path):
    server = ServerThread(make_settings(tiny_model_dir, tmp_path, memory_top_k=None)).start()
    try:
        async with aiohttp.ClientSession() as http:
            client = await connect(http, server.ws_url)
            for text in TOPICS:
                assert (await client.turn("first-chat", text)).end is not None
            cat = next(d for d in wait_for_documents(tmp_path, "first-chat", 5) if d["text"] == f"User: {TOPICS[1]}")
            assert cat["id"] in (await client.turn("new-chat", "Do you remember my cat Marmalade?")).end["memories"]
        assert _recalled_in_history(server, "new-chat")[cat["id"]] == f"User: {TOPICS[1]}"

        edited = httpx.patch(f"{server.url}/memories/{cat['id']}", json={"text": "User: my cat is called Biscuit"})
        assert edited.status_code == 200
        assert _recalled_in_history(server, "new-chat")[cat["id"]] == "User: my cat is called Biscuit"
        assert httpx.delete(f"{server.url}/memories/{cat['id']}").status_code == 200
        history = httpx.get(f"{server.url}/sessions/new-chat/history").text
        assert cat["id"] not in _recalled_in_history(server, "new-chat")
        assert "ginger cat called" not in history
        assert "Biscuit" not in history
    finally:
        server.stop()
