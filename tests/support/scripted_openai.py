"""A real OpenAI-compatible HTTP endpoint on 127.0.0.1 whose answers a test scripts, one per request:
an HTTP error (429 with Retry-After, 500, 401), a connection dropped before or during the stream, a
stall before or during it, or a normal streamed reply. It records what each request carried."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error: dict | None = None  # the JSON error body for a status >= 400
    tokens: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " endpoint", "."])
    before: Literal["drop", "stall"] | None = None  # what happens before any response byte
    after: Literal["finish", "drop", "stall", "error"] = "finish"  # what happens after the tokens
    stall_s: float = 5.0
    token_delay_s: float = 0.0
    usage: bool = True
    line_end: str = "\n"  # "\r\n", as some servers send
    write_bytes: int = 0  # > 0: the body goes out in pieces this small, each read on its own by the client


@dataclass
class Seen:
    at: float
    headers: dict[str, str]
    body: dict
    disconnected: bool = False


class ScriptedOpenAI:
    """Serve /v1/chat/completions and /v1/models from a thread; `push` the replies for the next requests."""

    def __init__(self, model: str = "scripted-model", max_model_len: int = 4096):
        self.model = model
        self.max_model_len = max_model_len
        self.script: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="scripted-openai",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def reset(self) -> None:
        self.script.clear()
        self.requests.clear()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "test",
             "max_model_len": self.max_model_len}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(time.monotonic(), dict(request.headers), await request.json())
        self.requests.append(seen)
        reply = self.script.popleft() if self.script else Reply()
        try:
            return await self._answer(request, reply)
        except (ConnectionError, asyncio.CancelledError):
            seen.disconnected = True
            raise

    async def _answer(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.before == "drop":
            request.transport.close()
            return web.Response()
        if reply.before == "stall":
            await asyncio.sleep(reply.stall_s)
        if reply.status >= 400:
            return web.json_response(reply.error or {"error": {"message": f"scripted {reply.status}",
                                                               "type": "server_error", "code": None}},
                                     status=reply.status, headers=reply.headers)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **reply.headers})
        await response.prepare(request)
        base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0, "model": self.model}

        unsent = bytearray()  # with write_bytes, pieces run across events: a piece may end one and start the next

        async def send(data) -> None:
            unsent.extend(f"data: {data if isinstance(data, str) else json.dumps(data)}{reply.line_end * 2}".encode())
            while len(unsent) > reply.write_bytes:
                piece = bytes(unsent[:reply.write_bytes or len(unsent)])
                del unsent[:len(piece)]
                await response.write(piece)
                if reply.write_bytes:
                    await asyncio.sleep(0.001)  # lets each piece leave as its own segment

        async def flush() -> None:
            if unsent:
                await response.write(bytes(unsent))
                unsent.clear()

        await send({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "finish_reason": None}]})
        for token in reply.tokens:
            await asyncio.sleep(reply.token_delay_s)
            await send({**base, "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]})
        await flush()
        if reply.after == "drop":
            request.transport.close()
            return response
        if reply.after == "stall":
            await asyncio.sleep(reply.stall_s)
            return response
        if reply.after == "error":
            await send({"error": {"message": "scripted failure mid-stream", "type": "server_error", "code": None}})
            await flush()
            return response
        await send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if reply.usage:
            await send({**base, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": len(reply.tokens),
                                                         "total_tokens": 11 + len(reply.tokens)}})
        await send("[DONE]")
        await flush()
        await response.write_eof()
        return response

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> ScriptedOpenAI:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the scripted endpoint did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
