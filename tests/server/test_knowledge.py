"""The knowledge base: chunking, indexing only changed files, and retrieval by every user."""

import hashlib
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from server.memory import knowledge
from server.memory.knowledge import KnowledgeBase, chunk_text
from server.protocols import KNOWLEDGE_NAMESPACE
from server.store.sqlite_turns import SqliteTurnStore


class CountingEmbedder:
    """Deterministic vectors; counts what it embeds so re-indexing can be observed."""

    dim = 4

    def __init__(self):
        self.texts: list[str] = []

    async def embed(self, texts, background=False):
        self.texts += texts
        return np.ones((len(texts), self.dim), np.float32) / 2


def test_faq_pairs_become_one_chunk_each_and_long_blocks_are_split():
    faq = "User: Do you like poems?\nResponse: Su Shi's most of all.\n\nUser: Tea or coffee?\nResponse: Tea."
    assert chunk_text(faq) == ["User: Do you like poems?\nResponse: Su Shi's most of all.",
                               "User: Tea or coffee?\nResponse: Tea."]
    long = chunk_text("x" * 2000, max_chars=800)
    assert [len(c) for c in long] == [800, 800, 400]


@pytest.fixture
async def store(tmp_path):
    s = SqliteTurnStore(tmp_path / "kb.sqlite3")
    await s.start()
    yield s
    await s.close()


async def test_files_are_indexed_once_and_again_only_when_they_change(tmp_path, store):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "faq.md").write_text("User: Who is Su Shi?\nResponse: A Song dynasty poet.", encoding="utf-8")
    (folder / "ignored.png").write_bytes(b"\x89PNG")
    embedder = CountingEmbedder()
    kb = KnowledgeBase(folder, store, embedder, poll_seconds=0)
    assert await kb.sync() == 1
    assert await kb.sync() == 0 and len(embedder.texts) == 1
    (folder / "faq.md").write_text("User: Who is Su Dongpo?\nResponse: The same poet.", encoding="utf-8")
    assert await kb.sync() == 1
    entries = await store.log_since(KNOWLEDGE_NAMESPACE, None)
    # the first version's add now reads as a removal, since its document is gone
    assert [e.op for e in entries] == ["del", "del", "add"]
    assert entries[-1].doc.text == "User: Who is Su Dongpo?\nResponse: The same poet."
    (folder / "faq.md").unlink()
    assert await kb.sync() == 1
    assert await store.knowledge_sources() == {}


def record_threads(calls: list[tuple[str, int]], name: str, real):
    """The real function, noting the thread of each call."""
    def wrapper(*args, **kwargs):
        calls.append((name, threading.get_ident()))
        return real(*args, **kwargs)
    return wrapper


async def test_files_are_hashed_and_chunked_off_the_event_loop(tmp_path, store, monkeypatch):
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(knowledge, "chunk_text", record_threads(calls, "chunk", knowledge.chunk_text))
    monkeypatch.setattr(knowledge, "hashlib", SimpleNamespace(sha256=record_threads(calls, "hash", hashlib.sha256)))
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "faq.md").write_text("User: Who is Su Shi?\nResponse: A Song dynasty poet.", encoding="utf-8")
    kb = KnowledgeBase(folder, store, CountingEmbedder(), poll_seconds=0)
    assert await kb.sync() == 1
    assert await kb.sync() == 0, "an unchanged file is hashed again, and skipped"
    loop_thread = threading.get_ident()
    assert [name for name, _ in calls] == ["hash", "chunk", "hash"]
    assert all(thread != loop_thread for _, thread in calls), f"ran on the event loop: {calls}"
