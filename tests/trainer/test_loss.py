from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.batching import pad_batch, split_micro_batches
from trainer.data import encode_poems
from trainer.loss import TokenLoss, accumulate_gradients


def _grads(model):
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


def test_selective_head_equals_full_logits_cross_entropy(micro, poems):
    model, tok = micro
    module = TokenLoss(model)
    assert module.selective_head
    examples, _ = encode_poems(tok, poems[:5], range(5), ["raw"], 96)
    batch = pad_batch(examples, pad_id=tok.pad_token_id)
    with torch.no_grad():
        ours = module(**batch.model_inputs())
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        reference = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), reduction="sum")
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-4)


def test_accumulated_micro_batches_give_the_one_batch_gradient(micro, poems):
    model, tok = micro
    module = TokenLoss(model)
    examples, _ = encode_poems(tok, poems[:12], range(12), ["raw", "chat"], 96)
    examples = examples[:12]
    lengths = [e.n_targets for e in examples]
    assert max(lengths) > 2 * min(lengths)  # variable lengths are what make the naive mean wrong
    total = sum(lengths)
    pad = tok.pad_token_id

    whole_loss = accumulate_gradients(module, [pad_batch(examples, pad)], total)
    whole = _grads(model)

    parts = split_micro_batches(range(len(examples)), [len(e) for e in examples], 4)
    micro_batches = [pad_batch([examples[i] for i in part], pad) for part in parts]
    accumulated_loss = accumulate_gradients(module, micro_batches, total)
    accumulated = _grads(model)

    assert abs(accumulated_loss - whole_loss) < 1e-3 * whole_loss
    for name, grad in whole.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=1e-4, atol=1e-7, msg=name)

    # Negative control: the usual mean of per-micro-batch means is a different gradient.
    for batch in micro_batches:
        (module(**batch.model_inputs()) / batch.n_targets / len(micro_batches)).backward()
    naive = _grads(model)
    differences = [(naive[n] - whole[n]).abs().max() / whole[n].abs().max() for n in whole]
    assert max(differences) > 1e-2


def test_grad_accum_and_packing_do_not_change_a_training_run(make_config, tmp_path, exported_weights):
    from trainer.loop import train

    runs = {}
    variants = {"plain": {}, "accum": {"grad_accum": 4}, "packed": {"grad_accum": 2, "packing": True}}
    for name, overrides in variants.items():
        config = make_config(out=str(tmp_path / name), optimizer="sgd", lr=0.5, max_steps=3, eval_split=0.0,
                             **overrides)
        train(config)
        runs[name] = exported_weights(tmp_path / name)
    for name in ("accum", "packed"):
        for key, value in runs["plain"].items():
            torch.testing.assert_close(runs[name][key], value, rtol=1e-4, atol=1e-6, msg=f"{name}: {key}")
