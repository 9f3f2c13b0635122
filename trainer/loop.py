"""The training run, top to bottom: set up, evaluate, step through the batches (logging, evaluating and saving
as configured, keeping the best checkpoint and stopping on a plateau if asked), then export the model, or on a
stop request save a checkpoint to resume from."""

from __future__ import annotations

import collections
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from trainer.batching import collate, global_batches, split_micro_batches
from trainer.checkpoint import CHECKPOINTS, TrainState, checkpoint_name, load_trainable, save_checkpoint
from trainer.config import TrainConfig
from trainer.distributed import all_reduce_sum, any_process, barrier, init_distributed, shutdown
from trainer.evaluation import evaluate
from trainer.export import export_model
from trainer.loss import accumulate_gradients
from trainer.prepare import Run, prepare_run
from trainer.report import EventHandler, Reporter
from trainer.sampling import mix_in_predictions, scheduled_sampling_rate, step_generator


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
    best_step: int | None = None  # with --keep-best: the step whose weights were exported
    early_stopped: bool = False


class StepStats(NamedTuple):
    loss_sum: float  # summed over all processes
    targets: int
    tokens: int
    lr: float  # the rate this step used
    grad_norm: float | None
    sampling_rate: float


@dataclass
class LogWindow:
    """The steps since the last metrics line: the line reports their mean loss and throughput."""
    loss_sum: float = 0.0
    targets: int = 0
    tokens: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, stats: StepStats) -> None:
        self.loss_sum += stats.loss_sum
        self.targets += stats.targets
        self.tokens += stats.tokens

    def mean_loss(self) -> float:
        return self.loss_sum / max(self.targets, 1)


@dataclass
class Outcome:
    """The latest losses and checkpoint, and the steps they were taken at, so that the end of the run neither
    repeats an evaluation or save that the last step already did nor skips one it did not."""
    train_loss: float | None = None
    eval_loss: float | None = None
    initial_eval_loss: float | None = None
    checkpoint: Path | None = None
    evaluated_at: int | None = None
    saved_at: int | None = None
    early_stopped: bool = False


def train(config: TrainConfig, on_event: EventHandler | None = None,
          stop: threading.Event | None = None) -> TrainResult:
    """Run training to the end, or until `stop` is set (Ctrl-C sets it): then save a checkpoint and return."""
    config.validate()
    stop = stop if stop is not None else threading.Event()
    with _stop_on_signals(stop):
        ctx = init_distributed(config.device)
        report = Reporter(Path(config.out), ctx.is_main, config.progress, on_event)
        try:
            run = prepare_run(config, ctx, report)
            return _train_loop(config, run, report, stop)
        finally:
            report.close()
            shutdown(ctx)


def _train_loop(cfg: TrainConfig, run: Run, report: Reporter, stop: threading.Event) -> TrainResult:
    state = run.state
    report.start_progress(run.total_steps, state.step)
    outcome = Outcome()
    if run.resume_path is None and run.data.held_out:
        outcome.eval_loss = outcome.initial_eval_loss = evaluate(cfg, run, report)
    window = LogWindow()
    recent: collections.deque[tuple[float, int]] = collections.deque(maxlen=20)  # (seconds, tokens) per step
    run_start = time.perf_counter() - state.elapsed_s
    interrupted = False

    for indices in _remaining_batches(cfg, run):
        t0 = time.perf_counter()
        stats = train_step(cfg, run, indices)
        state.step += 1
        state.batch_in_epoch += 1
        state.tokens_seen += stats.tokens
        now = time.perf_counter()
        state.elapsed_s = now - run_start
        recent.append((now - t0, stats.tokens))
        tokens_per_s = sum(n for _, n in recent) / max(sum(t for t, _ in recent), 1e-9)
        step_loss = stats.loss_sum / max(stats.targets, 1)
        window.add(stats)
        report.progress.update(step_loss, stats.lr, tokens_per_s)
        report.emit("step", step=state.step, loss=step_loss, lr=stats.lr, tokens=stats.tokens,
                    tokens_per_s=tokens_per_s, total_steps=run.total_steps)

        if state.step % cfg.log_every == 0 or state.step == run.total_steps:
            outcome.train_loss = window.mean_loss()
            report.log(_train_record(cfg, state, stats, window))
            window = LogWindow()
        if run.data.held_out and state.step % cfg.eval_every == 0:
            outcome.early_stopped = _evaluate_and_select(cfg, run, report, outcome)
        if state.step % cfg.save_every == 0 and outcome.saved_at != state.step:
            outcome.checkpoint = _save(cfg, run, report)
            outcome.saved_at = state.step
        if outcome.early_stopped:
            report.say(f"early stop at step {state.step}: no lower held-out loss in {state.evals_since_best} "
                       f"evaluations since step {state.best_step} ({state.best_loss:.4f})")
            break
        if any_process(run.ctx, stop.is_set()):
            interrupted = True
            break

    if outcome.train_loss is None and window.targets:
        outcome.train_loss = window.mean_loss()
    if interrupted:
        return _stop_early(cfg, run, report, outcome)
    return _finish(cfg, run, report, outcome)


def _evaluate_and_select(cfg: TrainConfig, run: Run, report: Reporter, outcome: Outcome) -> bool:
    """Evaluate at this step; with --keep-best save a new best at once (rotation keeps it). True when
    --early-stopping-patience evaluations in a row have not beaten the best."""
    state = run.state
    outcome.eval_loss = evaluate(cfg, run, report)
    outcome.evaluated_at = state.step
    if not cfg.keep_best:
        return False
    if state.best_loss is None or outcome.eval_loss < state.best_loss:
        state.best_loss, state.best_step, state.evals_since_best = outcome.eval_loss, state.step, 0
        if outcome.saved_at != state.step:
            outcome.checkpoint = _save(cfg, run, report)
            outcome.saved_at = state.step
        return False
    state.evals_since_best += 1
    patience = cfg.early_stopping_patience
    return patience is not None and state.evals_since_best >= patience


