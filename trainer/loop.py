"""The training run: set-up, the step loop, evaluation, checkpoints and export."""

from __future__ import annotations

import collections
import contextlib
import json
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from scraper.corpus import CorpusError, Poem, read_corpus
from trainer.batching import collate, global_batches, split_micro_batches
from trainer.checkpoint import (
    CHECKPOINTS,
    TrainState,
    base_fingerprint,
    checkpoint_dirs,
    data_fingerprint,
    load_checkpoint,
    model_identity,
    resolve_resume,
    save_checkpoint,
)
from trainer.config import TrainConfig
from trainer.data import (
    CHAT_INSTRUCTION,
    RAW_PROMPT,
    Example,
    encode_poems,
    ensure_chat_template,
    prompt_text,
    split_poems,
)
from trainer.distributed import DistContext, all_reduce_sum, any_process, barrier, init_distributed, shutdown
from trainer.errors import TrainerError
from trainer.export import DTYPES, export_model
from trainer.loss import TokenLoss, accumulate_gradients
from trainer.modeling import (
    SCRATCH_DIR,
    apply_lora,
    count_parameters,
    create_scratch,
    freeze_all_but_top_layers,
    load_pretrained,
)
from trainer.report import CURVE_FILE, METRICS_FILE, MetricsLog, Progress, perplexity, plot_loss_curve
from trainer.sampling import mix_in_predictions, scheduled_sampling_rate, step_generator

EventHandler = Callable[[dict[str, Any]], Any]


class StepStats(NamedTuple):
    loss_sum: float  # summed over all processes
    targets: int
    tokens: int
    lr: float  # the rate this step used
    grad_norm: float | None
    sampling_rate: float


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    interrupted: bool
    train_loss: float | None
    eval_loss: float | None
    initial_eval_loss: float | None
    checkpoint: Path | None
    model_dir: Path | None


