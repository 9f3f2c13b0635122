"""EMBEDDER=static: the model distilled from the packaged MiniLM, how the server runs it, and stores that never mix
two embedders' vectors (SQLite re-embeds, FAISS snapshots are rebuilt, Redis refuses)."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

from server.config import EmbedderKind, Settings, StoreKind
from server.memory import static_embedder
from server.memory.embedder import SentenceTransformerEmbedder, default_model_path
from server.memory.embedders import align_embeddings, create_embedder
from server.memory.static_embedder import StaticEmbedder
from server.store.faiss_index import FaissVectorStore
from server.store.sqlite_turns import SqliteTurnStore
from tests.redis.conftest import redis_server  # noqa: F401  (the Redis half of these tests)

MINILM_ID = "sentence-transformers:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def static_model():
    """Built by scripts/setup.sh; built here (offline, under a file lock shared with any other worker) if not."""
    return static_embedder.ensure_model()


@pytest.fixture
async def embedder(static_model):
    embedder = StaticEmbedder()
    await embedder.start()
    yield embedder
    await embedder.close()


@pytest.fixture
async def store(tmp_path):
    store = SqliteTurnStore(tmp_path / "chat.sqlite3")
    await store.start()
    yield store
    await store.close()


def test_the_model_is_built_once_and_found_again_without_rebuilding(static_model):
    started = time.perf_counter()
    again = static_embedder.ensure_model()
    assert again == static_model and (again / "dongpo-build.json").exists()
    assert time.perf_counter() - started < 5  # a digest of the source, not a distillation
    assert static_embedder.build_key(default_model_path()) in again.name


async def test_messages_become_unit_vectors_that_keep_meaning_apart(embedder):
    vectors = await embedder.embed(["My new cat is adorable", "I have a cat", "The central bank raised interest rates",
                                    "Interest rates went up at the bank", "我养了一只小猫"])
    assert vectors.shape == (5, 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar = vectors @ vectors.T
    assert similar[0, 1] > similar[0, 2] + 0.2 and similar[2, 3] > similar[2, 1] + 0.2
    # meaning, not shared tokens: a model whose vectors were mixed up with its tokenizer's ids (or that pooled
    # padding) fails here, while still matching texts that share words
    words = await embedder.embed(["kitten", "cat", "automobile", "car", "daughter", "child"])
    near = words @ words.T
    assert near[0, 1] > near[0, 2] + 0.3 and near[2, 3] > near[2, 4] + 0.3 and near[4, 5] > near[4, 3] + 0.3
    assert (await embedder.embed([])).shape == (0, 256)
    assert embedder.id.startswith("static:all-MiniLM-L6-v2-pca256:")


async def test_a_message_is_embedded_on_the_loop_and_a_large_batch_in_a_thread(embedder, monkeypatch):
    threads, encode = [], static_embedder.encode

    def watched(model, texts):
        threads.append(threading.current_thread().name)
        return encode(model, texts)

    monkeypatch.setattr(static_embedder, "encode", watched)
    texts = [f"memory number {i}: we talked about the river and the moon" for i in range(400)]
    assert sum(map(len, texts)) > embedder.inline_max_chars
    threaded = await embedder.embed(texts, background=True)
    inline = await embedder.embed(texts[:3])
    assert threads == ["embed-static_0", threading.current_thread().name]
    np.testing.assert_allclose(threaded[:3], inline, atol=1e-6)


def test_minilm_keeps_its_worker_processes_and_auto_takes_static_without_search():
    from server.app import embedder_kind

    settings = Settings(_env_file=None)
    assert settings.embedder == EmbedderKind.MINILM and embedder_kind(settings) == EmbedderKind.MINILM
    minilm = create_embedder(settings, EmbedderKind.MINILM)
    assert isinstance(minilm, SentenceTransformerEmbedder) and minilm.workers == "process"
    assert minilm.id == MINILM_ID
    assert embedder_kind(Settings(_env_file=None, embedder="auto")) == EmbedderKind.STATIC
    # the shipped search head was trained on MiniLM's vectors: with search on, auto keeps MiniLM
    searching = Settings(_env_file=None, embedder="auto", search_provider="searxng", search_url="http://127.0.0.1:1")
    assert embedder_kind(searching) == EmbedderKind.MINILM
    assert embedder_kind(Settings(_env_file=None, embedder="static", search_provider="searxng",
                                  search_url="http://127.0.0.1:1")) == EmbedderKind.STATIC


async def _memories(store, vectors: np.ndarray, texts: list[str]) -> list[int]:
    pairs = enumerate(zip(texts, vectors, strict=True))
    return [(await store.add_memory("user:a", t, v, float(i))).id for i, (t, v) in pairs]


async def test_memories_another_embedder_wrote_are_re_embedded_and_recorded(store, embedder, tmp_path):
    texts = ["I moved to Hangzhou in spring", "My sister plays the pipa", "We ate dongpo pork at the lake"]
    rng = np.random.default_rng(0)
    minilm_like = rng.standard_normal((3, 384)).astype(np.float32)
    ids = await _memories(store, minilm_like, texts)
    await store.record_embedder(MINILM_ID)
    old_snapshot = FaissVectorStore(store.log_since, 384, snapshot_dir=tmp_path / "faiss", embedder_id=MINILM_ID)
    await old_snapshot.refresh("user:a")
    await old_snapshot.save()

    assert await align_embeddings(store, embedder) == 3
    assert (await store.recorded_embedder()) == (embedder.id, 256)
    entries = await store.log_since("user:a", None)
    stored = {e.doc.id: e.doc.embedding for e in entries if e.op == "add"}
    np.testing.assert_allclose(np.stack([stored[i] for i in ids]), await embedder.embed(texts), atol=1e-6)
    assert await align_embeddings(store, embedder) == 0  # recorded: nothing to do at the next start

    vectors = FaissVectorStore(store.log_since, 256, snapshot_dir=tmp_path / "faiss", embedder_id=embedder.id)
    hits = await vectors.search("user:a", (await embedder.embed(["Who plays the pipa?"]))[0], 1)
    assert hits[0].doc.text == "My sister plays the pipa"


async def test_a_snapshot_of_another_embedders_vectors_of_the_same_width_is_rebuilt(store, tmp_path):
    ids = await _memories(store, np.eye(4, dtype=np.float32)[:2], ["one", "two"])
    first = FaissVectorStore(store.log_since, 4, snapshot_dir=tmp_path / "faiss", embedder_id="old")
    await first.refresh("user:a")
    first._indexes["user:a"].index.remove_ids(np.array([ids[0]], dtype=np.int64))  # the snapshot differs
    first._indexes["user:a"].dirty = True
    await first.save()
    same = FaissVectorStore(store.log_since, 4, snapshot_dir=tmp_path / "faiss", embedder_id="old")
    assert (await same.refresh("user:a")).index.ntotal == 1  # its own snapshot is trusted
    other = FaissVectorStore(store.log_since, 4, snapshot_dir=tmp_path / "faiss", embedder_id="new")
    assert (await other.refresh("user:a")).index.ntotal == 2  # another's is rebuilt from the log


async def test_a_database_from_before_ids_is_adopted_when_its_width_matches(store, embedder):
    await _memories(store, await embedder.embed(["hello there"]), ["hello there"])
    assert await align_embeddings(store, embedder) == 0
    assert (await store.recorded_embedder())[0] == embedder.id


async def test_redis_refuses_a_replica_with_another_embedder(redis_server):  # noqa: F811
    import uuid

    from server.config import RedisKnnMode
    from server.store.redis_link import RedisLink
    from server.store.redis_turns import RedisTurnStore
    from server.store.redis_vectors import EmbedderMismatch, RedisVectorStore

    prefix = f"t{uuid.uuid4().hex[:10]}:"
    turns = RedisTurnStore(RedisLink(redis_server.url, start_timeout=5), prefix=prefix)
    await turns.start()
    try:
        await turns.add_memory("user:a", "from before ids", np.ones(384, np.float32) / 384 ** 0.5, 1.0)
        with pytest.raises(EmbedderMismatch, match="another model \\(384-d"):
            await RedisVectorStore(turns, 256, RedisKnnMode.OFF, "static:x").start()
        first = RedisVectorStore(turns, 384, RedisKnnMode.OFF, MINILM_ID)
        await first.start()  # the same width as the old documents: adopted, and recorded
        await first.close()
        with pytest.raises(EmbedderMismatch, match=f"embedded by {MINILM_ID}"):
            await RedisVectorStore(turns, 384, RedisKnnMode.OFF, "sentence-transformers:other-384").start()
    finally:
        await turns.close()


async def test_health_reports_the_embedder_in_use(static_model, tiny_model_dir, tmp_path):
    from tests.support.servers import ServerThread

    settings = Settings(_env_file=None, model=str(tiny_model_dir), data_dir=tmp_path / "data",
                        llm_backend="transformers", context_tokens=2048, log_level="WARNING", store=StoreKind.EMBEDDED,
                        embedder="static")
    server = ServerThread(settings).start()
    try:
        health = httpx.get(f"{server.url}/health", timeout=30).json()
    finally:
        server.stop()
    assert health["embedder"]["kind"] == "static" and health["embedder"]["dim"] == 256
    assert health["embedder"]["id"].startswith("static:all-MiniLM-L6-v2-pca256:")
