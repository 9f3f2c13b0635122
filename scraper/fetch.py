"""HTTP for the crawler: one pooled aiohttp session, a concurrency cap, a request-rate cap,
robots.txt, and tenacity retries that tell transient failures from permanent ones.

A page waiting out a backoff does not hold a connection slot, so one slow page never idles the
crawl; the caps bound what the server sees (simultaneous requests and requests per second).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.robotparser
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from common.http import parse_retry_after
from scraper.config import TOOL_NAME, CrawlConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

# Statuses that say "try again later"; every other non-2xx status is an answer, not an accident.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 522, 524})
MISSING_STATUSES = frozenset({404, 410})


class FetchError(Exception):
    def __init__(self, url: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status


class TransientError(FetchError):
    """Worth retrying: overload, timeouts, dropped connections, truncated bodies."""

    def __init__(self, url: str, reason: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(url, reason, status=status)
        self.retry_after = retry_after


class PermanentError(FetchError):
    """Retrying will not help (403, 400, robots.txt, too many redirects)."""


class NotFound(PermanentError):
    """404/410: the page does not exist."""


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart; callers queue in arrival order."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    @property
    def rate(self) -> float | None:
        return 1.0 / self._interval if self._interval else None

    def slow_down_to(self, rate: float) -> None:
        self._interval = max(self._interval, 1.0 / rate)

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


class _Wait:
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, config: CrawlConfig) -> None:
        self._backoff = wait_exponential_jitter(
            multiplier=config.backoff_initial, max=config.backoff_max, jitter=config.backoff_initial
        )

    def __call__(self, state: RetryCallState) -> float:
        delay = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(delay, retry_after) if retry_after is not None else delay


class _Stop:
    def __init__(self, config: CrawlConfig) -> None:
        self._attempts = stop_after_attempt(config.max_attempts)
        self._max_retry_after = config.max_retry_after

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        # Asked to come back much later: leave the page for --resume instead of sleeping on it.
        return self._attempts(state) or (retry_after is not None and retry_after > self._max_retry_after)


class Fetcher:
    def __init__(self, config: CrawlConfig) -> None:
        self.config = config
        self._slots = asyncio.Semaphore(config.concurrency)
        self.rate = RateLimiter(config.rate)
        self._robots: urllib.robotparser.RobotFileParser | None = None
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.retries = 0

    async def __aenter__(self) -> Fetcher:
        connector = aiohttp.TCPConnector(
            limit=self.config.concurrency,
            limit_per_host=self.config.concurrency,
            ttl_dns_cache=600,
            enable_cleanup_closed=True,
        )
        # The timeout is for silence (a stalled server); a slow but steady download gets ten times as long.
        timeout = aiohttp.ClientTimeout(
            total=10 * self.config.timeout,
            sock_connect=self.config.timeout,
            sock_read=self.config.timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": self.config.user_agent, "Accept": "text/html,text/plain;q=0.9,*/*;q=0.1"},
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _attempt(self, url: str) -> tuple[str, str]:
        assert self._session is not None, "use Fetcher as an async context manager"
        async with self._slots:
            await self.rate.wait()
            self.requests += 1
            try:
                async with self._session.get(url, max_redirects=10) as resp:
                    status = resp.status
                    if status in MISSING_STATUSES:
                        raise NotFound(url, f"HTTP {status}", status=status)
                    if status in RETRYABLE_STATUSES:
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        raise TransientError(url, f"HTTP {status}", status=status, retry_after=retry_after)
                    if status == 403:
                        raise PermanentError(
                            url, "HTTP 403 (Wikimedia answers 403 to User-Agents without a contact)", status=403
                        )
                    if not 200 <= status < 300:
                        raise PermanentError(url, f"HTTP {status}", status=status)
                    body = await resp.read()
                    final_url = str(resp.url)
                    charset = resp.charset or "utf-8"
            except aiohttp.ClientPayloadError as exc:
                raise TransientError(url, f"truncated body ({exc.__class__.__name__})") from exc
            except aiohttp.TooManyRedirects as exc:
                raise PermanentError(url, "too many redirects") from exc
            except aiohttp.InvalidURL as exc:
                raise PermanentError(url, f"invalid URL ({exc})") from exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientResponseError, TimeoutError) as exc:
                reason = "timed out" if isinstance(exc, TimeoutError) else exc.__class__.__name__
                raise TransientError(url, f"connection failed: {reason}") from exc
        try:
            return body.decode(charset), final_url
        except (UnicodeDecodeError, LookupError) as exc:
            raise TransientError(url, f"body is not valid {charset}") from exc

    async def get(
        self, url: str, parse: Callable[[str, str], T] | None = None, *, attempts: list[int] | None = None
    ) -> T | str:
        """GET with retries; `parse(text, final_url)` runs inside the retry so a malformed page is refetched.

        `attempts`, when given, has its first item set to the number of requests made.
        """
        retrying = AsyncRetrying(
            stop=_Stop(self.config),
            wait=_Wait(self.config),
            retry=retry_if_exception_type(TransientError),
            reraise=True,
            before_sleep=self._before_sleep,
        )
        async for attempt in retrying:
            if attempts is not None:
                attempts[0] = attempt.retry_state.attempt_number
            with attempt:
                text, final_url = await self._attempt(url)
                if parse is None:
                    return text
                try:
                    return parse(text, final_url)
                except ValueError as exc:
                    raise TransientError(url, f"unusable page: {exc}") from exc
        raise AssertionError("unreachable: tenacity either returns or reraises")

    def _before_sleep(self, state: RetryCallState) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.debug("retry %d in %.2fs: %s", state.attempt_number, state.upcoming_sleep, exc)

    async def load_robots(self, url: str) -> None:
        """Fetch and apply the host's robots.txt (RFC 9309: 4xx means no rules, unreachable means stop)."""
        parts = urlsplit(url)
        robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
        parser = urllib.robotparser.RobotFileParser(robots_url)
        try:
            text = await self.get(robots_url)
        except PermanentError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                parser.parse([])
            else:
                raise
        except TransientError as exc:
            reason = f"robots.txt unreachable, so nothing may be crawled: {exc.reason}"
            raise TransientError(robots_url, reason, status=exc.status) from exc
        else:
            parser.parse(str(text).splitlines())
        self._robots = parser
        delay = parser.crawl_delay(TOOL_NAME)
        if delay:
            self.rate.slow_down_to(1.0 / float(delay))
            log.info("robots.txt asks for a crawl delay of %ss; rate limited to %.2f/s", delay, 1 / float(delay))

    def allowed(self, url: str) -> bool:
        return self._robots is None or self._robots.can_fetch(TOOL_NAME, url)
