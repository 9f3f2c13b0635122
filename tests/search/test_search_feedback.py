"""Search decisions explained and corrected through a real server (tiny model, the packaged MiniLM, SearXNG on
127.0.0.1): /metrics shows a turn's score, threshold, language and the terms that made it search; a user's
"should (not) have searched" on one of their turns lands, with its follow-up context, in the corrections file
that retraining reads; another user's turn cannot be corrected."""

import uuid

import aiohttp
import httpx
import pytest

from server.search.feedback import FEEDBACK_FILE
from server.search.training import load_examples
from tests.server.conftest import make_settings
from tests.support.client import connect
from tests.support.servers import ServerThread

TOKEN = "feedback-token-"


@pytest.fixture(scope="module")
def server(tiny_model_dir, fake_web, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("feedback")
    settings = make_settings(tiny_model_dir, data_dir, **fake_web.settings_for("searxng"), search_timeout=3.0,
                             server_tokens=f"{TOKEN}alice:alice,{TOKEN}bob:bob")
    server = ServerThread(settings).start()
    server.data_dir = data_dir
    yield server
    server.stop()


def client(server, user: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}{user}"}, timeout=60)


async def chat(server, session: str, text: str):
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}alice"}) as http:
        ws = await connect(http, server.ws_url)
        return await ws.turn(session, text)


def searched_decisions(metrics: str) -> float:
    name = 'chat_search_classifier_score_count{decision="search",lang="en"} '
    return next((float(line[len(name):]) for line in metrics.splitlines() if line.startswith(name)), 0.0)


async def test_a_searched_turn_is_explained_in_metrics_with_its_score_threshold_language_and_terms(server):
    with client(server, "alice") as api:
        before = searched_decisions(api.get("/metrics").text)
    turn = await chat(server, f"s-{uuid.uuid4().hex[:8]}", "What is the weather forecast for Hangzhou tomorrow?")
    assert turn.search is not None
    with client(server, "alice") as api:
        metrics = api.get("/metrics").text
    assert searched_decisions(metrics) == before + 1  # one message, one decision (not one per step that asks)
    assert 'chat_search_classifier_threshold{lang="en"}' in metrics
    terms = [line for line in metrics.splitlines() if line.startswith("chat_search_classifier_terms_total{")]
    assert any('term="<embedding>"' in line or 'term="forecast"' in line for line in terms), terms


async def test_a_correction_is_stored_with_its_context_and_read_by_retraining(server):
    session = f"fb-{uuid.uuid4().hex[:8]}"
    with client(server, "alice") as api:
        reply = api.post(f"/sessions/{session}/import", json={"turns": [
            {"user": "Tell me about your years in Huangzhou.", "assistant": "I farmed the eastern slope."},
            {"user": "Were you happy there?", "assistant": "Mostly, yes."}]})
        first, second = reply.json()["turns"]
        done = api.post(f"/sessions/{session}/turns/{second}/search-feedback", json={"should_search": False})
        assert done.status_code == 201, done.text
        assert done.json() == {"turn": second, "session": session, "should_search": False, "recorded": True}
        assert api.post(f"/sessions/{session}/turns/{first}/search-feedback",
                        json={"should_search": True}).status_code == 201
    rows = load_examples(server.data_dir / FEEDBACK_FILE)
    mine = [r for r in rows if r.text in ("Were you happy there?", "Tell me about your years in Huangzhou.")]
    assert [(r.text, r.search, r.kind) for r in mine] == [("Were you happy there?", False, "feedback"),
                                                          ("Tell me about your years in Huangzhou.", True, "feedback")]
    assert mine[0].context.user == "Tell me about your years in Huangzhou."
    assert mine[0].context.bot == "I farmed the eastern slope."


def test_corrections_are_scoped_to_the_owner_and_bad_bodies_get_stable_codes(server):
    session = f"fb-{uuid.uuid4().hex[:8]}"
    with client(server, "alice") as alice, client(server, "bob") as bob:
        [turn] = alice.post(f"/sessions/{session}/import",
                            json={"turns": [{"user": "hello", "assistant": "hi"}]}).json()["turns"]
        url = f"/sessions/{session}/turns/{turn}/search-feedback"
        assert bob.post(url, json={"should_search": True}).json()["error"]["code"] == "forbidden"
        missing = alice.post(f"/sessions/{session}/turns/nope/search-feedback", json={"should_search": True})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        bad = alice.post(url, json={"should_search": "yes"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        assert alice.post(url, content=b"{not json").json()["error"]["code"] == "bad_json"
        assert httpx.post(server.url + url, json={"should_search": True}).status_code == 401
