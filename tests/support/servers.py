"""Real chat servers on 127.0.0.1 for tests: a subprocess (`python -m server`) or a thread in this process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.support.paths import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None,
                 headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before becoming healthy")
        try:
            if httpx.get(f"{url}/health", timeout=1.0, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy in {timeout}s")


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Until `url` answers at all (any status): for the fake upstreams started as processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


class ServerProcess:
    """`python -m server` in a subprocess, with the given environment, logging to a file."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        # Thread embedding workers start about 6 s sooner than processes (no second and third
        # interpreter importing torch), and tests restart servers often; the process lanes have
        # tests of their own (tests/server/test_embedder.py, test_durability.py).
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LOG_FORMAT": "json",
                    "PYTHONPATH": str(REPO), "EMBED_WORKERS": "thread", **env}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"server-{self.port}.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, extra_env: dict[str, str] | None = None, wait: bool = True) -> ServerProcess:
        env = {**self.env, **(extra_env or {})}
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "server", "--port", str(self.port)], cwd=self.workdir,
                                     env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            token = env.get("SERVER_TOKENS", "").split(",")[0].split(":")[0]
            wait_healthy(self.url, proc=self.proc, headers={"Authorization": f"Bearer {token}"} if token else None)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.terminate(30)
            except subprocess.TimeoutExpired:
                self.kill()


class ServerThread:
    """The real application on 127.0.0.1, served from a thread with its own event loop.

    In-process so that tests can observe what the server builds (prompts) through `Hooks`.
    """

    def __init__(self, settings, hooks=None, uvloop: bool = False):
        self.settings = settings
        self.hooks = hooks
        self.uvloop = uvloop  # the serving process's loop (benchmarks); tests use asyncio's own
        self.port = 0
        self.app = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="chat-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def _main(self) -> None:
        if self.uvloop:
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self._serve())
        else:
            asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            from aiohttp import web

            from server.app import build_app

            self.app = build_app(self.settings, self.hooks)
            runner = web.AppRunner(self.app, handler_cancellation=True)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(600):  # a busy machine loads models slowly; never hand out port 0
            raise TimeoutError("the server did not start in 600 s")
        if self._error is not None:
            raise RuntimeError("server failed to start") from self._error
        return self

    def call(self, coro, timeout: float = 30):
        """Run a coroutine on the server's loop (e.g. to read its stores) and return the result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
