"""The OpenAI-compatible API as a memory layer behind a chat client that owns its conversation: the official
`openai` client (multi-turn, regenerate, edit) and an Open WebUI-style request against a real server on
127.0.0.1. Its model is a scripted OpenAI-compatible endpoint, so replies are known; the prompts are the ones the
server built (Hooks), and what the endpoint received is checked against them."""

import asyncio
import dataclasses
import uuid

import httpx
import openai
import pytest

from server.app import Hooks
from server.keys import CHAT
from server.prompt import MEMORY_PREAMBLE
from tests.server.conftest import make_settings
from tests.support.memory import documents, wait_for_documents
from tests.support.scripted_openai import Reply
from tests.support.servers import ServerThread


@pytest.fixture(scope="module")
def conv_server(tiny_model_dir, tmp_path_factory, scripted_endpoint):
    """FLUSH_EVERY=2; a request waits 0.3 s for a running turn of its conversation before 409."""
    prompts = []
    data_dir = tmp_path_factory.mktemp("conversations")
    settings = make_settings(tiny_model_dir, data_dir, llm_backend="openai", openai_base_url=scripted_endpoint.url,
                             flush_every=2, api_session_wait=0.3)
    server = ServerThread(settings, Hooks(on_prompt=prompts.append)).start()
    server.prompts, server.data_dir, server.model = prompts, data_dir, str(tiny_model_dir)
    server.persona = server.app[CHAT].settings.persona.strip()
    yield server
    server.stop()


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def client(server, **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=60,
                              **{"max_retries": 0, **kwargs})


def chat_messages(*said: str, system: str | None = None) -> list[dict]:
    """A conversation as a client sends it: user and assistant alternating, the new message last."""
    roles = ["user", "assistant"]
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": roles[i % 2], "content": text} for i, text in enumerate(said)]


async def ask(oai: openai.AsyncOpenAI, server, user: str, *said: str, system: str | None = None) -> str:
    reply = await oai.chat.completions.create(model=server.model, user=user,
                                              messages=chat_messages(*said, system=system))
    return reply.choices[0].message.content


def prompt_for(server, text: str):
    return next(p for p in reversed(server.prompts) if p.messages[-1].content == text)


def pairs(prompt) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in prompt.messages]


def conversations(server, user: str) -> dict[str, list[tuple[str, str | None]]]:
    """The user's stored conversations: id -> (message, reply) of each turn."""
    chat = server.app[CHAT]
    return {s.id: [(t.user_text, t.response) for t in server.call(chat.history(s.id))]
            for s in server.call(chat.sessions(f"user:{user}", 100))}


async def test_the_history_and_system_prompt_a_request_sends_are_the_prompt_the_model_sees(conv_server, scripted):
    user, tag = new_user(), uuid.uuid4().hex[:8]
    system = f"You are a terse gardener {tag}."
    earlier = [f"I planted plum trees {tag}.", "Lovely: plum blossoms in early spring."]
    question = f"What did I plant? {tag}"
    async with client(conv_server) as oai:
        await ask(oai, conv_server, user, *earlier, question, system=system)
        bare = f"What did I plant, once more? {tag}"
        await ask(oai, conv_server, new_user(), bare)
    prompt = prompt_for(conv_server, question)
    assert pairs(prompt) == [("system", f"{conv_server.persona}\n\n{system}"), ("user", earlier[0]),
                             ("assistant", earlier[1]), ("user", question)]
    sent = scripted.requests[0].body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == pairs(prompt), "what the model got is the built prompt"
    assert pairs(prompt_for(conv_server, bare)) == [("system", conv_server.persona), ("user", bare)]


async def test_with_api_persona_off_the_clients_system_prompt_replaces_the_persona(conv_server, scripted):
    chat = conv_server.app[CHAT]
    configured = chat.settings
    chat.settings = dataclasses.replace(configured, persona_with_instructions=False)  # API_PERSONA=off
    try:
        async with client(conv_server) as oai:
            await ask(oai, conv_server, new_user(), "Hello there, off", system="Speak like a pirate.")
            await ask(oai, conv_server, new_user(), "Hello there, no system prompt")
    finally:
        chat.settings = configured
    assert pairs(prompt_for(conv_server, "Hello there, off"))[0] == ("system", "Speak like a pirate.")
    assert pairs(prompt_for(conv_server, "Hello there, no system prompt"))[0] == ("system", conv_server.persona)


async def test_two_conversations_of_one_user_keep_their_turns_apart_and_share_long_term_memories(conv_server,
                                                                                                 scripted):
    user = new_user()
    told = ["My ginger cat Marmalade sleeps on the grand piano.", "I also grow tomatoes on my balcony."]
    asked = ["Where does my cat Marmalade sleep?", "Thanks! Anything else?"]
    async with client(conv_server) as oai:
        reply = await ask(oai, conv_server, user, told[0])
        await ask(oai, conv_server, user, told[0], reply, told[1])  # two turns: FLUSH_EVERY=2 makes them memories
        (first,) = conversations(conv_server, user)
        docs = await asyncio.to_thread(wait_for_documents, conv_server.data_dir, first, 4)
        reply = await ask(oai, conv_server, user, asked[0])  # another conversation of the same user
        await ask(oai, conv_server, user, asked[0], reply, asked[1])
    opening = prompt_for(conv_server, asked[0])
    assert pairs(opening)[1:] == [("user", asked[0])], "none of the first conversation's turns"
    assert MEMORY_PREAMBLE in opening.messages[0].content and f"User: {told[0]}" in opening.messages[0].content
    assert next(d["id"] for d in docs if d["text"] == f"User: {told[0]}") in opening.memory_ids
    assert pairs(prompt_for(conv_server, asked[1]))[1:] == [("user", asked[0]), ("assistant", reply),
                                                            ("user", asked[1])]
    stored = conversations(conv_server, user)
    assert sorted([m for m, _ in turns] for turns in stored.values()) == sorted([told, asked]), \
        "each conversation stored once, each exchange once"