def train(config: TrainConfig, on_event: EventHandler | None = None,
          stop: threading.Event | None = None) -> TrainResult:
    """Run training to the end, or until `stop` is set (Ctrl-C sets it): then save a checkpoint and return."""
    config.validate()
    stop = stop if stop is not None else threading.Event()
    with _stop_on_signals(stop):
        ctx = init_distributed(config.device)
        try:
            return _Run(config, ctx, on_event, stop).execute()
        finally:
            shutdown(ctx)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """First Ctrl-C (or SIGTERM, which torchrun sends its workers) asks for a checkpoint at the end of the
    current step; a second Ctrl-C aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _scratch_texts(poems: list[Poem], indices: list[int]) -> list[str]:
    texts = []
    for i in indices:
        p = poems[i]
        texts.append(RAW_PROMPT.format(title=p.title) + p.text)
        texts.append(CHAT_INSTRUCTION.format(title=p.title))
    return texts


class _Run:
    def __init__(self, config: TrainConfig, ctx: DistContext, on_event: EventHandler | None,
                 stop: threading.Event):
        self.cfg = config
        self.ctx = ctx
        self.on_event = on_event
        self.stop = stop
        self.out = Path(config.out)
        self.progress = Progress(False, 0, 0)
        self.metrics: MetricsLog | None = None

    # ----------------------------------------------------------------------------------------- utilities
    def emit(self, kind: str, **fields: Any) -> None:
        if self.on_event is not None and self.ctx.is_main:
            self.on_event({"type": kind, **fields})

    def say(self, text: str) -> None:
        if self.ctx.is_main and self.cfg.progress:
            if self.progress.bar is not None:
                self.progress.write(text)
            else:
                print(text, file=sys.stderr)

    def autocast(self):
        if self.use_bf16:
            return torch.autocast(device_type=self.ctx.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ----------------------------------------------------------------------------------------------- set-up
    def execute(self) -> TrainResult:
        try:
            self.setup()
            return self.loop()
        finally:
            self.progress.close()

    def setup(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.resume_path = resolve_resume(cfg.resume, self.out)
        stale = self.resume_path is None and bool(checkpoint_dirs(self.out))
        if stale and not cfg.overwrite:
            raise TrainerError(f"{self.out} already holds checkpoints of an earlier run: pass --resume to "
                               f"continue it, --overwrite to start afresh, or choose another --out")
        barrier(ctx)  # every process has looked before the main one deletes anything
        if stale and ctx.is_main:
            shutil.rmtree(self.out / CHECKPOINTS)
        _seed_everything(cfg.seed)

        try:
            poems = read_corpus(cfg.data)
        except CorpusError as exc:
            raise TrainerError(f"{exc} (--data takes the poems.jsonl or poems.html that python -m scraper "
                               f"writes)") from exc
        self.poems = poems
        train_idx, eval_idx = split_poems(poems, cfg.eval_split, cfg.seed)
        self.eval_idx = eval_idx

        model, tokenizer, stored_dtype, model_name = self._load_model(poems, train_idx)
        self.tokenizer = tokenizer
        self.own_chat_template = ensure_chat_template(tokenizer) if "chat" in cfg.formats else None
        max_positions = getattr(model.config, "max_position_embeddings", None) or cfg.max_length
        self.max_length = min(cfg.max_length, max_positions)
        self.train_examples, stats = encode_poems(tokenizer, poems, train_idx, cfg.formats, self.max_length)
        self.eval_examples, _ = encode_poems(tokenizer, poems, eval_idx, cfg.formats, self.max_length)
        self.micro_parts = cfg.grad_accum * ctx.world_size
        if len(self.train_examples) < cfg.batch_size:
            raise TrainerError(f"only {len(self.train_examples)} training examples, fewer than --batch-size "
                               f"{cfg.batch_size}")
        if cfg.batch_size < self.micro_parts:
            raise TrainerError(f"--batch-size {cfg.batch_size} cannot be split over --grad-accum {cfg.grad_accum} x "
                               f"{ctx.world_size} processes")
        self.lengths = [len(e) for e in self.train_examples]
        self.pad_id = next(t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None)

        base_print = base_fingerprint(model)
        if cfg.train_top_layers:
            freeze_all_but_top_layers(model, cfg.train_top_layers)
        if cfg.lora:
            model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
        self.identity = model_identity(model_name, model, base_print)
        self.identity["data"] = data_fingerprint(self.train_examples)
        self.export_dtype = DTYPES.get(cfg.export_dtype) if cfg.export_dtype != "auto" else stored_dtype
        model.to(ctx.device)
        self.model = model
        self.loss_module = TokenLoss(model)
        # from_pretrained hands back a model in eval mode: without this, dropout would stay off until the
        # first evaluation happened to switch it on.
        self.loss_module.train()
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                self.loss_module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        else:
            self.ddp = self.loss_module

        precision = cfg.precision
        if precision == "auto":
            precision = "bf16" if ctx.device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        self.use_bf16 = precision == "bf16"
        if ctx.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True

        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self._optimizer()
        self.steps_per_epoch = len(self.train_examples) // cfg.batch_size
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(self.total_steps * cfg.warmup_ratio)
        from transformers import get_scheduler

        schedule = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[cfg.schedule]
        self.scheduler = get_scheduler(schedule, self.optimizer, num_warmup_steps=warmup,
                                       num_training_steps=self.total_steps)

        self.state = TrainState()
        if self.resume_path is not None:
            self.state = load_checkpoint(self.resume_path, model, self.optimizer, self.scheduler, self.identity, ctx)
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.metrics = MetricsLog(self.out / METRICS_FILE,
                                      self.state.step if self.resume_path is not None else None)
            (self.out / "train_config.json").write_text(json.dumps(cfg.to_json(), ensure_ascii=False, indent=1),
                                                        encoding="utf-8")
        trainable, total = count_parameters(model)
        info = {
            "model": model_name, "device": str(ctx.device), "world_size": ctx.world_size,
            "precision": precision, "parameters": total, "trainable_parameters": trainable,
            "train_examples": len(self.train_examples), "eval_examples": len(self.eval_examples),
            "truncated_examples": stats.truncated, "skipped_examples": stats.skipped_prompt_too_long,
            "total_steps": self.total_steps, "start_step": self.state.step, "max_length": self.max_length,
            "selective_head": self.loss_module.selective_head, "own_chat_template": self.own_chat_template,
            "resumed_from": str(self.resume_path) if self.resume_path else None,
        }
        self.emit("start", **info)
        self.say(f"model {model_name}: {trainable:,} of {total:,} parameters train on {ctx.device} "
                 f"x{ctx.world_size} ({precision}); {len(self.train_examples)} training / "
                 f"{len(self.eval_examples)} held-out examples ({stats.truncated} truncated to "
                 f"{self.max_length} tokens); {self.total_steps} steps"
                 + (f", resuming at step {self.state.step}" if self.resume_path else ""))

    def _load_model(self, poems: list[Poem], train_idx: list[int]):
        cfg, ctx = self.cfg, self.ctx
        if not cfg.from_scratch:
            model, tokenizer, stored_dtype = load_pretrained(cfg.model, cfg.attn_implementation)
            return model, tokenizer, stored_dtype, cfg.model
        scratch_dir = self.out / SCRATCH_DIR
        if self.resume_path is None:
            # One process trains the tokenizer (BPE training need not be reproducible across processes);
            # everyone, this one included, then loads the same files, as a resumed run will.
            if ctx.is_main:
                create_scratch(cfg.from_scratch, _scratch_texts(poems, train_idx), self.out, cfg.seed)
            barrier(ctx)
        elif not (scratch_dir / "config.json").is_file():
            raise TrainerError(f"cannot resume a --from-scratch run: {scratch_dir} (its tokenizer and initial "
                               f"model) is missing")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
        model = AutoModelForCausalLM.from_pretrained(scratch_dir, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(scratch_dir)
        return model, tokenizer, None, f"scratch:{cfg.from_scratch}"

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        # Decay matrices only: decaying norms' gains and biases just fights the model.
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        lr = cfg.resolved_lr()
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
        return torch.optim.AdamW(groups, lr=lr, fused=self.ctx.device.type == "cuda" or None)

    # ------------------------------------------------------------------------------------------------ loop
    def loop(self) -> TrainResult:
        cfg, ctx, state = self.cfg, self.ctx, self.state
        self.progress = Progress(cfg.progress and ctx.is_main, self.total_steps, state.step)
        eval_loss = initial_eval = None
        if self.resume_path is None and self.eval_examples:
            eval_loss = initial_eval = self.evaluate()
        window = {"loss": 0.0, "targets": 0, "tokens": 0, "start": time.perf_counter()}
        recent: collections.deque[tuple[float, int]] = collections.deque(maxlen=20)
        last_train_loss = None
        last_saved = last_evaluated = None
        checkpoint = None
        interrupted = False
        run_start = time.perf_counter() - state.elapsed_s

        while state.step < self.total_steps and not interrupted:
            batches = global_batches(self.lengths, cfg.batch_size, cfg.seed, state.epoch, cfg.group_by_length)
            while state.batch_in_epoch < len(batches) and state.step < self.total_steps:
                t0 = time.perf_counter()
                stats = self.train_step(batches[state.batch_in_epoch])
                loss_sum, n_targets, n_tokens, lr = stats.loss_sum, stats.targets, stats.tokens, stats.lr
                state.step += 1
                state.batch_in_epoch += 1
                state.tokens_seen += n_tokens
                now = time.perf_counter()
                state.elapsed_s = now - run_start
                recent.append((now - t0, n_tokens))
                tokens_per_s = sum(n for _, n in recent) / max(sum(t for t, _ in recent), 1e-9)
                step_loss = loss_sum / max(n_targets, 1)
                window["loss"] += loss_sum
                window["targets"] += n_targets
                window["tokens"] += n_tokens
                self.progress.update(step_loss, lr, tokens_per_s)
                self.emit("step", step=state.step, loss=step_loss, lr=lr, tokens=n_tokens,
                          tokens_per_s=tokens_per_s, total_steps=self.total_steps)
                if state.step % cfg.log_every == 0 or state.step == self.total_steps:
                    last_train_loss = window["loss"] / max(window["targets"], 1)
                    elapsed = time.perf_counter() - window["start"]
                    record = {"type": "train", "step": state.step, "epoch": state.epoch, "loss": last_train_loss,
                              "lr": lr, "grad_norm": stats.grad_norm,
                              "tokens_per_s": window["tokens"] / max(elapsed, 1e-9),
                              "tokens_seen": state.tokens_seen, "elapsed_s": state.elapsed_s}
                    if cfg.scheduled_sampling:
                        record["scheduled_sampling_rate"] = stats.sampling_rate
                    self.log(record)
                    window = {"loss": 0.0, "targets": 0, "tokens": 0, "start": time.perf_counter()}
                if self.eval_examples and state.step % cfg.eval_every == 0:
                    eval_loss = self.evaluate()
                    last_evaluated = state.step
                if state.step % cfg.save_every == 0:
                    checkpoint = self.save()
                    last_saved = state.step
                if any_process(ctx, self.stop.is_set()):
                    interrupted = True
                    break
            else:
                if state.batch_in_epoch >= len(batches):
                    state.epoch += 1
                    state.batch_in_epoch = 0

        if last_train_loss is None and window["targets"]:
            last_train_loss = window["loss"] / window["targets"]
        if interrupted:
            if last_saved != state.step:
                checkpoint = self.save()
            self.plot()
            self.emit("interrupted", step=state.step, checkpoint=str(checkpoint))
            self.say(f"interrupted at step {state.step}; checkpoint {checkpoint}; continue with --resume")
            return TrainResult(self.out, state.step, True, last_train_loss, eval_loss, initial_eval, checkpoint, None)

        if self.eval_examples and last_evaluated != state.step:
            eval_loss = self.evaluate()
        if last_saved != state.step:
            checkpoint = self.save()
        model_dir = None
        if ctx.is_main:
            model_dir = export_model(self.model, self.tokenizer, self.out, self.export_dtype)
        barrier(ctx)
        self.plot()
        self.emit("done", step=state.step, out=str(self.out), train_loss=last_train_loss, eval_loss=eval_loss,
                  initial_eval_loss=initial_eval)
        return TrainResult(self.out, state.step, False, last_train_loss, eval_loss, initial_eval, checkpoint,
                           model_dir)

    def train_step(self, indices: list[int]) -> StepStats:
        cfg, ctx = self.cfg, self.ctx
        examples = self.train_examples
        total_targets = sum(examples[i].n_targets for i in indices)
        n_tokens = sum(self.lengths[i] for i in indices)
        parts = split_micro_batches(indices, self.lengths, self.micro_parts)
        # Interleave so each process gets a spread of lengths and similar work.
        mine = parts[ctx.rank::ctx.world_size]
        micro = [collate([examples[i] for i in part], self.pad_id, cfg.packing, self.max_length).to(ctx.device)
                 for part in mine]
        step = self.state.step
        rate = scheduled_sampling_rate(step, self.total_steps, cfg.scheduled_sampling, cfg.scheduled_sampling_ramp)
        prepare = None
        if rate > 0:
            def prepare(i, batch):
                with self.autocast():
                    gen = step_generator(ctx.device, cfg.seed, step, ctx.rank, i)
                    return mix_in_predictions(self.loss_module, batch, rate, gen)

        local = accumulate_gradients(self.ddp, micro, total_targets, ctx.world_size, self.autocast, prepare)
        grad_norm = None
        if cfg.max_grad_norm:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = all_reduce_sum(ctx, [local])[0]
        return StepStats(loss_sum, total_targets, n_tokens, lr, grad_norm, rate)

    # ------------------------------------------------------------------------------- eval, save, report
    @torch.no_grad()
    def evaluate(self) -> float:
        cfg, ctx = self.cfg, self.ctx
        examples: list[Example] = self.eval_examples
        per_batch = max(1, cfg.batch_size // self.micro_parts) * 2
        order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
        chunks = [order[i:i + per_batch] for i in range(0, len(order), per_batch)]
        loss_sum, targets = 0.0, 0
        self.loss_module.eval()
        try:
            for chunk in chunks[ctx.rank::ctx.world_size]:
                # Sorted by length, so padding costs little here and the plain causal mask is fastest.
                batch = collate([examples[i] for i in chunk], self.pad_id).to(ctx.device)
                with self.autocast():
                    loss_sum += self.loss_module(**batch.model_inputs()).item()
                targets += batch.n_targets
            loss_sum, targets = all_reduce_sum(ctx, [loss_sum, float(targets)])
            eval_loss = loss_sum / max(targets, 1)
            samples = self.sample_poems() if ctx.is_main and cfg.eval_samples > 0 else []
        finally:
            self.loss_module.train()
        step = self.state.step
        self.log({"type": "eval", "step": step, "eval_loss": eval_loss, "perplexity": perplexity(eval_loss),
                  "samples": samples})
        self.say(f"step {step}: held-out loss {eval_loss:.4f}, perplexity {perplexity(eval_loss):.1f}")
        for s in samples:
            self.say(f"  《{s['title']}》 ({s['format']}): {s['text'][:120]!r}")
        self.plot()
        return eval_loss

    def sample_poems(self) -> list[dict[str, str]]:
        cfg, ctx = self.cfg, self.ctx
        tokenizer, model = self.tokenizer, self.model
        devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
        samples = []
        # A private RNG stream: sampling at eval must not move the training RNG, or resuming would diverge.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed + self.state.step)
            for k, i in enumerate(self.eval_idx[:cfg.eval_samples]):
                fmt = cfg.formats[k % len(cfg.formats)]
                title = self.poems[i].title
                prompt = prompt_text(tokenizer, title, fmt)
                enc = tokenizer(prompt, add_special_tokens=(fmt == "raw"), return_tensors="pt").to(ctx.device)
                with self.autocast():
                    out = model.generate(**enc, max_new_tokens=cfg.sample_tokens, do_sample=True, temperature=0.8,
                                         top_p=0.95, pad_token_id=self.pad_id)
                text = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                samples.append({"title": title, "format": fmt, "text": text})
        return samples

    def save(self) -> Path:
        path = save_checkpoint(self.out, self.state, self.model, self.optimizer, self.scheduler, self.identity,
                               self.cfg.to_json(), self.ctx, self.cfg.keep_checkpoints)
        self.emit("checkpoint", step=self.state.step, path=str(path))
        return path

    def log(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.write(record)
        self.emit(record["type"] + "_metrics", **{k: v for k, v in record.items() if k != "type"})

    def plot(self) -> None:
        if self.ctx.is_main:
            plot_loss_curve(self.out / METRICS_FILE, self.out / CURVE_FILE)
