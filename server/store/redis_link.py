"""One redis-py asyncio connection pool per process, failing fast while Redis is down.

When a command cannot reach Redis the link is marked down: later calls fail at once with
`RedisUnavailable` (no pile-up of turns waiting on timeouts) while one background task probes Redis
with exponential backoff and jitter (tenacity) and marks the link up again when it answers. Nothing
here logs or echoes REDIS_URL, which may carry a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, BusyLoadingError, ReadOnlyError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
    wait_random,
)

from server.errors import ClientError, StartupError
from server.logs import get_logger
from server.protocols import SessionBusy, StoreUnavailable

log = get_logger(__name__)

T = TypeVar("T")

# A loading replica, a demoted primary and a dead socket all mean "not now": the same outage to callers.
_OUTAGE = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError, OSError)


class RedisUnavailable(StoreUnavailable, ClientError):
    """Redis cannot be reached. Also a ClientError, so that every transport (websocket, HTTP) reports it
    with the stable `store_unavailable` code without knowing which backend is configured."""

    def __init__(self, message: str = "Redis is unreachable; the server reconnects by itself, retry shortly"):
        ClientError.__init__(self, "store_unavailable", message, 503, retry_after=1.0)


class SessionLeased(SessionBusy, ClientError):
    """Another replica holds the session's lease: a turn is running there."""

    def __init__(self) -> None:
        ClientError.__init__(self, "turn_in_progress", "a turn is already streaming on this session", 409)


class RedisLink:
    def __init__(self, url: str, *, max_connections: int = 32, timeout: float = 2.0, start_timeout: float = 30.0,
                 backoff_max: float = 2.0):
        self.url = url
        self.max_connections = max_connections
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.backoff_max = backoff_max
        self._client: aioredis.Redis | None = None
        self._up = asyncio.Event()
        self._reconnector: asyncio.Task | None = None
        self._down_since: float | None = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisLink used before start()")
        return self._client

    @property
    def up(self) -> bool:
        return self._up.is_set()

    async def start(self) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=self.max_connections, timeout=self.timeout,
            socket_timeout=self.timeout, socket_connect_timeout=min(self.timeout, 1.0),
            # one immediate retry replaces a pooled connection that died with a Redis restart; more
            # retries would only delay the fail-fast answer (the reconnect task does the waiting)
            retry=Retry(NoBackoff(), 1), health_check_interval=30, decode_responses=False)
        self._client = aioredis.Redis(connection_pool=pool)
        try:
            async for attempt in AsyncRetrying(
                    wait=self._backoff(0.1),
                    stop=stop_after_delay(self.start_timeout),
                    retry=retry_if_exception_type(_OUTAGE) & retry_if_not_exception_type(AuthenticationError),
                    reraise=True):
                with attempt:
                    await self._client.ping()
        except AuthenticationError:
            await self.close()
            raise StartupError("Redis refused the credentials in REDIS_URL (redis://user:password@host...)") from None
        except _OUTAGE as exc:
            await self.close()
            raise StartupError(f"Redis (REDIS_URL) did not answer within REDIS_START_TIMEOUT="
                               f"{self.start_timeout:g}s: {type(exc).__name__}") from None
        self._up.set()

    def _backoff(self, first: float):
        # jitter, so that replicas that lost Redis together do not all knock at the same instant
        return wait_exponential(multiplier=first, max=self.backoff_max) + wait_random(0, first)

    async def close(self) -> None:
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnector
            self._reconnector = None
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
            self._client = None
        self._up.clear()

    async def run(self, op: Callable[[aioredis.Redis], Awaitable[T]], *, wait: float = 0.0) -> T:
        """Run `op` with the client; any outage becomes RedisUnavailable.

        `wait`: seconds to wait for a reconnection first (for writes worth a short wait, such as a
        finished reply), instead of failing at once while the link is down. Ops must be idempotent:
        a retried Lua script or command may have been applied once already.
        """
        if not self._up.is_set():
            if wait <= 0:
                raise RedisUnavailable()
            try:
                async with asyncio.timeout(wait):
                    await self._up.wait()
            except TimeoutError:
                raise RedisUnavailable() from None
        try:
            return await op(self.client)
        except _OUTAGE as exc:
            if isinstance(exc.__cause__, asyncio.TimeoutError) and isinstance(exc, RedisConnectionError):
                # the pool had no free connection in time: Redis is busy, not gone
                raise RedisUnavailable("too many concurrent Redis operations; retry shortly") from None
            self._mark_down(exc)
            raise RedisUnavailable() from None

    def _mark_down(self, exc: BaseException) -> None:
        if not self._up.is_set() or self._client is None:
            return
        self._up.clear()
        self._down_since = time.monotonic()
        log.warning("redis unreachable; reconnecting", error=type(exc).__name__, detail=str(exc)[:200])
        self._reconnector = asyncio.create_task(self._reconnect(), name="redis-reconnect")

    async def _reconnect(self) -> None:
        async for attempt in AsyncRetrying(wait=self._backoff(0.05),
                                           stop=stop_never, retry=retry_if_exception_type(_OUTAGE)):
            with attempt:
                await self.client.ping()
        down_for = time.monotonic() - (self._down_since or time.monotonic())
        self._reconnector = None
        self._up.set()
        log.info("redis reachable again", down_s=round(down_for, 2))
