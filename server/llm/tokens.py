"""Tokenizers for backends that do not run the model through transformers themselves.

The prompt budget needs a token count for every piece of a prompt. The vllm backend renders and
counts with the model's own tokenizer; the openai backend uses it too when MODEL is a local
directory or is in the Hugging Face cache, and otherwise an approximation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

# Imported here, at start-up on the main thread, not in the worker thread that loads the tokenizer:
# transformers' lazy imports are not thread-safe, and the embedder imports sentence-transformers
# in its own thread at the same moment ("cannot import name 'AutoTokenizer'").
from transformers import AutoTokenizer

from server.estimate import approximate_tokens
from server.llm.prompting import plain_transcript
from server.protocols import Message


def model_source(model: str) -> str:
    """A local directory when MODEL names one, else the hub id as given."""
    local = Path(model).expanduser()
    return str(local) if local.is_dir() else model


def load_tokenizer(model: str, *, cached_only: bool = True):
    """The model's tokenizer from a local directory or the hub cache; None when neither has it.

    `cached_only` keeps start-up offline: a remote model name (e.g. gpt-4o-mini) must not make the
    server reach out to the hub.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_source(model), local_files_only=cached_only)
    except Exception:  # not found, not a tokenizer, a config this transformers cannot read: callers fall back
        return None
    # we count and budget tokens ourselves; the tokenizer's own length warning would only be noise
    tokenizer.model_max_length = 1 << 30
    return tokenizer


def token_counter(tokenizer) -> Callable[[str], int]:
    if tokenizer is None:
        return approximate_tokens
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def render_chat_ids(tokenizer, messages: Sequence[Message]) -> list[int]:
    """Prompt token ids: the tokenizer's chat template when it has one, else a plain transcript."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in messages],
                                            add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)
    ids = tokenizer.encode(plain_transcript(messages), add_special_tokens=False)
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    return ids


def config_context_window(model: str) -> int | None:
    """max_position_embeddings from a local model directory's config.json, if there is one."""
    import json

    config = Path(model).expanduser() / "config.json"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None
