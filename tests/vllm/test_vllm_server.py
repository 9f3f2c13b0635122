"""The vllm backend for real: our server on vLLM's engine (CPU build), websocket and OpenAI API end to end.

All tests share one server (see conftest.py); the last one stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import httpx
import psutil
import pytest

from tests.support.client import ChatClient, Turn
from tests.vllm.conftest import MAX_NEW_TOKENS, greedy_reply

# the first test that uses the server also waits for the engine to start (about a minute and a half on 2 cores)
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]


async def first_token(client: ChatClient, session: str, text: str) -> Turn:
    """Start a turn and read up to its first token frame."""
    await client.send({"type": "chat", "session": session, "text": text})
    turn = Turn()
    while not turn.tokens:
        turn.frames.append(await client.receive(120))
        assert turn.frames[-1]["type"] in ("start", "token"), turn.frames[-1]
    return turn


def test_auto_does_not_pick_vllm_s_cpu_build():
    import torch

    from server.config import Backend, Settings
    from server.llm.factory import resolve_backend

    settings = Settings(_env_file=None, model="Qwen/Qwen2.5-0.5B-Instruct")
    assert resolve_backend(settings) == (Backend.VLLM if torch.cuda.is_available() else Backend.TRANSFORMERS)


def test_health_says_vllm_serves_it_and_on_which_platform(vllm_server):
    import torch

    health = vllm_server.health()
    assert health["backend"] == "vllm"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert health["engine"] == {"platform": expected, "running": 0, "aborted": 0, "lora": True}


async def test_a_websocket_turn_streams_the_engine_s_deltas_end_to_end(vllm_server):
    async with aiohttp.ClientSession() as http, http.ws_connect(vllm_server.ws_url) as ws:
        turn = await ChatClient(ws).turn("ws-one", "How was your day?")
    kinds = [f["type"] for f in turn.frames]
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds) == {"start", "token", "end"}, kinds
    assert len(turn.tokens) >= 2 and all(turn.tokens)
    end = turn.end
    assert end["turn"] == turn.start["turn"]
    assert end["text"] == "".join(turn.tokens) and end["text"].strip()
    usage = end["usage"]
    # the model's end-of-sequence token never wins (conftest), so the reply runs to MAX_NEW_TOKENS
    assert usage["completion_tokens"] == MAX_NEW_TOKENS
    assert 10 < usage["prompt_tokens"] < 100
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert vllm_server.wait_engine_idle()["running"] == 0


async def test_a_cancelled_turn_is_aborted_in_the_engine(vllm_server):
    aborted = vllm_server.engine()["aborted"]
    async with aiohttp.ClientSession() as http, http.ws_connect(vllm_server.ws_url) as ws:
        client = ChatClient(ws)
        await first_token(client, "ws-cancel", "Write a very long poem about the river")
        await client.send({"type": "cancel"})
        turn = await client.collect()
    assert turn.end is not None and turn.end["stopped"] is True
    assert turn.end["usage"]["completion_tokens"] < MAX_NEW_TOKENS, "the turn was stopped before its end"
    engine = vllm_server.wait_engine_idle(aborted + 1)
    assert engine["running"] == 0, "the engine still holds the cancelled request"
    assert engine["aborted"] == aborted + 1, "the request was aborted before the engine finished it"


async def test_a_client_that_disconnects_has_its_request_aborted_in_the_engine(vllm_server):
    aborted = vllm_server.engine()["aborted"]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(vllm_server.ws_url)
        await first_token(ChatClient(ws), "ws-gone", "Tell me everything about red cliff")
        await ws.close()
    engine = vllm_server.wait_engine_idle(aborted + 1)
    assert engine["running"] == 0, "the engine still generates for a client that is gone"
    assert engine["aborted"] == aborted + 1, "the request was aborted before the engine finished it"


async def test_two_concurrent_sessions_are_batched_in_the_one_engine(vllm_server):
    seen: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while not done.is_set():
                seen.append((await http.get(f"{vllm_server.url}/health")).json()["engine"]["running"])
                await asyncio.sleep(0.01)

    async def chat(session: str, text: str) -> tuple[Turn, float, float]:
        async with aiohttp.ClientSession() as http, http.ws_connect(vllm_server.ws_url) as ws:
            client = ChatClient(ws)
            turn = await first_token(client, session, text)
            first = time.monotonic()
            turn.frames += (await client.collect()).frames
            return turn, first, time.monotonic()

    watcher = asyncio.create_task(watch())
    try:
        (a, a_first, a_end), (b, b_first, b_end) = await asyncio.gather(
            chat("batch-a", "Sing me a farewell song"), chat("batch-b", "Describe the west lake in spring rain"))
    finally:
        done.set()
        await watcher
    for turn in (a, b):
        assert turn.end["text"] == "".join(turn.tokens)
        assert turn.end["usage"]["completion_tokens"] == MAX_NEW_TOKENS
    assert a_first < b_end and b_first < a_end, "the two replies streamed at the same time"
    assert max(seen) == 2, f"the engine held both requests at once (requests seen in the engine: {seen})"
    assert vllm_server.wait_engine_idle()["running"] == 0


def test_the_lora_adapter_from_lora_dir_is_what_answers(vllm_server):
    question = "What did you cook in Huangzhou?"
    reply = httpx.post(f"{vllm_server.url}/v1/chat/completions", timeout=120, json={
        "model": str(vllm_server.model_dir), "max_tokens": 12,
        "messages": [{"role": "user", "content": question}]}).json()
    text = reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] == 12
    assert text == greedy_reply(vllm_server.merged_dir, question, 12), "the base model plus the adapter"
    assert text != greedy_reply(vllm_server.model_dir, question, 12), "not the base model alone"


def test_the_openai_compatible_api_streams_from_the_engine(vllm_server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{vllm_server.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == [str(vllm_server.model_dir)]
    messages = [{"role": "user", "content": "Why do poets write about wine?"}]
    chunks = list(client.chat.completions.create(model=str(vllm_server.model_dir), messages=messages,
                                                 max_tokens=24, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage.completion_tokens == 24 and not chunks[-1].choices
    whole = client.chat.completions.create(model=str(vllm_server.model_dir), messages=messages, max_tokens=24)
    assert streamed and whole.choices[0].message.content == streamed, "greedy: the same reply either way"
    assert vllm_server.wait_engine_idle()["running"] == 0


def test_sigterm_shuts_the_engine_down_and_leaves_no_process_behind(vllm_server):
    """Last in this module: it stops the shared server."""
    family = psutil.Process(vllm_server.process.proc.pid).children(recursive=True)
    names = {p.name() for p in family}
    assert {"VLLM::EngineCore", "VLLM::Worker"} <= names, f"the engine's processes are {names}"
    assert vllm_server.process.terminate(60) == 0
    _, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, f"processes left behind by the server: {[(p.pid, p.name()) for p in alive]}"
    pids = {p.pid for p in family}
    orphans = [p.info for p in psutil.process_iter(["pid", "name"])
               if p.info["pid"] in pids and (p.info["name"] or "").startswith("VLLM::")]
    assert not orphans, f"engine processes still in the process table: {orphans}"
    logs = vllm_server.process.logs()
    assert "vllm engine ready" in logs and "Traceback" not in logs
