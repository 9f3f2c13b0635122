"""A websocket client for the chat protocol, as any third-party client would write it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Turn:
    frames: list[dict] = field(default_factory=list)

    @property
    def start(self) -> dict:
        return next(f for f in self.frames if f["type"] == "start")

    @property
    def end(self) -> dict | None:
        return next((f for f in self.frames if f["type"] == "end"), None)

    @property
    def error(self) -> dict | None:
        return next((f for f in self.frames if f["type"] == "error"), None)

    @property
    def tokens(self) -> list[str]:
        return [f["text"] for f in self.frames if f["type"] == "token"]

    @property
    def search(self) -> dict | None:
        return next((f for f in self.frames if f["type"] == "search"), None)


class ChatClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws

    async def send(self, frame: dict) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def receive(self, timeout: float = 60) -> dict:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"expected a text frame, got {msg.type!r} {msg.data!r} {msg.extra!r}")
        return json.loads(msg.data)

    async def turn(self, session: str, text: str, timeout: float = 120) -> Turn:
        await self.send({"type": "chat", "session": session, "text": text})
        return await self.collect(timeout)

    async def collect(self, timeout: float = 120) -> Turn:
        turn = Turn()
        while True:
            frame = await self.receive(timeout)
            turn.frames.append(frame)
            if frame["type"] in ("end", "error"):
                return turn


async def connect(session: aiohttp.ClientSession, ws_url: str, **kwargs) -> ChatClient:
    return ChatClient(await session.ws_connect(ws_url, **kwargs))
