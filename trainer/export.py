"""The run's product: a plain Hugging Face model directory (LoRA merged in) that transformers, the chat
server's MODEL setting and vLLM load directly; with --save-adapter also the unmerged LoRA adapter in
OUT/adapter, which PEFT (`PeftModel.from_pretrained(base, OUT/adapter)`) and the server's LORA_DIR load on top
of the base model."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ADAPTER_DIR = "adapter"


def merged_model(model: nn.Module) -> nn.Module:
    """LoRA adapters folded into the base weights; other models unchanged."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def export_model(model: nn.Module, tokenizer, out_dir: Path, dtype: torch.dtype | None = None,
                 save_adapter: bool = False) -> Path:
    """Save model and tokenizer to `out_dir`. Merging LoRA mutates `model`: call this when training is over."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if save_adapter and hasattr(model, "peft_config"):
        model.save_pretrained(out_dir / ADAPTER_DIR)
        # The chat template the adapter learned travels with it (vLLM's LoRA loader reads a tokenizer there too).
        tokenizer.save_pretrained(out_dir / ADAPTER_DIR)
    model = merged_model(model)
    if dtype is not None and dtype != next(model.parameters()).dtype:
        model = model.to(dtype)
    model.config.use_cache = True
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
