"""Search end to end: a real chat server on 127.0.0.1 searching through each provider's loopback API.

The search frame, its summary and sources arrive before the reply; the summary reaches the prompt fenced as
untrusted data; provider failures and timeouts degrade to a turn without search whose frame says why; small
talk never reaches the provider; pages behind private redirects and file links never reach anyone.
"""

import time
import uuid

import aiohttp
import pytest

from server.app import Hooks
from server.keys import CHAT
from server.prompt import UNTRUSTED_CLOSE, UNTRUSTED_OPEN
from tests.search.fakeweb import BRAVE_KEY, FILE_SECRET, GOOGLE_KEY, PRIVATE_SECRET, Result
from tests.server.conftest import make_settings
from tests.support.client import connect
from tests.support.servers import ServerThread

PROVIDERS = ["google", "searxng", "brave"]
SEARCH_TIMEOUT = 3.0
SMALL_TALK = ["How was your day?", "Good morning! Did you sleep well?", "我今天好累啊，想休息一下。",
              "Write me a short poem about the moon.", "My brother visited Paris last week, he loved it."]


@pytest.fixture(scope="module", params=PROVIDERS)
def server(request, tiny_model_dir, fake_web, tmp_path_factory):
    prompts = []
    settings = make_settings(tiny_model_dir, tmp_path_factory.mktemp("data"), **fake_web.settings_for(request.param),
                             search_timeout=SEARCH_TIMEOUT, search_results=5, search_breaker_failures=1000)
    server = ServerThread(settings, Hooks(on_prompt=prompts.append)).start()
    server.provider, server.prompts = request.param, prompts
    yield server
    server.stop()


async def chat(server, text: str):
    async with aiohttp.ClientSession() as http:
        client = await connect(http, server.ws_url)
        return await client.turn(f"s-{uuid.uuid4().hex[:10]}", text)


def system_prompt(server) -> str:
    return server.prompts[-1].messages[0].content


def assert_no_secrets(turn) -> None:
    text = repr(turn.frames)
    for secret in (GOOGLE_KEY, BRAVE_KEY, PRIVATE_SECRET, FILE_SECRET):
        assert secret not in text


async def test_a_question_gets_a_search_frame_with_summary_and_sources_before_the_reply(server, fake_web):
    turn = await chat(server, "How do you perform a deadlift properly?")
    kinds = [f["type"] for f in turn.frames]
    assert kinds[:2] == ["start", "search"] and kinds[-1] == "end" and set(kinds[2:-1]) == {"token"}
    search = turn.search
    assert "deadlift" in search["query"] and "skipped" not in search
    assert search["sources"] == [fake_web.page_url("/deadlift"), fake_web.page_url("/deadlift-mistakes")]
    assert "[1]" in search["summary"] or "[2]" in search["summary"]
    assert any(phrase in search["summary"] for phrase in ("middle of your foot", "back flat", "lower back")), \
        "the summary is made of the fetched pages"
    assert len(fake_web.calls(server.provider)) == 1
    assert fake_web.page_hits["/deadlift"] == 1 and fake_web.page_hits["/deadlift-mistakes"] == 1
    system = system_prompt(server)
    fenced = system[system.index(UNTRUSTED_OPEN):system.index(UNTRUSTED_CLOSE)]
    assert search["summary"][:40] in fenced and fake_web.page_url("/deadlift") in fenced
    stats = server.app[CHAT].services.search.stats
    assert stats["summary_fallback_ungrounded"] + stats["summary_fallback_timeout"] + stats["summary_generator"] \
        >= 1, f"the configured generator was asked for the summary: {dict(stats)}"
    assert turn.end["text"] == "".join(turn.tokens)
    assert_no_secrets(turn)


async def test_small_talk_never_reaches_the_provider(server, fake_web):
    for text in SMALL_TALK:
        turn = await chat(server, text)
        assert turn.end is not None and turn.search is None, text
        assert UNTRUSTED_OPEN not in system_prompt(server)
    assert fake_web.calls() == []
    assert fake_web.page_hits == {}


@pytest.mark.parametrize(("mode", "skipped"), [("forbidden", "provider_forbidden"), ("error", "provider_unavailable"),
                                               ("quota", None)])
async def test_provider_errors_degrade_to_a_turn_without_search_that_says_why(server, fake_web, mode, skipped):
    fake_web.mode = mode
    turn = await chat(server, "What are the health benefits of green tea?")
    expected = skipped or {"google": "provider_quota", "searxng": "provider_rate_limited",
                           "brave": "provider_quota"}[server.provider]
    assert turn.search == {"type": "search", "query": turn.search["query"], "summary": "", "sources": [],
                           "skipped": expected}
    assert "green tea" in turn.search["query"]
    assert turn.end is not None and turn.tokens and turn.error is None
    assert UNTRUSTED_OPEN not in system_prompt(server)
    assert fake_web.page_hits == {}
    assert_no_secrets(turn)


async def test_a_provider_slower_than_the_deadline_is_skipped_in_time(server, fake_web):
    fake_web.mode = "slow"
    started = time.monotonic()
    turn = await chat(server, "What is the proper technique for a Romanian deadlift?")
    assert turn.search["skipped"] == "timeout" and turn.search["query"]
    assert turn.end is not None and turn.tokens
    assert time.monotonic() - started < SEARCH_TIMEOUT + 10, "the turn went on after the deadline"
    assert UNTRUSTED_OPEN not in system_prompt(server)


async def test_private_redirects_file_links_and_huge_pages_never_reach_the_prompt(server, fake_web):
    fake_web.results = [
        fake_web.result("/redirect-private", "Deadlift form guide"),
        fake_web.result("/redirect-metadata", "Deadlift tips"),
        Result("Deadlift notes", fake_web.file_secret_url, "Notes on deadlift form"),
        fake_web.result("/huge", "Deadlift: keep the bar close to your shins."),
        fake_web.result("/deadlift"),
    ]
    turn = await chat(server, "How do you perform a deadlift properly?")
    assert turn.search["sources"] == [fake_web.page_url("/huge"), fake_web.page_url("/deadlift")]
    assert fake_web.private_hits == []
    system = system_prompt(server)
    for secret in (PRIVATE_SECRET, FILE_SECRET, fake_web.file_secret_url):
        assert secret not in system
    assert_no_secrets(turn)


async def test_instructions_inside_a_fetched_page_stay_inside_the_untrusted_fence(server, fake_web):
    fake_web.results = [fake_web.result("/inject")]
    turn = await chat(server, "What is the proper deadlift bar path?")
    assert "IGNORE ALL PREVIOUS INSTRUCTIONS" in turn.search["summary"], "the page's injection reached the summary"
    system = system_prompt(server)
    assert system.count(UNTRUSTED_OPEN) == 1 and system.count(UNTRUSTED_CLOSE) == 1
    start, end = system.index(UNTRUSTED_OPEN), system.index(UNTRUSTED_CLOSE)
    assert start < system.index("IGNORE ALL PREVIOUS INSTRUCTIONS") < end
    assert "EvilBot" not in system[end:] and "PWNED" not in system[end:]
