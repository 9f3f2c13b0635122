"""Choose the Generator named by LLM_BACKEND; heavy backends are imported only when chosen."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from server.config import Backend, Settings
from server.llm.hub import ensure_model_available, is_local_model
from server.protocols import Generator


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_backend(settings: Settings, *, has_vllm: Callable[[], bool] = vllm_installed,
                    has_cuda: Callable[[], bool] = cuda_available) -> Backend:
    """`auto`: vllm with CUDA and vllm present; else openai when a key or base URL is set and MODEL is not a
    local directory; else transformers."""
    if settings.llm_backend != Backend.AUTO:
        return settings.llm_backend
    # vllm first: without it, torch (slow to import) need not be asked about CUDA at all
    if has_vllm() and has_cuda():
        return Backend.VLLM
    if (settings.openai_api_key or settings.openai_base_url) and not is_local_model(settings.model):
        return Backend.OPENAI
    return Backend.TRANSFORMERS


def check_model(settings: Settings, **resolvers: Callable[[], bool]) -> None:
    """Raise StartupError in seconds, before the slow start-up, when a backend that loads MODEL's weights
    could neither find them here nor download them (the loader would retry for a minute, then fail)."""
    if resolve_backend(settings, **resolvers) != Backend.OPENAI:
        ensure_model_available(settings.model)


def create_generator(settings: Settings) -> Generator:
    backend = resolve_backend(settings)
    if backend == Backend.TRANSFORMERS:
        from server.llm.transformers_backend import TransformersGenerator

        return TransformersGenerator(settings.model, device=settings.device, concurrency=settings.gen_concurrency,
                                     max_queued=settings.max_queued_turns, context_tokens=settings.context_tokens)
    if backend == Backend.OPENAI:
        from server.llm.openai_backend import OpenAIGenerator

        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIGenerator(settings.model, base_url=settings.openai_base_url, api_key=key,
                               timeout=settings.openai_timeout, max_retries=settings.openai_max_retries,
                               retry_max_wait=settings.openai_retry_max_wait, context_tokens=settings.context_tokens)
    if backend == Backend.VLLM:
        # vllm itself is imported in start(), which first says clearly when there is no GPU or no vllm
        from server.llm.vllm_backend import EngineConfig, VLLMGenerator

        return VLLMGenerator(EngineConfig.from_settings(settings), context_tokens=settings.context_tokens)
    raise ValueError(f"unknown LLM_BACKEND={backend.value}")
