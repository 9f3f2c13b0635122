"""The knowledge base: text and markdown files in KNOWLEDGE_DIR, searchable by every user.

Files are chunked (blank-line separated blocks such as the original FAQ's `User: …\\nResponse: …`
pairs, merged up to a size), embedded, and stored as documents of the shared `kb` namespace. A
file is re-indexed only when its content digest changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

from server.logs import get_logger
from server.protocols import Embedder, TurnStore

log = get_logger(__name__)

SUFFIXES = {".txt", ".md", ".markdown"}
MAX_CHUNK_CHARS = 800


def chunk_text(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if b.strip()]
    chunks: list[str] = []
    current = ""
    for block in blocks:
        while len(block) > max_chars:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(block[:max_chars])
            block = block[max_chars:]
        if current and len(current) + len(block) + 2 > max_chars:
            chunks.append(current)
            current = ""
        # a new Q/A pair starts its own chunk so retrieval returns whole pairs
        if current and block.lower().startswith("user:"):
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{block}" if current else block
    if current:
        chunks.append(current)
    return chunks


def read_if_changed(path: Path, known_digest: str | None) -> tuple[str, list[str] | None]:
    """The file's digest, and its chunks unless the digest is `known_digest`.

    Blocking (read, hash, chunk): callers run it in a worker thread, where a large file cannot stall
    the turns the event loop is serving.
    """
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest == known_digest:
        return digest, None
    return digest, chunk_text(raw.decode("utf-8", errors="replace"))


class KnowledgeBase:
    def __init__(self, directory: Path, turns: TurnStore, embedder: Embedder, poll_seconds: float = 30.0):
        self.directory = Path(directory)
        self.turns = turns
        self.embedder = embedder
        self.poll_seconds = poll_seconds
        self._task: asyncio.Task | None = None

    def _files(self) -> dict[str, Path]:
        if not self.directory.is_dir():
            return {}
        return {str(p.relative_to(self.directory)): p for p in sorted(self.directory.rglob("*"))
                if p.is_file() and p.suffix.lower() in SUFFIXES}

    async def sync(self) -> int:
        """Index new and changed files, drop deleted ones; return how many files were (re)indexed."""
        files = await asyncio.to_thread(self._files)
        indexed = await self.turns.knowledge_sources()
        changed = 0
        for source, path in files.items():
            try:
                digest, chunks = await asyncio.to_thread(read_if_changed, path, indexed.get(source))
            except OSError as exc:
                log.warning("knowledge file unreadable", file=source, error=str(exc))
                continue
            if chunks is None:
                continue
            embeddings = await self.embedder.embed(chunks, background=True)
            if await self.turns.replace_knowledge(source, digest, chunks, embeddings):
                changed += 1
                log.info("knowledge indexed", file=source, chunks=len(chunks))
        for source in set(indexed) - set(files):
            await self.turns.drop_knowledge(source)
            changed += 1
            log.info("knowledge removed", file=source)
        return changed

    async def start(self) -> None:
        await self.sync()
        if self.poll_seconds > 0:
            self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.sync()
            except Exception:
                log.exception("knowledge sync failed")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