def _remaining_batches(cfg: TrainConfig, run: Run) -> Iterator[list[int]]:
    """The global batches from the run's position to its last step. The caller advances the position within an
    epoch; this moves it to the next epoch once one is used up (not when the caller stops early, so that a
    checkpoint taken then records the position it really reached)."""
    state = run.state
    while state.step < run.total_steps:
        batches = global_batches(run.data.lengths, cfg.batch_size, cfg.seed, state.epoch, cfg.group_by_length)
        while state.batch_in_epoch < len(batches) and state.step < run.total_steps:
            yield batches[state.batch_in_epoch]
        if state.batch_in_epoch >= len(batches):
            state.epoch += 1
            state.batch_in_epoch = 0


def train_step(cfg: TrainConfig, run: Run, indices: list[int]) -> StepStats:
    """One optimizer step on the global batch `indices`; this process takes its share of the micro-batches."""
    ctx, data = run.ctx, run.data
    total_targets = sum(data.train[i].n_targets for i in indices)
    n_tokens = sum(data.lengths[i] for i in indices)
    parts = split_micro_batches(indices, data.lengths, data.micro_parts)
    # Interleave so each process gets a spread of lengths and similar work.
    mine = parts[ctx.rank::ctx.world_size]
    micro = [collate([data.train[i] for i in part], data.pad_id, cfg.packing, data.max_length).to(ctx.device)
             for part in mine]
    step = run.state.step
    rate = scheduled_sampling_rate(step, run.total_steps, cfg.scheduled_sampling, cfg.scheduled_sampling_ramp)
    prepare = None
    if rate > 0:
        def prepare(i, batch):
            with run.autocast():
                gen = step_generator(ctx.device, cfg.seed, step, ctx.rank, i)
                return mix_in_predictions(run.loss_module, batch, rate, gen)

    local = accumulate_gradients(run.ddp, micro, total_targets, ctx.world_size, run.autocast, prepare)
    grad_norm = None
    if cfg.max_grad_norm:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(run.params, cfg.max_grad_norm))
    lr = run.optimizer.param_groups[0]["lr"]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    loss_sum = all_reduce_sum(ctx, [local])[0]
    return StepStats(loss_sum, total_targets, n_tokens, lr, grad_norm, rate)


def _train_record(cfg: TrainConfig, state: TrainState, stats: StepStats, window: LogWindow) -> dict[str, Any]:
    """The metrics line closing `window`; lr and grad norm are the last step's."""
    loss = window.mean_loss()
    elapsed = time.perf_counter() - window.start
    record = {"type": "train", "step": state.step, "epoch": state.epoch, "loss": loss, "lr": stats.lr,
              "grad_norm": stats.grad_norm, "tokens_per_s": window.tokens / max(elapsed, 1e-9),
              "tokens_seen": state.tokens_seen, "elapsed_s": state.elapsed_s}
    if cfg.scheduled_sampling:
        record["scheduled_sampling_rate"] = stats.sampling_rate
    return record


def _stop_early(cfg: TrainConfig, run: Run, report: Reporter, outcome: Outcome) -> TrainResult:
    """Save where the run stopped (a partial run exports nothing) and say how to continue it."""
    step = run.state.step
    if outcome.saved_at != step:
        outcome.checkpoint = _save(cfg, run, report)
    report.plot()
    report.emit("interrupted", step=step, checkpoint=str(outcome.checkpoint))
    report.say(f"interrupted at step {step}; checkpoint {outcome.checkpoint}; continue with --resume")
    return TrainResult(run.out, step, True, outcome.train_loss, outcome.eval_loss, outcome.initial_eval_loss,
                       outcome.checkpoint, None)


def _finish(cfg: TrainConfig, run: Run, report: Reporter, outcome: Outcome) -> TrainResult:
    """Evaluate and save at the last step unless that step already did, then export the model."""
    state = run.state
    step = state.step
    if run.data.held_out and outcome.evaluated_at != step:
        _evaluate_and_select(cfg, run, report, outcome)
    if outcome.saved_at != step:
        outcome.checkpoint = _save(cfg, run, report)
    if cfg.keep_best and state.best_step is not None and state.best_step != step:
        load_trainable(run.out / CHECKPOINTS / checkpoint_name(state.best_step), run.model)
        report.say(f"exporting the best checkpoint: step {state.best_step}, held-out loss {state.best_loss:.4f}")
    model_dir = None
    if run.ctx.is_main:
        model_dir = export_model(run.model, run.tokenizer, run.out, run.export_dtype, cfg.save_adapter)
    barrier(run.ctx)
    report.plot()
    best_step = state.best_step if cfg.keep_best else None
    report.emit("done", step=step, out=str(run.out), train_loss=outcome.train_loss, eval_loss=outcome.eval_loss,
                initial_eval_loss=outcome.initial_eval_loss, best_step=best_step, best_eval_loss=state.best_loss,
                early_stopped=outcome.early_stopped)
    return TrainResult(run.out, step, False, outcome.train_loss, outcome.eval_loss, outcome.initial_eval_loss,
                       outcome.checkpoint, model_dir, best_step, outcome.early_stopped)


def _save(cfg: TrainConfig, run: Run, report: Reporter) -> Path:
    path = save_checkpoint(run.out, run.state, run.model, run.optimizer, run.scheduler, run.identity,
                           cfg.to_json(), run.ctx, cfg.keep_checkpoints)
    report.emit("checkpoint", step=run.state.step, path=str(path))
    return path


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
