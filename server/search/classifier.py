"""Does this message need the web? — a logistic-regression head over the message embedding.

The turn already embedded the message for memory retrieval, so deciding costs one 384-wide dot product
(microseconds) instead of an LLM call. The head ships in the package (`head.npz`, a few KB) and is retrained
with `python -m scripts.train_classifier`. Its threshold was tuned for precision: when unsure, the
classifier says no, because a needless search fills the reply with odd results.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from server.search.protocols import Decision

DEFAULT_HEAD = Path(__file__).with_name("head.npz")
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


class HeadMismatch(ValueError):
    """The head was trained on another embedding model than the one the server uses."""


class LinearHeadClassifier:
    def __init__(self, weights: np.ndarray, bias: float, threshold: float, meta: dict | None = None):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"search threshold must be between 0 and 1, got {threshold}")
        self.weights = np.ascontiguousarray(weights, dtype=np.float32).ravel()
        self.bias = float(bias)
        self.threshold = float(threshold)
        self.dim = int(self.weights.shape[0])
        self.meta = meta or {}
        # compare logits, not probabilities: no exp() on the hot path
        self._logit_threshold = math.log(threshold / (1.0 - threshold))

    @classmethod
    def load(cls, path: Path | None = None, threshold: float | None = None) -> LinearHeadClassifier:
        with np.load(path or DEFAULT_HEAD, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
            return cls(data["weights"], float(data["bias"]),
                       float(data["threshold"]) if threshold is None else threshold, meta)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez(fh, weights=self.weights, bias=np.float32(self.bias), threshold=np.float32(self.threshold),
                     meta=np.array(json.dumps(self.meta, ensure_ascii=False)))

    @property
    def embedder(self) -> str:
        return self.meta.get("embedder", DEFAULT_EMBEDDER)

    def check_embedder(self, embed_model: str | None) -> None:
        """Refuse a head trained on other embeddings: its scores would be noise, not a decision."""
        configured = Path(embed_model).name if embed_model else DEFAULT_EMBEDDER
        if Path(self.embedder).name != configured:
            raise HeadMismatch(
                f"the search classifier was trained on {self.embedder} embeddings but EMBED_MODEL is {configured}: "
                "retrain it with `python -m scripts.train_classifier --embed-model <model> --out head.npz` "
                "and set SEARCH_CLASSIFIER to that file")

    def decide(self, vector: np.ndarray) -> Decision:
        if vector.shape != (self.dim,):
            raise HeadMismatch(f"the search classifier expects {self.dim}-d embeddings, got shape {vector.shape}")
        z = float(np.dot(self.weights, vector)) + self.bias
        return Decision(z >= self._logit_threshold, 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z)))))
