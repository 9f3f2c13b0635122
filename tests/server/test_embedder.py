"""The shared embedder: micro-batching, and turns served before background work, in both worker modes."""

import asyncio
import contextlib
import os
import signal
import time

import numpy as np
import pytest

from server.memory import embed_worker
from server.memory.embedder import (
    EmbedderUnavailable,
    SentenceTransformerEmbedder,
    WorkerSpec,
    _Lane,
    default_model_path,
)


@contextlib.contextmanager
def batch_sizes(worker):
    """Records the size of every batch the worker encodes."""
    sizes: list[int] = []
    original = worker.encode

    async def counting(batch):
        sizes.append(len(batch))
        return await original(batch)

    worker.encode = counting
    try:
        yield sizes
    finally:
        worker.encode = original


@pytest.fixture(scope="module", params=["thread", "process"])
def embedder_loop(request):
    loop = asyncio.new_event_loop()
    embedder = SentenceTransformerEmbedder(workers=request.param)
    loop.run_until_complete(embedder.start())
    yield embedder, loop
    loop.run_until_complete(embedder.close())
    loop.close()


def test_vectors_are_normalised_and_similar_texts_are_close(embedder_loop):
    embedder, loop = embedder_loop
    v = loop.run_until_complete(embedder.embed(["how to deadlift", "deadlift technique", "my cat is cute"]))
    assert v.shape == (3, 384) and embedder.dim == 384
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2]


def test_concurrent_requests_share_forward_passes_and_get_their_own_rows(embedder_loop):
    embedder, loop = embedder_loop
    texts = [f"message number {i} about topic {i % 7}" for i in range(40)]
    async def all_at_once():
        return await asyncio.gather(*(embedder.embed([t]) for t in texts))

    with batch_sizes(embedder._turns.worker) as batches:
        rows = loop.run_until_complete(all_at_once())
    alone = loop.run_until_complete(embedder.embed(texts))
    assert len(batches) < len(texts) / 4, batches
    assert np.allclose(np.concatenate(rows), alone, atol=1e-5)


def test_a_turn_is_embedded_while_background_work_is_still_running(embedder_loop):
    embedder, loop = embedder_loop
    order = []

    async def scenario():
        async def background():
            await embedder.embed([f"User: old message {i}\nResponse: a long reply " * 4 for i in range(96)],
                                 background=True)
            order.append("background")

        async def turn():
            await asyncio.sleep(0.05)  # arrives after the flush was queued
            await embedder.embed(["how was your day?"])
            order.append("turn")

        await asyncio.gather(background(), turn())

    loop.run_until_complete(scenario())
    assert order == ["turn", "background"]


def test_a_killed_worker_process_fails_its_batch_and_a_fresh_one_serves_the_next():
    async def scenario():
        embedder = SentenceTransformerEmbedder(workers="process")
        await embedder.start()
        try:
            before = await embedder.embed(["how was your day?"])
            os.kill(embedder._turns.worker.proc.pid, signal.SIGKILL)
            with pytest.raises(EmbedderUnavailable, match="exited"):
                await embedder.embed(["this batch was held by the dead worker"])
            after = await embedder.embed(["how was your day?"])
            assert np.allclose(before, after, atol=1e-5)
        finally:
            await embedder.close()
        assert embedder._turns.worker.proc.returncode is not None
        assert embedder._background.worker.proc.returncode is not None

    asyncio.run(scenario())


def test_a_worker_process_that_cannot_load_its_model_fails_start_clearly(tmp_path):
    embedder = SentenceTransformerEmbedder(tmp_path / "no-such-model", workers="process")
    with pytest.raises(EmbedderUnavailable, match="embedding worker exited with code 1"):
        asyncio.run(embedder.start())


def test_bf16_linear_layers_keep_vectors_and_neighbours_of_float32():
    texts = ["how to deadlift safely", "deadlift form tips", "my cat knocked over a plant",
             "the cat broke a flower pot", "what should I cook tonight", "dinner ideas with rice",
             "明月几时有，把酒问青天", "但愿人长久，千里共婵娟", "the weather in Hangzhou", "rain over West Lake"]
    full, info32 = embed_worker.load_model(str(default_model_path()), "cpu", 1, "fp32")
    half, info16 = embed_worker.load_model(str(default_model_path()), "cpu", 1, "bf16")
    assert (info32["precision"], info16["precision"]) == ("fp32", "bf16")
    a, b = embed_worker.encode(full, texts, 16), embed_worker.encode(half, texts, 16)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-4)
    assert (a * b).sum(axis=1).min() > 0.999
    sims_a, sims_b = a @ a.T, b @ b.T
    np.fill_diagonal(sims_a, -1)
    np.fill_diagonal(sims_b, -1)
    assert (sims_a.argmax(axis=1) == sims_b.argmax(axis=1)).all()


def test_worker_vectors_equal_sentence_transformers_own_for_one_batch_and_for_several():
    from sentence_transformers import SentenceTransformer

    texts = ["how was your day?", "明月几时有，把酒问青天", "a very long message " * 300, "ok"]
    plain = SentenceTransformer(str(default_model_path()), device="cpu")
    expected = plain.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    model, info = embed_worker.load_model(str(default_model_path()), "cpu", 1, "fp32")
    assert info["precision"] == "fp32"
    assert np.allclose(embed_worker.encode(model, texts, 64), expected, atol=1e-6)  # one forward pass
    assert np.allclose(embed_worker.encode(model, texts, 3), expected, atol=1e-6)  # more than one batch


def test_the_background_lane_lingers_so_that_flushes_from_several_sessions_share_one_pass():
    async def scenario():
        embedder = SentenceTransformerEmbedder(background_linger=0.3)
        await embedder.start()
        async def flush(session: int, delay: float):
            await asyncio.sleep(delay)
            return await embedder.embed([f"User: hi from {session}\nResponse: hello {i}" for i in range(5)],
                                        background=True)

        try:
            with batch_sizes(embedder._background.worker) as batches:
                rows = await asyncio.gather(flush(1, 0), flush(2, 0.1), flush(3, 0.2))
        finally:
            await embedder.close()
        assert batches == [15]
        assert [r.shape for r in rows] == [(5, 384)] * 3

    asyncio.run(scenario())


class InstantWorker:
    """Encodes at once (zeros): the lane's own timing is what these tests look at."""

    spec = WorkerSpec("model", None, 1, "fp32", batch_size=64, nice=0)
    alive = True

    async def start(self) -> dict:
        return {}

    async def encode(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 4), dtype=np.float32)

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("texts", "waits"), [(20, False), (16, False), (5, True)])
def test_work_that_fills_a_forward_pass_does_not_wait_out_the_background_linger(texts, waits):
    async def scenario():
        lane = _Lane("background", 100, InstantWorker(), linger=1.0)
        await lane.start()
        await asyncio.sleep(0.05)  # the lane idles, waiting for work
        try:
            started = time.perf_counter()
            rows = await lane.submit([f"Caroline: an imported message {i}" for i in range(texts)])
            return time.perf_counter() - started, rows
        finally:
            await lane.close()

    elapsed, rows = asyncio.run(scenario())
    assert rows.shape == (texts, 4)
    assert (elapsed >= 1.0) is waits, f"{texts} texts took {elapsed:.2f} s (the linger is 1 s)"
