"""The embedded default Generator: a transformers causal LM in-process (CPU or GPU).

Prompt rendering (chat template, tokenizer) and generation run in a bounded worker pool; tokens
cross back to the event loop through an asyncio queue; cancelling the consumer sets a stop flag that
`generate` checks after every token, so a client that goes away stops the compute too.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from server.llm.errors import ModelLoadError, load_hint
from server.llm.tokens import render_chat_ids, token_counter
from server.protocols import GenerationError, GenerationParams, Message, Usage

_END = object()


class TransformersGenerator:
    name = "transformers"

    def __init__(self, model: str, device: str = "auto", concurrency: int = 1, max_queued: int = 64,
                 context_tokens: int | None = None):
        self.model_id = model
        self.device_setting = device
        self.concurrency = concurrency
        self.max_queued = max_queued
        self._context_override = context_tokens
        self.context_window = context_tokens or 2048
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="generate")
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting = 0
        self.model = None
        self.tokenizer = None

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device_setting
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        local = Path(self.model_id).expanduser()
        source = str(local) if local.is_dir() else self.model_id
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device).eval()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(load_hint(self.model_id)) from exc
        self.device = device
        window = getattr(self.model.config, "max_position_embeddings", None) or 2048
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if tok_max and tok_max < 1_000_000:
            window = min(window, tok_max)
        self.context_window = self._context_override or int(window)
        # we count and budget tokens ourselves; the tokenizer's own length warning would only be noise
        self.tokenizer.model_max_length = 1 << 30
        self._count = token_counter(self.tokenizer)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def render(self, messages: Sequence[Message]) -> list[int]:
        return render_chat_ids(self.tokenizer, messages)

    async def stream(self, messages: Sequence[Message], params: GenerationParams,
                     usage: Usage) -> AsyncIterator[str]:
        if self._waiting >= self.max_queued + self.concurrency:
            raise GenerationError("the server is busy; try again shortly", code="busy")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            async for delta in self._generate(messages, params, usage):
                yield delta
        finally:
            self._slots.release()

    def _generate_kwargs(self, prompt_ids: list[int], budget: int, params: GenerationParams, streamer,
                         stopping_criteria) -> dict:
        """Arguments for `model.generate`: greedy at temperature 0, nucleus sampling above it."""
        import torch

        input_ids = torch.tensor([prompt_ids], device=self.device)
        kwargs = dict(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=budget,
            streamer=streamer, stopping_criteria=stopping_criteria,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
        )
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False)
        return kwargs

    async def _generate(self, messages, params, usage) -> AsyncIterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        # the chat template and the tokenizer are CPU work that grows with the prompt: run them in the
        # generation pool, which has a free worker for this turn since it holds a slot
        prompt_ids = await loop.run_in_executor(self._executor, self.render, messages)
        usage.prompt_tokens = len(prompt_ids)
        budget = max(1, min(params.max_new_tokens, self.context_window - len(prompt_ids)))

        class _Streamer(TextStreamer):
            def put(inner, value):
                if inner.next_tokens_are_prompt:
                    inner.next_tokens_are_prompt = False
                    return
                usage.completion_tokens += int(value.numel())
                super().put(value)

            def on_finalized_text(inner, text: str, stream_end: bool = False):
                if text:
                    loop.call_soon_threadsafe(queue.put_nowait, text)

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        streamer = _Streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generate_kwargs(prompt_ids, budget, params, streamer, StoppingCriteriaList([_Stop()]))

        def run():
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
                loop.call_soon_threadsafe(queue.put_nowait, _END)
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        job = loop.run_in_executor(self._executor, run)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise GenerationError(f"generation failed: {type(item).__name__}") from item
                yield item
        finally:
            stop.set()
            # wait for the worker to notice, so the slot is free for the next turn
            with contextlib.suppress(Exception):
                await asyncio.shield(job)
