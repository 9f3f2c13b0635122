from __future__ import annotations

import math

import pytest
import torch

from trainer.batching import pad_batch
from trainer.data import IGNORE, encode_poems
from trainer.loss import TokenLoss
from trainer.sampling import mix_in_predictions, scheduled_sampling_rate


def test_rate_ramps_linearly_then_holds():
    assert scheduled_sampling_rate(0, 100, 0.4, 0.5) == 0.0
    assert scheduled_sampling_rate(25, 100, 0.4, 0.5) == pytest.approx(0.2)
    assert scheduled_sampling_rate(50, 100, 0.4, 0.5) == pytest.approx(0.4)
    assert scheduled_sampling_rate(99, 100, 0.4, 0.5) == pytest.approx(0.4)
    assert scheduled_sampling_rate(60, 100, 0.0, 0.5) == 0.0


@pytest.fixture
def batch_and_module(micro, poems):
    model, tok = micro
    examples, _ = encode_poems(tok, poems[:6], range(6), ["raw", "chat"], 96)
    return pad_batch(examples, tok.pad_token_id), TokenLoss(model)


def test_only_poem_inputs_are_replaced_and_targets_stay_gold(batch_and_module):
    batch, module = batch_and_module
    mixed = mix_in_predictions(module, batch, rate=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mixed.targets, batch.targets)
    # Input at column c+1 is a poem token exactly when column c has a target.
    poem_input = torch.zeros_like(batch.targets, dtype=torch.bool)
    poem_input[:, 1:] = batch.targets[:, :-1] != IGNORE
    changed = mixed.input_ids != batch.input_ids
    assert not changed[~poem_input].any()  # prompts and padding untouched
    assert changed[poem_input].float().mean() > 0.5  # an untrained model rarely guesses the gold token


def test_rate_sets_the_fraction_replaced(batch_and_module):
    batch, module = batch_and_module
    n = batch.n_targets
    unchanged = mix_in_predictions(module, batch, rate=0.0, generator=torch.Generator().manual_seed(0))
    assert unchanged is batch
    mixed = mix_in_predictions(module, batch, rate=0.3, generator=torch.Generator().manual_seed(1))
    changed = (mixed.input_ids != batch.input_ids).sum().item()
    # Binomial(n, 0.3) minus the few sampled tokens that happen to equal the gold ones.
    assert abs(changed - 0.3 * n) < 4 * math.sqrt(n * 0.3 * 0.7) + 0.05 * n


def test_scheduled_sampling_run_trains_and_logs_its_rate(make_config):
    from trainer.loop import train
    from trainer.report import read_metrics

    result = train(make_config(scheduled_sampling=0.5, scheduled_sampling_ramp=0.5, max_steps=4))
    rates = [r["scheduled_sampling_rate"] for r in read_metrics(result.out_dir / "metrics.jsonl")
             if r["type"] == "train"]
    assert rates == pytest.approx([0.0, 0.25, 0.5, 0.5])
    assert math.isfinite(result.train_loss)


def test_replacements_are_drawn_from_the_distribution_not_its_argmax(batch_and_module):
    """Scheduled sampling feeds the model tokens it might have generated: a greedy (argmax) pick would show it
    only its single likeliest guess, and the same one on every draw."""
    batch, module = batch_and_module
    with torch.no_grad():
        logits, selected = module.target_logits(batch.input_ids, batch.targets, batch.attention_mask,
                                                batch.position_ids)
    greedy = logits.argmax(-1)
    rows, cols = selected.nonzero(as_tuple=True)
    draws = []
    for seed in (0, 1):
        mixed = mix_in_predictions(module, batch, rate=1.0, generator=torch.Generator().manual_seed(seed))
        draws.append(mixed.input_ids[rows, cols + 1])
    # An untrained model's distribution is flat: its samples rarely hit the argmax, and two draws differ.
    assert (draws[0] == greedy).float().mean() < 0.5
    assert (draws[0] != draws[1]).float().mean() > 0.5
