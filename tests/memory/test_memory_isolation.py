"""The memory API between users: 100 users × 20 imported turns, each holding secrets unique to its user. No
secret of one user is ever in another's searches, lists, exports or chats, and no user can edit or delete
another's memory (on the embedded store and on real Redis)."""

import asyncio
import re

import httpx
import pytest

from tests.server.conftest import make_settings
from tests.support.servers import ServerThread

pytestmark = pytest.mark.slow

USERS = 100
TURNS = 20
SECRET = re.compile(r"SECRET-u(\d+)-t\d+")
TOPICS = ["my bank PIN", "my locker code", "my wifi password", "my passport number", "my alarm code"]


def token(u: int) -> str:
    return f"memory-user-{u:03d}-token-abcdefgh"


def owners(texts) -> set[str]:
    return {m for text in texts for m in SECRET.findall(text)}


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def server(request, tiny_model_dir, tmp_path):
    overrides = {}
    if request.param == "redis":
        overrides = {"store": "redis", "redis_url": request.getfixturevalue("redis_server").url,
                     "redis_prefix": f"iso{id(request)}:"}
    tokens = ",".join(f"{token(u)}:user{u}" for u in range(USERS))
    running = ServerThread(make_settings(tiny_model_dir, tmp_path, server_tokens=tokens, memory_top_k=None,
                                         **overrides)).start()
    yield running
    running.stop()


async def test_no_secret_crosses_users_in_memory_searches_lists_exports_or_edits(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as http:
        def auth(u: int) -> dict:
            return {"Authorization": f"Bearer {token(u)}"}

        async def fill(u: int) -> None:
            turns = [{"user": f"{TOPICS[t % len(TOPICS)]} is SECRET-u{u}-t{t}", "assistant": f"noted SECRET-u{u}-t{t}"}
                     for t in range(TURNS)]
            reply = await http.post(f"/sessions/u{u}/import", json={"turns": turns}, headers=auth(u))
            assert reply.status_code == 200, reply.text

        gate = asyncio.Semaphore(10)

        async def gated(job, u: int):
            async with gate:
                return await job(u)

        await asyncio.gather(*(gated(fill, u) for u in range(USERS)))

        async def look(u: int) -> tuple[set[str], list[int]]:
            seen: list[str] = []
            for topic in TOPICS:
                found = (await http.get("/memories", params={"query": f"what is {topic}?"}, headers=auth(u))).json()
                assert found["memories"], (u, topic)
                seen += [m["text"] for m in found["memories"]]
            listed = (await http.get("/memories", params={"limit": 1000}, headers=auth(u))).json()["memories"]
            seen += [m["text"] for m in listed]
            seen.append((await http.get("/memories/export", headers=auth(u))).text)
            seen += [s["title"] for s in (await http.get("/sessions", headers=auth(u))).json()["sessions"]]
            return owners(seen), [m["id"] for m in listed]

        looks = await asyncio.gather(*(gated(look, u) for u in range(USERS)))
        assert [seen for seen, _ in looks] == [{str(u)} for u in range(USERS)]
        assert all(len(ids) == 2 * TURNS for _, ids in looks)

        # every user tries to edit and delete a memory of the next user: not found, and nothing changes
        async def trespass(u: int) -> list[int]:
            victim = looks[(u + 1) % USERS][1][u % (2 * TURNS)]
            return [(await http.patch(f"/memories/{victim}", json={"text": f"SECRET-u{u}-t0 was here"},
                                      headers=auth(u))).status_code,
                    (await http.delete(f"/memories/{victim}", headers=auth(u))).status_code]

        assert set(code for codes in await asyncio.gather(*(gated(trespass, u) for u in range(USERS)))
                   for code in codes) == {404}
        again = await asyncio.gather(*(gated(look, u) for u in range(USERS)))
        assert again == looks
