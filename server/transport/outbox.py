"""Frames to one websocket client, written by a task of their own so that the turn never waits on
the client.

Token frames that queue up behind a client reading slower than the model writes are merged into one
frame: the client gets fewer, bigger frames instead of the server holding a growing backlog. The
queue is bounded in bytes: past the bound the turn waits (which pushes back on the model), and a
client that accepts nothing for `send_timeout` seconds has its connection closed with a reason,
which cancels its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from aiohttp import WSCloseCode, WSMsgType, web

from server.transport.frames import encode
from server.turn_events import TokenDelta, TurnEvent

SLOW_CLIENT_REASON = b"client is not reading; the turn was cancelled"
# Frames up to this size are written without a writer task when the socket is idle; with per-message
# compression aiohttp compresses frames over 16 KiB in an executor, which would make the turn wait.
_DIRECT_MAX = 4096


class ClientTooSlow(ConnectionError):
    pass


class Outbox:
    def __init__(self, ws: web.WebSocketResponse, send_timeout: float = 15.0, max_pending_bytes: int = 256 * 1024,
                 transport: asyncio.BaseTransport | None = None):
        self.ws = ws
        self.transport = transport
        self.send_timeout = send_timeout
        self.max_pending = max_pending_bytes
        # items are encoded frames (bytes), or a list of TokenDelta texts still open to merging
        self._queue: deque[bytes | list[str]] = deque()
        self._pending = 0
        self._writer: asyncio.Task | None = None
        self._room = asyncio.Event()
        self._room.set()
        self.failed: BaseException | None = None

    async def send(self, event: TurnEvent) -> None:
        if self.failed is not None:
            raise ClientTooSlow("the client stopped reading") from self.failed
        if self._idle():
            # Nothing is queued and the socket has taken everything so far: the frame goes straight to the
            # kernel, without a writer task and a timer (most token frames, as long as the client keeps up).
            data = encode(event)
            if len(data) <= _DIRECT_MAX:
                try:
                    await self.ws.send_frame(data, WSMsgType.TEXT)
                except (ConnectionError, RuntimeError) as exc:
                    self.failed = exc
                return
            self._queue.append(data)
            self._pending += len(data)
        elif isinstance(event, TokenDelta):
            text = event.text
            if self._queue and isinstance(self._queue[-1], list):
                self._queue[-1].append(text)
            else:
                self._queue.append([text])
            self._pending += len(text)
        else:
            data = encode(event)
            self._queue.append(data)
            self._pending += len(data)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        if self._pending > self.max_pending:
            self._room.clear()
            try:
                async with asyncio.timeout(self.send_timeout):
                    await self._room.wait()
            except TimeoutError:
                await self._give_up()
                raise ClientTooSlow("the client stopped reading") from None

    def _idle(self) -> bool:
        return (not self._queue and (self._writer is None or self._writer.done()) and self.transport is not None
                and not self.transport.is_closing() and self.transport.get_write_buffer_size() == 0)

    async def _write(self) -> None:
        try:
            while self._queue:
                item = self._queue.popleft()
                if isinstance(item, list):
                    text = "".join(item)
                    data = encode(TokenDelta(text))
                    self._pending -= len(text)
                else:
                    data = item
                    self._pending -= len(data)
                async with asyncio.timeout(self.send_timeout):
                    await self.ws.send_frame(data, WSMsgType.TEXT)
                if self._pending <= self.max_pending:
                    self._room.set()
        except TimeoutError:
            await self._give_up()
        except (ConnectionError, RuntimeError) as exc:  # the socket is gone: the reader loop ends the turn
            self.failed = exc
            self._room.set()

    async def _give_up(self) -> None:
        self.failed = self.failed or ClientTooSlow("send timed out")
        self._queue.clear()
        self._pending = 0
        self._room.set()
        try:
            # the close frame queues behind everything the client has not read: give it a moment only
            async with asyncio.timeout(1.0):
                await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=SLOW_CLIENT_REASON)
        except Exception:
            if self.transport is not None:
                self.transport.abort()

    async def flush(self) -> None:
        """Wait until everything queued has been written (or the client failed)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
