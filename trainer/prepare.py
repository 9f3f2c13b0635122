"""Setting a run up: from a config to the model, data, optimizer and position the step loop starts from.

The order is part of the contract: the seed comes before the model is made, LoRA's random init and DDP's
broadcast come after it, and a resumed checkpoint (which restores every RNG) comes last.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.checkpoint import (
    CHECKPOINTS,
    TrainState,
    base_fingerprint,
    checkpoint_dirs,
    content_fingerprint,
    data_fingerprint,
    load_checkpoint,
    model_identity,
    resolve_resume,
    run_settings,
)
from trainer.config import TrainConfig
from trainer.data import EncodeStats, Example, ensure_chat_template, scratch_tokenizer_texts, split_poems
from trainer.distributed import DistContext, barrier
from trainer.encode import SamplePrompt, encode_records, sample_prompts
from trainer.errors import TrainerError
from trainer.export import DTYPES
from trainer.loss import TokenLoss
from trainer.modeling import (
    apply_lora,
    check_packing_support,
    count_parameters,
    enable_gradient_checkpointing,
    freeze_all_but_top_layers,
    load_pretrained,
    load_scratch,
)
from trainer.records import Fields, Records, load_records, record_texts
from trainer.report import Reporter


@dataclass
class RunData:
    """The encoded examples and how they are cut into batches."""
    records: Records  # what --data holds
    samples: list[SamplePrompt]  # the prompts evaluation samples continue
    train: list[Example]
    held_out: list[Example]
    lengths: list[int]  # of each training example, for batching without touching the examples
    pad_id: int
    max_length: int
    micro_parts: int  # micro-batches per optimizer step over all processes
    stats: EncodeStats  # of the training split


@dataclass
class Run:
    """A prepared run: everything the step loop reads, and the position (`state`) it advances."""
    ctx: DistContext
    out: Path
    model_name: str
    model: nn.Module
    tokenizer: Any
    loss_module: TokenLoss
    ddp: nn.Module  # loss_module, or its DDP wrapper that averages gradients over processes
    params: list[nn.Parameter]  # the trainable ones
    optimizer: torch.optim.Optimizer
    scheduler: Any
    data: RunData
    total_steps: int
    precision: str  # "bf16" or "fp32", resolved from --precision auto
    identity: dict[str, Any]  # what a checkpoint must match to be resumed by this run
    export_dtype: torch.dtype | None
    resume_path: Path | None
    state: TrainState

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.ctx.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def prepare_run(cfg: TrainConfig, ctx: DistContext, report: Reporter) -> Run:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    resume_path = _claim_out_dir(cfg, ctx, out)
    _seed_everything(cfg.seed)
    if cfg.packing:
        check_packing_support(cfg.attn_implementation)
    records, held_out, train_idx, eval_idx = _read_data(cfg)
    model, tokenizer, stored_dtype, model_name = _load_model(cfg, ctx, out, resume_path is not None, records,
                                                             train_idx)
    own_chat_template = _set_chat_template(cfg, tokenizer, records)
    data = _encode_data(cfg, ctx, model, tokenizer, (records, train_idx), (held_out, eval_idx))

    base_print = base_fingerprint(model)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if cfg.train_top_layers:
        freeze_all_but_top_layers(model, cfg.train_top_layers)
    if cfg.lora:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    identity = {**model_identity(model_name, model, base_print), "data": data_fingerprint(data.train),
                "content": content_fingerprint(data.train), "settings": run_settings(cfg)}
    model.to(ctx.device)
    loss_module = TokenLoss(model)
    # from_pretrained hands back a model in eval mode: without this, dropout would stay off until the
    # first evaluation happened to switch it on.
    loss_module.train()
    ddp = _wrap_for_ddp(loss_module, ctx)
    precision = _resolve_precision(cfg.precision, ctx)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(cfg, ctx, params)
    total_steps = cfg.max_steps or cfg.epochs * (len(data.train) // cfg.batch_size)
    scheduler = _scheduler(cfg, optimizer, total_steps)
    state = TrainState()
    if resume_path is not None:
        state = load_checkpoint(resume_path, model, optimizer, scheduler, identity, ctx)

    run = Run(ctx=ctx, out=out, model_name=model_name, model=model, tokenizer=tokenizer, loss_module=loss_module,
              ddp=ddp, params=params, optimizer=optimizer, scheduler=scheduler, data=data, total_steps=total_steps,
              precision=precision, identity=identity,
              export_dtype=DTYPES.get(cfg.export_dtype) if cfg.export_dtype != "auto" else stored_dtype,
              resume_path=resume_path, state=state)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        report.open_metrics(state.step if resume_path is not None else None, cfg.report_to == "tensorboard")
        (out / "train_config.json").write_text(json.dumps(cfg.to_json(), ensure_ascii=False, indent=1),
                                               encoding="utf-8")
    _announce(run, report, own_chat_template)
    return run


def _claim_out_dir(cfg: TrainConfig, ctx: DistContext, out: Path) -> Path | None:
    """The checkpoint to resume from; a fresh run refuses an --out holding an earlier run's checkpoints, or
    with --overwrite deletes them."""
    resume_path = resolve_resume(cfg.resume, out)
    stale = resume_path is None and bool(checkpoint_dirs(out))
    if stale and not cfg.overwrite:
        raise TrainerError(f"{out} already holds checkpoints of an earlier run: pass --resume to "
                           f"continue it, --overwrite to start afresh, or choose another --out")
    barrier(ctx)  # every process has looked before the main one deletes anything
    if stale and ctx.is_main:
        shutil.rmtree(out / CHECKPOINTS)
    return resume_path


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _read_data(cfg: TrainConfig) -> tuple[Records, Records, list[int], list[int]]:
    """(training records, held-out records, the indices of each): a split of --data, or all of it with
    --eval-data held out."""
    fields = Fields(text=cfg.text_field or "text", messages=cfg.messages_field, text_given=bool(cfg.text_field))
    records = load_records(cfg.data, fields)
    if cfg.eval_data:
        held_out = load_records(cfg.eval_data, fields)
        if held_out.kind != records.kind:
            raise TrainerError(f"--eval-data holds {held_out.kind} records but --data holds {records.kind}")
        return records, held_out, list(range(len(records))), list(range(len(held_out)))
    train_idx, eval_idx = split_poems(records.items, cfg.eval_split, cfg.seed)
    return records, records, train_idx, eval_idx


def _load_model(cfg: TrainConfig, ctx: DistContext, out: Path, resuming: bool, records: Records,
                train_idx: list[int]):
    """(model, tokenizer, the checkpoint's own dtype or None, the name checkpoints record)."""
    if not cfg.from_scratch:
        model, tokenizer, stored_dtype = load_pretrained(cfg.model, cfg.attn_implementation,
                                                         DTYPES[cfg.load_dtype])
        return model, tokenizer, stored_dtype, cfg.model
    if records.kind == "poems":
        texts = scratch_tokenizer_texts(records.items, train_idx)
    else:
        texts = [*record_texts(records, train_idx), "用户：", "助手："]  # the fallback chat template's words
    model, tokenizer = load_scratch(cfg.from_scratch, texts, out, cfg.seed, resuming, ctx, cfg.attn_implementation)
    return model, tokenizer, None, f"scratch:{cfg.from_scratch}"


def _set_chat_template(cfg: TrainConfig, tokenizer, records: Records) -> bool | None:
    """--chat-template, else the tokenizer's own, else the fallback; None when the data uses no template."""
    if cfg.chat_template:
        try:
            tokenizer.chat_template = Path(cfg.chat_template).read_text(encoding="utf-8")
        except OSError as exc:
            raise TrainerError(f"--chat-template {cfg.chat_template}: {exc.strerror}") from exc
    if records.kind == "messages" or (records.kind == "poems" and "chat" in cfg.formats):
        return ensure_chat_template(tokenizer)
    return None


def _encode_data(cfg: TrainConfig, ctx: DistContext, model: nn.Module, tokenizer, train_part: tuple[Records, list[int]],
                 eval_part: tuple[Records, list[int]]) -> RunData:
    max_positions = getattr(model.config, "max_position_embeddings", None) or cfg.max_length
    max_length = min(cfg.max_length, max_positions)
    train, stats = encode_records(tokenizer, *train_part, cfg.formats, max_length)
    held_out, _ = encode_records(tokenizer, *eval_part, cfg.formats, max_length)
    samples = sample_prompts(tokenizer, *eval_part, cfg.formats, cfg.eval_samples)
    micro_parts = cfg.grad_accum * ctx.world_size
    if len(train) < cfg.batch_size:
        raise TrainerError(f"only {len(train)} training examples, fewer than --batch-size {cfg.batch_size}")
    if cfg.batch_size < micro_parts:
        raise TrainerError(f"--batch-size {cfg.batch_size} cannot be split over --grad-accum {cfg.grad_accum} x "
                           f"{ctx.world_size} processes")
    pad_id = next(t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None)
    return RunData(records=train_part[0], samples=samples, train=train, held_out=held_out,
                   lengths=[len(e) for e in train],
                   pad_id=pad_id, max_length=max_length, micro_parts=micro_parts, stats=stats)


def _wrap_for_ddp(loss_module: TokenLoss, ctx: DistContext) -> nn.Module:
    if not ctx.distributed:
        return loss_module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(loss_module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def _resolve_precision(precision: str, ctx: DistContext) -> str:
    if precision == "auto":
        precision = "bf16" if ctx.device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if ctx.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    return precision


def _optimizer(cfg: TrainConfig, ctx: DistContext, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    # Decay matrices only: decaying norms' gains and biases just fights the model.
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    lr = cfg.resolved_lr()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr, fused=ctx.device.type == "cuda" or None)


def _scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    from transformers import get_scheduler

    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(total_steps * cfg.warmup_ratio)
    schedule = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[cfg.schedule]
    return get_scheduler(schedule, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def _announce(run: Run, report: Reporter, own_chat_template: bool | None) -> None:
    ctx, data, state = run.ctx, run.data, run.state
    trainable, total = count_parameters(run.model)
    report.emit("start", model=run.model_name, device=str(ctx.device), world_size=ctx.world_size,
                precision=run.precision, data_kind=data.records.kind,
                weights_dtype=str(next(run.model.parameters()).dtype).removeprefix("torch."),
                parameters=total, trainable_parameters=trainable,
                train_examples=len(data.train), eval_examples=len(data.held_out),
                truncated_examples=data.stats.truncated, skipped_examples=data.stats.skipped_prompt_too_long,
                total_steps=run.total_steps, start_step=state.step, max_length=data.max_length,
                selective_head=run.loss_module.selective_head, own_chat_template=own_chat_template,
                resumed_from=str(run.resume_path) if run.resume_path else None)
    report.say(f"model {run.model_name}: {trainable:,} of {total:,} parameters train on {ctx.device} "
               f"x{ctx.world_size} ({run.precision}); {len(data.train)} training / {len(data.held_out)} "
               f"held-out examples ({data.stats.truncated} truncated to {data.max_length} tokens); "
               f"{run.total_steps} steps" + (f", resuming at step {state.step}" if run.resume_path else ""))
