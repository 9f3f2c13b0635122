"""Choose the Generator named by LLM_BACKEND; heavy backends are imported only when chosen."""

from __future__ import annotations

from server.config import Backend, Settings
from server.protocols import Generator


def resolve_backend(settings: Settings) -> Backend:
    return Backend.TRANSFORMERS if settings.llm_backend == Backend.AUTO else settings.llm_backend


def create_generator(settings: Settings) -> Generator:
    backend = resolve_backend(settings)
    if backend == Backend.TRANSFORMERS:
        from server.llm.transformers_backend import TransformersGenerator

        return TransformersGenerator(settings.model, device=settings.device, concurrency=settings.gen_concurrency,
                                     max_queued=settings.max_queued_turns, context_tokens=settings.context_tokens)
    raise ValueError(f"LLM_BACKEND={backend.value} is not available in this build")
