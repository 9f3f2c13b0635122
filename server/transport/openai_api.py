"""OpenAI-compatible HTTP API: `POST /v1/chat/completions` (SSE streaming or one JSON reply) and
`GET /v1/models`, on the same turn pipeline as the websocket (`ChatService.run_turn`).

A request's last message, which must be the user's, is the turn. Who and which conversation:
- memory namespace: the authenticated user when the server has tokens, else the `user` field, else
  none (the session is its own namespace, as on the websocket);
- session: the `X-Session-Id` header or `metadata.session`; without either, `api:<user>` for a named
  user (one running conversation per user, which flushes into that user's memory). The server keeps
  such a conversation: earlier messages are not replayed (the session's buffer and memories are).
- an anonymous call (no user, no session) is stateless, as OpenAI's API is: its earlier user/assistant
  messages are the conversation and nothing of the turn is stored. Storing it would leave a session
  that no client can name, so could never read, continue or delete, and that never fills a flush; a
  per-request session is also what keeps unrelated callers (or another instance of this server using
  us as its `openai` backend, which sends its whole prompt) from sharing a buffer or blocking each other.
Turn limits count per user (the namespace); an anonymous call has none, so it counts against the
client's address, else every request would be a fresh key that TURNS_PER_MINUTE never sees twice.
Sampling parameters in the request (temperature, top_p) apply to the turn; max_tokens may lower the
server's MAX_NEW_TOKENS, never raise it. Errors use OpenAI's shape, `{"error": {"message", "type",
"param", "code"}}`, with `code` one of our stable codes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from server import keys as k
from server.errors import ClientError, error_body
from server.events import TurnReceived
from server.logs import get_logger
from server.protocols import GenerationParams, TurnRecord
from server.transport.frames import MAX_SESSION_CHARS, valid_session_id, valid_text
from server.transport.identity import api_session, memory_user, namespace_for
from server.turn_events import TokenDelta, TurnEvent, TurnStarted

log = get_logger(__name__)

SESSION_HEADER = "X-Session-Id"
MAX_USER_CHARS = 64


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_Part] | None = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: StrictBool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=512)
    messages: list[_Message] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: _StreamOptions | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    n: int = Field(1, ge=1, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)


class ParamError(ClientError):
    """A request field is wrong; `param` names it, as OpenAI's errors do."""

    def __init__(self, param: str | None, message: str, code: str = "invalid_request", status: int = 400):
        super().__init__(code, message, status, param=param)


async def _parse(request: web.Request) -> CompletionRequest:
    body = await request.read()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ParamError(None, "the request body is not valid JSON", "bad_json") from None
    if not isinstance(data, dict):
        raise ParamError(None, "the request body must be a JSON object")
    try:
        return CompletionRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ParamError(param, f"{param}: {first['msg']}" if param else first["msg"]) from None


def served_model(request: web.Request) -> str:
    settings = request.app[k.SETTINGS]
    return settings.served_model_name or settings.model


def _content_text(message: _Message, param: str) -> str:
    if isinstance(message.content, list):
        if any(part.type != "text" or part.text is None for part in message.content):
            raise ParamError(f"{param}.content", "only text content parts are supported")
        return "".join(part.text for part in message.content)
    return message.content or ""


def _turn_text(req: CompletionRequest, max_chars: int) -> str:
    last = req.messages[-1]
    param = f"messages.{len(req.messages) - 1}"
    if last.role != "user":
        raise ParamError(f"{param}.role", "the last message must be the user's: it is the turn this server answers")
    text = _content_text(last, param)
    try:
        return valid_text(text, max_chars)
    except ClientError as err:
        raise ParamError(f"{param}.content", err.message, err.code, err.status) from None


