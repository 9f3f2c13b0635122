"""Brave Search API (`BRAVE_API_KEY`, sent as `X-Subscription-Token`).

Errors come as {"type": "ErrorResponse", "error": {"code", "detail", "status", "meta"}}.
"""

from __future__ import annotations

from typing import Any

from server.config import Settings
from server.protocols import SearchResult
from server.search.protocols import ProviderError
from server.search.providers.base import JsonApi, result, secret

ENDPOINT = "https://api.search.brave.com/res/v1/web/search"


def create(settings: Settings) -> BraveProvider:
    return BraveProvider(secret(settings.brave_api_key), settings.search_url, settings.search_timeout)


class BraveProvider(JsonApi):
    name = "brave"

    def __init__(self, api_key: str, endpoint: str | None = None, timeout: float = 10.0):
        super().__init__(endpoint or ENDPOINT, timeout)
        self._key = api_key

    async def search(self, query: str, count: int) -> list[SearchResult]:
        status, body = await self.get_json({"q": query, "count": str(max(1, min(count, 20))),
                                            "text_decorations": "false"},
                                           headers={"X-Subscription-Token": self._key})
        if status != 200:
            raise self.error(status, body)
        if not isinstance(body, dict):
            raise self.parse_failure()
        web = body.get("web") or {}  # absent when nothing matched
        results = web.get("results") if isinstance(web, dict) else None
        if not isinstance(results, list):
            return []
        found = [result(r.get("title"), r.get("url"), r.get("description")) for r in results if isinstance(r, dict)]
        return [r for r in found if r is not None][:count]

    def error(self, status: int, body: Any) -> ProviderError:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code", ""))
        detail = str(error.get("detail", ""))[:200]
        meta = error.get("meta") if isinstance(error.get("meta"), dict) else {}
        if status == 429 or code == "RATE_LIMITED":
            limit, used = meta.get("quota_limit"), meta.get("quota_current")
            if isinstance(limit, int) and isinstance(used, int) and limit and used >= limit:
                return ProviderError("quota", f"the Brave Search monthly quota of {limit} queries is used up",
                                     status)
            return ProviderError("rate_limited", "Brave Search is rate limiting this key (the free plan allows one "
                                 "query a second)", status)
        if status in (401, 403, 422) and ("TOKEN" in code or "SUBSCRIPTION" in code or status != 422):
            return ProviderError("forbidden", "Brave Search refused BRAVE_API_KEY (invalid, or not subscribed to the "
                                 f"Web Search plan){': ' + detail if detail else ''}", status)
        return self.generic_error(status, detail)
