"""The memory API on a real server (tiny model, the packaged MiniLM), on the embedded store and on real Redis:
imports that answer once retrievable, queries that return what a turn would get, edits and deletes that
leave nothing of the old text retrievable, export/import, chats listed, and one user never reaching another's."""

import asyncio
import datetime as dt

import aiohttp
import httpx
import pytest

from server.store.lexical import query_terms, tokens
from tests.server.conftest import make_settings
from tests.support.client import connect
from tests.support.servers import ServerThread

TOKEN = "memory-api-token-"
STORES = ["embedded", pytest.param("redis", marks=pytest.mark.redis)]
SMALL_TALK = ["ok", "thanks!", "haha", "你好", "lol ok", "谢谢", "cool, thanks", "good night", "hmm", "yes"]
FILLER = ["We talked about the weather and the long winter.", "I watched a documentary about octopuses.",
          "Work was busy; three meetings before lunch.", "I tried a new recipe for lentil soup.",
          "The train was late again this morning.", "I am reading a novel about a lighthouse keeper.",
          "My neighbour plays the trumpet at night.", "We planted tomatoes on the balcony."]


def at(day: int) -> str:
    return (dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=day)).isoformat()


@pytest.fixture(scope="module", params=STORES)
def api_server(request, tiny_model_dir, tmp_path_factory):
    overrides = {}
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        overrides = {"store": "redis", "redis_url": redis.url, "redis_prefix": f"api{id(request)}:"}
    settings = make_settings(tiny_model_dir, tmp_path_factory.mktemp("api"), memory_top_k=None,
                             server_tokens=f"{TOKEN}alice:alice,{TOKEN}bob:bob", **overrides)
    server = ServerThread(settings).start()
    yield server
    server.stop()


def client(server, user: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}{user}"}, timeout=120)


def import_turns(api: httpx.Client, session: str, turns: list[dict]) -> list[str]:
    reply = api.post(f"/sessions/{session}/import", json={"turns": turns})
    assert reply.status_code == 200, reply.text
    return reply.json()["turns"]


async def wait_for_memory(http: aiohttp.ClientSession, url: str, needle: str, timeout: float = 60) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        async with http.get(f"{url}/memories") as reply:
            found = [m for m in (await reply.json())["memories"] if needle in m["text"]]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no memory with {needle!r} after {timeout} s")


def query(api: httpx.Client, text: str) -> list[dict]:
    reply = api.get("/memories", params={"query": text})
    assert reply.status_code == 200, reply.text
    return reply.json()["memories"]


def test_imported_turns_are_retrievable_when_the_import_answers_with_their_ids_dates_and_speakers(api_server):
    with client(api_server, "alice") as api:
        turns = [{"user": text, "assistant": "I see.", "time": at(i)} for i, text in enumerate(FILLER)]
        turns.insert(3, {"user": "My daughter Ines starts school in Porto in September.", "assistant": "Lovely!",
                         "time": at(3), "user_name": "Alice", "assistant_name": "Su Shi"})
        ids = import_turns(api, "alice-import", turns)
        assert len(ids) == len(turns) == len(set(ids))
        found = query(api, "Where does Ines start school?")
        replies = [m["text"] for m in query(api, "Was Su Shi happy about the school in Porto?")]
    ines = [m for m in found if "Ines" in m["text"]]
    assert ines and ines[0]["turns"] == [ids[3]] and ines[0]["session"] == "alice-import"
    assert ines[0]["text"] == "Alice: My daughter Ines starts school in Porto in September."
    assert "Su Shi: Lovely!" in replies  # each side is a memory of its own, led by its speaker
    assert ines[0]["created"].startswith("2024-01-04") and isinstance(ines[0]["score"], float)


def test_small_talk_after_a_long_conversation_gets_no_memories(api_server):
    with client(api_server, "alice") as api:
        import_turns(api, "alice-long", [{"user": f"{text} (day {i})", "assistant": "Tell me more.", "time": at(i)}
                                         for i, text in enumerate(FILLER * 5)])
        assert {message: query(api, message) for message in SMALL_TALK} == {message: [] for message in SMALL_TALK}


