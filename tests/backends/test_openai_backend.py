"""The openai backend against a real loopback endpoint that fails on purpose: retries happen only before
the first token (429 honouring Retry-After, 5xx, dropped connections, stalls past the timeout), a
failure after tokens ends the reply, and the API key never shows up in errors or logs."""

import asyncio
import contextlib
import gc
import logging
import time

import pytest

from server.llm.openai_backend import OpenAIGenerator
from server.protocols import GenerationError, GenerationParams, Message, Usage
from tests.support.scripted_openai import Reply

KEY = "sk-test-SeCrEt0123456789abcdef"
TIMEOUT = 1.0
MESSAGES = [Message("system", "You are terse."), Message("user", "Say hello")]
PARAMS = GenerationParams(max_new_tokens=32, temperature=0.5, top_p=0.9)


@pytest.fixture
async def generator(scripted):
    gen = OpenAIGenerator(scripted.model, base_url=scripted.url, api_key=KEY, timeout=TIMEOUT, max_retries=2,
                          retry_max_wait=5.0)
    await gen.start()
    yield gen
    await gen.close()


async def reply(gen, usage: Usage | None = None) -> tuple[list[str], GenerationError | None]:
    pieces, error = [], None
    stream = gen.stream(MESSAGES, PARAMS, usage or Usage())
    async with contextlib.aclosing(stream):
        try:
            async for delta in stream:
                pieces.append(delta)
        except GenerationError as exc:
            error = exc
    return pieces, error


async def test_a_reply_streams_and_the_request_carries_what_an_openai_endpoint_expects(generator, scripted):
    usage = Usage()
    pieces, error = await reply(generator, usage)
    assert error is None and "".join(pieces) == "Hello from the endpoint."
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 5), "usage comes from the endpoint's usage chunk"
    (seen,) = scripted.requests
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.body["model"] == scripted.model and seen.body["stream"] is True
    assert seen.body["stream_options"] == {"include_usage": True}
    assert seen.body["messages"] == [{"role": "system", "content": "You are terse."},
                                     {"role": "user", "content": "Say hello"}]
    assert seen.body["max_tokens"] == 32 and seen.body["temperature"] == 0.5 and seen.body["top_p"] == 0.9
    assert generator.context_window == scripted.max_model_len, "learned from the endpoint's model list"


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
async def test_events_cut_across_reads_at_any_byte_give_the_same_reply(generator, scripted, line_end):
    scripted.push(Reply(line_end=line_end, write_bytes=3))
    usage = Usage()
    pieces, error = await reply(generator, usage)
    assert error is None and pieces == ["Hello", " from", " the", " endpoint", "."]
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 5)


async def test_429_is_retried_after_the_retry_after_the_endpoint_asked_for(generator, scripted):
    scripted.push(Reply(status=429, headers={"Retry-After": "1"}))
    pieces, error = await reply(generator)
    assert error is None and "".join(pieces) == "Hello from the endpoint."
    first, second = scripted.requests
    assert second.at - first.at >= 0.95


async def test_a_retry_after_longer_than_the_limit_fails_at_once_as_busy(generator, scripted):
    scripted.push(Reply(status=429, headers={"Retry-After": "120"}))
    started = time.monotonic()
    pieces, error = await reply(generator)
    assert pieces == [] and error.code == "busy" and "429" in str(error)
    assert len(scripted.requests) == 1 and time.monotonic() - started < 5


async def test_5xx_is_retried_until_it_succeeds(generator, scripted):
    scripted.push(Reply(status=500), Reply(status=503))
    pieces, error = await reply(generator)
    assert error is None and pieces
    assert len(scripted.requests) == 3


async def test_5xx_on_every_attempt_fails_after_the_retries_with_a_clear_error(generator, scripted):
    scripted.push(*[Reply(status=500)] * 3)
    pieces, error = await reply(generator)
    assert pieces == [] and error.code == "generation_failed"
    assert "HTTP 500" in str(error) and "3 attempts" in str(error)
    assert len(scripted.requests) == 3


