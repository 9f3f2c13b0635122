"""Parallel scheduled sampling: the "autoregressive finetuning" mode (`--scheduled-sampling P`).

Pure teacher forcing always conditions on gold poem tokens, but at generation time the model conditions on
its own, sometimes wrong, tokens (exposure bias). Parallel scheduled sampling (Duckworth et al., 2019) narrows
that gap without a slow token-by-token rollout:

1. a no-grad, teacher-forced pass predicts every poem position at once (a sample from the model's
   distribution at each position);
2. a random fraction `rate` of the poem's *input* tokens is replaced by those predictions;
3. the normal training pass runs on the mixed input and is scored against the gold tokens.

`rate` ramps linearly from 0 to P over `--scheduled-sampling-ramp` of training, so early training, when
predictions are noise, stays teacher-forced.

Trade-offs: each micro-batch costs one extra forward pass (no backward), roughly +30-50% step time. The
predictions are one step deep: each is conditioned on a gold prefix, not on earlier replaced tokens, which is
what makes it parallel and is a good approximation only for modest P. Teacher-forced eval loss usually
rises a little with P even when free-running samples improve, because the model learns to distrust its
context; P around 0.1-0.3 is the useful range. Prompt tokens are never replaced.
"""

from __future__ import annotations

import dataclasses

import torch

from trainer.batching import Batch
from trainer.loss import TokenLoss


def scheduled_sampling_rate(step: int, total_steps: int, max_rate: float, ramp_fraction: float = 1.0) -> float:
    """The replacement probability at `step` (0-based): linear from 0 to max_rate, then flat."""
    if max_rate <= 0:
        return 0.0
    ramp_steps = max(1, round(total_steps * ramp_fraction))
    return max_rate * min(1.0, step / ramp_steps)


def step_generator(device: torch.device, seed: int, step: int, rank: int, micro: int) -> torch.Generator:
    """A generator that depends only on where we are in training, so a resumed run draws the same tokens."""
    gen = torch.Generator(device=device)
    gen.manual_seed(((seed * 1_000_003 + step) * 1_009 + rank) * 101 + micro)
    return gen


@torch.no_grad()
def mix_in_predictions(loss_module: TokenLoss, batch: Batch, rate: float, generator: torch.Generator) -> Batch:
    """Return `batch` with about `rate` of its poem input tokens replaced by the model's own predictions."""
    if rate <= 0 or batch.n_targets == 0:
        return batch
    logits, selected = loss_module.target_logits(batch.input_ids, batch.targets, batch.attention_mask,
                                                 batch.position_ids)
    probs = torch.softmax(logits.float(), dim=-1)
    predicted = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    rows, cols = selected.nonzero(as_tuple=True)
    # A prediction made at column c is the model's guess for the input token at column c + 1; targets never
    # point past an example's end, so c + 1 is always a poem token of the same example.
    chosen = torch.rand(rows.numel(), generator=generator, device=probs.device) < rate
    input_ids = batch.input_ids.clone()
    input_ids[rows[chosen], cols[chosen] + 1] = predicted[chosen].to(input_ids.dtype)
    return dataclasses.replace(batch, input_ids=input_ids)
