"""100 users × 20 turns, each turn holding a secret unique to its user: no secret ever reaches
another user's prompt, retrieved memories or history."""

import asyncio
import re

import aiohttp
import httpx
import pytest

from server.app import Hooks
from tests.server.conftest import make_settings
from tests.support.client import connect
from tests.support.memory import wait_for_documents
from tests.support.servers import ServerThread

pytestmark = pytest.mark.slow

USERS = 100
TURNS = 20
SECRET = re.compile(r"SECRET-u(\d+)-t\d+")
TOPICS = ["my bank PIN", "my locker code", "my wifi password", "my passport number", "my alarm code"]


def token(u: int) -> str:
    return f"user-{u:03d}-token-abcdefghijklmnop"


async def test_no_secret_crosses_users_in_prompts_retrieval_or_history(tiny_model_dir, tmp_path):
    results = []
    tokens = ",".join(f"{token(u)}:user{u}" for u in range(USERS))
    settings = make_settings(tiny_model_dir, tmp_path, server_tokens=tokens, max_new_tokens=2, memory_top_k=3,
                             turns_per_minute=1000, gen_concurrency=2)
    server = ServerThread(settings, Hooks(on_turn=results.append)).start()
    try:
        async with aiohttp.ClientSession() as http:
            async def user(u: int, turns: range) -> None:
                client = await connect(http, server.ws_url, headers={"Authorization": f"Bearer {token(u)}"})
                for t in turns:
                    # two sessions per user: memories are per user, so both see each other's
                    text = f"{TOPICS[t % len(TOPICS)]} is SECRET-u{u}-t{t}, remember it"
                    turn = await client.turn(f"u{u}-s{t % 2}", text)
                    assert turn.end is not None, turn.error
                await client.ws.close()

            gate = asyncio.Semaphore(25)

            async def gated(u: int, turns: range) -> None:
                async with gate:
                    await user(u, turns)

            # first half: every session fills its buffer and flushes; wait for all the memories to land,
            # so that every user's second half retrieves its own (and could retrieve another's, if broken)
            await asyncio.gather(*(gated(u, range(TURNS // 2)) for u in range(USERS)))
            for u in range(USERS):
                for s in (0, 1):
                    await asyncio.to_thread(wait_for_documents, tmp_path, f"u{u}-s{s}", TURNS // 4)
            await asyncio.gather(*(gated(u, range(TURNS // 2, TURNS)) for u in range(USERS)))
        histories = {u: httpx.get(f"{server.url}/sessions/u{u}-s0/history", headers={
            "Authorization": f"Bearer {token(u)}"}).json()["turns"] for u in range(USERS)}
    finally:
        server.stop()

    assert len(results) == USERS * TURNS
    retrieved = 0
    users_with_memories = set()
    for result in results:
        owner = result.namespace.removeprefix("user:user")
        prompt_text = "\n".join(m.content for m in result.prompt.messages)
        assert set(SECRET.findall(prompt_text)) <= {owner}, (result.namespace, prompt_text[:500])
        retrieved += len(result.memories)
        if result.memories:
            users_with_memories.add(owner)
    assert len(users_with_memories) == USERS and retrieved >= USERS * TURNS // 2, (len(users_with_memories), retrieved)
    for u, turns in histories.items():
        assert {m for t in turns for m in SECRET.findall(t["user"] + (t["response"] or ""))} == {str(u)}
