"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from server.chat import ChatService
    from server.config import Settings
    from server.memory.control import MemoryControl
    from server.metrics import Metrics


class LiveConnection(Protocol):
    """What the app asks of a connected client at shutdown; typed here, not by the transport that implements it
    (transport/websocket.py imports these keys, so naming its Connection here would close a circle)."""

    async def shutdown(self) -> None: ...


SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
CHAT: web.AppKey[ChatService] = web.AppKey("chat")
MEMORY: web.AppKey[MemoryControl] = web.AppKey("memory")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
CONNECTIONS: web.AppKey[set[LiveConnection]] = web.AppKey("connections")
STARTED: web.AppKey[float] = web.AppKey("started")
USER: web.RequestKey[str] = web.RequestKey("user")  # the authenticated user, when SERVER_TOKENS is set
