"""The search step when SEARCH_PROVIDER=none: never searches."""

from __future__ import annotations

from server.protocols import SearchOutcome


class DisabledSearch:
    def precheck(self, vector, text: str = "", recent=()) -> SearchOutcome:
        return SearchOutcome(skipped="disabled")

    async def run(self, text, vector, recent) -> SearchOutcome:
        return self.precheck(vector)

    async def close(self) -> None:
        return None
