"""The turn pipeline: a TurnReceived event goes through persistence, retrieval and search (together,
with deadlines), prompt building, streaming generation and commit; TurnCompleted goes to the bus.

What the client hears of a turn are the typed events of `server.turn_events`; transports (websocket,
OpenAI-compatible HTTP) only encode them, and they all call `run_turn`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from server.errors import ClientError
from server.events import EventBus, TurnCompleted, TurnReceived
from server.failpoints import FailpointError, failpoint
from server.limits import TurnLimiter
from server.logs import get_logger
from server.memory.conversation import follow
from server.memory.service import ImportPending, LongTermMemory
from server.metrics import Metrics
from server.prompt import BuiltPrompt, PromptBuilder, PromptParts
from server.protocols import (
    Document,
    Embedder,
    GenerationError,
    GenerationParams,
    Generator,
    Hit,
    ImportedTurn,
    SearchOutcome,
    SearchStep,
    SessionInfo,
    StoreUnavailable,
    TurnRecord,
    TurnStore,
    Usage,
)
from server.turn_details import turn_details
from server.turn_events import SearchReported, Send, TokenDelta, TurnEnded, TurnStarted
from server.turn_state import TurnControl, TurnResult, TurnTiming

log = get_logger(__name__)


def _discard(*futures: asyncio.Future) -> None:
    for fut in futures:
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            fut.exception()  # retrieved: an unused result's error is not worth a warning


@dataclass(frozen=True, slots=True)
class TurnServices:
    """The collaborators a turn calls, each behind its seam."""

    turns: TurnStore
    memory: LongTermMemory
    embedder: Embedder
    generator: Generator
    search: SearchStep
    metrics: Metrics
    bus: EventBus  # where TurnCompleted goes (the memory flush listens)
    limiter: TurnLimiter | None = None  # None: no rate or concurrency limits


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """What the configuration fixes for every turn."""

    persona: str
    params: GenerationParams  # the server's sampling; a request may override it for its turn
    retrieval_timeout: float  # embedding, and memory retrieval: past it the turn goes on without memories
    search_timeout: float  # past it the turn goes on without search
    persona_with_instructions: bool = True  # API_PERSONA: prepend the persona to a client's own system prompt


@dataclass(frozen=True, slots=True)
class Hooks:
    """Observation points for tests and benchmarks (for example, the prompts that were built)."""

    on_prompt: Callable[[BuiltPrompt], None] | None = None
    on_turn: Callable[[TurnResult], None] | None = None


class ChatService:
    def __init__(self, services: TurnServices, settings: TurnSettings, hooks: Hooks | None = None):
        self.services = services
        self.settings = settings
        self.hooks = hooks or Hooks()
        generator = services.generator
        self.prompts = PromptBuilder(generator.count_tokens, generator.context_window, settings.params.max_new_tokens)
        self._active: dict[str, TurnControl] = {}
        self.closing = False
        services.bus.subscribe(TurnCompleted, services.memory.on_turn_completed)

    @property
    def active_turns(self) -> int:
        return len(self._active)

    async def claim(self, session: str, limit_key: str | None = None, wait: float = 0.0) -> TurnControl:
        """Reserve the session for one turn; refuse a second turn on it, and turns past the limits.

        `limit_key` (the memory namespace: the user, or the session without tokens) is what the rate and
        concurrency limits count; None (e.g. forgetting a session) only reserves the session. `wait`: seconds
        a turn running on the session is waited for before the second one is refused.
        """
        if self.closing:
            raise ClientError("shutting_down", "the server is shutting down; reconnect shortly", 503, retry_after=5)
        deadline = time.monotonic() + wait
        while (running := self._active.get(session)) is not None and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(running.freed.wait(), left)
        if session in self._active:
            raise ClientError("turn_in_progress", "a turn is already streaming on this session", 409)
        control = self._active[session] = TurnControl()
        limiter = self.services.limiter
        if limit_key is not None and limiter is not None:
            try:
                await limiter.admit(limit_key)
            except BaseException:
                del self._active[session]
                raise
            control.limit_key = limit_key
        return control

    def release(self, session: str, control: TurnControl) -> None:
        if control.released:
            return
        control.released = True
        control.freed.set()
        if self._active.get(session) is control:
            del self._active[session]
        if control.limit_key is not None and self.services.limiter is not None:
            self.services.limiter.release(control.limit_key)

    async def session_owner(self, session: str) -> str | None:
        """The namespace a stored session belongs to; None when there is no such session."""
        return await self.services.turns.session_namespace(session)

    async def history(self, session: str) -> list[TurnRecord]:
        return await self.services.turns.history(session)

    async def memories_by_id(self, namespace: str, ids: Iterable[int]) -> dict[int, Document]:
        """Those of the memories `ids` that `namespace` still keeps, as they read now."""
        found = await asyncio.gather(*(self.services.turns.memory(namespace, i) for i in set(ids)))
        return {d.id: d for d in found if d is not None}

    async def forget(self, session: str, namespace: str) -> int:
        """Delete a stored session and the memories made of it; return how many memories went.

        Refused (turn_in_progress) while a turn streams on the session: it would write into what is deleted.
        """
        control = await self.claim(session)
        try:
            return await self.services.memory.forget(session, namespace)
        finally:
            self.release(session, control)

    async def sessions(self, namespace: str, limit: int, offset: int = 0) -> list[SessionInfo]:
        return await self.services.turns.sessions(namespace, limit, offset)

    async def import_sessions(self, imports: list[tuple[str, str, list[ImportedTurn]]]) -> list[list[TurnRecord]]:
        """Store past turns in sessions (session, namespace, turns) and flush them into memory; refused while a turn
        streams on one of them."""
        claimed: list[tuple[str, TurnControl]] = []
        try:
            for session, _, _ in imports:
                claimed.append((session, await self.claim(session)))
            return await self.services.memory.import_sessions(imports)
        except PermissionError as exc:
            raise ClientError("forbidden", str(exc), 403) from exc
        except ImportPending as exc:  # a retry would store the turns twice: say so
            raise ClientError("import_pending", f"the {len(exc.records)} turns were stored, but could not be made "
                              f"into memories yet ({type(exc.cause).__name__}); their sessions' next flush makes "
                              "them memories, as for live turns: do not send them again", 503) from exc
        finally:
            for session, control in claimed:
                self.release(session, control)

    async def follow_conversation(self, session: str, namespace: str, sent: Sequence[ImportedTurn],
                                  opened_in: str | None = None) -> tuple[TurnRecord, ...]:
        """Make the stored session hold the conversation its client sent (`memory.conversation.follow`); the
        caller holds the session's claim."""
        try:
            return tuple(await follow(self.services.memory, session, namespace, sent, opened_in))
        except PermissionError as exc:
            raise ClientError("forbidden", str(exc), 403) from exc
        except StoreUnavailable as exc:
            raise ClientError("store_unavailable", f"the turn store is unavailable: {exc}", 503) from exc

    async def run_turn(self, event: TurnReceived, send: Send, control: TurnControl,
                       params: GenerationParams | None = None) -> TurnResult:
        """Run one turn, sending its events to `send`; `params` overrides the server's sampling settings."""
        if control.task is None:
            control.task = asyncio.current_task()
        self.services.metrics.active_turns.inc()
        try:
            return await self._run(event, send, control, params or self.settings.params)
        finally:
            self.services.metrics.active_turns.dec()
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
        details: str | None = None  # what the turn shows besides its reply, stored with it
        timing = TurnTiming(event.received_at)
        timing.mark("persist")
        try:
            await send(TurnStarted(record.id))
            prompt, search, recalled = await self._prepare(event, send, timing, embedding, buffer)
            details = turn_details(recalled, search)
            await self._stream(prompt, params, usage, pieces, send, timing)
        except asyncio.CancelledError:
            await self._finish(record, event, "".join(pieces), "interrupted", details)
            if not control.stopped:
                raise  # client gone or server stopping: nobody to send the end frame to
            asyncio.current_task().uncancel()
            status = "interrupted"
        except (GenerationError, FailpointError) as exc:
            await self._finish(record, event, "".join(pieces), "failed", details)
            code = getattr(exc, "code", "generation_failed")
            raise ClientError(code, str(exc), 503 if code == "busy" else 502) from exc
        except ConnectionError:
            await self._finish(record, event, "".join(pieces), "interrupted", details)
            raise
        except BaseException:
            await self._finish(record, event, "".join(pieces), "failed", details)
            raise
        else:
            status = "complete"
            await self._finish(record, event, "".join(pieces), status, details)
        result = TurnResult(event.session, event.namespace, record.id, "".join(pieces), status,
                            prompt.memory_ids if prompt else [], usage, search, prompt, timing)
        await self._end(event, result, control, send)
        if self.hooks.on_turn is not None:
            self.hooks.on_turn(result)
        return result

    async def _begin(self, event: TurnReceived) -> TurnRecord:
        if event.stateless:  # a record only for the turn's id: nothing of it is kept
            return TurnRecord(uuid.uuid4().hex, event.session, 0, event.text, None, "pending", time.time())
        try:
            return await self.services.turns.begin_turn(event.session, event.namespace, event.text)
        except PermissionError as exc:
            raise ClientError("forbidden", str(exc), 403) from exc
        except StoreUnavailable as exc:
            raise ClientError("store_unavailable", f"the turn store is unavailable: {exc}", 503) from exc

    async def _buffer(self, event: TurnReceived) -> list[TurnRecord]:
        if event.sent_history is not None:
            return list(event.sent_history)
        return await self.services.turns.buffer(event.session)

    async def _prepare(self, event: TurnReceived, send: Send, timing: TurnTiming, embedding: asyncio.Future,
                       buffer_read: asyncio.Future) -> tuple[BuiltPrompt, SearchOutcome | None, list[Document]]:
        vector = await embedding
        timing.mark("embed")
        buffer = await buffer_read  # read while the message was embedded: this is only what is left of it
        timing.mark("buffer")
        await failpoint("turn.before_retrieve")  # tests widen the window in which a flush can commit
        if vector is None:  # memory and search are enhancements: the turn goes on without them
            search, memories, knowledge = None, [], []
        elif (search := self._search_known(vector, event.text, buffer)) is not None:
            # nothing to overlap: no tasks, so no extra trips through a busy event loop
            memories, knowledge = await self._retrieve(event.namespace, event.text, vector, buffer)
        else:  # a real search runs while memories are retrieved
            (memories, knowledge), search = await asyncio.gather(
                self._retrieve(event.namespace, event.text, vector, buffer), self._search(event.text, vector, buffer))
        timing.mark("retrieve_and_search")
        if search is not None and search.query:
            await send(SearchReported(search.query, search.summary or "", tuple(search.sources), search.skipped))
        persona = self.settings.persona
        if event.instructions and not self.settings.persona_with_instructions:
            persona = ""  # API_PERSONA=off: the client's system prompt replaces the persona
        prompt = self.prompts.build(PromptParts(persona, event.text, memories, knowledge, search, buffer,
                                                event.instructions or ""))
        timing.mark("prompt")
        for phase, seconds in timing.phases.items():
            self.services.metrics.phases.labels(phase=phase).observe(seconds)
        if self.hooks.on_prompt is not None:
            self.hooks.on_prompt(prompt)
        found = {hit.doc.id: hit.doc for hit in memories}
        return prompt, search, [found[i] for i in prompt.memory_ids if i in found]

    async def _embed(self, text: str) -> np.ndarray | None:
        try:
            async with asyncio.timeout(self.settings.retrieval_timeout):
                return (await self.services.embedder.embed([text]))[0]
        except Exception as exc:  # memory is an enhancement: the turn goes on without it
            log.warning("embedding skipped", error=repr(exc))
            return None

    async def _retrieve(self, namespace: str, text: str, vector: np.ndarray,
                        buffer: list[TurnRecord]) -> tuple[list[Hit], list[Hit]]:
        try:
            async with asyncio.timeout(self.settings.retrieval_timeout):
                return await self.services.memory.retrieve(namespace, text, vector, buffer)
        except Exception as exc:
            log.warning("retrieval skipped", error=repr(exc))
            return [], []

    def _search_known(self, vector: np.ndarray, text: str, recent: list[TurnRecord]) -> SearchOutcome | None:
        """The search step's outcome where it is known without I/O (disabled, not needed)."""
        outcome = self.services.search.precheck(vector, text, recent)  # never raises, like `run`
        if outcome is not None:
            self.services.metrics.search.labels(outcome=outcome.skipped or "none").inc()
        return outcome

    async def _search(self, text: str, vector: np.ndarray, recent: list[TurnRecord]) -> SearchOutcome:
        try:
            async with asyncio.timeout(self.settings.search_timeout):
                outcome = await self.services.search.run(text, vector, recent)
        except TimeoutError:
            outcome = SearchOutcome(skipped="timeout")
        except Exception as exc:
            log.warning("search failed", error=repr(exc))
            outcome = SearchOutcome(skipped="error")
        self.services.metrics.search.labels(outcome="used" if outcome.used else (outcome.skipped or "none")).inc()
        return outcome

    async def _stream(self, prompt: BuiltPrompt, params: GenerationParams, usage: Usage, pieces: list[str],
                      send: Send, timing: TurnTiming) -> None:
        metrics = self.services.metrics
        await failpoint("generate.before")
        timing.generator_called = time.perf_counter()
        metrics.overhead.labels(phase="before_generation").observe(timing.before_generation)
        stream = self.services.generator.stream(prompt.messages, params, usage)
        async with contextlib.aclosing(stream):
            async for delta in stream:
                if not pieces:
                    metrics.ttft.observe(time.perf_counter() - timing.received)
                pieces.append(delta)
                await send(TokenDelta(delta))
                timing.last_token = time.perf_counter()

    async def _end(self, event: TurnReceived, result: TurnResult, control: TurnControl, send: Send) -> None:
        metrics = self.services.metrics
        metrics.generation_tokens.inc(result.usage.completion_tokens)
        metrics.prompt_tokens.inc(result.usage.prompt_tokens)
        end = TurnEnded(result.turn_id, result.text, tuple(result.memories), result.usage,
                        stopped=result.status != "complete")
        # free the session first: a client may send its next message the moment it reads `end`
        self.release(event.session, control)
        await send(end)
        result.timing.end_sent = time.perf_counter()
        if result.timing.after_generation is not None:
            metrics.overhead.labels(phase="after_generation").observe(result.timing.after_generation)

    async def _finish(self, record: TurnRecord, event: TurnReceived, text: str, status: str,
                      details: str | None = None) -> None:
        if event.stateless:  # nothing was stored, so there is nothing to record or flush
            self.services.metrics.turns.labels(status=status).inc()
            return
        # shielded: a cancelled turn must still record what it produced
        await asyncio.shield(self.services.turns.finish_turn(record.id, text, status, details))
        self.services.metrics.turns.labels(status=status).inc()
        self.services.bus.publish(TurnCompleted(event.session, event.namespace, record.id, status))

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
        await self.services.bus.drain(max(1.0, deadline - time.monotonic()))
