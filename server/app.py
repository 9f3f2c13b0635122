"""Assemble the application from settings: stores, embedder, generator, search, pipeline, routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import WSCloseCode, web

from server.chat import ChatService
from server.config import Settings
from server.events import EventBus
from server.keys import CHAT, CONNECTIONS, METRICS, SETTINGS, STARTED
from server.llm.factory import create_generator
from server.logs import get_logger
from server.memory.embedder import SentenceTransformerEmbedder
from server.memory.knowledge import KnowledgeBase
from server.memory.service import LongTermMemory
from server.metrics import Metrics
from server.prompt import BuiltPrompt
from server.protocols import GenerationParams
from server.search.factory import create_search
from server.store.factory import create_turn_store, create_vector_store
from server.transport.http import add_routes, client_errors
from server.transport.websocket import websocket_handler

log = get_logger(__name__)


@dataclass
class Hooks:
    """Observation points for tests and benchmarks (for example, the prompts that were built)."""

    on_prompt: Callable[[BuiltPrompt], None] | None = None


def build_app(settings: Settings, hooks: Hooks | None = None) -> web.Application:
    hooks = hooks or Hooks()
    app = web.Application(middlewares=[client_errors], client_max_size=settings.max_frame_bytes)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[CONNECTIONS] = set()
    app[STARTED] = time.monotonic()
    app.cleanup_ctx.append(lambda app: _lifecycle(app, hooks))
    app.on_shutdown.append(_drain)
    add_routes(app)
    app.router.add_get("/ws", websocket_handler)
    return app


async def _lifecycle(app: web.Application, hooks: Hooks):
    settings = app[SETTINGS]
    metrics = app[METRICS]
    persona = settings.persona_file.read_text(encoding="utf-8")
    turns = create_turn_store(settings)
    embedder = SentenceTransformerEmbedder(settings.embed_model, batch_size=settings.embed_batch)
    generator = create_generator(settings)
    await turns.start()
    closers = [turns.close]
    try:
        await asyncio.gather(embedder.start(), generator.start())
        closers += [embedder.close, generator.close]
        vectors = create_vector_store(settings, turns, embedder.dim)
        await vectors.start()
        closers.append(vectors.close)
        search = create_search(settings, generator)
        closers.append(search.close)
        interrupted = await turns.interrupt_pending()
        if interrupted:
            log.warning("turns interrupted by a previous crash", count=interrupted)
        bus = EventBus()
        memory = LongTermMemory(turns, vectors, embedder, metrics, settings.flush_every, settings.memory_top_k,
                                settings.knowledge_top_k)
        app[CHAT] = ChatService(
            turns=turns, memory=memory, embedder=embedder, generator=generator, search=search, persona=persona,
            params=GenerationParams(settings.max_new_tokens, settings.temperature, settings.top_p),
            metrics=metrics, bus=bus, retrieval_timeout=settings.retrieval_timeout,
            search_timeout=settings.search_timeout, on_prompt=hooks.on_prompt)
        await memory.recover()
        if settings.knowledge_dir is not None:
            knowledge = KnowledgeBase(settings.knowledge_dir, turns, embedder)
            await knowledge.start()
            closers.append(knowledge.close)
        log.info("server ready", backend=generator.name, store=settings.store.value,
                 search=settings.search_provider.value, context_window=generator.context_window)
        yield
    finally:
        for close in reversed(closers):
            try:
                await close()
            except Exception:
                log.exception("error while closing", component=getattr(close, "__qualname__", str(close)))


async def _drain(app: web.Application) -> None:
    """SIGTERM: in-flight turns finish (or are recorded as interrupted), then clients are told why."""
    chat = app.get(CHAT)
    if chat is not None:
        await chat.drain(app[SETTINGS].drain_timeout)
    for ws in list(app[CONNECTIONS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
