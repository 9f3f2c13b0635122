"""The memory API (README "Memory API"): a user's memories as JSON, their chats, and imports of past chats.

Same authentication and scoping as the rest: the namespace is the token's user (identity.caller_namespace),
so a memory of another user is "not found", never "forbidden". Import bodies may be far larger than
MAX_REQUEST_BYTES (a ChatGPT export): they are read up to MAX_IMPORT_BYTES.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from aiohttp import web

from server import keys as k
from server.errors import ClientError
from server.estimate import approximate_tokens
from server.memory.chatgpt import ExportError, parse_chatgpt_export
from server.memory.control import NewMemory
from server.protocols import MEMORY_PIECE_TOKENS, Document, Hit, ImportedTurn
from server.transport.frames import valid_session_id
from server.transport.http import owned_session
from server.transport.identity import caller_namespace

MAX_LIST = 1000  # memories or sessions per page
MAX_MEMORY_CHARS = 100_000  # one memory, or one side of an imported turn


def _namespace(request: web.Request, session: str | None = None) -> str:
    return caller_namespace(request.get(k.USER), request.query.get("user"), session or request.query.get("session"),
                            request.app[k.SETTINGS].memory_scope)


def _int(request: web.Request, name: str, default: int, lowest: int, highest: int) -> int:
    raw = request.query.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise ClientError("invalid_request", f"'{name}' must be an integer") from None
    if not lowest <= value <= highest:
        raise ClientError("invalid_request", f"'{name}' must be between {lowest} and {highest}")
    return value


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z") if epoch else None


def _epoch(value: object, field: str) -> float | None:
    """ISO-8601 (a time without a zone is UTC) or epoch seconds; None when absent."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise ClientError("invalid_request", f"'{field}' must be an ISO-8601 time or epoch seconds")


def _text(value: object, field: str, required: bool = True, limit: int = MAX_MEMORY_CHARS) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or "\x00" in value:
        raise ClientError("invalid_request", f"'{field}' must be a string without NUL characters")
    if required and not value.strip():
        raise ClientError("empty_text", f"'{field}' is empty")
    if len(value) > limit:
        raise ClientError("message_too_long", f"'{field}' has {len(value)} characters; the limit is {limit}", 413)
    return value


def _memory_text(value: object) -> str:
    """A memory written by hand holds what a memory of a turn may (a longer message is cut into several): one
    longer would crowd out every other memory of a prompt, or never fit its budget, so it is refused."""
    text = _text(value, "text")
    if (tokens := approximate_tokens(text)) > MEMORY_PIECE_TOKENS:
        raise ClientError("memory_too_long", f"'text' is about {tokens} estimated tokens; a memory holds at most "
                          f"{MEMORY_PIECE_TOKENS}: add it as several", 413, param="text")
    return text


def memory_json(doc: Document, score: float | None = None) -> dict:
    return {"id": doc.id, "text": doc.text, "created": _iso(doc.created), "session": doc.session,
            "turns": [doc.turn] if doc.turn else [], "score": score}


async def _json(request: web.Request, limit: int | None = None):
    body = await _body(request, limit) if limit else await request.read()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ClientError("bad_json", "the body is not valid JSON") from None


