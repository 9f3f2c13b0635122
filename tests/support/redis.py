"""A real redis-server for tests (own loopback port, own temp dir), and reads of what the Redis store holds."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.servers import free_port

# A command that starts a Redis with the query engine (FT.SEARCH), e.g. "redis-stack-server" or a
# Redis 8 "redis-server"; `--port N ...` is appended. Unset, the KNN tests are skipped.
SEARCH_SERVER_ENV = "TEST_REDIS_SEARCH_SERVER"


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """redis-server on 127.0.0.1:<free port>, its files in `workdir`; AOF (fsync always) when asked."""

    def __init__(self, workdir: Path, *, aof: bool = False, command: list[str] | None = None,
                 password: str | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.password = password
        self.command = command or [redis_server_binary() or "redis-server"]
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> RedisServer:
        args = [*self.command, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                "--save", "", "--appendonly", "yes" if self.aof else "no", "--appendfsync", "always",
                "--daemonize", "no", "--logfile", str(self.log_path)]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.logs()[-2000:]}")
            try:
                with self.client() as r:
                    if r.ping():
                        return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} did not answer in {timeout}s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean shutdown (AOF fsynced); SIGKILL: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5,
                           decode_responses=True)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def search_server_command() -> list[str] | None:
    spec = os.environ.get(SEARCH_SERVER_ENV, "").strip()
    return shlex.split(spec) if spec else None


def documents(url: str, prefix: str, session: str) -> list[dict]:
    """The session's memories as stored, oldest first, with the seq of the turn each came from."""
    with redis.Redis.from_url(url, decode_responses=False) as r:
        docs = []
        for doc_id in sorted(int(i) for i in r.smembers(f"{prefix}sd:{session}")):
            d = {k.decode(): v for k, v in r.hgetall(f"{prefix}d:{doc_id}").items()}
            if not d:
                continue
            turn = d["turn"].decode()
            seq = r.hget(f"{prefix}t:{turn}", "seq")
            docs.append({"id": doc_id, "namespace": d["ns"].decode(), "session": d["session"].decode(),
                         "turn_id": turn, "text": d["text"].decode(), "seq": int(seq) if seq else None})
    return docs


def flushes(url: str, prefix: str, session: str) -> list[tuple[int, int, int]]:
    with redis.Redis.from_url(url, decode_responses=True) as r:
        return [tuple(int(x) for x in line.split()[:3]) for line in r.lrange(f"{prefix}fl:{session}", 0, -1)]


def wait_for_documents(url: str, prefix: str, session: str, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        docs = documents(url, prefix, session)
        if len(docs) >= count:
            return docs
        time.sleep(0.1)
    raise TimeoutError(f"session {session} did not reach {count} documents in Redis")