def test_a_fact_at_the_end_of_a_long_reply_is_recalled_from_its_own_piece(api_server):
    long_reply = " ".join([*FILLER * 6, "Your passport number, for the visa form, is X4471902.", *FILLER[:3]])
    assert len(long_reply) > 2000  # as one memory, more than the whole budget: never recalled
    with client(api_server, "alice") as api:
        [turn] = import_turns(api, "alice-long-reply", [{"user": "Help me with the visa form.",
                                                         "assistant": long_reply, "time": at(3)}])
        found = query(api, "What is my passport number for the visa form?")
        listed = [m for m in api.get("/memories", params={"limit": 1000}).json()["memories"]
                  if m["session"] == "alice-long-reply"]
    piece = next(m for m in found if "X4471902" in m["text"])
    assert piece["text"].startswith("Assistant: ") and len(piece["text"]) < 700 and piece["turns"] == [turn]
    assert len(listed) > 4  # the reply in pieces, each led by its speaker, and the message
    assert all(m["text"].startswith(("User: ", "Assistant: ")) for m in listed)


def test_where_a_fact_changed_the_newer_memory_comes_last_dated(api_server):
    with client(api_server, "bob") as api:
        turns = [{"user": "I live in Berlin, near the Spree.", "assistant": "A fine city.", "time": at(1)},
                 *({"user": text, "assistant": "Mm.", "time": at(2 + i)} for i, text in enumerate(FILLER)),
                 {"user": "I moved to Paris last month, I live there now.", "assistant": "Bonjour!", "time": at(40)}]
        import_turns(api, "bob-moves", turns)
        found = query(api, "Where do I live now?")
    paris = next(i for i, m in enumerate(found) if "Paris" in m["text"])
    assert found[paris]["created"].startswith("2024-02-10")
    assert [m["created"] for m in found] == sorted(m["created"] for m in found)  # oldest first: Paris is last
    assert all(m["created"] == found[paris]["created"] for m in found[paris:])  # (with its turn's other side)


@pytest.mark.parametrize(("question", "said", "answer", "others"), [
    ("What is my uncle's job?", "My uncle Anders called tonight, we talked for hours.",
     "Anders just qualified as a librarian! So proud.",
     ["Priya just qualified as a nurse!", "Tom started a new job as a baker.", "My job interview went well.",
      "Lena works as a pilot now."]),
    ("我表哥是做什么工作的？", "我表哥冯志强今晚打电话来，我们聊了两个小时。", "冯志强刚考下证，正式成为药剂师了！",
     ["王丽刚当上了护士。", "我的工作最近很忙。", "张伟换了工作，现在是厨师。", "李娜现在是飞行员。"]),
], ids=["en", "zh"])
def test_a_question_about_someone_by_relation_recalls_what_was_said_of_them_by_name(api_server, question, said,
                                                                                      answer, others):
    """The answer shares no word with the question; the memory that says who the uncle is bridges the two and
    puts it first among the memories that do not hold the question's words either (without it, it was not)."""
    turns = [{"user": said, "assistant": "", "time": at(1)},
             *({"user": text, "assistant": "", "time": at(2 + i)} for i, text in enumerate(FILLER + others)),
             {"user": answer, "assistant": "", "time": at(30)}]
    with client(api_server, "alice") as api:
        import_turns(api, f"alice-relatives-{len(question)}", turns)
        found = {m["text"]: m["score"] for m in query(api, question)}
    answered = found.pop(f"User: {answer}")
    assert all(answered > score for text, score in found.items() if not set(query_terms(question)) & set(tokens(text)))