def _sent_history(req: CompletionRequest, session: str) -> tuple[TurnRecord, ...]:
    """A stateless request's earlier exchanges, as the buffer they stand in for.

    A user message opens an exchange and assistant messages make its reply; system prompts are dropped,
    since the server's persona is the system prompt, as for every turn.
    """
    exchanges: list[list[str]] = []
    for index, message in enumerate(req.messages[:-1]):
        if message.role == "user":
            exchanges.append([_content_text(message, f"messages.{index}"), ""])
        elif message.role == "assistant":
            if not exchanges:  # the assistant spoke first, e.g. a greeting
                exchanges.append(["", ""])
            exchanges[-1][1] += _content_text(message, f"messages.{index}")
    return tuple(TurnRecord(f"sent-{seq}", session, seq, user, reply, "complete", 0.0)
                 for seq, (user, reply) in enumerate(exchanges))


@dataclass(frozen=True, slots=True)
class _Caller:
    session: str
    namespace: str
    limit_key: str  # what the turn limits count against
    stateless: bool


def _client_address(request: web.Request) -> str:
    # request.remote is the peer address (aiohttp only trusts forwarding headers when told to, and this
    # server is not): behind a reverse proxy every anonymous caller shares the proxy's budget, which is
    # why a public server should have SERVER_TOKENS.
    return f"address:{request.remote or 'unknown'}"


def _identity(request: web.Request, req: CompletionRequest) -> _Caller:
    """Who is asking and in which conversation; see the module docstring."""
    user = request.get(k.USER)  # set by authentication; then the body cannot pick another user
    if user is None and req.user:
        if len(req.user) > MAX_USER_CHARS or not req.user.isprintable() or not req.user.strip():
            raise ParamError("user", f"'user' must be printable and at most {MAX_USER_CHARS} characters")
        user = req.user
    session = request.headers.get(SESSION_HEADER) or (req.metadata or {}).get("session")
    if session is not None:
        try:
            session = valid_session_id(session)
        except ClientError:
            raise ParamError("metadata.session", f"the session id ({SESSION_HEADER} or metadata.session) must be "
                             f"printable and at most {MAX_SESSION_CHARS} characters") from None
    elif user:
        session = api_session(user)
    else:
        session = f"api-{uuid.uuid4().hex}"  # in-flight only: it names the running turn, never a stored chat
        return _Caller(session, namespace_for(None, session), _client_address(request), stateless=True)
    # memories as on the websocket; without tokens the limits count per chat, as there
    scope = request.app[k.SETTINGS].memory_scope
    return _Caller(session, namespace_for(memory_user(user, scope), session), namespace_for(user, session),
                   stateless=False)


class _SSE:
    """The chunks of one streamed completion, written as server-sent events."""

    def __init__(self, request: web.Request, completion_id: str, model: str, include_usage: bool):
        self.request = request
        self.base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model, "system_fingerprint": None}
        if include_usage:
            self.base["usage"] = None
        self.response: web.StreamResponse | None = None

    async def _write(self, data: dict | str) -> None:
        payload = data if isinstance(data, str) else orjson.dumps(data).decode()
        await self.response.write(f"data: {payload}\n\n".encode())

    async def open(self) -> None:
        if self.response is not None:
            return
        self.response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                                    "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await self.response.prepare(self.request)
        await self.choice({"role": "assistant", "content": ""})

    async def choice(self, delta: dict, finish_reason: str | None = None) -> None:
        await self._write({**self.base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                     "finish_reason": finish_reason}]})

    async def usage(self, usage: dict) -> None:
        await self._write({**self.base, "choices": [], "usage": usage})

    async def error(self, err: ClientError) -> None:
        await self._write(error_body(err))

    async def done(self) -> None:
        await self._write("[DONE]")
        await self.response.write_eof()


