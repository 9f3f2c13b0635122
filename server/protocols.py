"""The seams of the turn pipeline. Backends implement these; the pipeline knows none by name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from server.estimate import split_to_fit

# A memory as long as the prompt's whole memory budget would leave room for nothing else, and one longer would
# never be recalled: a message longer than this (estimated tokens; ~560 characters of English, 160 of Chinese)
# becomes several memories. The vectors gain too: MiniLM reads only a text's first 256 word pieces.
MEMORY_PIECE_TOKENS = 160

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
    id: str  # what the vectors are (model and recipe): stores record it, so that two models' vectors never mix

    def describe(self) -> dict:
        """For /health: the kind, id and dimension, and how it runs."""
        ...

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
    user_name: str | None = None  # the speakers, when known (imported turns)
    assistant_name: str | None = None
    # what the turn showed besides its reply, as JSON: {"memories": [memory ids], "search": {query, summary,
    # sources, titles, skipped}}; so that a chat read back shows what it showed live (server.turn_details)
    details: str | None = None

    @property
    def memory_texts(self) -> list[str]:
        """The long-term memories this turn becomes: one per side that said something, led by its speaker; a
        message longer than MEMORY_PIECE_TOKENS becomes one per piece, cut between sentences.
        Single utterances, not pairs: bench/memory_recall.py finds the answering turn more often with them,
        in English and in Chinese, and more of them fit a prompt's budget."""
        sides = ((self.user_name or "User", self.user_text), (self.assistant_name or "Assistant", self.response))
        return [f"{name}: {piece}" for name, text in sides if text
                for piece in map(str.strip, split_to_fit(text.strip(), MEMORY_PIECE_TOKENS)) if piece]


@dataclass(frozen=True, slots=True)
class Document:
    """A long-term memory: one input/response pair, or one knowledge-base chunk."""

    id: int
    namespace: str
    text: str
    embedding: np.ndarray | None = None
    session: str | None = None
    created: float | None = None  # when what it remembers was said (the turn's time), epoch seconds
    turn: str | None = None  # the turn it was made of; None for knowledge and memories added by hand


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

    @property
    def documents(self) -> list[tuple[TurnRecord, str]]:
        """What the flush writes, in order: each turn's memory texts; `commit_flush`'s embeddings follow it."""
        return [(turn, text) for turn in self.turns for text in turn.memory_texts]


@dataclass(frozen=True, slots=True)
class ImportedTurn:
    """A completed turn brought from elsewhere (another server, a ChatGPT export); either side may be empty."""

    user_text: str
    response: str
    created: float
    user_name: str | None = None
    assistant_name: str | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One chat, as a list of chats shows it."""

    id: str
    created: float
    updated: float  # its last turn's time (its creation's, without turns)
    turns: int
    title: str  # its first message (the start of it)


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

    async def finish_turn(self, turn_id: str, response: str, status: str, details: str | None = None) -> None: ...

    async def rename_session(self, session: str, title: str) -> None:
        """Give a stored session a title of its own (the list of chats shows it instead of its first message)."""
        ...

    async def buffer(self, session: str) -> list[TurnRecord]:
        """Completed turns not yet flushed into long-term memory, oldest first."""
        ...

    async def history(self, session: str) -> list[TurnRecord]: ...

    async def session_namespace(self, session: str) -> str | None: ...

    async def sessions(self, namespace: str, limit: int, offset: int = 0) -> list[SessionInfo]:
        """The namespace's sessions, most recently active first."""
        ...

    async def plan_flush(self, session: str, every: int) -> FlushPlan | None: ...

    async def commit_flush(self, plan: FlushPlan, embeddings: np.ndarray) -> list[Document] | None:
        """Write `plan.documents` (one embedding row each, in order; dated by their turns) and advance the
        watermark atomically; None if already flushed."""
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

    async def import_turns(self, session: str, namespace: str, turns: Sequence[ImportedTurn]) -> list[TurnRecord]:
        """Append completed turns to the session, in order, in one transaction; PermissionError as begin_turn."""
        ...

    async def supersede_turns(self, session: str, turn_ids: Sequence[str]) -> int:
        """Delete finished turns of `session` that a regenerated or edited exchange replaces, with the memories
        made of them (flushed or not; tombstones for indexes), in one transaction. Pending turns and turns of
        other sessions are left alone. Returns memories removed."""
        ...

    # A user's memories one by one (the memory API). `namespace` scopes every call: a memory of another
    # namespace is not found. Changes go to the document log like flushes, so indexes follow them.

    async def memories(self, namespace: str, limit: int, offset: int = 0) -> list[Document]:
        """The namespace's memories, newest first (by `created`, then id), without embeddings."""
        ...

    async def memory(self, namespace: str, doc_id: int) -> Document | None: ...

    async def add_memory(self, namespace: str, text: str, embedding: np.ndarray, created: float,
                         session: str | None = None) -> Document: ...

    async def edit_memory(self, namespace: str, doc_id: int, text: str, embedding: np.ndarray) -> Document | None:
        """Replace a memory's text and vector, keeping its id and date; None when there is no such memory."""
        ...

    async def delete_memory(self, namespace: str, doc_id: int) -> bool: ...


class VectorStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def search(self, namespace: str, vector: np.ndarray, k: int) -> list[Hit]:
        """The `k` documents nearest to `vector`, best first; score: inner product."""
        ...

    async def search_text(self, namespace: str, text: str, k: int) -> list[Hit]:
        """The `k` documents that best share the words of `text` (BM25), best first; [] when `text` has
        no content words (small talk)."""
        ...

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
    titles: list[str] = field(default_factory=list)  # the sources' page titles, in the same order

    @property
    def used(self) -> bool:
        return bool(self.summary)


class SearchStep(Protocol):
    """classify → (query → fetch → extract → summarise); never raises, reports `skipped` instead."""

    def precheck(self, vector: np.ndarray, text: str = "", recent: Sequence[TurnRecord] = ()) -> SearchOutcome | None:
        """The outcome when it is known without I/O (disabled, not needed); None when `run` must search.
        `text` and `recent` (the buffer: the follow-up context) inform the classifier."""
        ...

    async def run(self, text: str, vector: np.ndarray, recent: Sequence[TurnRecord]) -> SearchOutcome: ...

    async def close(self) -> None: ...