def test_a_memory_added_edited_and_deleted_by_hand_is_never_retrieved_in_an_old_form(api_server):
    with client(api_server, "alice") as api:
        added = api.post("/memories", json={"text": "My bicycle lock code is 4711."})
        assert added.status_code == 201
        memory = added.json()
        assert memory["id"] in [m["id"] for m in query(api, "What is my bicycle lock code?")]
        edited = api.patch(f"/memories/{memory['id']}", json={"text": "My bicycle was stolen; I take the tram."})
        assert edited.status_code == 200 and edited.json()["id"] == memory["id"]
        assert not any("4711" in m["text"] for m in query(api, "bicycle lock code 4711"))
        assert "My bicycle was stolen; I take the tram." in [
            m["text"] for m in query(api, "How do I get around since the bicycle was stolen?")]
        assert api.delete(f"/memories/{memory['id']}").status_code == 200
        assert memory["id"] not in [m["id"] for m in query(api, "bicycle stolen tram")]
        assert api.delete(f"/memories/{memory['id']}").status_code == 404
        assert all(m["id"] != memory["id"] for m in api.get("/memories", params={"limit": 1000}).json()["memories"])


def test_a_memory_by_hand_longer_than_a_memory_may_be_is_refused_and_nothing_changes(api_server):
    too_long = "My grandmother's recipe for plum dumplings starts with a quark dough. " * 9  # ~180 tokens > 160
    with client(api_server, "alice") as api:
        before = api.get("/memories", params={"limit": 1000}).json()["memories"]
        refused = api.post("/memories", json={"text": too_long})
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "memory_too_long"
        at_the_limit = too_long.removesuffix("My grandmother's recipe for plum dumplings starts with a quark dough. ")
        kept = api.post("/memories", json={"text": at_the_limit}).json()
        assert api.patch(f"/memories/{kept['id']}", json={"text": too_long}).status_code == 413
        assert [m for m in api.get("/memories", params={"limit": 1000}).json()["memories"]
                if m["id"] != kept["id"]] == before
        assert at_the_limit in [m["text"] for m in query(api, "plum dumplings")]


@pytest.mark.parametrize("doc_id", ["9223372036854775808", "-1", "0", "1e3", "99999999999999999999999"])
def test_a_memory_id_no_store_could_hold_is_not_found(api_server, doc_id):
    with client(api_server, "alice") as api:
        for reply in (api.delete(f"/memories/{doc_id}"), api.patch(f"/memories/{doc_id}", json={"text": "x"})):
            assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found", reply.text


def test_one_user_can_never_read_edit_delete_or_retrieve_another_users_memory(api_server):
    with client(api_server, "alice") as alice, client(api_server, "bob") as bob:
        secret = alice.post("/memories", json={"text": "Alice's safe combination is 31-07-22."}).json()
        assert bob.patch(f"/memories/{secret['id']}", json={"text": "mine now"}).status_code == 404
        assert bob.delete(f"/memories/{secret['id']}").status_code == 404
        assert all("31-07-22" not in m["text"] for m in query(bob, "What is Alice's safe combination?"))
        assert all("31-07-22" not in m["text"] for m in bob.get("/memories").json()["memories"])
        assert bob.get("/memories", params={"user": "alice"}).json()["memories"] == bob.get("/memories").json()[
            "memories"]  # with tokens, ?user= names nobody else
        assert alice.post("/sessions/alice-import/import", json={"turns": [{"user": "x", "assistant": "y"}]}
                          ).status_code == 200
        assert bob.post("/sessions/alice-import/import", json={"turns": [{"user": "x", "assistant": "y"}]}
                        ).status_code == 403
        assert secret["text"] in [m["text"] for m in query(alice, "safe combination")]


