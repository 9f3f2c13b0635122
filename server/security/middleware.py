"""Authentication and the websocket origin check, applied to every route."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, hdrs, web

from server.errors import ClientError
from server.keys import USER
from server.security.tokens import TokenRegistry


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if is_websocket_upgrade(request):
        # browsers cannot set headers on a websocket: they pass the token in the query string
        return request.query.get("token") or None
    return None


async def _refuse_websocket(request: web.Request, reason: str) -> web.WebSocketResponse:
    """Accept, then close with 1008 and the reason: a browser cannot read the body of a refused upgrade."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode())
    return ws


def authentication(registry: TokenRegistry):
    @web.middleware
    async def authenticate(request: web.Request, handler):
        if not registry.enabled or (request.path == "/" and request.method == "GET"):
            return await handler(request)  # `/` is a page for browsers that points to the web UI: nothing private
        token = bearer_token(request)
        user = registry.user_for(token)
        if user is None:
            reason = "invalid token" if token else "authentication required: send Authorization: Bearer <token>"
            if is_websocket_upgrade(request):
                return await _refuse_websocket(request, reason)
            raise ClientError("unauthorized", reason, 401)
        request[USER] = user
        return await handler(request)

    return authenticate


def origin_check(allowed: Iterable[str]):
    """Refuse websocket upgrades from browser pages of other sites (cross-site websocket hijacking).

    Clients that are not browsers send no Origin and are not affected; a page served from this
    server's own host is allowed, and so is every origin in ALLOWED_ORIGINS.
    """
    allowed_set = {o.strip().rstrip("/").lower() for o in allowed if o.strip()}

    @web.middleware
    async def check(request: web.Request, handler):
        origin = request.headers.get(hdrs.ORIGIN)
        if origin and is_websocket_upgrade(request):
            origin = origin.rstrip("/").lower()
            same_host = urlsplit(origin).netloc == (request.host or "").lower()
            if not same_host and origin not in allowed_set and "*" not in allowed_set:
                raise ClientError("origin_not_allowed", f"websocket connections from {origin} are not allowed; "
                                  "add it to ALLOWED_ORIGINS", 403)
        return await handler(request)

    return check
