"""Token-level loss: summed over target tokens, normalised once per optimizer step.

Each micro-batch contributes `sum of its token losses / target tokens in the whole global batch`, so k
accumulated micro-batches (or N processes) give exactly the gradient of one big batch. The common
alternative, averaging per-micro-batch means, weights a token in a short micro-batch more than one in a
long micro-batch and changes the gradient whenever lengths vary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainer.batching import Batch
from trainer.data import IGNORE


def unwrap_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (LoRA layers stay injected in it)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class TokenLoss(nn.Module):
    """Wraps a causal LM so that forward() returns the summed cross-entropy of the target tokens.

    The LM head runs only on target positions: prompt and padding positions never become vocabulary-sized
    logits, which saves much of the compute and memory of small-hidden, large-vocabulary models. Models whose
    head does more than a linear map (logit soft-capping, scaling) fail the start-up check and use the full
    forward instead.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        lm = unwrap_causal_lm(model)
        self._decoder = None
        self._head = None
        decoder = lm.get_decoder() if hasattr(lm, "get_decoder") else None
        head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
        if decoder is not None and decoder is not lm and isinstance(head, nn.Linear):
            self._decoder, self._head = decoder, head
            if not self._selective_head_matches(lm):
                self._decoder = self._head = None

    @property
    def selective_head(self) -> bool:
        return self._head is not None

    @torch.no_grad()
    def _selective_head_matches(self, lm: nn.Module) -> bool:
        was_training = lm.training
        lm.eval()
        try:
            device = next(lm.parameters()).device
            vocab = self._head.out_features
            ids = torch.arange(1, 9, device=device).unsqueeze(0) % vocab
            full = lm(input_ids=ids, use_cache=False).logits.float()
            hidden = self._decoder(input_ids=ids, use_cache=False).last_hidden_state
            mine = self._head(hidden).float()
            return full.shape == mine.shape and torch.allclose(full, mine, rtol=1e-4, atol=1e-4)
        except Exception:
            return False
        finally:
            lm.train(was_training)

    def target_logits(self, input_ids: torch.Tensor, targets: torch.Tensor,
                      attention_mask: torch.Tensor | None = None,
                      position_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at target positions (n_targets x vocab) and a boolean map of those positions."""
        selected = targets != IGNORE
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                  "use_cache": False}
        if self._head is not None:
            hidden = self._decoder(**kwargs).last_hidden_state
            return self._head(hidden[selected]), selected
        return self.model(**kwargs).logits[selected], selected

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        logits, selected = self.target_logits(input_ids, targets, attention_mask, position_ids)
        return F.cross_entropy(logits.float(), targets[selected], reduction="sum")


def accumulate_gradients(model: nn.Module, micro_batches: Sequence[Batch], total_targets: int,
                         world_size: int = 1,
                         autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                         prepare: Callable[[int, Batch], Batch] | None = None) -> float:
    """Backpropagate one optimizer step's micro-batches; return this process's summed token loss.

    `model` is a TokenLoss, possibly inside DistributedDataParallel, which averages gradients over
    processes: scaling by world_size turns that average back into the sum the normalisation needs.
    """
    scale = world_size / max(total_targets, 1)
    sync = getattr(model, "no_sync", None)
    loss_sum = None
    for i, batch in enumerate(micro_batches):
        if prepare is not None:
            batch = prepare(i, batch)
        last = i == len(micro_batches) - 1
        # Only the last micro-batch's backward all-reduces; earlier ones just accumulate locally.
        ctx = sync() if sync is not None and not last else contextlib.nullcontext()
        with ctx:
            with autocast():
                loss = model(**batch.model_inputs())
            (loss * scale).backward()
        # Summed on the device and read once per step: a read per micro-batch would stall a GPU each time.
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
    return 0.0 if loss_sum is None else loss_sum.item()
