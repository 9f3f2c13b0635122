"""The search step as the server builds it (create_search), against the loopback search APIs and pages."""

import asyncio
import time

import pytest

from server.protocols import TurnRecord
from server.search.factory import create_search
from server.search.pipeline import WebSearch
from tests.search.fakeweb import FILE_SECRET, PRIVATE_SECRET, Result
from tests.server.conftest import make_settings

QUESTION = "How do you perform a deadlift properly?"
SMALL_TALK = ["How was your day?", "Haha you're funny", "我今天好累啊", "Write me a poem about the autumn moon",
              "I did deadlifts at the gym today and my back is sore."]


@pytest.fixture
def build(tiny_model_dir, tiny_generator, fake_web, tmp_path):
    def make(provider: str = "searxng", **overrides) -> WebSearch:
        settings = make_settings(tiny_model_dir, tmp_path, **{**fake_web.settings_for(provider), **overrides})
        return create_search(settings, tiny_generator)

    return make


@pytest.fixture
async def closing():
    steps: list[WebSearch] = []
    yield steps.append
    for step in steps:
        await step.close()


async def test_small_talk_is_decided_locally_and_never_reaches_the_provider(build, closing, embed, fake_web):
    step = build()
    closing(step)
    for text in SMALL_TALK:
        outcome = await step.run(text, embed(text), [])
        assert outcome.skipped == "not_needed" and outcome.query is None, text
    assert fake_web.calls() == []
    assert step.stats["not_needed"] == len(SMALL_TALK)


async def test_a_follow_up_is_searched_as_a_standalone_query_built_from_the_previous_question(
        build, closing, embed, fake_web):
    step = build("brave")
    closing(step)
    fake_web.results = [fake_web.result("/su-shi")]
    recent = [TurnRecord("t1", "s", 1, "Who was Su Shi?", "A poet of the Song dynasty.", "complete", 0.0)]
    outcome = await step.run("And what about his brother?", embed("And what about his brother?"), recent)
    assert fake_web.calls("brave")[0]["params"]["q"] == "Who was Su Shi? And what about his brother?"
    assert outcome.used and "Su Zhe" in outcome.summary
    assert outcome.sources == [fake_web.page_url("/su-shi")]


async def test_unsafe_results_are_dropped_and_oversized_pages_fall_back_to_their_snippets(
        build, closing, embed, fake_web):
    step = build("google", search_results=6)
    closing(step)
    fake_web.results = [
        fake_web.result("/redirect-private", "Deadlift guide (moved)"),
        fake_web.result("/redirect-metadata", "Deadlift guide (mirror)"),
        Result("Local notes", fake_web.file_secret_url, "Deadlift notes on disk"),
        fake_web.result("/redirect-file", "Deadlift guide (file)"),
        fake_web.result("/huge", "The deadlift is a hip hinge: keep the bar close to your shins."),
        fake_web.result("/deadlift"),
    ]
    outcome = await step.run(QUESTION, embed(QUESTION), [])
    assert outcome.used
    assert outcome.sources == [fake_web.page_url("/huge"), fake_web.page_url("/deadlift")]
    assert fake_web.private_hits == []
    for secret in (PRIVATE_SECRET, FILE_SECRET, "Deadlift notes on disk", "(moved)", "(mirror)"):
        assert secret not in outcome.summary
    assert step.stats["fetch_refused_address"] == 2 and step.stats["fetch_refused_scheme"] == 1
    assert step.stats["fetch_refused_too_large"] == 1
    assert fake_web.page_hits["/deadlift"] == 1


async def test_a_failing_provider_trips_the_breaker_and_gets_a_trial_call_after_the_cooldown(
        build, closing, embed, fake_web):
    step = build("google", search_breaker_failures=2, search_breaker_cooldown=0.5)
    closing(step)
    vector = embed(QUESTION)
    fake_web.mode = "error"
    assert [(await step.run(QUESTION, vector, [])).skipped for _ in range(2)] == ["provider_unavailable"] * 2
    third = await step.run(QUESTION, vector, [])
    assert third.skipped == "circuit_open" and third.query
    assert len(fake_web.calls()) == 2, "an open breaker does not call the provider"
    await asyncio.sleep(0.6)
    fake_web.mode = "ok"
    assert (await step.run(QUESTION, vector, [])).used
    assert len(fake_web.calls()) == 3
    assert step.breaker.state == "closed"


async def test_a_slow_provider_ends_in_a_timeout_that_still_names_the_query(build, closing, embed, fake_web):
    step = build("searxng", search_timeout=1.0)
    closing(step)
    fake_web.mode = "slow"
    vector = embed(QUESTION)
    started = time.monotonic()
    # the pipeline's own deadline (SEARCH_TIMEOUT) is applied around the step, as ChatService does
    outcome = await asyncio.wait_for(step.run(QUESTION, vector, []), timeout=1.0)
    assert outcome.skipped == "timeout" and "deadlift" in outcome.query
    assert time.monotonic() - started < 1.0


async def test_extractive_summariser_setting_never_asks_the_model(build, closing, embed, fake_web):
    step = build("searxng", search_summarizer="extractive")
    closing(step)
    outcome = await step.run(QUESTION, embed(QUESTION), [])
    assert outcome.used and step.stats["summary_extractive"] == 1
    assert not any(k.startswith("summary_fallback") for k in step.stats)
