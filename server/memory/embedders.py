"""The embedder named by EMBEDDER, and the guard that keeps one store's vectors from one embedder only.

Vectors of two models are not comparable: a store records the id of the embedder that wrote its documents
(SQLite: a `meta` row; Redis: a key, see server/store/redis_vectors.py). At start, a SQLite store written by
another embedder is re-embedded in place, page by page with its progress logged, and the new id is recorded
only when every document is done (a crash half way re-embeds again at the next start); its FAISS snapshots
carry the id too and are rebuilt. Redis, shared by replicas that may still run the other embedder, refuses.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from server.config import EmbedderKind, Settings
from server.logs import get_logger
from server.protocols import Embedder

log = get_logger(__name__)

REEMBED_PAGE = 256


def create_embedder(settings: Settings, kind: EmbedderKind) -> Embedder:
    """`kind`: EMBEDDER, with `auto` already decided (server/app.py knows what the search classifier needs)."""
    if kind == EmbedderKind.STATIC:
        from server.memory.static_embedder import StaticEmbedder

        return StaticEmbedder(settings.embed_model, settings.static_embed_dir)
    from server.memory.embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings.embed_model, batch_size=settings.embed_batch,
                                       threads=settings.embed_threads, workers=settings.embed_workers,
                                       precision=settings.embed_precision,
                                       background_linger=settings.embed_background_linger)


class EmbeddedDocuments(Protocol):
    """What a store offers to be re-embedded (server/store/sqlite_turns.py)."""

    async def recorded_embedder(self) -> tuple[str | None, int | None]:
        """The recorded embedder id (None: never recorded), and the width of a stored vector (None: no document)."""
        ...

    async def record_embedder(self, embedder_id: str) -> None: ...

    async def documents_after(self, after_id: int, limit: int) -> list[tuple[int, str]]: ...

    async def replace_embeddings(self, rows: list[tuple[int, np.ndarray]]) -> None: ...


async def align_embeddings(store: object, embedder: Embedder) -> int:
    """Make every stored vector `embedder`'s; returns the documents re-embedded (0 when they already were)."""
    if not hasattr(store, "recorded_embedder"):
        return 0  # a store that checks for itself (Redis: server/store/redis_vectors.py)
    docs: EmbeddedDocuments = store  # type: ignore[assignment]
    current = embedder.id
    recorded, width = await docs.recorded_embedder()
    if recorded == current:
        return 0
    # A database from before ids were recorded holds one model's vectors: the same width as ours is taken as
    # the same model (EMBED_MODEL was the only choice then); another width cannot be.
    if recorded is None and (width is None or width == embedder.dim):
        await docs.record_embedder(current)
        return 0
    log.warning("stored memories were embedded by another model: re-embedding them", stored=recorded or
                f"unrecorded ({width}-d)", embedder=current)
    started, done, after = time.monotonic(), 0, 0
    while page := await docs.documents_after(after, REEMBED_PAGE):
        vectors = await embedder.embed([text for _, text in page], background=True)
        await docs.replace_embeddings([(doc_id, v) for (doc_id, _), v in zip(page, vectors, strict=True)])
        after, done = page[-1][0], done + len(page)
        log.info("re-embedding memories", done=done, seconds=round(time.monotonic() - started, 1))
    await docs.record_embedder(current)
    log.warning("memories re-embedded", documents=done, embedder=current,
                seconds=round(time.monotonic() - started, 1))
    return done
