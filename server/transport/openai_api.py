"""OpenAI-compatible HTTP API: `POST /v1/chat/completions` (SSE streaming or one JSON reply) and
`GET /v1/models`, on the same turn pipeline as the websocket (`ChatService.run_turn`).

A request's last message, which must be the user's, is the turn (openai_conversation reads the rest). Who and
which conversation:
- memory namespace: the authenticated user when the server has tokens, else the `user` field, else none;
- conversation: the `X-Session-Id` header or `metadata.session`; without either, for a named user, a stable
  id derived from how the conversation began (`api:<user>:<digest>`), so that a chat UI's conversations,
  which name no session, stay apart while sharing the user's long-term memories.
- short-term context: the earlier messages the request carries (the client owns its conversation: it edits,
  regenerates and branches it), within the context budget; a request that carries none on a session it names
  has the session's buffer, as on the websocket. The client's system prompt is kept, with the persona before
  it (API_PERSONA=prepend) or without (off); the server adds what only it has, the user's memories and the
  search summary, as labelled sections after it.
- storage: each exchange is a turn of its conversation; before a turn the stored conversation is brought to
  the branch the client sent (`memory.conversation.follow`), so a regenerated or edited exchange replaces the
  one it supersedes, memories included, instead of adding a second one.
- an anonymous call (no user, no token, no session) is stateless, as OpenAI's API is: its messages are the
  conversation and nothing of the turn is stored. Storing it would leave a session that no client can name,
  so could never read, continue or delete; a per-request session is also what keeps unrelated callers (or
  another instance of this server using us as its `openai` backend, which sends its whole prompt) from
  sharing a buffer or blocking each other.
One turn at a time per conversation: a second request waits API_SESSION_WAIT seconds for the running one, then
gets 409 `turn_in_progress` with Retry-After (the official clients retry it). Turn limits count per user (the
namespace); an anonymous call has none, so it counts against the client's address, else every request would
be a fresh key that TURNS_PER_MINUTE never sees twice.
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
from server.protocols import GenerationParams
from server.transport.frames import MAX_SESSION_CHARS, valid_session_id
from server.transport.identity import memory_user, namespace_for
from server.transport.openai_conversation import ParamError, SentConversation, read_conversation
from server.turn_events import TokenDelta, TurnEvent, TurnStarted

log = get_logger(__name__)

SESSION_HEADER = "X-Session-Id"
MAX_USER_CHARS = 64
RETRY_AFTER = 1  # seconds, for a request refused because a turn of its conversation is running


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


@dataclass(frozen=True, slots=True)
class _Caller:
    session: str
    namespace: str
    limit_key: str  # what the turn limits count against
    stateless: bool
    derived: bool = False  # the session is named by the conversation's opening, not by the client
    opened_in: str | None = None  # where such a conversation's first request went (see SentConversation)


def _client_address(request: web.Request) -> str:
    # request.remote is the peer address (aiohttp only trusts forwarding headers when told to, and this
    # server is not): behind a reverse proxy every anonymous caller shares the proxy's budget, which is
    # why a public server should have SERVER_TOKENS.
    return f"address:{request.remote or 'unknown'}"


def _identity(request: web.Request, req: CompletionRequest, sent: SentConversation) -> _Caller:
    """Who is asking and in which conversation; see the module docstring."""
    user = request.get(k.USER)  # set by authentication; then the body cannot pick another user
    if user is None and req.user:
        if len(req.user) > MAX_USER_CHARS or not req.user.isprintable() or not req.user.strip():
            raise ParamError("user", f"'user' must be printable and at most {MAX_USER_CHARS} characters")
        user = req.user
    session = request.headers.get(SESSION_HEADER) or (req.metadata or {}).get("session")
    derived, opened_in = False, None
    if session is not None:
        try:
            session = valid_session_id(session)
        except ClientError:
            raise ParamError("metadata.session", f"the session id ({SESSION_HEADER} or metadata.session) must be "
                             f"printable and at most {MAX_SESSION_CHARS} characters") from None
    elif user:
        (session, opened_in), derived = sent.session_for(user), True
    else:
        session = f"api-{uuid.uuid4().hex}"  # in-flight only: it names the running turn, never a stored chat
        return _Caller(session, namespace_for(None, session), _client_address(request), stateless=True)
    # memories as on the websocket; without tokens the limits count per chat, as there
    scope = request.app[k.SETTINGS].memory_scope
    return _Caller(session, namespace_for(memory_user(user, scope), session), namespace_for(user, session),
                   stateless=False, derived=derived, opened_in=opened_in)


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
    sent = read_conversation(req.messages, settings.max_message_chars)
    caller = _identity(request, req, sent)
    session = caller.session
    try:
        control = await chat.claim(session, caller.limit_key, wait=settings.api_session_wait)
    except ClientError as err:
        raise _retry_later(err) from None
    params = _params(req, chat.settings.params)
    try:
        event = await _event(chat, caller, sent, received_at)
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
    except ClientError as err:
        raise _retry_later(err) from None  # e.g. another replica runs a turn of this conversation
    finally:
        chat.release(session, control)


def _retry_later(err: ClientError) -> ClientError:
    """A refusal because a turn of the conversation is running says when to retry: the official clients do."""
    if err.code == "turn_in_progress" and err.retry_after is None:
        err.retry_after = RETRY_AFTER
    return err


async def _event(chat, caller: _Caller, sent: SentConversation, received_at: float) -> TurnReceived:
    """The turn, with the conversation the client sent as its short-term context; stored conversations
    follow the client's branch first."""
    history = None
    if caller.stateless:
        history = sent.stand_ins(caller.session)
    elif sent.exchanges or caller.derived:
        history = await chat.follow_conversation(caller.session, caller.namespace, sent.exchanges, caller.opened_in)
    return TurnReceived(caller.session, caller.namespace, sent.text, received_at, history, sent.instructions,
                        stateless=caller.stateless)


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
