"""The model side of an embedding lane, run in a worker process (or thread) of its own.

In a process, encoding never competes with the event loop for the GIL, and the lane for background
work can run at a lower CPU priority without holding the loop's lock while it waits for a core.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import numpy as np

# one model per lane: in thread mode both lanes live in this module, and a tokenizer must not be
# shared between threads
_models: dict[str, object] = {}


def _exit_with(parent: int) -> None:
    # A worker outlives a SIGKILLed server otherwise, still encoding what was queued for it.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def load(lane: str, model_name: str, device: str | None, threads: int, nice: int = 0,
         parent: int | None = None) -> int:
    """Load the lane's model; return the embedding dimension. `parent`: the server's pid, when this is
    a worker process of its own, which then exits as soon as the server is gone."""
    import torch
    from sentence_transformers import SentenceTransformer

    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="parent-watch").start()
    torch.set_num_threads(threads)
    if nice:
        os.nice(nice)
    model = _models[lane] = SentenceTransformer(model_name, device=device)
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get_dim())


def encode(lane: str, texts: Sequence[str], batch_size: int) -> np.ndarray:
    vectors = _models[lane].encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
