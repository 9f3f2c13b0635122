"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.chat import ChatService
    from server.config import Settings
    from server.metrics import Metrics

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
CHAT: web.AppKey[ChatService] = web.AppKey("chat")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
CONNECTIONS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("connections")
STARTED: web.AppKey[float] = web.AppKey("started")
