"""Build the search step named by SEARCH_PROVIDER."""

from __future__ import annotations

from server.config import SearchProviderName, Settings
from server.protocols import Generator, SearchStep
from server.search.disabled import DisabledSearch


def create_search(settings: Settings, generator: Generator) -> SearchStep:
    if settings.search_provider == SearchProviderName.NONE:
        return DisabledSearch()
    raise ValueError(f"SEARCH_PROVIDER={settings.search_provider.value} is not available in this build")
