"""Plain HTTP endpoints: health, metrics, session history and forgetting."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from server import keys as k
from server.errors import ClientError, error_body
from server.logs import get_logger
from server.protocols import Document, TurnRecord
from server.transport.frames import valid_session_id
from server.transport.identity import LOCAL_USER, may_manage
from server.turn_details import memory_id

log = get_logger(__name__)


async def health(request: web.Request) -> web.Response:
    app = request.app
    settings = app[k.SETTINGS]
    chat = app[k.CHAT]
    return web.json_response({
        "status": "draining" if chat.closing else "ok",
        "uptime_s": round(time.monotonic() - app[k.STARTED], 1),
        "backend": chat.services.generator.name,
        "store": settings.store.value,
        "embedder": chat.services.embedder.describe(),
        "search": settings.search_provider,
        "active_turns": chat.active_turns,
        "connections": len(app[k.CONNECTIONS]),
        **_engine_status(chat.services.generator),
    })


def _engine_status(generator) -> dict:
    """An in-process engine (vllm) reports the device it serves on and its requests."""
    status = getattr(generator, "status", None)
    return {"engine": status()} if callable(status) else {}


async def metrics(request: web.Request) -> web.Response:
    body = request.app[k.METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def owned_session(request: web.Request) -> tuple[str, str]:
    session = valid_session_id(request.match_info["session"])
    owner = await request.app[k.CHAT].session_owner(session)
    if owner is None:
        raise ClientError("not_found", "no such session", 404)
    # without tokens a caller names its user as on /v1, where the body's `user` field does it
    if not may_manage(owner, session, request.get(k.USER), request.query.get("user"),
                      request.app[k.SETTINGS].memory_scope):
        raise ClientError("forbidden", "the session belongs to another user", 403)
    return session, owner


async def history(request: web.Request) -> web.Response:
    session, owner = await owned_session(request)
    chat = request.app[k.CHAT]
    turns = await chat.history(session)
    details = [orjson.loads(t.details) if t.details else {} for t in turns]
    kept = await chat.memories_by_id(owner, (memory_id(m) for d in details for m in d.get("memories", ())))
    return web.json_response({"session": session, "turns": [
        _stored_turn(t, d, kept) for t, d in zip(turns, details, strict=True)]})


def _stored_turn(turn: TurnRecord, details: dict, kept: dict[int, Document]) -> dict:
    """A turn as history shows it: its recalled memories as they read now, the ones since deleted left out."""
    if "memories" in details:
        recalled = [kept.get(memory_id(m)) for m in details["memories"]]
        details["memories"] = [{"id": d.id, "text": d.text, "created": d.created} for d in recalled if d]
    return {"turn": turn.id, "seq": turn.seq, "user": turn.user_text, "response": turn.response,
            "status": turn.status, "created": turn.created, **details}


MAX_TITLE_CHARS = 200


async def rename(request: web.Request) -> web.Response:
    """PATCH /sessions/{id} {"title"}: the chat's name in the list of chats (its first message until then)."""
    session, _ = await owned_session(request)
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise ClientError("bad_json", "the body is not valid JSON") from None
    title = data.get("title") if isinstance(data, dict) else None
    if not isinstance(title, str) or not title.strip() or not title.isprintable():
        raise ClientError("invalid_request", "'title' must be a non-empty printable string")
    if len(title) > MAX_TITLE_CHARS:
        raise ClientError("invalid_request", f"'title' has {len(title)} characters; the limit is {MAX_TITLE_CHARS}")
    await request.app[k.CHAT].services.turns.rename_session(session, title.strip())
    return web.json_response({"session": session, "title": title.strip()})


async def whoami(request: web.Request) -> web.Response:
    """Who the caller is: the token's user, or (without SERVER_TOKENS) the single local user."""
    user = request.get(k.USER)
    return web.json_response({"user": user or LOCAL_USER, "single_user": user is None,
                              "max_message_chars": request.app[k.SETTINGS].max_message_chars})


async def index(request: web.Request) -> web.Response:
    """`/` in a browser: to the web UI when WEB_URL names it, else a short page saying how to start it."""
    url = request.app[k.SETTINGS].web_url
    if url:
        raise web.HTTPFound(url)
    return web.Response(content_type="text/html", text=_INDEX)


_INDEX = """<!doctype html><meta charset="utf-8"><title>Dongpo chat server</title>
<h1>Dongpo chat server</h1>
<p>This is the chat server's API. The web UI is a separate process: start it with
<code>python -m web</code> (or <code>scripts/serve.sh</code>, which starts both) and open
<a href="http://127.0.0.1:7860">http://127.0.0.1:7860</a>.</p>
<p>API: <code>/ws</code>, <code>/v1/chat/completions</code>, <code>/memories</code>, <code>/sessions</code>,
<code>/health</code>.</p>
"""


async def forget(request: web.Request) -> web.Response:
    session, namespace = await owned_session(request)
    removed = await request.app[k.CHAT].forget(session, namespace)  # refused while a turn streams on it
    return web.json_response({"session": session, "forgotten": True, "memories_removed": removed})


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


@web.middleware
async def client_errors(request: web.Request, handler):
    """ClientError and aiohttp's own HTTP errors → JSON errors with a stable code; anything else → a
    logged 500 that reveals nothing of the server's internals."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason
        if exc.status == 413:
            message = f"the request body is larger than {request.app[k.SETTINGS].max_request_bytes} bytes"
        err = ClientError(_HTTP_CODES.get(exc.status, "invalid_request"), message, exc.status)
    except ClientError as caught:
        err = caught
    except Exception:
        log.exception("request failed", path=request.path, method=request.method)
        err = ClientError("internal_error", "an unexpected error; see the server log", 500)
    request.app[k.METRICS].errors.labels(code=err.code).inc()
    return error_response(err)


def error_response(err: ClientError) -> web.Response:
    headers = {}
    if err.retry_after:
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="chat"'
    return web.json_response(error_body(err), status=err.status, headers=headers)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/whoami", whoami)
    app.router.add_patch("/sessions/{session}", rename)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/sessions/{session}/history", history)
    app.router.add_delete("/sessions/{session}", forget)
