"""Evaluation during a run: the held-out loss over all processes, and a few sample poems from the main one."""

from __future__ import annotations

import torch

from trainer.batching import collate
from trainer.config import TrainConfig
from trainer.distributed import all_reduce_sum
from trainer.prepare import Run
from trainer.report import Reporter, perplexity


@torch.no_grad()
def evaluate(cfg: TrainConfig, run: Run, report: Reporter) -> float:
    """The held-out loss per poem token; logged, with the samples, at the run's current step."""
    ctx, data = run.ctx, run.data
    examples = data.held_out
    per_batch = max(1, cfg.batch_size // data.micro_parts) * 2
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
    chunks = [order[i:i + per_batch] for i in range(0, len(order), per_batch)]
    loss_sum, targets = 0.0, 0
    run.loss_module.eval()
    try:
        for chunk in chunks[ctx.rank::ctx.world_size]:
            # Sorted by length, so padding costs little here and the plain causal mask is fastest.
            batch = collate([examples[i] for i in chunk], data.pad_id).to(ctx.device)
            with run.autocast():
                loss_sum += run.loss_module(**batch.model_inputs()).item()
            targets += batch.n_targets
        loss_sum, targets = all_reduce_sum(ctx, [loss_sum, float(targets)])
        eval_loss = loss_sum / max(targets, 1)
        samples = sample_poems(cfg, run) if ctx.is_main and cfg.eval_samples > 0 else []
    finally:
        run.loss_module.train()
    step = run.state.step
    report.log({"type": "eval", "step": step, "eval_loss": eval_loss, "perplexity": perplexity(eval_loss),
                "samples": samples})
    report.say(f"step {step}: held-out loss {eval_loss:.4f}, perplexity {perplexity(eval_loss):.1f}")
    for s in samples:
        title = f"《{s['title']}》" if s["format"] in ("raw", "chat") else s["title"]
        report.say(f"  {title} ({s['format']}): {s['text'][:120]!r}")
    report.plot()
    return eval_loss


def sample_poems(cfg: TrainConfig, run: Run) -> list[dict[str, str]]:
    """A continuation of each of the first --eval-samples held-out prompts (poem titles in the formats taken in
    turn, or the conversation before its last reply)."""
    ctx, tokenizer, model = run.ctx, run.tokenizer, run.model
    devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
    samples = []
    # A private RNG stream: sampling at eval must not move the training RNG, or resuming would diverge.
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed + run.state.step)
        for sample in run.data.samples:
            enc = tokenizer(sample.text, add_special_tokens=sample.add_special_tokens,
                            return_tensors="pt").to(ctx.device)
            with run.autocast():
                out = model.generate(**enc, max_new_tokens=cfg.sample_tokens, do_sample=True, temperature=0.8,
                                     top_p=0.95, pad_token_id=run.data.pad_id)
            text = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            samples.append({"title": sample.label, "format": sample.fmt, "text": text})
    return samples