def test_export_then_import_moves_every_memory_with_its_date(api_server):
    with client(api_server, "alice") as alice, client(api_server, "bob") as bob:
        alice.post("/memories", json={"text": "I keep bees on the roof of the library."})
        exported = alice.get("/memories/export")
        assert exported.status_code == 200
        lines = exported.text.splitlines()
        assert lines and all(line.startswith("{") for line in lines)
        count = len(lines)
        reply = httpx.post(f"{api_server.url}/memories/import", content=exported.content, timeout=120,
                           headers={"Authorization": f"Bearer {TOKEN}carol"})
        assert reply.status_code == 401
        moved = bob.post("/memories/import", content=exported.content)
        assert moved.status_code == 200 and moved.json()["imported"] == count
        assert any("bees" in m["text"] for m in query(bob, "Where do I keep bees?"))


def test_chats_are_listed_most_recent_first_and_only_the_callers(api_server):
    with client(api_server, "bob") as bob, client(api_server, "alice") as alice:
        import_turns(bob, "bob-old", [{"user": "An old chat about chess openings.", "assistant": "Sicilian!"}])
        import_turns(bob, "bob-new", [{"user": "A new chat about sourdough.", "assistant": "Feed the starter."}])
        sessions = bob.get("/sessions").json()["sessions"]
        ids = [s["id"] for s in sessions]
        assert ids.index("bob-new") < ids.index("bob-old")
        assert next(s for s in sessions if s["id"] == "bob-new")["title"] == "A new chat about sourdough."
        assert "bob-new" not in [s["id"] for s in alice.get("/sessions").json()["sessions"]]


@pytest.mark.parametrize(("body", "code"), [
    ({"turns": []}, "invalid_request"), ({"turns": [{"user": "", "assistant": " "}]}, "empty_text"),
    ({"turns": [{"user": "hi", "assistant": "", "time": "last tuesday"}]}, "invalid_request"),
    ({"turns": [{"user": 3}]}, "invalid_request"), ([1, 2], "invalid_request")])
def test_a_bad_import_is_refused_with_a_stable_code_and_stores_nothing(api_server, body, code):
    with client(api_server, "alice") as api:
        reply = api.post("/sessions/alice-bad-import/import", json=body)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == code
        assert api.get("/sessions/alice-bad-import/history").status_code == 404


async def test_a_new_chat_of_the_same_user_recalls_facts_from_an_earlier_chat(api_server):
    facts = ["My dog is a grey whippet called Pixel.", *FILLER[:4]]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}bob"}) as http:
        chat = await connect(http, api_server.ws_url)
        for text in facts:
            assert (await chat.turn("bob-first-chat", text)).end is not None
        pixel = await wait_for_memory(http, api_server.url, "Pixel")
        later = await chat.turn("bob-second-chat", "Do you remember my dog Pixel?")
    assert pixel["id"] in later.end["memories"]


def test_an_import_whose_flush_fails_says_the_turns_are_kept_and_the_next_flush_makes_them_memories(
        api_server, monkeypatch):
    from server import failpoints

    with client(api_server, "alice") as api:
        monkeypatch.setitem(failpoints._ARMED, "flush.before_commit", "raise")  # the embedder or store failing
        reply = api.post("/sessions/alice-pending/import", json={"turns": [
            {"user": "My locker at the pool is number 4711.", "assistant": "Noted.", "time": at(1)}]})
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "import_pending", reply.text
        assert "do not send them again" in reply.json()["error"]["message"]
        assert not any("4711" in m["text"] for m in query(api, "What is my pool locker number?"))
        history = api.get("/sessions/alice-pending/history").json()["turns"]
        assert [t["user"] for t in history] == ["My locker at the pool is number 4711."]  # kept, once

        monkeypatch.delitem(failpoints._ARMED, "flush.before_commit")
        import_turns(api, "alice-pending", [{"user": "The pool opens at seven.", "assistant": "Early!",
                                             "time": at(2)}])
        texts = [m["text"] for m in query(api, "What is my pool locker number?")]
        assert "User: My locker at the pool is number 4711." in texts
        assert [t["user"] for t in api.get("/sessions/alice-pending/history").json()["turns"]] == [
            "My locker at the pool is number 4711.", "The pool opens at seven."]
