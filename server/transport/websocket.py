"""`GET /ws`: the websocket protocol (README.md, "Protocol"; JSON text frames), plus `cancel` to stop a turn."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import WSCloseCode, WSMsgType, web

from server.chat import ChatService
from server.config import MemoryScope
from server.errors import ClientError
from server.events import TurnReceived
from server.keys import CHAT, CONNECTIONS, METRICS, SETTINGS, USER
from server.logs import get_logger
from server.transport.frames import CancelFrame, ChatFrame, error_event, parse_frame
from server.transport.identity import memory_user, namespace_for
from server.transport.outbox import Outbox
from server.turn_events import TurnEvent
from server.turn_state import TurnControl

log = get_logger(__name__)


class Connection:
    """One websocket client: at most one turn streams on it at a time."""

    def __init__(self, ws: web.WebSocketResponse, chat: ChatService, user: str | None, max_chars: int, metrics,
                 send_timeout: float = 15.0, transport: asyncio.BaseTransport | None = None,
                 scope: MemoryScope = MemoryScope.USER):
        self.ws = ws
        self.chat = chat
        self.user = user  # the authenticated one, if any
        self.memory_user = memory_user(user, scope)
        self.max_chars = max_chars
        self.metrics = metrics
        self.outbox = Outbox(ws, send_timeout, transport=transport)
        self.turn: tuple[str, TurnControl] | None = None

    async def send(self, event: TurnEvent) -> None:
        await self.outbox.send(event)

    async def send_error(self, error: ClientError) -> None:
        self.metrics.errors.labels(code=error.code).inc()
        with contextlib.suppress(ConnectionError):
            await self.send(error_event(error))

    async def handle_text(self, raw: str, received_at: float) -> None:
        try:
            frame = parse_frame(raw, self.max_chars)
            if isinstance(frame, CancelFrame):
                self.cancel(frame.session)
            else:
                await self.start_turn(frame, received_at)
        except ClientError as err:
            await self.send_error(err)

    def cancel(self, session: str | None) -> None:
        if self.turn is None or self.turn[1].released or (session is not None and session != self.turn[0]):
            raise ClientError("no_turn", "there is no running turn to cancel")
        self.turn[1].stop()

    async def start_turn(self, frame: ChatFrame, received_at: float) -> None:
        if self.turn is not None and not self.turn[1].released:
            raise ClientError("turn_in_progress", "a turn is already streaming on this connection", 409)
        namespace = namespace_for(self.memory_user, frame.session)
        # without tokens the limits count per chat, as anyone who can connect can open another one
        control = await self.chat.claim(frame.session, namespace_for(self.user, frame.session))
        self.turn = (frame.session, control)
        event = TurnReceived(frame.session, namespace, frame.text, received_at)
        control.task = asyncio.create_task(self._run(event, control))

    async def _run(self, event: TurnReceived, control: TurnControl) -> None:
        try:
            await self.chat.run_turn(event, self.send, control)
        except ClientError as err:
            await self.send_error(err)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("turn failed", session=event.session)
            await self.send_error(ClientError("internal_error", "the turn failed unexpectedly; see the server log"))
        finally:
            self.chat.release(event.session, control)
            if self.turn is not None and self.turn[1] is control:
                self.turn = None

    async def close(self) -> None:
        if self.turn is not None:
            task = self.turn[1].task
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.outbox.flush()

    async def shutdown(self) -> None:
        """The server is stopping and its turns have drained: their last frames go out, then a close that says why."""
        await self.outbox.flush()
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


class _ExplainedWebSocket(web.WebSocketResponse):
    """Closes on a broken frame with a reason, as the protocol promises.

    aiohttp enforces `max_msg_size` (and UTF-8, and the framing) itself, while the frame is still being
    read, and then closes with the right code but an empty reason. Enforcing the limit ourselves would
    mean reading the whole oversized frame into memory first, so the reason is added where aiohttp closes.
    """

    def __init__(self, max_frame_bytes: int, **kwargs):
        super().__init__(max_msg_size=max_frame_bytes, **kwargs)
        self.close_reasons = {
            WSCloseCode.MESSAGE_TOO_BIG: f"frame larger than MAX_FRAME_BYTES ({max_frame_bytes} bytes)",
            WSCloseCode.INVALID_TEXT: "text frame is not valid UTF-8",
            WSCloseCode.PROTOCOL_ERROR: "websocket protocol error",
        }

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if not message and code in self.close_reasons:
            message = self.close_reasons[code].encode()
        return await super().close(code=code, message=message, drain=drain)


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    settings = app[SETTINGS]
    ws = _ExplainedWebSocket(settings.max_frame_bytes, heartbeat=30.0)
    await ws.prepare(request)
    conn = Connection(ws, app[CHAT], request.get(USER), settings.max_message_chars, app[METRICS],
                      settings.send_timeout, request.transport, settings.memory_scope)
    app[CONNECTIONS].add(conn)
    app[METRICS].connections.inc()
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await conn.handle_text(msg.data, time.perf_counter())
            elif msg.type == WSMsgType.BINARY:
                await conn.send_error(ClientError("binary_frame", "binary frames are not supported; send JSON text"))
            elif msg.type == WSMsgType.ERROR:
                # aiohttp has already closed with 1009 (too big) or 1002/1007 (protocol / bad UTF-8)
                log.info("websocket closed on a bad frame", error=str(ws.exception()))
                break
    finally:
        await conn.close()
        app[CONNECTIONS].discard(conn)
        app[METRICS].connections.dec()
    return ws
