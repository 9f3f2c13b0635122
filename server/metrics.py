"""Prometheus metrics, one registry per application (tests run several apps in one process)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.turns = Counter("chat_turns", "Chat turns by outcome", ["status"], registry=r)
        self.errors = Counter("chat_errors", "Errors sent to clients by code", ["code"], registry=r)
        self.ttft = Histogram("chat_time_to_first_token_seconds", "From receiving a turn to its first token",
                              buckets=_LATENCY, registry=r)
        self.overhead = Histogram("chat_server_overhead_seconds",
                                  "Server time outside the model: before the first generator call, and "
                                  "from the last token to the end frame", ["phase"], buckets=_LATENCY, registry=r)
        self.phases = Histogram("chat_turn_phase_seconds", "Steps before generation: persist, embed, buffer, "
                                "retrieve_and_search, prompt", ["phase"], buckets=_LATENCY, registry=r)
        self.generation_tokens = Counter("chat_generation_tokens", "Tokens generated", registry=r)
        self.prompt_tokens = Counter("chat_prompt_tokens", "Prompt tokens sent to the model", registry=r)
        self.flushes = Counter("chat_memory_flushes", "Short-term buffer flushes into long-term memory",
                               registry=r)
        self.flushed_documents = Counter("chat_memory_flushed_documents", "Documents written by flushes",
                                         registry=r)
        self.retrieval = Histogram("chat_retrieval_seconds", "Embedding plus vector search per turn",
                                   buckets=_LATENCY, registry=r)
        self.search = Counter("chat_search_steps", "Search step outcomes", ["outcome"], registry=r)
        self.search_score = Histogram("chat_search_classifier_score", "The search classifier's score per turn, by "
                                      "the message's language and the decision", ["lang", "decision"],
                                      buckets=tuple(i / 20 for i in range(1, 20)), registry=r)
        self.search_threshold = Gauge("chat_search_classifier_threshold", "The score at or above which a turn "
                                      "searches, per language", ["lang"], registry=r)
        self.search_terms = Counter("chat_search_classifier_terms", "The features that drove searched turns: "
                                    "n-grams of the head's own vocabulary, '<embedding>' for the embedding's share",
                                    ["term"], registry=r)
        self.loop_lag = Histogram("chat_event_loop_lag_seconds", "How late the event loop runs a timer: "
                                  "time the loop was busy or starved of the CPU or the GIL",
                                  buckets=_LATENCY, registry=r)
        self.gc_pauses = Histogram("chat_gc_pause_seconds", "Garbage-collector pauses: they stop the event loop",
                                   ["generation"], buckets=_LATENCY, registry=r)
        self._gc_seen: deque[tuple[int, float]] = deque(maxlen=10_000)
        self._gc_started = 0.0
        self.active_turns = Gauge("chat_active_turns", "Turns in progress", registry=r)
        self.connections = Gauge("chat_websocket_connections", "Open websocket connections", registry=r)

    def _on_gc(self, phase: str, info: dict) -> None:
        # No metric calls in here: a collection can start inside a metric's own lock.
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_seen.append((info["generation"], time.perf_counter() - self._gc_started))

    async def watch_loop_lag(self, interval: float = 0.1) -> None:
        """Also records the collector's pauses, which it notes on the side."""
        loop = asyncio.get_running_loop()
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                started = loop.time()
                await asyncio.sleep(interval)
                self.loop_lag.observe(max(0.0, loop.time() - started - interval))
                while self._gc_seen:
                    generation, seconds = self._gc_seen.popleft()
                    self.gc_pauses.labels(generation=str(generation)).observe(seconds)
        finally:
            gc.callbacks.remove(self._on_gc)

    def observe_search_decision(self, lang: str, search: bool, score: float, threshold: float,
                                terms: list[str]) -> None:
        self.search_score.labels(lang=lang, decision="search" if search else "no").observe(score)
        self.search_threshold.labels(lang=lang).set(threshold)
        for term in terms:  # bounded: the head's vocabulary, never free text
            self.search_terms.labels(term=term).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
