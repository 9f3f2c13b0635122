"""Prometheus metrics, one registry per application (tests run several apps in one process)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


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
        self.phases = Histogram("chat_turn_phase_seconds", "Steps before generation: persist, embed, "
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
        self.loop_lag = Histogram("chat_event_loop_lag_seconds", "How late the event loop runs a timer: "
                                  "time the loop was busy or starved of the CPU or the GIL",
                                  buckets=_LATENCY, registry=r)
        self.active_turns = Gauge("chat_active_turns", "Turns in progress", registry=r)
        self.connections = Gauge("chat_websocket_connections", "Open websocket connections", registry=r)

    async def watch_loop_lag(self, interval: float = 0.1) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, loop.time() - started - interval))

    def render(self) -> bytes:
        return generate_latest(self.registry)
