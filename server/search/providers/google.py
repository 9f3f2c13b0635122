"""Google Custom Search JSON API (`GOOGLE_API_KEY`, `GOOGLE_CSE_ID`).

Closed to new customers and ending on 2027-01-01; kept for existing keys. Its errors come as
{"error": {"code", "message", "status", "errors": [{"reason"}]}} and are mapped to what the operator can do.
"""

from __future__ import annotations

from typing import Any

from server.config import Settings
from server.protocols import SearchResult
from server.search.protocols import ProviderError
from server.search.providers.base import JsonApi, result, secret

ENDPOINT = "https://www.googleapis.com/customsearch/v1"
SUNSET = ("Google closed the Custom Search JSON API to new customers and ends it on 2027-01-01; "
          "SEARCH_PROVIDER=searxng or brave replace it")
_QUOTA_REASONS = {"rateLimitExceeded", "dailyLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}
_DISABLED_REASONS = {"accessNotConfigured", "SERVICE_DISABLED"}


def create(settings: Settings) -> GoogleProvider:
    return GoogleProvider(secret(settings.google_api_key), settings.google_cse_id or "", settings.search_url,
                          settings.search_timeout)


class GoogleProvider(JsonApi):
    name = "google"

    def __init__(self, api_key: str, cse_id: str, endpoint: str | None = None, timeout: float = 10.0):
        super().__init__(endpoint or ENDPOINT, timeout)
        self._key = api_key
        self.cse_id = cse_id

    async def search(self, query: str, count: int) -> list[SearchResult]:
        status, body = await self.get_json({"key": self._key, "cx": self.cse_id, "q": query,
                                            "num": str(max(1, min(count, 10)))})
        if status != 200:
            raise self.error(status, body)
        if not isinstance(body, dict):
            raise self.parse_failure()
        items = body.get("items") or []  # absent when nothing matched
        if not isinstance(items, list):
            raise self.parse_failure()
        found = [result(i.get("title"), i.get("link"), i.get("snippet")) for i in items if isinstance(i, dict)]
        return [r for r in found if r is not None][:count]

    def error(self, status: int, body: Any) -> ProviderError:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        reasons = {e.get("reason") for e in error.get("errors") or [] if isinstance(e, dict)}
        reasons |= {d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)}
        message = str(error.get("message", ""))[:300]
        if status == 429 or reasons & _QUOTA_REASONS or error.get("status") == "RESOURCE_EXHAUSTED":
            return ProviderError("quota", "Google Custom Search quota is used up (100 free queries a day unless "
                                 "billing is enabled); searches resume when it resets at midnight Pacific time",
                                 status)
        if status == 403 and (reasons & _DISABLED_REASONS or "has not been used" in message
                              or "disabled" in message.lower()):
            return ProviderError("forbidden", "the Custom Search API is disabled in the Google Cloud project of "
                                 f"GOOGLE_API_KEY: enable it in the Cloud console. {SUNSET}", status)
        if status == 403:
            return ProviderError("forbidden", "Google refused GOOGLE_API_KEY: its project has no access to the "
                                 f"Custom Search JSON API (or the key is restricted). {SUNSET}", status)
        if status == 400 and ("keyInvalid" in reasons or "API_KEY_INVALID" in reasons
                              or "API key not valid" in message):
            return ProviderError("forbidden", "GOOGLE_API_KEY is not a valid API key", status)
        if status == 400:
            return ProviderError("bad_request", f"Google rejected the query (check GOOGLE_CSE_ID): {message}",
                                 status)
        return self.generic_error(status, message)
