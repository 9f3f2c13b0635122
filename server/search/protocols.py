"""The seams inside the search step: classifier, provider, summariser. The pipeline knows none by name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from server.protocols import SearchResult


@dataclass(frozen=True, slots=True)
class Decision:
    search: bool
    score: float  # the head's probability that the message needs outside knowledge
    threshold: float = 0.5  # the score at or above which it searches, for this message's language
    lang: str = ""
    terms: tuple[tuple[str, float], ...] = ()  # a search's strongest reasons: (feature, its share of the logit)


@runtime_checkable
class SearchClassifier(Protocol):
    """Decides from the message embedding the turn already computed; must take microseconds, not a model call."""

    dim: int

    def decide(self, vector: np.ndarray, text: str = "", context=None) -> Decision:
        """`text` is the message, `context` the turn before it (server/search/features.py: Context)."""
        ...


class ProviderError(Exception):
    """A search API refused or failed. `reason` is stable (it becomes the frame's `skipped` code); the message
    is for operators and never contains a key."""

    def __init__(self, reason: str, message: str, status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status


@runtime_checkable
class SearchProvider(Protocol):
    name: str

    async def search(self, query: str, count: int) -> list[SearchResult]:
        """Top results for `query`; raises ProviderError (or TimeoutError) when the API does not answer usefully."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Source:
    """What the summariser reads for one result: the page's main text, or the provider's snippet."""

    url: str
    title: str
    text: str
    from_page: bool


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    method: str  # generator | extractive
    fallback: str | None = None  # why the generator's summary was not used


@runtime_checkable
class Summarizer(Protocol):
    async def summarize(self, question: str, sources: Sequence[Source], deadline: float) -> Summary:
        """Summarise `sources` against `question`, finishing before `deadline` (the loop's clock)."""
        ...
