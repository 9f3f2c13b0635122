"""Frames to one websocket client over a real loopback connection: written straight away while the client
keeps up (no task per frame), queued and merged while it does not, and always in order."""

import asyncio

import aiohttp
import orjson
from aiohttp import web

from server.protocols import Usage
from server.transport.outbox import Outbox
from server.turn_events import TokenDelta, TurnEnded

TOKENS = [f"<{i:06d}:" + "x" * 1000 + ">" for i in range(20000)]


async def serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/ws"


async def test_tokens_reach_a_client_in_order_and_merge_while_it_is_not_reading():
    writer_after_first = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        outbox = Outbox(ws, transport=request.transport, max_pending_bytes=1 << 30)
        for text in TOKENS:
            await outbox.send(TokenDelta(text))
            writer_after_first.append(outbox._writer)
        await outbox.send(TurnEnded("t", "", (), Usage()))
        await outbox.flush()
        await ws.receive()
        return ws

    runner, url = await serve(handler)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            first = orjson.loads((await ws.receive()).data)
            # stop reading: socket buffers fill, and the server has to queue what follows
            await asyncio.sleep(1.0)
            frames = [first]
            while frames[-1]["type"] != "end":
                frames.append(orjson.loads((await ws.receive()).data))
            await ws.close()
    finally:
        await runner.cleanup()
    tokens = [f["text"] for f in frames[:-1]]
    assert "".join(tokens) == "".join(TOKENS), "nothing lost, duplicated or reordered"
    assert len(tokens) < len(TOKENS), "tokens queued behind a client that was not reading were merged"
    assert writer_after_first[0] is None, "a frame to a client that keeps up is written at once, with no writer task"
