"""Assemble the application from settings: stores, embedder, generator, search, pipeline, routes."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from server.chat import ChatService, Hooks, TurnServices, TurnSettings
from server.config import EmbedderKind, Settings, StoreKind
from server.events import EventBus
from server.keys import CHAT, CONNECTIONS, MEMORY, METRICS, SETTINGS, STARTED
from server.limits import TurnLimiter
from server.llm.factory import create_generator
from server.logs import get_logger
from server.memory.control import MemoryControl
from server.memory.embedders import align_embeddings, create_embedder
from server.memory.knowledge import KnowledgeBase
from server.memory.ranking import RankingPolicy
from server.memory.service import LongTermMemory
from server.metrics import Metrics
from server.protocols import GenerationParams
from server.search.factory import create_search
from server.security.middleware import authentication, origin_check
from server.security.tokens import TokenRegistry
from server.store.factory import create_turn_store, create_vector_store
from server.transport.http import add_routes, client_errors
from server.transport.memory_api import add_memory_routes
from server.transport.openai_api import add_openai_routes
from server.transport.search_feedback import add_search_feedback_routes
from server.transport.websocket import websocket_handler

log = get_logger(__name__)


def build_app(settings: Settings, hooks: Hooks | None = None) -> web.Application:
    hooks = hooks or Hooks()
    tokens = TokenRegistry.parse(settings.server_tokens.get_secret_value() if settings.server_tokens else None,
                                 settings.server_tokens_file)
    middlewares = [client_errors, origin_check(settings.allowed_origins.split(",")), authentication(tokens)]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_request_bytes)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[CONNECTIONS] = set()
    app[STARTED] = time.monotonic()
    app.cleanup_ctx.append(lambda app: _lifecycle(app, hooks))
    app.on_shutdown.append(_drain)
    add_routes(app)
    add_memory_routes(app)
    add_search_feedback_routes(app)
    add_openai_routes(app)
    app.router.add_get("/ws", websocket_handler)
    return app


async def _lifecycle(app: web.Application, hooks: Hooks):
    settings = app[SETTINGS]
    metrics = app[METRICS]
    persona = settings.persona_file.read_text(encoding="utf-8")
    turns = create_turn_store(settings)
    embedder = create_embedder(settings, embedder_kind(settings))
    generator = create_generator(settings)
    await turns.start()
    lag_watch = asyncio.create_task(metrics.watch_loop_lag())
    closers = [turns.close, lambda: _cancel(lag_watch)]
    try:
        # one after the other: transformers' from_pretrained is not thread-safe (two loads at once in worker
        # threads leave parameters on the meta device: "Cannot copy out of meta tensor")
        await embedder.start()
        await generator.start()
        closers += [embedder.close, generator.close]
        await align_embeddings(turns, embedder)  # memories another embedder wrote are re-embedded first
        vectors = create_vector_store(settings, turns, embedder.dim, embedder.id)
        await vectors.start()
        closers.append(vectors.close)
        search = create_search(settings, generator, embedder, metrics)
        closers.append(search.close)
        interrupted = await turns.interrupt_pending()
        if interrupted:
            log.warning("turns interrupted by a previous crash", count=interrupted)
        bus = EventBus()
        memory = LongTermMemory(turns, vectors, embedder, metrics, settings.flush_every,
                                RankingPolicy(budget_tokens=settings.memory_budget_tokens), settings.knowledge_top_k,
                                top_k=settings.memory_top_k)
        limiter = TurnLimiter(settings.turns_per_minute, settings.max_turns_per_user, settings.max_active_turns,
                              redis_url=settings.redis_url if settings.store == StoreKind.REDIS else None)
        app[CHAT] = ChatService(
            TurnServices(turns=turns, memory=memory, embedder=embedder, generator=generator, search=search,
                         metrics=metrics, bus=bus, limiter=limiter),
            TurnSettings(persona=persona, retrieval_timeout=settings.retrieval_timeout,
                         search_timeout=settings.search_timeout,
                         persona_with_instructions=settings.api_persona == "prepend",
                         params=GenerationParams(settings.max_new_tokens, settings.temperature, settings.top_p)),
            hooks)
        app[MEMORY] = MemoryControl(memory)
        await memory.recover()
        if settings.knowledge_dir is not None:
            knowledge = KnowledgeBase(settings.knowledge_dir, turns, embedder)
            await knowledge.start()
            closers.append(knowledge.close)
        log.info("server ready", backend=generator.name, store=settings.store.value,
                 search=settings.search_provider, context_window=generator.context_window)
        yield
    finally:
        for close in reversed(closers):
            try:
                await close()
            except Exception:
                log.exception("error while closing", component=getattr(close, "__qualname__", str(close)))


def embedder_kind(settings: Settings) -> EmbedderKind:
    """EMBEDDER=auto: the static model, but MiniLM while web search is on with a classifier head trained on MiniLM's
    vectors (the shipped head, until one is trained on the static model's): the head reads the turn's vector."""
    if settings.embedder != EmbedderKind.AUTO:
        return settings.embedder
    if settings.search_provider == "none":
        return EmbedderKind.STATIC
    from server.search.classifier import LinearHeadClassifier, head_path

    try:
        head = LinearHeadClassifier.load(head_path(settings.search_classifier, settings.data_dir))
    except (OSError, ValueError, KeyError):
        return EmbedderKind.MINILM  # create_search reports what is wrong with the head
    return EmbedderKind.STATIC if str(head.embedder).startswith("static") else EmbedderKind.MINILM


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _drain(app: web.Application) -> None:
    """SIGTERM: in-flight turns finish (or are recorded as interrupted), then clients are told why."""
    chat = app.get(CHAT)
    if chat is not None:
        await chat.drain(app[SETTINGS].drain_timeout)
    for conn in list(app[CONNECTIONS]):
        await conn.shutdown()
