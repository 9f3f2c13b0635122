"""The Redis document log is compacted into a snapshot and trimmed; replicas still see exactly the live memories:
one that joins after a trim, one whose read position was trimmed away, and one reading while others trim."""

import asyncio
import time
import zlib

import pytest
import redis.asyncio as aioredis

from server.protocols import LogExpired
from server.store import redis_compactor, redis_log
from server.store.faiss_index import FaissVectorStore
from tests.redis.test_store_contract import DIM, unit_vectors

pytestmark = pytest.mark.redis

NS = "user:u"


class Memories:
    """Writes memories through a replica's TurnStore and remembers which are live, to compare indexes with."""

    def __init__(self, store):
        self.store = store
        self.live: dict[int, str] = {}  # doc id -> text
        self.by_session: dict[str, list[int]] = {}
        self.vectors: dict[int, object] = {}
        self.leaving: set[int] = set()  # being forgotten: a reader may or may not see them yet
        self.forgotten: set[int] = set()

    async def flush(self, session: str) -> list[int]:
        for i in range(5):  # turns without a reply: one memory each
            turn = await self.store.begin_turn(session, NS, f"{session} fact {i}")
            await self.store.finish_turn(turn.id, "", "complete")
        vectors = unit_vectors(5, seed=zlib.crc32(session.encode()))
        docs = await self.store.commit_flush(await self.store.plan_flush(session, 5), vectors)
        for doc, vector in zip(docs, vectors, strict=True):
            self.live[doc.id], self.vectors[doc.id] = doc.text, vector
        self.by_session[session] = [d.id for d in docs]
        return self.by_session[session]

    async def forget(self, session: str) -> list[int]:
        gone = self.by_session.pop(session)
        self.leaving.update(gone)
        assert await self.store.forget_session(session) == 5
        for doc_id in gone:
            del self.live[doc_id]
        self.forgotten.update(gone)
        return gone


async def indexed(vectors: FaissVectorStore) -> dict[int, str]:
    return {doc_id: doc.text for doc_id, doc in (await vectors.refresh(NS)).docs.items()}


async def stream(redis_server, prefix: str):
    client = aioredis.from_url(redis_server.url)
    try:
        return [entry_id.decode() for entry_id, _ in await client.xrange(f"{prefix}log:{NS}")]
    finally:
        await client.aclose()


async def test_the_log_stays_short_however_many_memories_come_and_go(replica, redis_server, prefix):
    writer = Memories(await replica(compact_every=0.2, log_keep=0))
    for round_ in range(12):
        await writer.flush(f"a{round_}")
        await writer.flush(f"b{round_}")
        await writer.forget(f"a{round_}")
    assert len(writer.live) == 60  # 180 log entries written: 120 adds, 60 deletes

    deadline = time.monotonic() + 10
    while len(await stream(redis_server, prefix)) > 1:  # the last folded entry stays: readers check it
        assert time.monotonic() < deadline, "the background compaction did not trim the log"
        await asyncio.sleep(0.1)
    fresh = FaissVectorStore((await replica(compact_every=0)).log_since, DIM)
    assert await indexed(fresh) == writer.live


async def test_a_replica_started_after_a_trim_catches_up_from_the_snapshot_and_follows_new_writes(
        replica, redis_server, prefix):
    a = await replica(compact_every=0, log_keep=0)
    writer = Memories(a)
    for i in range(6):
        await writer.flush(f"s{i}")
    forgotten = await writer.forget("s1") + await writer.forget("s3")
    assert await a.compact_logs() == 39  # 40 entries written; the last one stays
    assert len(await stream(redis_server, prefix)) == 1

    joining = FaissVectorStore((await replica(compact_every=0)).log_since, DIM)
    assert await indexed(joining) == writer.live  # deleted memories absent, added ones present
    hits = await joining.search(NS, writer.vectors[forgotten[0]], 20)
    assert not {h.doc.id for h in hits} & set(forgotten)

    added = await writer.flush("s6")
    gone = await writer.forget("s0")
    assert await indexed(joining) == writer.live  # followed from the stream tail after the snapshot
    assert (await joining.search(NS, writer.vectors[added[2]], 1))[0].doc.id == added[2]
    assert not {h.doc.id for h in await joining.search(NS, writer.vectors[gone[0]], 30)} & set(gone)


