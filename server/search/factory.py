"""Build the search step named by SEARCH_PROVIDER."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from server.config import SearchProviderName, Settings
from server.protocols import Generator, SearchStep
from server.search.disabled import DisabledSearch
from server.search.protocols import SearchProvider


def create_provider(settings: Settings) -> SearchProvider:
    """The provider for SEARCH_PROVIDER; ValueError (naming the missing setting) if it cannot be configured."""
    name = settings.search_provider
    timeout = settings.search_timeout
    if name == SearchProviderName.GOOGLE:
        from server.search.providers.google import GoogleProvider

        key = settings.google_api_key.get_secret_value() if settings.google_api_key else ""
        return GoogleProvider(key, settings.google_cse_id or "", settings.search_url, timeout)
    if name == SearchProviderName.SEARXNG:
        from server.search.providers.searxng import SearxngProvider

        return SearxngProvider(settings.search_url, timeout)
    if name == SearchProviderName.BRAVE:
        from server.search.providers.brave import BraveProvider

        key = settings.brave_api_key.get_secret_value() if settings.brave_api_key else ""
        return BraveProvider(key, settings.search_url, timeout)
    raise ValueError(f"SEARCH_PROVIDER={name.value} is not a search provider")


def create_search(settings: Settings, generator: Generator) -> SearchStep:
    if settings.search_provider == SearchProviderName.NONE:
        return DisabledSearch()
    from server.search.breaker import CircuitBreaker
    from server.search.classifier import LinearHeadClassifier
    from server.search.extract import safe_counter
    from server.search.fetch import SafeFetcher
    from server.search.netpolicy import AddressPolicy, parse_allow
    from server.search.pipeline import WebSearch
    from server.search.summarize import ExtractiveSummarizer, GeneratorSummarizer

    provider = create_provider(settings)
    classifier = LinearHeadClassifier.load(settings.search_classifier, settings.search_threshold)
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
        count_tokens=count, executor=executor)
