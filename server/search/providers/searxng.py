"""A self-hosted SearXNG instance's JSON API (`SEARCH_URL`, `/search?format=json`)."""

from __future__ import annotations

from yarl import URL

from server.config import Settings
from server.protocols import SearchResult
from server.search.protocols import ProviderError
from server.search.providers.base import JsonApi, result


def search_endpoint(base: str) -> str:
    """SEARCH_URL may name the instance (http://host:8888/) or its search endpoint (…/search)."""
    url = URL(base)
    path = url.path.rstrip("/")
    return str(url if path.endswith("/search") else url.with_path(f"{path}/search"))


def create(settings: Settings) -> SearxngProvider:
    return SearxngProvider(settings.search_url or "", settings.search_timeout)


class SearxngProvider(JsonApi):
    name = "searxng"

    def __init__(self, base_url: str, timeout: float = 10.0):
        super().__init__(search_endpoint(base_url), timeout)

    async def search(self, query: str, count: int) -> list[SearchResult]:
        status, body = await self.get_json({"q": query, "format": "json", "pageno": "1", "safesearch": "1"})
        if status == 403:
            raise ProviderError("forbidden", f"SearXNG at {self.where} refused format=json: the JSON format is not "
                                "enabled; add `json` under `search: formats:` in its settings.yml and restart it",
                                status)
        if status == 429:
            raise ProviderError("rate_limited", f"SearXNG at {self.where} rate-limited this server (its bot "
                                "limiter); list this server's address under pass_ip in limiter.toml", status)
        if status != 200:
            raise self.generic_error(status)
        if not isinstance(body, dict) or not isinstance(body.get("results", []), list):
            raise self.parse_failure()
        found = [result(r.get("title"), r.get("url"), r.get("content")) for r in body.get("results", [])
                 if isinstance(r, dict)]
        return [r for r in found if r is not None][:count]
