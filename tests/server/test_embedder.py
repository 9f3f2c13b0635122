"""The shared embedder: micro-batching, and turns served before background work, in both worker modes."""

import asyncio

import numpy as np
import pytest

from server.memory import embed_worker
from server.memory.embedder import SentenceTransformerEmbedder


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
    batches = []
    lane = embedder._turns
    original = lane.call

    async def counting(fn, *args):
        if fn is embed_worker.encode:
            batches.append(len(args[1]))
        return await original(fn, *args)

    lane.call = counting
    try:
        async def all_at_once():
            return await asyncio.gather(*(embedder.embed([t]) for t in texts))

        rows = loop.run_until_complete(all_at_once())
    finally:
        lane.call = original
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
