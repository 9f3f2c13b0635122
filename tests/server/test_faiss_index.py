"""FAISS indexes derived from the document log: catch-up, tombstones, snapshots, isolation."""

import asyncio

import numpy as np

from server import failpoints
from server.protocols import Document, LogEntry
from server.store import faiss_index
from server.store.faiss_index import FaissVectorStore

DIM = 8


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class Log:
    """A document log in memory: the same contract as the SQLite and Redis stores."""

    def __init__(self):
        self.entries: list[tuple[str, LogEntry]] = []
        self.reads: list[tuple[str, object]] = []

    def add(self, namespace: str, doc_id: int, seed: int) -> None:
        doc = Document(doc_id, namespace, f"doc {doc_id}", unit(seed), "s")
        self.entries.append((namespace, LogEntry(len(self.entries) + 1, "add", doc)))

    def delete(self, namespace: str, doc_id: int) -> None:
        self.entries.append((namespace, LogEntry(len(self.entries) + 1, "del", Document(doc_id, namespace, ""))))

    async def since(self, namespace, cursor):
        self.reads.append((namespace, cursor))
        return [e for ns, e in self.entries if ns == namespace and e.cursor > (cursor or 0)]


async def test_an_index_catches_up_from_the_log_reading_only_newer_entries():
    log = Log()
    log.add("a", 1, 1)
    store = FaissVectorStore(log.since, DIM)
    assert [h.doc.id for h in await store.search("a", unit(1), 2)] == [1]
    log.add("a", 2, 2)
    hits = await store.search("a", unit(2), 2)
    assert hits[0].doc.id == 2 and hits[0].score > 0.99
    assert log.reads == [("a", None), ("a", 1)]


async def test_tombstones_remove_documents_and_replays_change_nothing():
    log = Log()
    for i in range(1, 4):
        log.add("a", i, i)
    log.delete("a", 2)
    store = FaissVectorStore(log.since, DIM)
    assert sorted(h.doc.id for h in await store.search("a", unit(2), 5)) == [1, 3]
    index = await store.refresh("a")
    index.apply([e for _, e in log.entries])  # a replay of everything
    assert sorted(h.doc.id for h in await store.search("a", unit(2), 5)) == [1, 3]


async def test_namespaces_never_see_each_others_documents():
    log = Log()
    log.add("user:a", 1, 7)
    log.add("user:b", 2, 7)
    store = FaissVectorStore(log.since, DIM)
    assert [h.doc.id for h in await store.search("user:a", unit(7), 5)] == [1]
    assert [h.doc.id for h in await store.search("user:b", unit(7), 5)] == [2]


async def test_a_snapshot_restores_the_index_and_its_cursor(tmp_path):
    log = Log()
    for i in range(1, 6):
        log.add("a", i, i)
    first = FaissVectorStore(log.since, DIM, snapshot_dir=tmp_path)
    await first.start()
    await first.search("a", unit(1), 1)
    await first.close()
    log.add("a", 6, 6)
    second = FaissVectorStore(log.since, DIM, snapshot_dir=tmp_path)
    await second.start()
    hits = await second.search("a", unit(6), 1)
    await second.close()
    assert hits[0].doc.id == 6
    assert log.reads[-1] == ("a", 5), "only the entry after the snapshot was read"


async def test_a_damaged_snapshot_is_rebuilt_from_the_log(tmp_path):
    log = Log()
    log.add("a", 1, 1)
    store = FaissVectorStore(log.since, DIM, snapshot_dir=tmp_path)
    await store.start()
    await store.search("a", unit(1), 1)
    await store.close()
    for path in tmp_path.glob("*.faiss"):
        path.write_bytes(b"garbage")
    again = FaissVectorStore(log.since, DIM, snapshot_dir=tmp_path)
    assert [h.doc.id for h in await again.search("a", unit(1), 1)] == [1]


async def test_threaded_searches_and_log_updates_of_one_namespace_never_overlap(monkeypatch):
    # every search takes the thread path, and pauses between FAISS's answer and the text lookup: a
    # removal applied in that gap would surface as a KeyError or a hit for a document already gone
    monkeypatch.setattr(faiss_index, "_INLINE_SEARCH_MAX", 0)
    monkeypatch.setitem(failpoints._ARMED, "faiss.search.lookup", "sleep:0.005")
    log = Log()
    size = 12
    for i in range(1, size + 1):
        log.add("a", i, i)
    store = FaissVectorStore(log.since, DIM)
    await store.refresh("a")

    async def churn():
        for step in range(40):
            log.delete("a", step + 1)  # the oldest live document goes, a new one comes: size stays put
            log.add("a", size + step + 1, size + step + 1)
            await store.refresh("a")
            await asyncio.sleep(0.001)

    async def searcher(seed: int) -> int:
        searches = 0
        while not writer.done():
            hits = await store.search("a", unit(seed), size)  # k = every document, so any removal shows
            ids = [h.doc.id for h in hits]
            assert len(ids) == size and len(set(ids)) == size, ids
            assert max(ids) - min(ids) == size - 1, f"a mix of two versions of the index: {sorted(ids)}"
            for hit in hits:
                assert hit.doc.text == f"doc {hit.doc.id}"
                assert abs(hit.score - float(unit(hit.doc.id) @ unit(seed))) < 1e-4
            searches += 1
        return searches

    writer = asyncio.create_task(churn())
    counts = await asyncio.gather(*(searcher(seed) for seed in range(8)), writer)
    assert sum(counts[:-1]) >= 8, "searches ran while the log changed"
