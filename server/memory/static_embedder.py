"""A static embedding model distilled from the shipped MiniLM, and the Embedder that runs it (EMBEDDER=static).

`model2vec`'s `distill` passes every token of MiniLM's vocabulary through MiniLM once, reduces the outputs to
256 dimensions (PCA) and keeps one vector per token: embedding a message is then a tokenisation and a mean of
rows, ~0.1 ms instead of MiniLM's ~8 ms, with about the same recall on the memory bench (README).

The model is built from the packaged all-MiniLM-L6-v2 offline (no download), by `scripts/setup.sh` or on the
first start that needs it, and cached under the virtualenv (`<venv>/var/dongpo-chat/static-embedder/`; a
STATIC_EMBED_DIR setting moves it). The cache key is a digest of the source model's files, the model2vec
version and the settings of the distillation, so a changed source is a new build and never a stale one. Two
processes building at once (two test workers, two replicas) take turns on a file lock; the build is written
to a temporary folder and renamed into place, so a reader never sees half a model.

    python -m server.memory.static_embedder          # build (if needed) and print the model's folder
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PCA_DIMS = 256
DEFAULT_SOURCE_NAME = "all-MiniLM-L6-v2"  # the packaged model's folder is just `model`
# token_remove_pattern None: every token of MiniLM's vocabulary kept. Removing its [unused*] tokens (model2vec's
# default) rebuilds the tokenizer, and with this transformers its ids no longer match the vectors' rows (a
# "kitten" then scores with "automobile", not "cat").
RECIPE = {"pca_dims": PCA_DIMS, "sif_coefficient": 1e-4, "quantize_to": "float16", "pooling": "mean",
          "token_remove_pattern": None, "format": "npy"}
# A turn's message (a few hundred characters at most) is embedded inline on the event loop: ~0.1 ms, less
# than a hop to a thread and back. Batches larger than this (imports, the knowledge base) go to a thread.
INLINE_MAX_CHARS = 20_000
MAX_TOKENS = 512  # what model2vec reads of a text, as MiniLM's own limit


def default_cache_root() -> Path:
    """Under the virtualenv, which `scripts/setup.sh` makes (and a fresh clone makes anew); else the user cache."""
    configured = os.environ.get("STATIC_EMBED_DIR")
    if configured:
        return Path(configured)
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "var" / "dongpo-chat" / "static-embedder"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "dongpo-chat" / "static-embedder"


def _source_digest(source: Path) -> str:
    """Every file of the source model (weights, tokenizer, configs), by content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(source)).encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def build_key(source: Path) -> str:
    recipe = json.dumps({**RECIPE, "model2vec": metadata.version("model2vec"), "source": _source_digest(source)},
                        sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def build(source: Path, target: Path) -> None:
    """Distil `source` into `target` (which must not exist yet): offline, deterministic, on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from model2vec.distill import distill

    started = time.perf_counter()
    model = distill(model_name=str(source), device="cpu", pca_dims=RECIPE["pca_dims"],
                    sif_coefficient=RECIPE["sif_coefficient"], quantize_to=RECIPE["quantize_to"],
                    pooling=RECIPE["pooling"], token_remove_pattern=RECIPE["token_remove_pattern"])
    model.tokenizer.no_padding()  # see _load
    model.tokenizer.no_truncation()
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        # Not model2vec's save_pretrained: with this transformers its saved rows come back permuted against the
        # saved tokenizer's ids (what was close in memory is unrelated after loading). The token vectors, their
        # weights and the tokenizer as they are in memory, and the StaticModel constructor at load, keep them paired.
        np.save(staging / "embeddings.npy", np.asarray(model.embedding))
        if model.weights is not None:
            np.save(staging / "weights.npy", np.asarray(model.weights))
        model.tokenizer.save(str(staging / "tokenizer.json"))
        (staging / "dongpo-build.json").write_text(json.dumps(
            {"source": str(source), **RECIPE, "model2vec": metadata.version("model2vec"),
             "seconds": round(time.perf_counter() - started, 1)}, indent=1), encoding="utf-8")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def ensure_model(source: str | Path | None = None, root: Path | None = None) -> Path:
    """The folder of the static model distilled from `source` (default: the packaged MiniLM), built if missing."""
    from server.memory.embedder import default_model_path

    name = Path(source).name if source else DEFAULT_SOURCE_NAME
    source = Path(source) if source else default_model_path()
    root = root or default_cache_root()
    target = root / f"{name}-pca{PCA_DIMS}-{build_key(source)}"
    if (target / "dongpo-build.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait, then use its build
        if not (target / "dongpo-build.json").exists():
            log.warning("building the static embedding model from %s (once; about half a minute)", source)
            print(f"building the static embedding model from {source.name} into {target} ...", file=sys.stderr,
                  flush=True)
            build(source, target)
    return target


def model_id(source_name: str, embeddings: np.ndarray) -> str:
    """What the vectors are: the recipe, and a digest of the token vectors (the same build, the same id)."""
    # with the version of how texts are pooled (2: no padding tokens): the same token vectors, pooled otherwise,
    # are other vectors
    digest = hashlib.sha256(b"pool-v2\0" + np.ascontiguousarray(embeddings).tobytes()).hexdigest()[:10]
    return f"static:{source_name}-pca{embeddings.shape[1]}:{digest}"


def encode(model, texts: Sequence[str]) -> np.ndarray:
    # One batch straight through the model's own tokenise-and-pool step: `encode()` adds batching, a progress
    # bar object and a multiprocessing check around it, which cost more than the pooling (~60 of ~200 µs)
    batch = getattr(model, "_encode_batch", None)
    if batch is not None:
        vectors = batch(list(texts), MAX_TOKENS)
    else:  # another model2vec version: the public call, without its worker processes (a fork copies the server)
        vectors = model.encode(list(texts), max_length=MAX_TOKENS, show_progress_bar=False, use_multiprocessing=False)
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class StaticEmbedder:
    """The Embedder for EMBEDDER=static. A message is embedded on the event loop itself (no hand-off: it costs
    less than one); large batches go to one thread, so a knowledge-base import never stalls the loop."""

    def __init__(self, source: str | Path | None = None, root: Path | None = None,
                 inline_max_chars: int = INLINE_MAX_CHARS):
        self.source = source
        self.root = root
        self.inline_max_chars = inline_max_chars
        self.model = None
        self.dim = 0
        self.id = ""
        self.path: Path | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-static")
        self.path = await loop.run_in_executor(self._executor, ensure_model, self.source, self.root)
        self.model = await loop.run_in_executor(self._executor, _load, self.path)
        self.dim = int(self.model.embedding.shape[1])
        source_name = self.path.name.split(f"-pca{PCA_DIMS}-")[0]
        self.id = model_id(source_name, self.model.embedding)
        log.info("static embedding model %s: dim %d (%s)", self.path, self.dim, self.id)

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def describe(self) -> dict:
        return {"kind": "static", "id": self.id, "dim": self.dim, "path": str(self.path)}

    async def embed(self, texts: Sequence[str], background: bool = False) -> np.ndarray:
        if self.model is None or self._executor is None:
            raise RuntimeError("embedder not started")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if sum(len(t) for t in texts) <= self.inline_max_chars:
            return encode(self.model, texts)
        return await asyncio.get_running_loop().run_in_executor(self._executor, encode, self.model, list(texts))


def _load(path: Path):
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    weights = path / "weights.npy"
    model = StaticModel(np.load(path / "embeddings.npy"), Tokenizer.from_file(str(path / "tokenizer.json")),
                        normalize=True, weights=np.load(weights) if weights.exists() else None)
    # The distilled model keeps MiniLM's tokenizer settings, padding to 128 tokens among them: every text would
    # then average in ~100 [PAD] vectors and all vectors look alike. model2vec truncates by itself (MAX_TOKENS).
    model.tokenizer.no_padding()
    model.tokenizer.no_truncation()
    # float16 on disk (half the size); float32 in memory: numpy's float16 means are several times slower
    with contextlib.suppress(AttributeError):
        model.embedding = np.asarray(model.embedding, dtype=np.float32)
        if model.weights is not None:
            model.weights = np.asarray(model.weights, dtype=np.float32)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="build (if needed) the static embedding model; print its folder")
    parser.add_argument("--source", default=None, help="a sentence-transformers model folder (default: the "
                                                       "packaged all-MiniLM-L6-v2)")
    parser.add_argument("--root", type=Path, default=None, help=f"cache folder (default: {default_cache_root()})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(ensure_model(args.source, args.root))


if __name__ == "__main__":
    main()
