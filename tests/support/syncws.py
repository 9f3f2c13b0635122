"""A blocking websocket client for property-based tests: hypothesis drives plain functions."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp


class SyncWebSocket:
    def __init__(self, url: str, **connect_kwargs):
        self.url = url
        self.connect_kwargs = connect_kwargs
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    def _call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def connect(self) -> None:
        async def go():
            if self.http is None:
                self.http = aiohttp.ClientSession()
            self.ws = await self.http.ws_connect(self.url, max_msg_size=0, **self.connect_kwargs)

        self._call(go())

    def exchange(self, send, timeout: float = 60) -> tuple[list[dict], tuple[int, str] | None]:
        """Send one frame (str, bytes, or (bytes, opcode)); read until end/error or close.

        Returns the frames received and, if the server closed the connection, (code, reason).
        """
        if self.ws is None or self.ws.closed:
            self.connect()

        async def go():
            if isinstance(send, str):
                await self.ws.send_str(send)
            elif isinstance(send, bytes):
                await self.ws.send_bytes(send)
            else:
                await self.ws.send_frame(*send)
            frames = []
            while True:
                msg = await self.ws.receive(timeout=timeout)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    frames.append(json.loads(msg.data))
                    if frames[-1]["type"] in ("end", "error"):
                        return frames, None
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    return frames, (self.ws.close_code, msg.extra or "")
                else:
                    raise AssertionError(f"unexpected websocket message {msg.type!r}")

        return self._call(go(), timeout + 5)

    def close(self) -> None:
        async def go():
            if self.ws is not None:
                await self.ws.close()
            if self.http is not None:
                await self.http.close()

        self._call(go())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
