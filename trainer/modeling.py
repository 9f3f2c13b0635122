"""Getting the model to train: a pretrained causal LM by id or directory, or a small one from scratch, and
which of its parameters train (all, the top N layers, or LoRA adapters)."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from trainer.distributed import DistContext, barrier
from trainer.errors import TrainerError

SCRATCH_DIR = "scratch-init"


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _load_help(model_id: str) -> str:
    return (f"Pass --model /path/to/dir: a local directory holding config.json, the weights and the tokenizer "
            f"files (for example one written by save_pretrained, or fetched elsewhere with "
            f"`hf download {model_id} --local-dir DIR`), or train without any download using "
            f"--from-scratch tiny.")


def load_pretrained(model_id: str, attn_implementation: str | None = None, dtype: torch.dtype = torch.float32):
    """(model in `dtype`, tokenizer, the checkpoint's own dtype) from a local directory or the Hub."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    local = Path(model_id).expanduser()
    looks_like_path = model_id.startswith((".", "/", "~")) or local.exists()
    if looks_like_path and not local.is_dir():
        raise TrainerError(f"model directory not found: {model_id}")
    # Without this check the Hub client retries for most of a minute before failing; with the Hub out of
    # reach only the local cache can help.
    cache_only = not looks_like_path and not _offline() and not _hub_reachable()
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        config = AutoConfig.from_pretrained(model_id, local_files_only=cache_only)
        tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=cache_only)
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype, local_files_only=cache_only,
                                                     **kwargs)
    except (OSError, ValueError) as exc:
        if cache_only or (not looks_like_path and _offline()):
            why = "the Hugging Face Hub is unreachable from here" if cache_only else "HF_HUB_OFFLINE is set"
            raise TrainerError(f"cannot load model {model_id!r}: it is not a local directory, {why}, and it is "
                               f"not in the local cache. {_load_help(model_id)}") from None
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainerError(f"cannot load model {model_id!r}: {first_line} {_load_help(model_id)}") from exc
    stored_dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(stored_dtype, str):
        stored_dtype = getattr(torch, stored_dtype, None)
    return model, tokenizer, stored_dtype


def create_scratch(size: str, texts: Sequence[str], out_dir: Path, seed: int) -> Path:
    """Train the tokenizer and build the random-init model; save both as an HF directory and return it."""
    from trainer.scratch import create_scratch_model

    target = out_dir / SCRATCH_DIR
    create_scratch_model(texts, size, target, seed=seed)
    return target


def load_scratch(size: str, texts: Sequence[str], out_dir: Path, seed: int, resuming: bool, ctx: DistContext,
                 attn_implementation: str | None = None):
    """(random-init model in fp32, tokenizer) for --from-scratch: made from `texts` under OUT/scratch-init on a
    fresh run, read back from there on a resumed one."""
    scratch_dir = out_dir / SCRATCH_DIR
    if not resuming:
        # One process trains the tokenizer (BPE training need not be reproducible across processes);
        # everyone, this one included, then loads the same files, as a resumed run will.
        if ctx.is_main:
            create_scratch(size, texts, out_dir, seed)
        barrier(ctx)
    elif not (scratch_dir / "config.json").is_file():
        raise TrainerError(f"cannot resume a --from-scratch run: {scratch_dir} (its tokenizer and initial "
                           f"model) is missing")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(scratch_dir, dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(scratch_dir)
    return model, tokenizer


def check_packing_support(attn_implementation: str | None) -> None:
    """Packing keeps examples apart by restarting position_ids, which only transformers 5 turns into a
    block-diagonal mask for sdpa/eager attention; 4.x would let packed examples attend to each other."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    if major < 5 and not (attn_implementation or "").startswith("flash_attention"):
        raise TrainerError(f"--packing needs transformers 5 or later (installed: {transformers.__version__}): "
                           f"older releases would let packed examples attend to each other. Upgrade "
                           f"transformers, use --attn-implementation flash_attention_2, or train without --packing")


def enable_gradient_checkpointing(model: nn.Module) -> None:
    # Non-reentrant checkpointing needs no input that requires grad, so it works with frozen embeddings
    # (LoRA, --train-top-layers) as it does for a full finetune.
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5's name; the old one warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks: the ModuleList as long as config.num_hidden_layers."""
    n_layers = getattr(model.config, "num_hidden_layers", None)
    candidates = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers]
    if not candidates:
        raise TrainerError(f"cannot find the transformer layers of {type(model).__name__} to freeze")
    return candidates[0]


def freeze_all_but_top_layers(model: nn.Module, n: int) -> None:
    layers = transformer_layers(model)
    if n > len(layers):
        raise TrainerError(f"--train-top-layers {n}: the model has only {len(layers)} layers")
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in list(layers)[-n:]:
        for p in layer.parameters():
            p.requires_grad_(True)
    # The final norm feeds the head directly; it trains with the top layers as the original script did.
    layer_params = {id(p) for p in layers.parameters()}
    head = model.get_output_embeddings()
    embed = model.get_input_embeddings()
    excluded = {id(p) for m in (head, embed) if m is not None for p in m.parameters()}
    for name, p in model.named_parameters():
        if id(p) not in layer_params and id(p) not in excluded and "norm" in name.lower():
            p.requires_grad_(True)


def apply_lora(model: nn.Module, r: int, alpha: int, dropout: float, targets: str) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    target_modules: str | list[str] = targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                        task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise TrainerError(f"cannot apply LoRA: {exc}") from exc


def count_parameters(model: nn.Module) -> tuple[int, int]:
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
