"""Build the search step named by SEARCH_PROVIDER: the one place that knows the providers and checks their settings."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from server.config import Settings
from server.errors import StartupError
from server.metrics import Metrics
from server.protocols import Embedder, Generator, SearchStep
from server.search.disabled import DisabledSearch
from server.search.netpolicy import parse_allow
from server.search.protocols import SearchProvider

OFF = "none"


@dataclass(frozen=True)
class ProviderEntry:
    module: str  # defines `create(settings) -> SearchProvider`; imported only when this provider is chosen
    needs: tuple[str, ...] = ()  # Settings fields that must be set; errors name them as environment variables


# A new provider is one file in providers/ with a `create(settings)` function, and one line here. A key of its
# own comes from SEARCH_API_KEY (settings.search_api_key), so config.py needs no edit.
PROVIDERS: dict[str, ProviderEntry] = {
    "google": ProviderEntry("server.search.providers.google", ("google_api_key", "google_cse_id")),
    "searxng": ProviderEntry("server.search.providers.searxng", ("search_url",)),
    "brave": ProviderEntry("server.search.providers.brave", ("brave_api_key",)),
}


def check_search(settings: Settings) -> None:
    """Raise StartupError in an instant, before the slow start-up, when the search settings cannot work.

    The message names the setting at fault and never its value (keys are secrets)."""
    _entry(settings)
    try:
        parse_allow(settings.search_fetch_allow)  # checked even with search off: a typo should not wait
    except ValueError as exc:  # names the bad entry, an address, never a key
        raise StartupError(str(exc)) from None


def _entry(settings: Settings) -> ProviderEntry | None:
    name = settings.search_provider
    if name == OFF:
        return None
    entry = PROVIDERS.get(name)
    if entry is None:
        raise StartupError(f"SEARCH_PROVIDER={name} is not a search provider; choose one of "
                           f"{', '.join([OFF, *PROVIDERS])}")
    missing = [field.upper() for field in entry.needs if not getattr(settings, field)]
    if missing:
        raise StartupError(f"SEARCH_PROVIDER={name} needs {' and '.join(missing)}")
    return entry


def create_provider(settings: Settings) -> SearchProvider:
    """The provider for SEARCH_PROVIDER; StartupError (naming the setting at fault) if it cannot be configured."""
    entry = _entry(settings)
    if entry is None:
        raise StartupError(f"SEARCH_PROVIDER={OFF} has no provider")
    create: Callable[[Settings], SearchProvider] = importlib.import_module(entry.module).create
    try:
        return create(settings)
    except ValueError as exc:  # a setting of the right kind but the wrong form, e.g. SEARCH_URL not http(s)
        raise StartupError(str(exc)) from None


def create_search(settings: Settings, generator: Generator, embedder: Embedder | None = None,
                  metrics: Metrics | None = None) -> SearchStep:
    check_search(settings)
    if settings.search_provider == OFF:
        return DisabledSearch()
    from server.search.breaker import CircuitBreaker
    from server.search.classifier import LinearHeadClassifier, head_path
    from server.search.extract import safe_counter
    from server.search.fetch import SafeFetcher
    from server.search.netpolicy import AddressPolicy
    from server.search.pipeline import WebSearch
    from server.search.summarize import ExtractiveSummarizer, GeneratorSummarizer

    provider = create_provider(settings)
    classifier = LinearHeadClassifier.load(head_path(settings.search_classifier, settings.data_dir),
                                           settings.search_threshold)
    # HeadMismatch stops the start: a head for another embedder would decide on noise
    if embedder is not None:
        classifier.check_embedder(embedder.id, embedder.dim)
    else:
        classifier.check_embedder(settings.embed_model)
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="search")
    count = safe_counter(generator.count_tokens)
    summarizer = ExtractiveSummarizer(settings.search_summary_tokens, count, executor)
    if settings.search_summarizer == "generator":
        summarizer = GeneratorSummarizer(generator, settings.search_summary_tokens, summarizer)
    # the summariser's prompt (pages + instructions) and its answer must fit the model's context
    text_tokens = min(settings.search_text_tokens,
                      max(64, generator.context_window - settings.search_summary_tokens - 256))
    return WebSearch(
        classifier=classifier, provider=provider,
        fetcher=SafeFetcher(AddressPolicy(parse_allow(settings.search_fetch_allow)), settings.search_page_bytes,
                            settings.search_page_timeout),
        summarizer=summarizer,
        breaker=CircuitBreaker(settings.search_breaker_failures, settings.search_breaker_cooldown),
        results=settings.search_results, text_tokens=text_tokens, timeout=settings.search_timeout,
        count_tokens=count, executor=executor, metrics=metrics)