def _params(req: CompletionRequest, server: GenerationParams) -> GenerationParams:
    asked = req.max_completion_tokens or req.max_tokens
    return GenerationParams(
        max_new_tokens=min(asked, server.max_new_tokens) if asked else server.max_new_tokens,
        temperature=server.temperature if req.temperature is None else req.temperature,
        top_p=server.top_p if req.top_p is None else req.top_p,
    )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    received_at = time.perf_counter()
    settings = request.app[k.SETTINGS]
    chat = request.app[k.CHAT]
    req = await _parse(request)
    model = served_model(request)
    if req.model != model:
        raise ParamError("model", f"the model {req.model!r} does not exist; this server serves {model!r} "
                         "(see GET /v1/models)", "model_not_found", 404)
    text = _turn_text(req, settings.max_message_chars)
    caller = _identity(request, req)
    session = caller.session
    history = _sent_history(req, session) if caller.stateless else None
    event = TurnReceived(session, caller.namespace, text, received_at, history)
    control = await chat.claim(session, caller.limit_key)
    params = _params(req, chat.settings.params)
    try:
        if not req.stream:
            result = await chat.run_turn(event, _discard, control, params)
            return web.json_response({
                "id": f"chatcmpl-{result.turn_id}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "system_fingerprint": None,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                             "logprobs": None, "finish_reason": _finish_reason(result, params)}],
                "usage": result.usage.as_dict(),
            }, dumps=lambda obj: orjson.dumps(obj).decode())
        return await _stream(request, chat, event, control, params, model,
                             bool(req.stream_options and req.stream_options.include_usage))
    finally:
        chat.release(session, control)


async def _stream(request: web.Request, chat, event: TurnReceived, control, params: GenerationParams, model: str,
                  include_usage: bool) -> web.StreamResponse:
    sse = _SSE(request, f"chatcmpl-{uuid.uuid4().hex}", model, include_usage)

    async def send(event: TurnEvent) -> None:
        # search reports have no place in OpenAI's chunks; the end is written from the turn's result
        match event:
            case TurnStarted(turn=turn):
                sse.base["id"] = f"chatcmpl-{turn}"
            case TokenDelta(text=text):
                # headers go out with the first token, so a turn that fails before it gets a real HTTP status
                await sse.open()
                await sse.choice({"content": text})

    try:
        result = await chat.run_turn(event, send, control, params)
    except ClientError as err:
        if sse.response is None:
            raise
        request.app[k.METRICS].errors.labels(code=err.code).inc()
        await _end_with_error(sse, err)
        return sse.response
    except ConnectionError:  # the client went away mid-stream; the turn is recorded as interrupted
        return sse.response or web.Response(status=499)
    except Exception:
        if sse.response is None:
            raise
        log.exception("turn failed", session=event.session)
        await _end_with_error(sse, ClientError("internal_error", "the turn failed unexpectedly; see the server log",
                                               500))
        return sse.response
    try:
        await sse.open()
        await sse.choice({}, _finish_reason(result, params))
        if include_usage:
            await sse.usage(result.usage.as_dict())
        await sse.done()
    except ConnectionError:
        pass
    return sse.response


async def _end_with_error(sse: _SSE, err: ClientError) -> None:
    try:
        await sse.error(err)
        await sse.done()
    except ConnectionError:
        pass


async def _discard(event: TurnEvent) -> None:
    """A whole completion is answered at once: the turn's events have nowhere to go."""


def _finish_reason(result, params: GenerationParams) -> str:
    # the Generator protocol does not say why generation stopped; a reply that used the whole
    # allowance was almost certainly cut by it
    return "length" if result.usage.completion_tokens >= params.max_new_tokens else "stop"


def _model_card(request: web.Request) -> dict:
    app = request.app
    started = int(time.time() - (time.monotonic() - app[k.STARTED]))
    return {"id": served_model(request), "object": "model", "created": started, "owned_by": "dongpo-chat",
            # vLLM's field: lets a client (e.g. our own openai backend) budget its prompts
            "max_model_len": app[k.CHAT].services.generator.context_window}


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [_model_card(request)]})


async def get_model(request: web.Request) -> web.Response:
    if request.match_info["model"] != served_model(request):
        raise ParamError("model", f"the model {request.match_info['model']!r} does not exist", "model_not_found",
                         404)
    return web.json_response(_model_card(request))


def add_openai_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
