"""The turn pipeline: a TurnReceived event goes through persistence, retrieval and search (together,
with deadlines), prompt building, streaming generation and commit; TurnCompleted goes to the bus.

Transports (websocket, OpenAI-compatible HTTP) only translate frames; they all call `run_turn`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from server.errors import ClientError
from server.events import EventBus, TurnCompleted, TurnReceived
from server.failpoints import FailpointError, failpoint
from server.limits import TurnLimiter
from server.logs import get_logger
from server.memory.service import LongTermMemory
from server.metrics import Metrics
from server.prompt import BuiltPrompt, PromptBuilder, PromptParts
from server.protocols import (
    Embedder,
    GenerationError,
    GenerationParams,
    Generator,
    Hit,
    SearchOutcome,
    SearchStep,
    StoreUnavailable,
    TurnRecord,
    TurnStore,
    Usage,
)

log = get_logger(__name__)


def _discard(*futures: asyncio.Future) -> None:
    for fut in futures:
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            fut.exception()  # retrieved: an unused result's error is not worth a warning


Send = Callable[[dict], Awaitable[None]]


@dataclass
class TurnControl:
    """Lets a transport stop a running turn: the reply so far is kept and the turn ends as stopped."""

    task: asyncio.Task | None = None
    stopped: bool = False
    released: bool = False  # the session is free again (set before the end frame goes out)
    limit_key: str | None = None  # who the turn counts against in the TurnLimiter

    def stop(self) -> None:
        self.stopped = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


@dataclass
class TurnTiming:
    """perf_counter() marks of one turn, for the overhead metric and benchmarks."""

    received: float
    generator_called: float | None = None
    last_token: float | None = None
    end_sent: float | None = None
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step before generation

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = now - self._last
        self._last = now

    def __post_init__(self) -> None:
        self._last = self.received

    @property
    def before_generation(self) -> float | None:
        return None if self.generator_called is None else self.generator_called - self.received

    @property
    def after_generation(self) -> float | None:
        return None if self.end_sent is None or self.last_token is None else self.end_sent - self.last_token


@dataclass
class TurnResult:
    session: str
    namespace: str
    turn_id: str
    text: str
    status: str  # complete | interrupted
    memories: list[int]
    usage: Usage
    search: SearchOutcome | None = None
    prompt: BuiltPrompt | None = field(default=None, repr=False)
    timing: TurnTiming | None = None


class ChatService:
    def __init__(self, *, turns: TurnStore, memory: LongTermMemory, embedder: Embedder, generator: Generator,
                 search: SearchStep, persona: str, params: GenerationParams, metrics: Metrics, bus: EventBus,
                 retrieval_timeout: float, search_timeout: float,
                 on_prompt: Callable[[BuiltPrompt], None] | None = None,
                 on_turn: Callable[[TurnResult], None] | None = None, limiter: TurnLimiter | None = None):
        self.turns = turns
        self.memory = memory
        self.embedder = embedder
        self.generator = generator
        self.search = search
        self.persona = persona
        self.params = params
        self.metrics = metrics
        self.bus = bus
        self.retrieval_timeout = retrieval_timeout
        self.search_timeout = search_timeout
        self.on_prompt = on_prompt
        self.on_turn = on_turn
        self.limiter = limiter
        self.prompts = PromptBuilder(generator.count_tokens, generator.context_window, params.max_new_tokens)
        self._active: dict[str, TurnControl] = {}
        self.closing = False
        bus.subscribe(TurnCompleted, memory.on_turn_completed)

    @property
    def active_turns(self) -> int:
        return len(self._active)

    async def claim(self, session: str, limit_key: str | None = None) -> TurnControl:
        """Reserve the session for one turn; refuse a second turn on it, and turns past the limits.

        `limit_key` (the memory namespace: the user, or the session without tokens) is what the rate and
        concurrency limits count; None (e.g. forgetting a session) only reserves the session.
        """
        if self.closing:
            raise ClientError("shutting_down", "the server is shutting down; reconnect shortly", 503, retry_after=5)
        if session in self._active:
            raise ClientError("turn_in_progress", "a turn is already streaming on this session", 409)
        control = self._active[session] = TurnControl()
        if limit_key is not None and self.limiter is not None:
            try:
                await self.limiter.admit(limit_key)
            except BaseException:
                del self._active[session]
                raise
            control.limit_key = limit_key
        return control

    def release(self, session: str, control: TurnControl) -> None:
        if control.released:
            return
        control.released = True
        if self._active.get(session) is control:
            del self._active[session]
        if control.limit_key is not None and self.limiter is not None:
            self.limiter.release(control.limit_key)

    async def run_turn(self, event: TurnReceived, send: Send, control: TurnControl,
                       params: GenerationParams | None = None) -> TurnResult:
        """Run one turn, sending its frames to `send`; `params` overrides the server's sampling settings."""
        if control.task is None:
            control.task = asyncio.current_task()
        self.metrics.active_turns.inc()
        try:
            return await self._run(event, send, control, params or self.params)
        finally:
            self.metrics.active_turns.dec()
            self.release(event.session, control)

    async def _run(self, event: TurnReceived, send: Send, control: TurnControl,
                   params: GenerationParams) -> TurnResult:
        # The message's embedding and the session's buffer do not depend on the commit: start them now
        # so that they overlap it. Nothing reaches the model or the client before the commit.
        embedding = asyncio.ensure_future(self._embed(event.text))
        buffer = asyncio.ensure_future(self._buffer(event))
        try:
            return await self._run_committed(event, send, control, params, embedding, buffer)
        finally:
            _discard(embedding, buffer)

    async def _run_committed(self, event: TurnReceived, send: Send, control: TurnControl,
                             params: GenerationParams, embedding: asyncio.Future,
                             buffer: asyncio.Future) -> TurnResult:
        record = await self._begin(event)
        # From here on the user message is durable (unless the turn is stateless): whatever happens, the
        # turn gets a final status.
        pieces: list[str] = []
        usage = Usage()
        prompt: BuiltPrompt | None = None
        search: SearchOutcome | None = None
        timing = TurnTiming(event.received_at)
        timing.mark("persist")
        try:
            await send({"type": "start", "turn": record.id})
            prompt, search = await self._prepare(event, send, timing, embedding, buffer)
            await self._stream(prompt, params, usage, pieces, send, timing)
        except asyncio.CancelledError:
            await self._finish(record, event, "".join(pieces), "interrupted")
            if not control.stopped:
                raise  # client gone or server stopping: nobody to send the end frame to
            asyncio.current_task().uncancel()
            status = "interrupted"
        except (GenerationError, FailpointError) as exc:
            await self._finish(record, event, "".join(pieces), "failed")
            code = getattr(exc, "code", "generation_failed")
            raise ClientError(code, str(exc), 503 if code == "busy" else 502) from exc
        except ConnectionError:
            await self._finish(record, event, "".join(pieces), "interrupted")
            raise
        except BaseException:
            await self._finish(record, event, "".join(pieces), "failed")
            raise
        else:
            status = "complete"
            await self._finish(record, event, "".join(pieces), status)
        result = TurnResult(event.session, event.namespace, record.id, "".join(pieces), status,
                            prompt.memory_ids if prompt else [], usage, search, prompt, timing)
        await self._end(event, result, control, send)
        if self.on_turn is not None:
            self.on_turn(result)
        return result

    async def _begin(self, event: TurnReceived) -> TurnRecord:
        if event.stateless:  # a record only for the turn's id: nothing of it is kept
            return TurnRecord(uuid.uuid4().hex, event.session, 0, event.text, None, "pending", time.time())
        try:
            return await self.turns.begin_turn(event.session, event.namespace, event.text)
        except PermissionError as exc:
            raise ClientError("forbidden", str(exc), 403) from exc
        except StoreUnavailable as exc:
            raise ClientError("store_unavailable", f"the turn store is unavailable: {exc}", 503) from exc

    async def _buffer(self, event: TurnReceived) -> list[TurnRecord]:
        if event.stateless:
            return list(event.sent_history)
        return await self.turns.buffer(event.session)

    async def _prepare(self, event: TurnReceived, send: Send, timing: TurnTiming, embedding: asyncio.Future,
                       buffer_read: asyncio.Future) -> tuple[BuiltPrompt, SearchOutcome | None]:
        vector = await embedding
        timing.mark("embed")
        buffer = await buffer_read  # read while the message was embedded: this is only what is left of it
        timing.mark("buffer")
        if vector is None:  # memory and search are enhancements: the turn goes on without them
            search, memories, knowledge = None, [], []
        elif (search := self._search_known(vector)) is not None:
            # nothing to overlap: no tasks, so no extra trips through a busy event loop
            memories, knowledge = await self._retrieve(event.namespace, vector)
        else:  # a real search runs while memories are retrieved
            (memories, knowledge), search = await asyncio.gather(
                self._retrieve(event.namespace, vector), self._search(event.text, vector, buffer))
        timing.mark("retrieve_and_search")
        if search is not None and search.query:
            await send({"type": "search", "query": search.query, "summary": search.summary or "",
                        "sources": search.sources, **({"skipped": search.skipped} if search.skipped else {})})
        prompt = self.prompts.build(PromptParts(self.persona, event.text, memories, knowledge, search, buffer))
        timing.mark("prompt")
        for phase, seconds in timing.phases.items():
            self.metrics.phases.labels(phase=phase).observe(seconds)
        if self.on_prompt is not None:
            self.on_prompt(prompt)
        return prompt, search

    async def _embed(self, text: str) -> np.ndarray | None:
        try:
            async with asyncio.timeout(self.retrieval_timeout):
                return (await self.embedder.embed([text]))[0]
        except Exception as exc:  # memory is an enhancement: the turn goes on without it
            log.warning("embedding skipped", error=repr(exc))
            return None

    async def _retrieve(self, namespace: str, vector: np.ndarray) -> tuple[list[Hit], list[Hit]]:
        try:
            async with asyncio.timeout(self.retrieval_timeout):
                return await self.memory.retrieve(namespace, vector)
        except Exception as exc:
            log.warning("retrieval skipped", error=repr(exc))
            return [], []

    def _search_known(self, vector: np.ndarray) -> SearchOutcome | None:
        """The search step's outcome where it is known without I/O (disabled, not needed)."""
        outcome = self.search.precheck(vector)  # never raises, like `run`
        if outcome is not None:
            self.metrics.search.labels(outcome=outcome.skipped or "none").inc()
        return outcome

    async def _search(self, text: str, vector: np.ndarray, recent: list[TurnRecord]) -> SearchOutcome:
        try:
            async with asyncio.timeout(self.search_timeout):
                outcome = await self.search.run(text, vector, recent)
        except TimeoutError:
            outcome = SearchOutcome(skipped="timeout")
        except Exception as exc:
            log.warning("search failed", error=repr(exc))
            outcome = SearchOutcome(skipped="error")
        self.metrics.search.labels(outcome="used" if outcome.used else (outcome.skipped or "none")).inc()
        return outcome

    async def _stream(self, prompt: BuiltPrompt, params: GenerationParams, usage: Usage, pieces: list[str],
                      send: Send, timing: TurnTiming) -> None:
        await failpoint("generate.before")
        timing.generator_called = time.perf_counter()
        self.metrics.overhead.labels(phase="before_generation").observe(timing.before_generation)
        stream = self.generator.stream(prompt.messages, params, usage)
        async with contextlib.aclosing(stream):
            async for delta in stream:
                if not pieces:
                    self.metrics.ttft.observe(time.perf_counter() - timing.received)
                pieces.append(delta)
                await send({"type": "token", "text": delta})
                timing.last_token = time.perf_counter()

    async def _end(self, event: TurnReceived, result: TurnResult, control: TurnControl, send: Send) -> None:
        self.metrics.generation_tokens.inc(result.usage.completion_tokens)
        self.metrics.prompt_tokens.inc(result.usage.prompt_tokens)
        end = {"type": "end", "turn": result.turn_id, "text": result.text, "memories": result.memories,
               "usage": result.usage.as_dict()}
        if result.status != "complete":
            end["stopped"] = True
        # free the session first: a client may send its next message the moment it reads `end`
        self.release(event.session, control)
        await send(end)
        result.timing.end_sent = time.perf_counter()
        if result.timing.after_generation is not None:
            self.metrics.overhead.labels(phase="after_generation").observe(result.timing.after_generation)

    async def _finish(self, record: TurnRecord, event: TurnReceived, text: str, status: str) -> None:
        if event.stateless:  # nothing was stored, so there is nothing to record or flush
            self.metrics.turns.labels(status=status).inc()
            return
        # shielded: a cancelled turn must still record what it produced
        await asyncio.shield(self.turns.finish_turn(record.id, text, status))
        self.metrics.turns.labels(status=status).inc()
        self.bus.publish(TurnCompleted(event.session, event.namespace, record.id, status))

    async def drain(self, grace: float) -> None:
        """Stop taking turns, let running ones finish for `grace` seconds, then interrupt the rest."""
        self.closing = True
        deadline = time.monotonic() + grace
        running = {c.task for c in self._active.values() if c.task is not None}
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        await self.bus.drain(max(1.0, deadline - time.monotonic()))
