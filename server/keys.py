"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.chat import ChatService
    from server.config import Settings
    from server.metrics import Metrics
    from server.transport.websocket import Connection

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
CHAT: web.AppKey[ChatService] = web.AppKey("chat")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
CONNECTIONS: web.AppKey[set[Connection]] = web.AppKey("connections")
STARTED: web.AppKey[float] = web.AppKey("started")
USER: web.RequestKey[str] = web.RequestKey("user")  # the authenticated user, when SERVER_TOKENS is set
