"""The search step when SEARCH_PROVIDER=none: never searches."""

from __future__ import annotations

from server.protocols import SearchOutcome


class DisabledSearch:
    async def run(self, text, vector, recent) -> SearchOutcome:
        return SearchOutcome(skipped="disabled")

    async def close(self) -> None:
        return None
