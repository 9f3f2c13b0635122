"""The seams of the turn pipeline. Backends implement these; the pipeline knows none by name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Role = Literal["system", "user", "assistant"]

# The shared knowledge base; user namespaces are "session:…" or "user:…", so they never collide.
KNOWLEDGE_NAMESPACE = "kb"


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_new_tokens: int
    temperature: float
    top_p: float


class GenerationError(RuntimeError):
    """The backend failed; `code` is the machine code sent to the client."""

    def __init__(self, message: str, code: str = "generation_failed"):
        super().__init__(message)
        self.code = code


@runtime_checkable
class Generator(Protocol):
    """Streams text deltas for a chat. Cancelling the iteration stops generation (no wasted compute)."""

    name: str
    context_window: int

    def count_tokens(self, text: str) -> int: ...

    def stream(self, messages: Sequence[Message], params: GenerationParams,
               usage: Usage) -> AsyncIterator[str]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Embedder(Protocol):
    dim: int

    async def embed(self, texts: Sequence[str], background: bool = False) -> np.ndarray:
        """Return L2-normalised float32 vectors, one row per text; `background` work (flushes, the
        knowledge base) may wait behind turns."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TurnRecord:
    id: str
    session: str
    seq: int
    user_text: str
    response: str | None
    status: str  # pending | complete | interrupted | failed
    created: float

    @property
    def pair_text(self) -> str:
        """The long-term memory document for this turn, in the original chatbot's layout."""
        return f"User: {self.user_text}\nResponse: {self.response or ''}"


@dataclass(frozen=True, slots=True)
class Document:
    """A long-term memory: one input/response pair, or one knowledge-base chunk."""

    id: int
    namespace: str
    text: str
    embedding: np.ndarray | None = None
    session: str | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One change to a namespace's documents; vector indexes are rebuilt by replaying these."""

    cursor: int | str
    op: Literal["add", "del"]
    doc: Document


@dataclass(frozen=True, slots=True)
class Hit:
    doc: Document
    score: float


@dataclass(frozen=True, slots=True)
class FlushPlan:
    session: str
    namespace: str
    after_seq: int  # the watermark this flush expects to move from
    turns: tuple[TurnRecord, ...]

    @property
    def upto_seq(self) -> int:
        return self.turns[-1].seq


class SessionBusy(Exception):
    """A turn is already running on this session."""


class StoreUnavailable(Exception):
    """The durable store cannot be reached; the turn must fail fast with a clear error."""


class LogExpired(Exception):
    """The log entries after a reader's cursor were compacted away: the reader drops what it built and
    starts over from `log_since(namespace, None)`, which returns the compacted state and then the rest."""


class TurnStore(Protocol):
    """Durable turns, the short-term buffer and the flush watermark; also the source of documents."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def begin_turn(self, session: str, namespace: str, text: str) -> TurnRecord:
        """Commit the user message durably; raises PermissionError if another namespace owns the session."""
        ...

    async def finish_turn(self, turn_id: str, response: str, status: str) -> None: ...

    async def buffer(self, session: str) -> list[TurnRecord]:
        """Completed turns not yet flushed into long-term memory, oldest first."""
        ...

    async def history(self, session: str) -> list[TurnRecord]: ...

    async def session_namespace(self, session: str) -> str | None: ...

    async def plan_flush(self, session: str, every: int) -> FlushPlan | None: ...

    async def commit_flush(self, plan: FlushPlan, embeddings: np.ndarray) -> list[Document] | None:
        """Write the plan's documents and advance the watermark atomically; None if already flushed."""
        ...

    async def sessions_needing_flush(self, every: int) -> list[str]: ...

    async def forget_session(self, session: str) -> int:
        """Delete turns, buffer and the session's memories (tombstones for indexes); return docs removed."""
        ...

    async def log_since(self, namespace: str, cursor: int | str | None) -> list[LogEntry]:
        """Changes after `cursor`; from None, the namespace's live documents (possibly as a compacted
        snapshot) and what followed. Raises LogExpired when entries after `cursor` are gone."""
        ...

    async def namespaces(self) -> list[str]: ...

    async def replace_knowledge(self, source: str, digest: str, chunks: Sequence[str],
                                embeddings: np.ndarray) -> bool:
        """Swap the chunks of one knowledge file; False when `digest` is already indexed."""
        ...

    async def knowledge_sources(self) -> dict[str, str]: ...

    async def drop_knowledge(self, source: str) -> None: ...

    async def interrupt_pending(self) -> int:
        """Mark turns left pending by a crash as interrupted; return how many."""
        ...

    async def flush_count(self, session: str) -> int: ...


class VectorStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def search(self, namespace: str, vector: np.ndarray, k: int) -> list[Hit]: ...

    async def refresh(self, namespace: str) -> None:
        """Bring the index of `namespace` up to date with the document log."""
        ...


@dataclass(frozen=True, slots=True)
class SearchResult:
    title: str
    url: str
    snippet: str = ""


@dataclass(slots=True)
class SearchOutcome:
    """What the search step did for a turn; `skipped` says why it did not search, if it did not."""

    query: str | None = None
    summary: str | None = None
    sources: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def used(self) -> bool:
        return bool(self.summary)


class SearchStep(Protocol):
    """classify → (query → fetch → extract → summarise); never raises, reports `skipped` instead."""

    def precheck(self, vector: np.ndarray) -> SearchOutcome | None:
        """The outcome when it is known without I/O (disabled, not needed); None when `run` must search."""
        ...

    async def run(self, text: str, vector: np.ndarray, recent: Sequence[TurnRecord]) -> SearchOutcome: ...

    async def close(self) -> None: ...
