"""The run's product: a plain Hugging Face model directory (LoRA merged in) that transformers, the chat
server's MODEL setting and vLLM load directly."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def merged_model(model: nn.Module) -> nn.Module:
    """LoRA adapters folded into the base weights; other models unchanged."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def export_model(model: nn.Module, tokenizer, out_dir: Path, dtype: torch.dtype | None = None) -> Path:
    """Save model and tokenizer to `out_dir`. Merging LoRA mutates `model`: call this when training is over."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = merged_model(model)
    if dtype is not None and dtype != next(model.parameters()).dtype:
        model = model.to(dtype)
    model.config.use_cache = True
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
