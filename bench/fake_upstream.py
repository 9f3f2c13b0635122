"""A fast, fake OpenAI-compatible upstream for load tests: streams SSE chunks at a set rate.

Every stream waits `ttft` seconds, then emits one token every 1/`rate` seconds until `tokens` (or the
request's max_tokens) are sent, then a usage chunk when asked and `data: [DONE]`. One shared ticker
drives all streams (a timer per stream would cost more than the streams), so a single process can
feed thousands of concurrent streams.

    python bench/fake_upstream.py --port 9100 --rate 50 --ttft 0.05 --tokens 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

WORDS = ["the", " moon", " over", " the", " river", " shines", " on", " Su", " Shi's", " boat", ",", " and"]


@dataclass(eq=False)
class Stream:
    response: web.StreamResponse
    chunk_id: str
    model: str
    total: int
    include_usage: bool
    prompt_tokens: int
    due: float
    sent: int = 0
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _chunk(stream: Stream, delta: dict, finish: str | None = None) -> bytes:
    body = {"id": stream.chunk_id, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": stream.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class Ticker:
    def __init__(self, rate: float, tick: float = 0.005, words: list[str] = WORDS):
        self.words = words
        self.interval = 1.0 / rate
        self.tick = tick
        self.streams: set[Stream] = set()
        self.task: asyncio.Task | None = None

    def add(self, stream: Stream) -> None:
        self.streams.add(stream)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        while self.streams:
            now = time.monotonic()
            for stream in list(self.streams):
                try:
                    while stream.due <= now and stream.sent < stream.total:
                        delta = {"content": self.words[stream.sent % len(self.words)]}
                        if stream.sent == 0:
                            delta["role"] = "assistant"
                        await stream.response.write(_chunk(stream, delta))
                        stream.sent += 1
                        stream.due += self.interval
                    if stream.sent >= stream.total:
                        self.streams.discard(stream)
                        if not stream.done.done():
                            stream.done.set_result(None)
                except (ConnectionError, RuntimeError) as exc:
                    self.streams.discard(stream)
                    if not stream.done.done():
                        stream.done.set_exception(exc)
            await asyncio.sleep(self.tick)


def create_app(rate: float = 50.0, ttft: float = 0.05, tokens: int = 60, token_chars: int = 0) -> web.Application:
    # token_chars > 0 makes every token that long: a flood of bytes for back-pressure tests
    words = [(w * (token_chars // len(w) + 1))[:token_chars] for w in WORDS] if token_chars else WORDS
    ticker = Ticker(rate, words=words)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model", "created": 0,
                                                               "owned_by": "bench"}]})

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        total = min(int(body.get("max_tokens") or body.get("max_completion_tokens") or tokens), tokens)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        chunk_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        if not body.get("stream"):
            await asyncio.sleep(ttft + total / rate)
            text = "".join(words[i % len(words)] for i in range(total))
            return web.json_response({
                "id": chunk_id, "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": total,
                          "total_tokens": prompt_tokens + total}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        stream = Stream(response, chunk_id, str(body.get("model")), total, include_usage, prompt_tokens,
                        due=time.monotonic() + ttft)
        ticker.add(stream)
        try:
            await stream.done
        except (ConnectionError, RuntimeError):
            return response
        await response.write(_chunk(stream, {}, "stop"))
        if include_usage:
            usage = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": stream.model, "choices": [],
                     "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": total,
                               "total_tokens": prompt_tokens + total}}
            await response.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", completions)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second per stream")
    parser.add_argument("--ttft", type=float, default=0.05, help="seconds before the first token")
    parser.add_argument("--tokens", type=int, default=60, help="tokens per reply")
    parser.add_argument("--token-chars", type=int, default=0, help="make every token this many characters")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = create_app(args.rate, args.ttft, args.tokens, args.token_chars)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
