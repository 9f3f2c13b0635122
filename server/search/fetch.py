"""Fetch result pages without becoming an SSRF proxy.

Every hop (the result URL and each redirect, followed by hand) must be http(s). Addresses are checked where
they are used: the resolver drops non-public answers, and the socket factory refuses any connection to a
non-public address, so an IP-literal URL, a redirect or a DNS answer that changes between check and connect
(rebinding) cannot reach loopback, the LAN or the metadata service. Bodies are capped in bytes (counted
after decompression) and every fetch in time. No proxy from the environment, no cookies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from server.search.netpolicy import AddressPolicy, AddressRefused

REDIRECTS = frozenset({301, 302, 303, 307, 308})
TEXT_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain"})
USER_AGENT = "dongpo-chat/0.1 (+https://github.com/; search summariser)"
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchedPage:
    url: str  # after redirects
    content_type: str
    charset: str | None
    body: bytes


class FetchRefused(Exception):
    """The page was not fetched; `reason` is one of scheme, address, too_large, redirects, content_type, status,
    timeout, network."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class PolicyResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver and keeps only the addresses the policy permits."""

    def __init__(self, policy: AddressPolicy):
        self.policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if self.policy.permits(a["host"], a["port"])]
        if not allowed:
            raise AddressRefused(f"{host} resolves only to non-public addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _refused_by_policy(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, AddressRefused) or "non-public address" in str(exc):
            return True
        exc = getattr(exc, "os_error", None) or exc.__cause__ or exc.__context__
        seen += 1
    return False


class SafeFetcher:
    def __init__(self, policy: AddressPolicy, max_bytes: int, timeout: float, max_redirects: int = 5):
        self.policy = policy
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=PolicyResolver(self.policy),
                                             socket_factory=self.policy.socket_factory, limit=32, ttl_dns_cache=30)
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout),
                headers={"User-Agent": USER_AGENT, "Accept": "text/html,application/xhtml+xml,text/plain;q=0.8",
                         "Accept-Language": "en,zh;q=0.8"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str) -> FetchedPage:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._follow(URL(url))
        except TimeoutError:
            raise FetchRefused("timeout", f"no complete page within {self.timeout:g}s") from None
        except ValueError as exc:  # malformed URL
            raise FetchRefused("scheme", f"not a fetchable URL: {exc}") from None

    def _check(self, url: URL) -> None:
        if url.scheme not in ("http", "https") or not url.host:
            raise FetchRefused("scheme", f"only http(s) URLs are fetched, not {url.scheme or 'relative'}:")
        if url.user or url.password:
            raise FetchRefused("scheme", "URLs with credentials are not fetched")
        if _is_ip(url.host) and not self.policy.permits(url.host, url.port or 0):
            raise FetchRefused("address", f"refusing non-public address {url.host}")

    async def _follow(self, url: URL) -> FetchedPage:
        for _ in range(self.max_redirects + 1):
            self._check(url)
            try:
                async with self._client().get(url, allow_redirects=False) as resp:
                    if resp.status in REDIRECTS:
                        location = resp.headers.get("Location")
                        if not location:
                            raise FetchRefused("status", f"HTTP {resp.status} without a Location")
                        url = url.join(URL(location))
                        continue
                    return await self._read(resp)
            except aiohttp.ClientError as exc:
                if _refused_by_policy(exc):
                    raise FetchRefused("address", "the page's host resolves to a non-public address") from None
                raise FetchRefused("network", f"{type(exc).__name__}") from None
            except AddressRefused:
                raise FetchRefused("address", "the page's host resolves to a non-public address") from None
        raise FetchRefused("redirects", f"more than {self.max_redirects} redirects")

    async def _read(self, resp: aiohttp.ClientResponse) -> FetchedPage:
        if resp.status != 200:
            raise FetchRefused("status", f"HTTP {resp.status}")
        if resp.content_type not in TEXT_TYPES:
            raise FetchRefused("content_type", f"not a text page ({resp.content_type})")
        if resp.content_length is not None and resp.content_length > self.max_bytes:
            raise FetchRefused("too_large", f"declared {resp.content_length} bytes, over {self.max_bytes}")
        body = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchRefused("too_large", f"body over {self.max_bytes} bytes")
        return FetchedPage(str(resp.url), resp.content_type, resp.charset, bytes(body))