async def test_a_replica_whose_read_position_was_trimmed_away_reloads_instead_of_missing_entries(
        replica, redis_server, prefix):
    a, b = await replica(compact_every=0, log_keep=0), await replica(compact_every=0)
    writer = Memories(a)
    await writer.flush("old")
    await writer.flush("kept")
    running = FaissVectorStore(b.log_since, DIM)
    assert await indexed(running) == writer.live
    cursor = running._indexes[NS].cursor

    await writer.forget("old")  # a delete the running replica has not read yet...
    await writer.flush("new")
    await a.compact_logs()  # ...trimmed away together with its read position
    assert cursor not in await stream(redis_server, prefix)
    with pytest.raises(LogExpired):
        await b.log_since(NS, cursor)
    assert await indexed(running) == writer.live
    await writer.flush("after")
    assert await indexed(running) == writer.live


async def test_a_compaction_cut_short_is_finished_by_the_next_one_and_a_rerun_changes_nothing(
        replica, redis_server, prefix, monkeypatch):
    a = await replica(compact_every=0, log_keep=0)
    writer = Memories(a)
    for i in range(3):
        await writer.flush(f"s{i}")
    await writer.forget("s1")
    # one step of a sweep, then the replica dies: 4 of 20 entries folded and trimmed
    assert await a._script("COMPACT_LOG", [NS, 4, 0]) == [1, 3]
    assert len(await stream(redis_server, prefix)) == 17
    assert await indexed(FaissVectorStore((await replica()).log_since, DIM)) == writer.live

    monkeypatch.setattr(redis_compactor, "_PAGE", 3)  # the next sweep takes several steps
    assert await a.compact_logs() == 16
    assert await a.compact_logs() == 0
    assert len(await stream(redis_server, prefix)) == 1
    assert await indexed(FaissVectorStore((await replica()).log_since, DIM)) == writer.live


async def test_a_replica_reading_while_others_write_and_trim_never_misses_an_entry(replica, monkeypatch):
    """Small pages make every catch-up several reads, so trims land between them; after each refresh the
    index holds every memory committed before it began and none forgotten before it began."""
    monkeypatch.setattr(redis_log, "_PAGE", 3)
    monkeypatch.setattr(redis_compactor, "_PAGE", 4)
    a, b = await replica(compact_every=0, log_keep=0), await replica(compact_every=0)
    writer = Memories(a)
    expired = 0

    async def read_log(namespace, cursor):
        nonlocal expired
        try:
            return await b.log_since(namespace, cursor)
        except LogExpired:
            expired += 1
            raise

    reader = FaissVectorStore(read_log, DIM)
    done = asyncio.Event()

    async def write():
        for i in range(30):
            await writer.flush(f"w{i}")
            if i % 3 == 2:
                await writer.forget(f"w{i - 1}")
        done.set()

    async def compact():
        while not done.is_set():
            await a.compact_logs()
            await asyncio.sleep(0)

    async def read():
        while not done.is_set():
            live_before, forgotten_before = dict(writer.live), set(writer.forgotten)
            seen = await indexed(reader)
            # what was committed before, unless being forgotten meanwhile; nothing forgotten before
            assert {k: v for k, v in live_before.items() if k not in writer.leaving}.items() <= seen.items()
            assert not seen.keys() & forgotten_before

    await asyncio.gather(write(), compact(), read())
    await a.compact_logs()
    assert await indexed(reader) == writer.live
    assert expired > 0, "no trim overtook the reader: the race this test is about did not happen"


async def test_a_reader_after_compaction_gets_dates_turns_and_edited_memories_as_written(replica, redis_server, prefix):
    a = await replica(compact_every=0, log_keep=0)
    writer = Memories(a)
    flushed = await writer.flush("dated")
    turns = await a.history("dated")
    note_vector, edit_vector = unit_vectors(2, seed=70)
    note = await a.add_memory(NS, "a note added by hand", note_vector, 77.0)
    await a.edit_memory(NS, flushed[0], "an edited memory", edit_vector)  # logs a del, then an add of the id
    expected = {doc_id: (writer.live[doc_id], t.created, t.id) for doc_id, t in zip(flushed, turns, strict=True)}
    expected[flushed[0]] = ("an edited memory", turns[0].created, turns[0].id)
    expected[note.id] = ("a note added by hand", 77.0, None)

    async def fresh_reader() -> dict[int, tuple]:
        log = await (await replica(compact_every=0)).log_since(NS, None)
        live: dict[int, tuple] = {}
        for entry in log:  # replayed as an index would
            live.pop(entry.doc.id, None)
            if entry.op == "add":
                live[entry.doc.id] = (entry.doc.text, entry.doc.created, entry.doc.turn)
        return live

    # folded up to the edit's del: the snapshot lacks the id, the stream tail brings it back
    assert await a._script("COMPACT_LOG", [NS, 7, 0]) == [1, 6]
    assert await fresh_reader() == expected
    await a.compact_logs()
    assert len(await stream(redis_server, prefix)) == 1  # everything read from the snapshot now
    assert await fresh_reader() == expected
