"""What the JSON search APIs share: one HTTP session, a size-capped GET, and the generic status mapping.

Provider endpoints are operator configuration (a self-hosted SearXNG usually lives on the LAN), so they are
not subject to the address policy that guards result pages.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import aiohttp
from pydantic import SecretStr
from yarl import URL

from server.protocols import SearchResult
from server.search.protocols import ProviderError

MAX_ANSWER_BYTES = 4 * 1024 * 1024
_TAG = re.compile(r"<[^>]+>")


def plain(text: object) -> str:
    """Snippets sometimes carry markup (<strong>, &amp;); the summariser wants text."""
    return " ".join(html.unescape(_TAG.sub("", text)).split()) if isinstance(text, str) else ""


def secret(value: SecretStr | None) -> str:
    """A key as sent to the API; the factory has refused to start without the ones a provider needs."""
    return value.get_secret_value() if value is not None else ""


def result(title: object, url: object, snippet: object) -> SearchResult | None:
    if not isinstance(url, str) or not url.strip():
        return None
    return SearchResult(plain(title), url.strip(), plain(snippet))


class JsonApi:
    name = "search"

    def __init__(self, endpoint: str, timeout: float):
        self.endpoint = URL(endpoint)
        if self.endpoint.scheme not in ("http", "https") or not self.endpoint.host:
            raise ValueError(f"SEARCH_URL for {self.name} must be an http(s) URL, got {endpoint!r}")
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def where(self) -> str:
        """The endpoint without its query string, which may carry a key."""
        return str(self.endpoint.with_query(None))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                trust_env=False, timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": "application/json", "User-Agent": "dongpo-chat/0.1"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, params: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or None). Network failures become ProviderError("unavailable")."""
        try:
            async with self._client().get(self.endpoint, params=params, headers=headers,
                                          allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
                status = resp.status
        except aiohttp.ClientError as exc:
            # the exception text can contain the request URL, and Google's URL carries the key
            raise ProviderError("unavailable", f"cannot reach {self.name} at {self.where} ({type(exc).__name__})"
                                ) from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise ProviderError("bad_response", f"{self.name} answered with more than {MAX_ANSWER_BYTES} bytes",
                                status)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None

    def generic_error(self, status: int, detail: str = "") -> ProviderError:
        suffix = f": {detail}" if detail else ""
        if status >= 500:
            return ProviderError("unavailable", f"{self.name} failed with HTTP {status}{suffix}", status)
        if status == 429:
            return ProviderError("rate_limited", f"{self.name} is rate limiting this server{suffix}", status)
        if status in (401, 403):
            return ProviderError("forbidden", f"{self.name} refused the request (HTTP {status}){suffix}", status)
        if 300 <= status < 400:
            return ProviderError("bad_response", f"{self.name} redirected (HTTP {status}); check SEARCH_URL", status)
        return ProviderError("bad_request", f"{self.name} rejected the request (HTTP {status}){suffix}", status)

    def parse_failure(self) -> ProviderError:
        return ProviderError("bad_response", f"{self.name} at {self.where} did not answer in its JSON format")
