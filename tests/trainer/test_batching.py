from __future__ import annotations

import itertools
import random

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.batching import collate, global_batches, pack_batch, pack_rows, pad_batch, split_micro_batches
from trainer.data import IGNORE, encode_poems
from trainer.loss import TokenLoss


def _examples(micro, poems, max_length=96):
    _, tok = micro
    examples, _ = encode_poems(tok, poems, range(len(poems)), ["raw", "chat"], max_length)
    return examples


def test_global_batches_cover_the_epoch_once_and_reshuffle_each_epoch():
    lengths = [random.Random(i).randint(5, 300) for i in range(103)]
    epoch0 = global_batches(lengths, 8, seed=1, epoch=0)
    assert len(epoch0) == 103 // 8 and all(len(b) == 8 for b in epoch0)
    flat = [i for b in epoch0 for i in b]
    assert len(set(flat)) == len(flat) == 96  # the trailing partial batch is dropped, nothing repeats
    assert global_batches(lengths, 8, seed=1, epoch=0) == epoch0
    assert global_batches(lengths, 8, seed=1, epoch=1) != epoch0


def test_length_grouping_cuts_padding():
    lengths = [random.Random(i).randint(5, 300) for i in range(2000)]

    def padding(batches):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)

    grouped = padding(global_batches(lengths, 16, seed=0, epoch=0, group_by_length=True))
    shuffled = padding(global_batches(lengths, 16, seed=0, epoch=0, group_by_length=False))
    assert grouped < shuffled / 5


def test_micro_batches_partition_the_global_batch():
    lengths = [3, 9, 4, 7, 1, 8, 2]
    parts = split_micro_batches(range(7), lengths, 3)
    assert sorted(i for p in parts for i in p) == list(range(7))
    assert [len(p) for p in parts] == [3, 2, 2]
    assert parts[0] == [1, 5, 3]  # longest together, so each micro-batch pads little


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=60), st.integers(64, 200), st.integers(1, 8))
def test_every_example_lands_exactly_once_in_rows_and_micro_batches(lengths, capacity, parts):
    rows = pack_rows(lengths, capacity)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= capacity for r in rows)
    split = split_micro_batches(range(len(lengths)), lengths, parts)
    assert sorted(i for p in split for i in p) == list(range(len(lengths)))
    assert max(map(len, split)) - min(map(len, split)) <= 1


def test_packing_fills_rows_without_exceeding_capacity():
    lengths = [random.Random(i).randint(1, 50) for i in range(40)]
    rows = pack_rows(lengths, capacity=64)
    assert sorted(i for r in rows for i in r) == list(range(40))
    assert all(sum(lengths[i] for i in r) <= 64 for r in rows)
    assert len(rows) <= -(-sum(lengths) // 64) + 2  # first-fit decreasing is close to the bound


def test_packed_rows_restart_positions_per_example_and_tails_go_on_counting(micro, poems):
    examples = _examples(micro, poems[:4])
    batch = pack_batch(examples, pad_id=0, capacity=400)
    assert batch.attention_mask is None and batch.n_targets == sum(e.n_targets for e in examples)
    assert batch.n_tokens == sum(len(e) for e in examples)
    # each example counts up from 0; a padded tail counts on from its row's last example instead of restarting
    rows = batch.position_ids.tolist()
    assert sum(row.count(0) for row in rows) == len(examples)
    for row in rows:
        bounds = [c for c, p in enumerate(row) if p == 0] + [len(row)]
        assert bounds[0] == 0 and all(row[a:b] == list(range(b - a)) for a, b in itertools.pairwise(bounds))


def test_a_packed_micro_batch_of_one_example_per_row_keeps_plain_causal_attention(micro, poems):
    from transformers.masking_utils import find_packed_sequence_indices

    examples = _examples(micro, poems[:20], max_length=400)
    first = max(examples, key=len)
    second = next(e for e in examples if len(e) < len(first))
    batch = pack_batch([first, second], pad_id=0, capacity=len(first))
    assert batch.input_ids.shape[0] == 2  # one row each, the second one padded
    assert find_packed_sequence_indices(batch.position_ids) is None  # no block mask to build


def test_packed_loss_and_gradients_equal_padded(micro, poems):
    model, _ = micro
    module = TokenLoss(model)
    examples = _examples(micro, poems[:6])

    def loss_and_grads(batch):
        model.zero_grad(set_to_none=True)
        loss = module(**batch.model_inputs())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        return loss.detach(), grads

    padded_loss, padded_grads = loss_and_grads(pad_batch(examples, pad_id=0))
    packed = collate(examples, pad_id=0, packing=True, capacity=96 * 3)
    assert packed.input_ids.shape[0] < len(examples)  # really packed several per row
    packed_loss, packed_grads = loss_and_grads(packed)
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-5)
    for name, grad in padded_grads.items():
        assert_equal_up_to_float32_roundoff(packed_grads[name], grad, name)


def assert_equal_up_to_float32_roundoff(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Equal up to summation order: the error is judged against the tensor's norm, not element by element.

    Packing sums the same per-token losses in another order, so a tiny gradient element can differ by more
    than any fixed atol while the tensor agrees to ~1e-7 of its scale. A leak between packed examples or a
    wrong position id moves whole gradients by percents.
    """
    scale = max(expected.norm().item(), actual.norm().item())
    error = (actual - expected).norm().item()
    assert error <= 1e-5 * scale, f"{name}: |packed - padded| = {error:.3g}, {error / scale:.3g} of |grad|"


def test_packed_examples_do_not_attend_to_each_other(micro, poems):
    model, _ = micro
    module = TokenLoss(model)
    first, second = _examples(micro, poems[:2])[:2]
    batch = pack_batch([first, second], pad_id=0, capacity=len(first) + len(second))
    assert batch.input_ids.shape[0] == 1
    with torch.no_grad():
        logits, selected = module.target_logits(batch.input_ids, batch.targets, None, batch.position_ids)
        # Scramble whichever example comes first in the row; the other's predictions must not move.
        n_first = (batch.position_ids[0] == 0).nonzero()[1].item()
        scrambled = batch.input_ids.clone()
        scrambled[0, :n_first] = torch.randint(5, 200, (n_first,), generator=torch.Generator().manual_seed(0))
        logits2, _ = module.target_logits(scrambled, batch.targets, None, batch.position_ids)
    cols = selected[0].nonzero().squeeze(1)
    later = cols >= n_first
    assert later.any() and (~later).any()
    torch.testing.assert_close(logits2[later], logits[later], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(logits2[~later], logits[~later])
    assert (batch.targets[0, n_first - 1] == IGNORE).item()  # no target crosses the boundary
