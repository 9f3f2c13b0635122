"""Generator backed by any OpenAI-compatible endpoint (OpenAI, `vllm serve`, Ollama, llama.cpp's server,
another instance of this server), through the official `openai` client, streaming.

Retries (tenacity) happen only before the first token, on 429, 5xx and network errors, honouring
Retry-After: until then the client has seen nothing, so a retry is invisible. After a token has been
sent a failure ends the turn (the pipeline turns it into an `error` frame); replaying would repeat text.
The API key is never put into a log line or an error message; remote error texts are not echoed to
clients, because some endpoints quote the (partly masked) key back.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import httpx
import openai
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from common.http import parse_retry_after
from server.estimate import PER_MESSAGE_OVERHEAD
from server.llm.prompting import to_openai
from server.llm.tokens import config_context_window, load_tokenizer, token_counter
from server.logs import get_logger
from server.protocols import GenerationError, GenerationParams, Message, Usage

log = get_logger(__name__)

# Used when neither CONTEXT_TOKENS, the endpoint's model list nor a local config says otherwise; every
# current chat model has at least this much, and our prompts (persona, a few memories, the buffer) fit.
DEFAULT_CONTEXT_WINDOW = 8192
OPENAI_HOSTS = {"api.openai.com"}
_KEYLIKE = re.compile(r"\b(sk|pk|rk|key)-[\w*.-]{4,}", re.IGNORECASE)
_REMOTE_CODE = re.compile(r"^[a-z0-9_.-]{1,64}$")
_WAIT_BEFORE_RETRY = wait_exponential(multiplier=0.5, max=8) + wait_random(0, 0.5)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the endpoint asked us to wait (Retry-After / retry-after-ms), if it said."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    millis = parse_retry_after(headers.get("retry-after-ms"))
    return millis / 1000 if millis is not None else parse_retry_after(headers.get("retry-after"))


def is_transient(exc: BaseException) -> bool:
    """429, 5xx and network errors (timeouts included) may pass; the rest will fail again the same way."""
    if isinstance(exc, openai.APIConnectionError | openai.RateLimitError | openai.InternalServerError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def endpoint_label(base_url: str | None) -> str:
    """Where requests go, for messages: scheme, host and port only (no credentials, no path)."""
    if not base_url:
        return "https://api.openai.com"
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _http_modules() -> list:
    # openai 3.x sends through httpx2, a fork of httpx with its own exception classes; 1.x through httpx
    modules = [httpx]
    try:
        import httpx2

        modules.append(httpx2)
    except ImportError:
        pass
    return modules


def _http_client(timeout: float):
    """The SDK's aiohttp transport where it ships one: under bench/load.py, reading SSE through httpx's
    anyio stack was the largest share of the event loop's time, and aiohttp roughly halved the
    server-added time to first token."""
    make = getattr(openai, "DefaultAioHttpClient", None)
    if make is None:
        return None
    try:
        return make(timeout=timeout)
    except RuntimeError:  # the SDK was installed without its aiohttp extra
        return None


_TIMEOUTS = tuple(m.TimeoutException for m in _http_modules())
# timeouts are transport errors too: they are caught first
_TRANSPORT_ERRORS = tuple(m.TransportError for m in _http_modules())


class SSEChunks:
    """The `data:` events of a streamed chat completion, as dicts; ends at `[DONE]` or the end of the body.

    Lines are split from the response's bytes here rather than through httpx's text and line iterators,
    which add two async generators and two decoders to every token's path. Failures look as they would
    through the client's own stream: an `error` event or a malformed one raises openai.APIError /
    ValueError, a dropped or stalled connection APIConnectionError / APITimeoutError.
    """

    def __init__(self, response):
        self.response = response
        self._chunks = response.aiter_bytes()
        self._lines: deque[bytes] = deque()
        self._partial: list[bytes] = []  # pieces of a line not ended yet (joined once it ends: no quadratic copies)
        self._data: list[bytes] = []

    def __aiter__(self):
        return self

    async def __anext__(self) -> dict:
        while True:
            while self._lines:
                line = self._lines.popleft()
                if line.startswith(b"data:"):
                    self._data.append(line[5:].lstrip())
                elif not line and self._data:
                    return self._event()
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                rest, self._partial = b"".join(self._partial), []
                if rest.startswith(b"data:"):
                    self._data.append(rest[5:].lstrip())
                if self._data:
                    return self._event()
                raise
            except _TIMEOUTS as exc:
                raise openai.APITimeoutError(request=self.response.request) from exc
            except _TRANSPORT_ERRORS as exc:
                raise openai.APIConnectionError(request=self.response.request) from exc
            if b"\r" in chunk:  # CRLF or CR line ends (a CRLF split between chunks only adds an empty line)
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            self._partial.append(chunk)
            if b"\n" in chunk:
                lines = b"".join(self._partial).split(b"\n")
                self._partial = [lines.pop()]
                self._lines.extend(lines)

    def _event(self) -> dict:
        data, self._data = b"\n".join(self._data), []
        if data == b"[DONE]":
            raise StopAsyncIteration
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ValueError("the endpoint sent a malformed event") from None
        if not isinstance(chunk, dict):
            raise ValueError("the endpoint sent a malformed event")
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message", "error event") if isinstance(error, dict) else str(error)
            raise openai.APIError(message, self.response.request, body=error)
        return chunk

    async def close(self) -> None:
        await self.response.aclose()


class OpenAIGenerator:
    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 2, retry_max_wait: float = 30.0,
                 context_tokens: int | None = None):
        self.model = model
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_max_wait = retry_max_wait
        self.endpoint = endpoint_label(base_url)
        self._api_key = api_key
        self._context_override = context_tokens
        self.context_window = context_tokens or DEFAULT_CONTEXT_WINDOW
        self._count = token_counter(None)
        self.exact_counts = False
        # OpenAI's own API wants max_completion_tokens (its reasoning models refuse max_tokens); other
        # OpenAI-compatible servers (llama.cpp, older vLLM and Ollama) know only max_tokens.
        self._limit_field = "max_completion_tokens" if urlsplit(base_url or "https://api.openai.com").hostname \
            in OPENAI_HOSTS else "max_tokens"
        self._client: openai.AsyncOpenAI | None = None
        self._secrets = [api_key] if api_key else []

    async def start(self) -> None:
        # the SDK's own retries are off: ours know whether a token has reached the client yet
        self._client = openai.AsyncOpenAI(api_key=self._api_key or "not-needed", base_url=self.base_url,
                                          timeout=self.timeout, max_retries=0, http_client=_http_client(self.timeout))
        tokenizer = await asyncio.to_thread(load_tokenizer, self.model)
        self._count = token_counter(tokenizer)
        self.exact_counts = tokenizer is not None
        if self._context_override is None:
            self.context_window = await self._remote_context_window() or config_context_window(self.model) \
                or DEFAULT_CONTEXT_WINDOW
        log.info("openai backend ready", endpoint=self.endpoint, model=self.model, context_window=self.context_window,
                 token_counts="tokenizer" if self.exact_counts else "approximate")

    async def _remote_context_window(self) -> int | None:
        """vLLM (and this server) report `max_model_len` in their model list; OpenAI does not."""
        try:
            async with asyncio.timeout(min(self.timeout, 10)):
                models = await self._client.models.list()
        except (openai.APIError, TimeoutError) as exc:
            # not fatal: the endpoint may come up after us, and turns will say so if it does not
            log.warning("model endpoint not reachable at start", endpoint=self.endpoint, error=type(exc).__name__,
                        status=getattr(exc, "status_code", None))
            return None
        for entry in models.data:
            if entry.id == self.model:
                value = (entry.model_extra or {}).get("max_model_len")
                return int(value) if isinstance(value, int) and value > 0 else None
        return None

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def stream(self, messages: Sequence[Message], params: GenerationParams,
                     usage: Usage) -> AsyncIterator[str]:
        request = {
            "model": self.model, "messages": to_openai(messages), "stream": True,
            "stream_options": {"include_usage": True}, self._limit_field: params.max_new_tokens,
            "temperature": params.temperature, "top_p": params.top_p,
        }
        reported = Usage()
        stream, first = await self._open(request, reported)
        pieces: list[str] = []
        try:
            if first:
                pieces.append(first)
                yield first
            while True:
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    break
                except (openai.APIError, ValueError) as exc:  # ValueError: a malformed event
                    raise self._failure(exc, after_tokens=bool(pieces)) from None
                delta = self._take(chunk, reported)
                if delta:
                    pieces.append(delta)
                    yield delta
        finally:
            # closing the response tells the endpoint to stop generating (client gone or turn cancelled)
            await stream.close()
            # counted only when the endpoint sent no usage (cut off, or it ignores stream_options), and
            # only now: tokenising the prompt before the request would delay the first token
            usage.prompt_tokens = reported.prompt_tokens or sum(
                self.count_tokens(m.content) + PER_MESSAGE_OVERHEAD for m in messages)
            if reported.prompt_tokens or reported.completion_tokens:
                usage.completion_tokens = reported.completion_tokens
            else:
                usage.completion_tokens = self.count_tokens("".join(pieces)) if pieces else 0

    async def _open(self, request: dict, reported: Usage):
        """Open the stream and read up to its first text delta, retrying transient failures until then.

        The first attempt runs outside tenacity: its per-call state is a web of reference cycles (about
        35 objects, locks included) that only the cyclic garbage collector frees, and the collector's
        pauses stop the event loop for every stream. A failed first attempt is replayed into tenacity as
        its attempt 1, so waits, Retry-After, logging and the attempt count are all tenacity's.
        """
        try:
            return await self._first_delta(request, reported)
        except (openai.APIError, ValueError) as exc:
            first_failure: BaseException | None = exc

        async def attempt():
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return await self._first_delta(request, reported)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1), wait=self._wait, reraise=True,
            retry=retry_if_exception(lambda exc: is_transient(exc) and (retry_after(exc) or 0) <= self.retry_max_wait),
            before_sleep=self._log_retry)
        try:
            return await retrying(attempt)
        except (openai.APIError, ValueError) as exc:
            raise self._failure(exc, after_tokens=False, attempts=retrying.statistics.get("attempt_number", 1)) \
                from None

    async def _first_delta(self, request: dict, reported: Usage):
        # The client's documented raw-request path: its auth, base URL, timeouts, pooling and error
        # mapping, without building a typed object per chunk (that parsing was most of the event
        # loop's time under load); chunks are read with orjson instead.
        response = await self._client.post("/chat/completions", body=request, cast_to=httpx.Response, stream=True)
        stream = SSEChunks(response)
        try:
            while True:
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    return stream, None
                delta = self._take(chunk, reported)
                if delta:
                    return stream, delta
        except BaseException:
            await stream.close()
            raise

    @staticmethod
    def _take(chunk: dict, reported: Usage) -> str | None:
        usage = chunk.get("usage")
        if usage:
            reported.prompt_tokens = usage.get("prompt_tokens") or 0
            reported.completion_tokens = usage.get("completion_tokens") or 0
        choices = chunk.get("choices")
        if not choices:
            return None
        return (choices[0].get("delta") or {}).get("content")

    @staticmethod
    def _wait(state: RetryCallState) -> float:
        asked = retry_after(state.outcome.exception())
        return asked if asked is not None else _WAIT_BEFORE_RETRY(state)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception()
        log.warning("model endpoint failed before the first token; retrying", endpoint=self.endpoint,
                    attempt=state.attempt_number, error=type(exc).__name__,
                    status=getattr(exc, "status_code", None), wait_s=round(state.upcoming_sleep, 2))

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return _KEYLIKE.sub("[redacted]", text)

    def _failure(self, exc: Exception, *, after_tokens: bool, attempts: int = 1) -> GenerationError:
        """A GenerationError in our words: remote error texts may quote credentials, so they only reach the log."""
        status = getattr(exc, "status_code", None)
        remote_code = getattr(exc, "code", None)
        remote_code = remote_code if isinstance(remote_code, str) and _REMOTE_CODE.match(remote_code) else None
        log.warning("model endpoint failed", endpoint=self.endpoint, error=type(exc).__name__, status=status,
                    remote_code=remote_code, remote_message=self._redact(str(getattr(exc, "message", "")))[:300],
                    after_tokens=after_tokens, attempts=attempts)
        code = "generation_failed"
        if isinstance(exc, openai.APITimeoutError):
            reason = f"the model endpoint {self.endpoint} sent nothing for {self.timeout:g}s (OPENAI_TIMEOUT)"
        elif isinstance(exc, openai.APIConnectionError):
            reason = f"the connection to the model endpoint {self.endpoint} failed"
        elif isinstance(exc, openai.RateLimitError):
            reason, code = f"the model endpoint {self.endpoint} is rate limiting requests (HTTP 429)", "busy"
        elif isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            reason = (f"the model endpoint {self.endpoint} refused our credentials (HTTP {status}); "
                      "check OPENAI_API_KEY")
        elif isinstance(exc, openai.NotFoundError):
            reason = f"the model endpoint {self.endpoint} does not serve MODEL={self.model!r} (HTTP 404)"
        elif isinstance(exc, openai.APIStatusError):
            reason = f"the model endpoint {self.endpoint} answered HTTP {status}"
        elif isinstance(exc, ValueError):
            reason = f"the model endpoint {self.endpoint} sent a malformed stream"
        else:
            reason = f"the model endpoint {self.endpoint} reported an error while streaming"
        if remote_code:
            reason += f" ({remote_code})"
        if after_tokens:
            reason = "the reply was cut off: " + reason
        elif attempts > 1:
            reason += f"; gave up after {attempts} attempts"
        return GenerationError(reason, code=code)