async def _body(request: web.Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise ClientError("request_too_large", f"the request body is larger than {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _doc_id(request: web.Request) -> int:
    """A memory id: a positive 64-bit integer (what the stores can hold); anything else names no memory."""
    try:
        doc_id = int(request.match_info["id"])
    except ValueError:
        doc_id = 0
    if not 0 < doc_id < 1 << 63:
        raise ClientError("not_found", "no such memory", 404)
    return doc_id


async def list_or_search(request: web.Request) -> web.Response:
    control = request.app[k.MEMORY]
    namespace = _namespace(request)
    query = request.query.get("query")
    if query is not None:
        limit = _int(request, "limit", MAX_LIST, 1, MAX_LIST)
        # a query stands for a turn's message, and is held to the same limit
        query = _text(query, "query", limit=request.app[k.SETTINGS].max_message_chars)
        hits: list[Hit] = await control.search(namespace, query, limit)
        return web.json_response({"memories": [memory_json(h.doc, round(h.score, 6)) for h in hits]})
    docs = await control.list(namespace, _int(request, "limit", 100, 1, MAX_LIST),
                              _int(request, "offset", 0, 0, 1 << 62))
    return web.json_response({"memories": [memory_json(d) for d in docs]})


async def add(request: web.Request) -> web.Response:
    data = await _json(request)
    if not isinstance(data, dict):
        raise ClientError("invalid_request", "the body must be a JSON object with 'text'")
    [doc] = await request.app[k.MEMORY].add(_namespace(request), [NewMemory(_memory_text(data.get("text")))])
    return web.json_response(memory_json(doc), status=201)


async def edit(request: web.Request) -> web.Response:
    data = await _json(request)
    if not isinstance(data, dict):
        raise ClientError("invalid_request", "the body must be a JSON object with 'text'")
    doc = await request.app[k.MEMORY].edit(_namespace(request), _doc_id(request),
                                           _memory_text(data.get("text")))
    if doc is None:
        raise ClientError("not_found", "no such memory", 404)
    return web.json_response(memory_json(doc))


async def delete(request: web.Request) -> web.Response:
    doc_id = _doc_id(request)
    if not await request.app[k.MEMORY].delete(_namespace(request), doc_id):
        raise ClientError("not_found", "no such memory", 404)
    return web.json_response({"id": doc_id, "deleted": True})


async def export(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson; charset=utf-8",
                                           "Content-Disposition": 'attachment; filename="memories.jsonl"'})
    await response.prepare(request)
    async for doc in request.app[k.MEMORY].export(_namespace(request)):
        await response.write(orjson.dumps(memory_json(doc)) + b"\n")
    await response.write_eof()
    return response


async def import_memories(request: web.Request) -> web.Response:
    """JSONL as `export` writes it; each line needs `text`, and keeps its `created` and `session` if given."""
    items = []
    body = await _body(request, request.app[k.SETTINGS].max_import_bytes)
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ClientError("bad_json", f"line {number} is not valid JSON") from None
        if not isinstance(row, dict):
            raise ClientError("invalid_request", f"line {number} must be a JSON object")
        session = row.get("session")
        items.append(NewMemory(_text(row.get("text"), f"line {number}: text"),
                               _epoch(row.get("created"), f"line {number}: created"),
                               session if isinstance(session, str) else None))
    docs = await request.app[k.MEMORY].add(_namespace(request), items)
    return web.json_response({"imported": len(docs), "ids": [d.id for d in docs]})


def _imported_turn(row: object, index: int) -> ImportedTurn:
    where = f"turns[{index}]"
    if not isinstance(row, dict):
        raise ClientError("invalid_request", f"{where} must be an object")
    user = _text(row.get("user"), f"{where}.user", required=False)
    assistant = _text(row.get("assistant"), f"{where}.assistant", required=False)
    if not user.strip() and not assistant.strip():
        raise ClientError("empty_text", f"{where}: 'user' and 'assistant' are both empty")
    names = [row.get(name) for name in ("user_name", "assistant_name")]
    if any(n is not None and (not isinstance(n, str) or not n.isprintable() or len(n) > 100) for n in names):
        raise ClientError("invalid_request", f"{where}: names must be printable strings of at most 100 characters")
    created = _epoch(row.get("time"), f"{where}.time") or time.time()
    return ImportedTurn(user, assistant, created, *(n or None for n in names))


async def import_session(request: web.Request) -> web.Response:
    session = valid_session_id(request.match_info["session"])
    data = await _json(request, request.app[k.SETTINGS].max_import_bytes)
    rows = data.get("turns") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ClientError("invalid_request", "the body must be {\"turns\": [...]} with at least one turn")
    turns = [_imported_turn(row, i) for i, row in enumerate(rows)]
    owner = await request.app[k.CHAT].session_owner(session)
    namespace = (await owned_session(request))[1] if owner is not None else _namespace(request, session)
    [records] = await request.app[k.CHAT].import_sessions([(session, namespace, turns)])
    return web.json_response({"session": session, "turns": [r.id for r in records]})


async def import_chatgpt(request: web.Request) -> web.Response:
    body = await _body(request, request.app[k.SETTINGS].max_import_bytes)
    try:
        chats = parse_chatgpt_export(body)
    except ExportError as exc:
        raise ClientError("invalid_request", str(exc)) from None
    chat = request.app[k.CHAT]
    imports = []
    for found in chats:
        namespace = _namespace(request, found.session)
        owner = await chat.session_owner(found.session)
        if owner is not None and owner != namespace:
            raise ClientError("forbidden", f"session {found.session!r} belongs to another user", 403)
        # imported before: the same export again adds nothing, and finishes an import cut short (what was
        # stored but not yet made memories, by a crash or a failing embedder, is flushed now)
        imports.append((found.session, namespace, found.turns if owner is None else []))
    # all at once: the flush embeds many chats per call, where one chat after the other waited for each
    stored = await chat.import_sessions(imports)
    listed = [{"session": found.session, "title": found.title, "turns": len(records)}
              for found, (_, _, turns), records in zip(chats, imports, stored, strict=True) if turns]
    return web.json_response({"sessions": listed, "skipped": len(chats) - len(listed)})


async def list_sessions(request: web.Request) -> web.Response:
    found = await request.app[k.CHAT].sessions(_namespace(request), _int(request, "limit", 100, 1, MAX_LIST),
                                               _int(request, "offset", 0, 0, 1 << 62))
    return web.json_response({"sessions": [{"id": s.id, "title": s.title, "turns": s.turns, "created": _iso(s.created),
                                            "updated": _iso(s.updated)} for s in found]})


def add_memory_routes(app: web.Application) -> None:
    app.router.add_get("/memories", list_or_search)
    app.router.add_post("/memories", add)
    app.router.add_get("/memories/export", export)
    app.router.add_post("/memories/import", import_memories)
    app.router.add_patch("/memories/{id}", edit)
    app.router.add_delete("/memories/{id}", delete)
    app.router.add_get("/sessions", list_sessions)
    app.router.add_post("/sessions/{session}/import", import_session)
    app.router.add_post("/import/chatgpt", import_chatgpt)
