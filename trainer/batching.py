"""Which examples train together, and how they are laid out as tensors.

A step's *global batch* is a fixed set of examples that depends only on the seed, the epoch and the batch
index, never on the number of processes or accumulation steps. It is then cut into micro-batches (one per
process per accumulation step) and each micro-batch is laid out either padded or packed. Because the loss is
normalised by the global batch's target-token count (see loss.py), every layout gives the same gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trainer.data import IGNORE, Example

# Length grouping sorts within windows of this many global batches: enough to make batches uniform in length,
# few enough that the order stays random across the epoch.
MEGABATCH_FACTOR = 32


@dataclass
class Batch:
    input_ids: torch.Tensor
    targets: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None
    n_targets: int
    n_tokens: int  # real tokens, padding excluded

    def to(self, device: torch.device | str) -> Batch:
        def move(t):
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(move(self.input_ids), move(self.targets), move(self.attention_mask), move(self.position_ids),
                     self.n_targets, self.n_tokens)

    def model_inputs(self) -> dict[str, torch.Tensor | None]:
        return {"input_ids": self.input_ids, "targets": self.targets, "attention_mask": self.attention_mask,
                "position_ids": self.position_ids}


def global_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                   group_by_length: bool = True) -> list[list[int]]:
    """The epoch's global batches (lists of example indices); a trailing partial batch is dropped."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    n_batches = len(order) // batch_size
    if group_by_length:
        window = batch_size * MEGABATCH_FACTOR
        lengths_arr = np.asarray(lengths)
        chunks = []
        for start in range(0, len(order), window):
            chunk = order[start:start + window]
            # Stable sort, so equal lengths keep the random order rather than index order.
            chunks.append(chunk[np.argsort(-lengths_arr[chunk], kind="stable")])
        order = np.concatenate(chunks) if chunks else order
    batches = [order[i * batch_size:(i + 1) * batch_size].tolist() for i in range(n_batches)]
    if group_by_length:
        # Otherwise each window would start with its longest batch and the step time would saw-tooth.
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def split_micro_batches(indices: Sequence[int], lengths: Sequence[int], parts: int) -> list[list[int]]:
    """Cut a global batch into `parts` contiguous runs of similar length (as even in size as possible)."""
    ordered = sorted(indices, key=lambda i: (-lengths[i], i))
    base, extra = divmod(len(ordered), parts)
    out, start = [], 0
    for p in range(parts):
        size = base + (p < extra)
        out.append(ordered[start:start + size])
        start += size
    return out


def pad_batch(examples: Sequence[Example], pad_id: int) -> Batch:
    width = max(len(e) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e)
        input_ids[row, :n] = torch.tensor(e.input_ids)
        targets[row, :n] = torch.tensor(e.targets)
        attention_mask[row, :n] = 1
    return Batch(input_ids, targets, attention_mask, None, sum(e.n_targets for e in examples),
                 sum(len(e) for e in examples))


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing bin packing of example positions into rows of at most `capacity` tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def pack_batch(examples: Sequence[Example], pad_id: int, capacity: int) -> Batch:
    """Several examples per row, each with positions from 0, and no attention mask.

    transformers (>= 4.44 for flash attention, 5.x for sdpa/eager) reads a restart of position_ids as a new
    sequence: flash attention runs varlen, sdpa/eager get a block-diagonal causal mask. So no token attends
    across an example boundary. A row's padded tail goes on counting from its last example: nothing attends to
    padding that comes last, its targets are ignored, and a micro-batch whose rows hold one example each has no
    restart at all, so attention stays plain causal (sdpa's fast path) instead of a dense mask.
    """
    rows = pack_rows([len(e) for e in examples], capacity)
    width = max(sum(len(examples[i]) for i in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        col = 0
        for i in row:
            e = examples[i]
            n = len(e)
            input_ids[r, col:col + n] = torch.tensor(e.input_ids)
            targets[r, col:col + n] = torch.tensor(e.targets)
            position_ids[r, col:col + n] = torch.arange(n)
            col += n
        position_ids[r, col:] = torch.arange(n, n + width - col)
    return Batch(input_ids, targets, None, position_ids, sum(e.n_targets for e in examples),
                 sum(len(e) for e in examples))


def collate(examples: Sequence[Example], pad_id: int, packing: bool = False, capacity: int | None = None) -> Batch:
    if packing:
        return pack_batch(examples, pad_id, capacity or max(len(e) for e in examples))
    return pad_batch(examples, pad_id)
