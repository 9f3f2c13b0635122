"""Restarts, crashes and shutdowns of a real `python -m server` process."""

import asyncio
import subprocess
import sys

import aiohttp
import httpx
import psutil
import pytest

from tests.server.test_memory import TOPICS
from tests.support.client import connect
from tests.support.memory import documents, flushes, history_memories, wait_for_documents
from tests.support.servers import ServerProcess, free_port

pytestmark = pytest.mark.slow


def server_env(model_dir, data_dir, **extra) -> dict[str, str]:
    return {"MODEL": str(model_dir), "DATA_DIR": str(data_dir), "LLM_BACKEND": "transformers",
            "MAX_NEW_TOKENS": "16", "CONTEXT_TOKENS": "2048", "FLUSH_EVERY": "5", **extra}


async def chat(ws_url: str, session: str, texts: list[str]) -> list[dict]:
    async with aiohttp.ClientSession() as http:
        client = await connect(http, ws_url)
        return [(await client.turn(session, t)).end for t in texts]


async def test_history_and_memories_survive_a_restart(tiny_model_dir, tmp_path):
    server = ServerProcess(tmp_path, server_env(tiny_model_dir, tmp_path / "data")).start()
    try:
        ends = await chat(server.ws_url, "restart", TOPICS)
        docs = wait_for_documents(tmp_path / "data", "restart", 5)
        assert server.terminate() == 0
        server.start()
        history = httpx.get(f"{server.url}/sessions/restart/history").json()["turns"]
        assert [t["user"] for t in history] == TOPICS
        assert [t["response"] for t in history] == [e["text"] for e in ends]
        (sixth,) = await chat(server.ws_url, "restart", ["How heavy is my deadlift record at the gym?"])
        assert sixth["memories"][0] == next(d["id"] for d in docs if d["text"] == f"User: {TOPICS[2]}")
    finally:
        server.stop()


@pytest.mark.parametrize("point", ["flush.before_commit", "flush.after_commit"])
async def test_a_sigkill_during_a_flush_neither_loses_nor_duplicates_a_memory(tiny_model_dir, tmp_path, point):
    data = tmp_path / "data"
    server = ServerProcess(tmp_path, server_env(tiny_model_dir, data)).start({"FAILPOINTS": f"{point}=kill"})
    await chat(server.ws_url, "crash", TOPICS)
    assert server.wait_exit(60) == -9, "the failpoint killed the server inside the flush"
    committed = documents(data, "crash")

    server.start()  # no failpoint: recovery finishes or keeps the flush
    try:
        history = httpx.get(f"{server.url}/sessions/crash/history").json()["turns"]
        assert [t["status"] for t in history] == ["complete"] * 5
        said = history_memories(history)  # one memory per side that said something
        assert len(committed) == (0 if point == "flush.before_commit" else len(said))  # all of the flush or none
        docs = wait_for_documents(data, "crash", len(said))
        assert sorted((d["seq"], d["text"]) for d in docs) == sorted(said)  # none lost, none duplicated
        assert flushes(data, "crash") == [(0, 5, len(said))]
        (sixth,) = await chat(server.ws_url, "crash", ["Any tips for my deadlift record at the gym?"])
        assert sixth["memories"][0] == next(d["id"] for d in docs if d["text"] == f"User: {TOPICS[2]}")
    finally:
        server.stop()


async def test_sigterm_lets_the_running_turn_finish_then_exits_cleanly(tiny_model_dir, tmp_path):
    env = server_env(tiny_model_dir, tmp_path / "data", MAX_NEW_TOKENS="400", TEMPERATURE="1.0")
    server = ServerProcess(tmp_path, env).start({"FAILPOINTS": "generate.before=sleep:2"})
    try:
        async with aiohttp.ClientSession() as http:
            client = await connect(http, server.ws_url)
            await client.send({"type": "chat", "session": "drain", "text": "a long answer please"})
            assert (await client.receive())["type"] == "start"
            server.proc.send_signal(15)
            turn = await client.collect()
            assert turn.end is not None and turn.end.get("stopped") is None
            closing = await client.ws.receive(timeout=30)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert await asyncio.to_thread(server.wait_exit, 60) == 0
    finally:
        server.stop()
    server.start()
    try:
        history = httpx.get(f"{server.url}/sessions/drain/history").json()["turns"]
        assert [(t["status"], t["response"]) for t in history] == [("complete", turn.end["text"])]
    finally:
        server.stop()


def test_a_model_that_cannot_be_loaded_stops_the_start_with_a_hint(tmp_path):
    port = free_port()
    env = {**server_env("no-such-org/no-such-model", tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "server", "--port", str(port)], cwd=tmp_path,
                          env={**ServerProcess(tmp_path, {}).env, **env}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert "point MODEL at a local model directory" in proc.stderr


def test_a_second_server_on_the_same_data_dir_refuses_to_start(tiny_model_dir, tmp_path):
    first = ServerProcess(tmp_path / "a", server_env(tiny_model_dir, tmp_path / "data")).start()
    try:
        second = ServerProcess(tmp_path / "b", server_env(tiny_model_dir, tmp_path / "data")).start(wait=False)
        assert second.wait_exit(120) == 1
        assert "is in use by another server process" in second.logs()
        assert httpx.get(f"{first.url}/health").status_code == 200
    finally:
        first.stop()


def test_embedding_worker_processes_exit_when_the_server_is_sigkilled(tiny_model_dir, tmp_path):
    server = ServerProcess(tmp_path, server_env(tiny_model_dir, tmp_path / "data", EMBED_WORKERS="process")).start()
    workers = psutil.Process(server.proc.pid).children(recursive=True)
    assert len(workers) >= 2, "one worker process per embedding lane"
    server.kill()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert alive == [], "a worker outlived the server that spawned it"