async def test_a_regenerated_reply_replaces_the_stored_exchange_and_its_memories(conv_server, scripted):
    user, tag = new_user(), uuid.uuid4().hex[:8]
    said = [f"Tell me about plums {tag}", f"And about pears {tag}", f"And quinces {tag}"]
    scripted.push(Reply(tokens=["Plums", " bloom."]), Reply(tokens=["First", " attempt."]),
                  Reply(tokens=["Second", " attempt."]), Reply(tokens=["Quinces", "."]))
    async with client(conv_server) as oai:
        plums = await ask(oai, conv_server, user, said[0])
        assert await ask(oai, conv_server, user, said[0], plums, said[1]) == "First attempt."
        (session,) = conversations(conv_server, user)
        await asyncio.to_thread(wait_for_documents, conv_server.data_dir, session, 4)
        # "regenerate": the client sends the same conversation again
        again = await ask(oai, conv_server, user, said[0], plums, said[1])
        assert again == "Second attempt."
        assert pairs(prompt_for(conv_server, said[1]))[1:] == [("user", said[0]), ("assistant", plums),
                                                                ("user", said[1])], "the first attempt is not there"
        assert conversations(conv_server, user) == {session: [(said[0], plums), (said[1], again)]}
        assert [d["text"] for d in documents(conv_server.data_dir, session)] == [f"User: {said[0]}",
                                                                               "Assistant: Plums bloom."]
        await ask(oai, conv_server, user, said[0], plums, said[1], again, said[2])  # the next flush
    texts = [d["text"] for d in await asyncio.to_thread(wait_for_documents, conv_server.data_dir, session, 6)]
    assert texts.count(f"User: {said[1]}") == 1 and "Assistant: Second attempt." in texts
    async with httpx.AsyncClient(base_url=conv_server.url, timeout=30) as http:
        memories = (await http.get("/memories", params={"user": user})).json()["memories"]
    assert sorted(m["text"] for m in memories) == sorted(texts)
    assert not any("First attempt" in m["text"] for m in memories)


async def test_an_edited_message_replaces_the_exchange_it_edits(conv_server, scripted):
    user, tag = new_user(), uuid.uuid4().hex[:8]
    first, typo, fixed = f"Name a river {tag}", f"And a montain {tag}", f"And a mountain {tag}"
    async with client(conv_server) as oai:
        reply = await ask(oai, conv_server, user, first)
        await ask(oai, conv_server, user, first, reply, typo)
        edited = await ask(oai, conv_server, user, first, reply, fixed)
    assert list(conversations(conv_server, user).values()) == [[(first, reply), (fixed, edited)]]


async def test_conversations_of_one_user_run_at_once_and_a_second_request_on_one_gets_409(conv_server, scripted):
    user = new_user()
    slow = [f" w{i}" for i in range(6)]
    scripted.push(Reply(tokens=slow, token_delay_s=0.25), Reply(tokens=slow, token_delay_s=0.25))
    body = {"model": conv_server.model, "user": user, "messages": chat_messages("First chat, slow reply")}
    async with client(conv_server) as oai, httpx.AsyncClient(base_url=conv_server.url, timeout=30) as http:
        one = asyncio.create_task(ask(oai, conv_server, user, "First chat, slow reply"))
        other = asyncio.create_task(ask(oai, conv_server, user, "Second chat, also slow"))
        for _ in range(100):
            if len(scripted.requests) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(scripted.requests) == 2 and not one.done() and not other.done(), "both at once"
        refused = await http.post("/v1/chat/completions", json=body)  # the first chat again, while it runs
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "turn_in_progress"
        assert refused.headers["Retry-After"] == "1"
        async with client(conv_server, max_retries=3) as patient:  # the official client retries after it
            retried = asyncio.create_task(ask(patient, conv_server, user, "First chat, slow reply"))
            assert await one == "".join(slow) and await other == "".join(slow)
            assert await retried == "Hello from the endpoint."
    assert sorted(turns for turns in conversations(conv_server, user).values()) == [
        [("First chat, slow reply", "Hello from the endpoint.")], [("Second chat, also slow", "".join(slow))]]


async def test_an_open_webui_style_request_with_system_prompt_history_and_user(conv_server, scripted):
    """What Open WebUI sends to an OpenAI connection: the chat's system prompt, the whole history, `user`."""
    user, tag = new_user(), uuid.uuid4().hex[:8]
    said = [f"I am learning the guqin {tag}.", "A wonderful instrument.", f"Which piece should I start with? {tag}"]
    body = {"model": conv_server.model, "stream": True, "user": user,
            "messages": chat_messages(*said, system="You are a music teacher.")}
    async with httpx.AsyncClient(base_url=conv_server.url, timeout=30) as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = [line async for line in response.aiter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        listed = (await http.get("/sessions", params={"user": user})).json()["sessions"]
    assert pairs(prompt_for(conv_server, said[2])) == [
        ("system", f"{conv_server.persona}\n\nYou are a music teacher."), ("user", said[0]), ("assistant", said[1]),
        ("user", said[2])]
    assert [(s["title"], s["turns"]) for s in listed] == [(said[0], 2)], "the history it brought is stored with it"
