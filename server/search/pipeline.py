"""The search step of a turn: classify → query → provider → fetch pages → extract → summarise, within a deadline.

It never raises: whatever goes wrong, the turn goes on without search and `SearchOutcome.skipped` says why
(a stable code, sent to the client in the `search` frame; the details go to the log). Its own deadline is a
little shorter than SEARCH_TIMEOUT so that a slow provider still yields a frame carrying the query and
`skipped: "timeout"` instead of being cut off by the pipeline's outer deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

import numpy as np
from yarl import URL

from server.logs import get_logger
from server.metrics import Metrics
from server.protocols import SearchOutcome, SearchResult, TurnRecord
from server.search.breaker import CircuitBreaker
from server.search.extract import main_text, truncate_tokens
from server.search.features import Context
from server.search.fetch import FetchedPage, FetchRefused, SafeFetcher
from server.search.protocols import Decision, ProviderError, SearchClassifier, SearchProvider, Source, Summarizer
from server.search.query import standalone_query

log = get_logger(__name__)

# refused for safety: the result itself is suspect, so not even its snippet is used
_UNSAFE = frozenset({"address", "scheme"})
FETCH_SHARE = 0.6  # of the time left after the provider answered; the rest is for summarising


class WebSearch:
    def __init__(self, *, classifier: SearchClassifier, provider: SearchProvider, fetcher: SafeFetcher,
                 summarizer: Summarizer, breaker: CircuitBreaker, results: int, text_tokens: int, timeout: float,
                 count_tokens: Callable[[str], int], executor: Executor, metrics: Metrics | None = None):
        self.classifier = classifier
        self.metrics = metrics
        self.provider = provider
        self.fetcher = fetcher
        self.summarizer = summarizer
        self.breaker = breaker
        self.results = results
        self.text_tokens = text_tokens
        self.budget = max(0.05, timeout - min(0.25, timeout * 0.1))
        self.count_tokens = count_tokens
        self.executor = executor
        self.stats: Counter[str] = Counter()  # what happened, for /metrics-style inspection and tests

    def precheck(self, vector: np.ndarray, text: str = "", recent: Sequence[TurnRecord] = ()) -> SearchOutcome | None:
        """The classifier's verdict: an outcome when no search is needed, None when one is. `recent` (the
        buffer) gives the follow-up context: the previous user turn and the bot's reply to it. The decision is
        explained (log, /metrics) here, once per message."""
        return self._verdict(vector, text, recent, explain=True)

    def _verdict(self, vector: np.ndarray, text: str, recent: Sequence[TurnRecord],
                 explain: bool) -> SearchOutcome | None:
        context = Context(recent[-1].user_text, recent[-1].response or "") if recent else None
        try:
            decision = self.classifier.decide(np.asarray(vector, dtype=np.float32), text, context)
        except Exception as exc:
            self.stats["classifier_error"] += 1
            log.error("search classifier failed", error=str(exc))
            return SearchOutcome(skipped="classifier_error")
        if explain:
            self._explain(decision)
        if not decision.search:
            self.stats["not_needed"] += 1
            return SearchOutcome(skipped="not_needed")
        return None

    async def run(self, text: str, vector: np.ndarray, recent: Sequence[TurnRecord]) -> SearchOutcome:
        deadline = asyncio.get_running_loop().time() + self.budget
        # The server prechecked (and explained) this message already; deciding again costs microseconds and
        # keeps `run` whole for a caller that did not, without counting the decision twice in /metrics.
        if (known := self._verdict(vector, text, recent, explain=False)) is not None:
            return known
        query = standalone_query(text, recent)
        self.stats["searched"] += 1
        try:
            outcome = await self._search(query, deadline)
        except Exception:
            log.exception("search step failed", provider=self.provider.name)
            outcome = SearchOutcome(query=query, skipped="error")
        self.stats[f"outcome_{'used' if outcome.used else outcome.skipped}"] += 1
        return outcome

    def _explain(self, decision: Decision) -> None:
        """Score, threshold, language and (for a search) the features that drove it: in the log and /metrics."""
        if decision.search:
            log.info("search decided", score=round(decision.score, 3), threshold=round(decision.threshold, 3),
                     lang=decision.lang, terms=[f"{t}:{v}" for t, v in decision.terms])
        else:
            log.debug("search not needed", score=round(decision.score, 3), threshold=round(decision.threshold, 3),
                      lang=decision.lang)
        if self.metrics is not None:
            self.metrics.observe_search_decision(decision.lang or "en", decision.search, decision.score,
                                                 decision.threshold, [t for t, _ in decision.terms])

    async def _search(self, query: str, deadline: float) -> SearchOutcome:
        if not self.breaker.allow():
            return SearchOutcome(query=query, skipped="circuit_open")
        self.stats["provider_calls"] += 1
        try:
            async with asyncio.timeout_at(deadline):
                results = await self.provider.search(query, self.results)
        except TimeoutError:
            self.breaker.failure()
            log.warning("search provider timed out", provider=self.provider.name, breaker=self.breaker.state)
            return SearchOutcome(query=query, skipped="timeout")
        except ProviderError as exc:
            self.breaker.failure()
            log.warning("search provider failed", provider=self.provider.name, reason=exc.reason, status=exc.status,
                        detail=str(exc), breaker=self.breaker.state)
            return SearchOutcome(query=query, skipped=f"provider_{exc.reason}")
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.success()
        results = _usable(results)[:self.results]
        if not results:
            return SearchOutcome(query=query, skipped="no_results")
        sources = await self._read(results, deadline)
        if not sources:
            return SearchOutcome(query=query, skipped="no_content")
        summary = await self.summarizer.summarize(query, sources, deadline)
        self.stats[f"summary_{summary.method}"] += 1
        if summary.fallback:
            self.stats[f"summary_fallback_{summary.fallback}"] += 1
        if not summary.text:
            return SearchOutcome(query=query, skipped="no_content")
        log.info("searched", provider=self.provider.name, results=len(results), sources=len(sources),
                 pages=sum(s.from_page for s in sources), summary=summary.method, fallback=summary.fallback)
        return SearchOutcome(query=query, summary=summary.text, sources=[s.url for s in sources],
                             titles=[s.title for s in sources])

    async def _read(self, results: list[SearchResult], deadline: float) -> list[Source]:
        """Fetch the result pages concurrently until the fetch share of the time left; snippets fill the gaps."""
        loop = asyncio.get_running_loop()
        budget = max(32, self.text_tokens // len(results))
        tasks = [asyncio.create_task(self._page(r.url, budget)) for r in results]
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, (deadline - loop.time()) * FETCH_SHARE))
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
        sources = []
        for result, task in zip(results, tasks, strict=True):
            outcome = None if task.cancelled() else task.result()
            if outcome is None:
                self.stats["fetch_timeout"] += 1
            elif isinstance(outcome, FetchRefused):
                self.stats[f"fetch_refused_{outcome.reason}"] += 1
                if outcome.reason in _UNSAFE:
                    continue
            if isinstance(outcome, str) and outcome:
                sources.append(Source(result.url, result.title, outcome, from_page=True))
            elif result.snippet:
                sources.append(Source(result.url, result.title, result.snippet, from_page=False))
        return sources

    async def _page(self, url: str, budget: int) -> str | FetchRefused:
        try:
            page = await self.fetcher.fetch(url)
        except FetchRefused as exc:
            log.info("result page not fetched", reason=exc.reason, detail=str(exc))
            return exc
        self.stats["pages_fetched"] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, self._text, page, budget)
        except Exception as exc:  # a page the extractor chokes on is just a page without text
            log.warning("result page not extracted", error=repr(exc))
            return ""

    def _text(self, page: FetchedPage, budget: int) -> str:
        return truncate_tokens(main_text(page), budget, self.count_tokens)

    async def close(self) -> None:
        await self.provider.close()
        await self.fetcher.close()
        shutdown = getattr(self.executor, "shutdown", None)
        if shutdown is not None:
            shutdown(wait=False, cancel_futures=True)


def _usable(results: Sequence[SearchResult]) -> list[SearchResult]:
    """http(s) results, each URL once; anything else (file:, javascript:, data:) is dropped here already."""
    seen, usable = set(), []
    for r in results:
        try:
            scheme = URL(r.url).scheme
        except ValueError:
            continue
        if scheme in ("http", "https") and r.url not in seen:
            seen.add(r.url)
            usable.append(r)
    return usable