async def test_a_connection_dropped_before_the_reply_is_retried(generator, scripted):
    scripted.push(Reply(before="drop"))
    pieces, error = await reply(generator)
    assert error is None and "".join(pieces) == "Hello from the endpoint."
    assert len(scripted.requests) == 2


async def test_a_stall_before_the_first_token_times_out_and_is_retried(generator, scripted):
    scripted.push(Reply(before="stall", stall_s=3 * TIMEOUT))
    started = time.monotonic()
    pieces, error = await reply(generator)
    assert error is None and pieces
    assert len(scripted.requests) == 2 and time.monotonic() - started >= TIMEOUT


async def test_a_connection_dropped_after_tokens_ends_the_reply_without_a_retry(generator, scripted):
    scripted.push(Reply(tokens=["Half", " a"], after="drop"))
    usage = Usage()
    pieces, error = await reply(generator, usage)
    assert pieces == ["Half", " a"]
    assert error.code == "generation_failed" and str(error).startswith("the reply was cut off")
    assert len(scripted.requests) == 1, "a retry would repeat text the client already has"
    assert usage.completion_tokens > 0, "counted locally when the endpoint could not report usage"


async def test_a_stall_after_tokens_past_the_timeout_ends_the_reply_without_a_retry(generator, scripted):
    scripted.push(Reply(tokens=["Slow"], after="stall", stall_s=4 * TIMEOUT))
    started = time.monotonic()
    pieces, error = await reply(generator)
    elapsed = time.monotonic() - started
    assert pieces == ["Slow"] and "OPENAI_TIMEOUT" in str(error)
    assert len(scripted.requests) == 1 and TIMEOUT <= elapsed < 3 * TIMEOUT


async def test_an_error_event_after_tokens_ends_the_reply(generator, scripted):
    scripted.push(Reply(tokens=["Oops"], after="error"))
    pieces, error = await reply(generator)
    assert pieces == ["Oops"] and error.code == "generation_failed"
    assert len(scripted.requests) == 1


async def test_a_rejected_key_is_not_retried_and_never_appears_in_errors_or_logs(generator, scripted, caplog):
    # some endpoints quote the key back in their error message
    scripted.push(Reply(status=401, error={"error": {"message": f"Incorrect API key provided: {KEY}",
                                                     "type": "invalid_request_error", "code": "invalid_api_key"}}))
    with caplog.at_level(logging.DEBUG):
        pieces, error = await reply(generator)
    assert pieces == [] and "OPENAI_API_KEY" in str(error) and "401" in str(error)
    assert len(scripted.requests) == 1
    assert KEY not in str(error) and KEY[:12] not in str(error)
    assert caplog.records, "the failure is logged"
    assert KEY not in caplog.text and KEY[8:] not in caplog.text


async def test_cancelling_the_reply_closes_the_connection_to_the_endpoint(generator, scripted):
    scripted.push(Reply(tokens=[f" t{i}" for i in range(50)], token_delay_s=0.05))
    stream = generator.stream(MESSAGES, PARAMS, Usage())
    async with contextlib.aclosing(stream):
        assert await anext(stream) == " t0"
    for _ in range(100):
        if scripted.requests[0].disconnected:
            break
        await asyncio.sleep(0.02)  # the socket closes on the next turns of the event loop
    assert scripted.requests[0].disconnected, "the endpoint saw the client go and can stop generating"


async def test_a_reply_leaves_nothing_for_the_cycle_collector(generator, scripted):
    """Reference cycles are freed only by the cyclic collector, whose pauses stop the event loop for
    every stream; the backend's path makes none (tenacity's retry state used to, on every request).
    Only the client's stack is inspected: the scripted endpoint shares this process."""
    await reply(generator)  # warm up: connection pool, lazily built client parts
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector would free stays in gc.garbage, to be inspected
    try:
        for _ in range(5):
            pieces, error = await reply(generator)
            assert error is None and pieces
        gc.collect()
        names = {f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert sorted(n for n in names if n.startswith(("tenacity", "openai", "httpx", "aiohttp.client", "server.")))\
        == []
