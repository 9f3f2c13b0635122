"""`python -m server.search.train`: retrain the "does this need the web?" head, without touching the package.

Reads the shipped labelled messages (JSON lines: {"text", "search": bool, "lang"?, "kind"?, "context"?}), any
files given with --add, and the corrections users gave through `POST /sessions/{id}/turns/{turn}/search-feedback`
(<DATA_DIR>/search/feedback.jsonl); a later file's label wins for the same message. It embeds them with the
server's embedder, reports nested cross-validated precision and recall per language (the thresholds are tuned
inside each training split, so the figures are not tuned on the messages they score), fits the head on every
message and writes it to <DATA_DIR>/search/head.npz, which the server loads at its next start instead of the
shipped one (SEARCH_CLASSIFIER, when set, still wins).

    python -m server.search.train                         # shipped set + feedback → data/search/head.npz
    python -m server.search.train --add my_labels.jsonl   # plus your own labels
    python -m server.search.train --embedder static       # for EMBEDDER=static
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from server.search.classifier import DEFAULT_HEAD, USER_HEAD, embedder_name
from server.search.evaluation import cross_validate, report
from server.search.feedback import FEEDBACK_FILE
from server.search.training import (
    DEFAULT_C,
    DEFAULT_TARGET_PRECISION,
    EMBEDDING_SCALE,
    SHIPPED_DATA,
    EmbedFn,
    Matrices,
    load_examples,
    merge,
    train_head,
)

EMBEDDERS = ("minilm", "static")


def embed_function(kind: str, embed_model: str | None = None) -> tuple[EmbedFn, str]:
    """(texts → the vectors a turn would get, the embedder's id) for EMBEDDER=`kind`."""
    if kind == "static":
        try:
            from server.memory import static_embedder as static
        except ImportError:
            raise SystemExit("EMBEDDER=static is not available in this installation") from None
        path = static.ensure_model(embed_model, None)
        model = static._load(path)
        source = path.name.split(f"-pca{static.PCA_DIMS}-")[0]
        return (lambda texts: static.encode(model, list(texts))), static.model_id(source, model.embedding)
    from sentence_transformers import SentenceTransformer

    from server.memory.embedder import default_model_path

    source = str(embed_model or default_model_path())
    model = SentenceTransformer(source, device="cpu")

    def embed(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(model.encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                       show_progress_bar=False), dtype=np.float32)

    return embed, f"sentence-transformers:{Path(source).name}"


def _server_defaults() -> tuple[Path, str, str | None]:
    """DATA_DIR, the embedder kind and EMBED_MODEL as the server would read them (.env included)."""
    try:
        from server.config import Settings

        settings = Settings()
    except Exception:  # a half-configured .env should not stop an offline tool
        return Path("data"), "minilm", None
    kind = str(getattr(settings, "embedder", "minilm"))
    return settings.data_dir, kind if kind in EMBEDDERS else "minilm", settings.embed_model


def _parser(data_dir: Path, embedder: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m server.search.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHIPPED_DATA, help="the base labelled set (default: the shipped one)")
    p.add_argument("--add", type=Path, action="append", default=[], metavar="FILE",
                   help="more labelled JSON lines (repeatable); their labels win over the base set's")
    p.add_argument("--feedback", type=Path, default=data_dir / FEEDBACK_FILE,
                   help="corrections collected from use (read when it exists)")
    p.add_argument("--no-feedback", action="store_true", help="ignore the corrections file")
    p.add_argument("--out", type=Path, default=data_dir / USER_HEAD, help="where to write the head (.npz)")
    p.add_argument("--embedder", choices=EMBEDDERS, default=embedder, help="default: the server's EMBEDDER")
    p.add_argument("--embed-model", default=None, help="EMBED_MODEL, when the server sets one")
    p.add_argument("--target-precision", type=float, default=DEFAULT_TARGET_PRECISION)
    p.add_argument("--C", type=float, default=DEFAULT_C, help="inverse L2 regularisation strength")
    p.add_argument("--embedding-scale", type=float, default=EMBEDDING_SCALE)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2, help="repeats of the nested cross-validation (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    data_dir, embedder, embed_model = _server_defaults()
    args = _parser(data_dir, embedder).parse_args(argv)
    if not 0 < args.target_precision < 1 or args.folds < 2 or args.repeats < 0:
        raise SystemExit("need 0 < --target-precision < 1, --folds >= 2 and --repeats >= 0")
    if args.out.resolve() == DEFAULT_HEAD.resolve():
        print("note: writing over the shipped head", file=sys.stderr)
    sets = [load_examples(args.data), *(load_examples(path) for path in args.add)]
    if not args.no_feedback:
        sets.append(load_examples(args.feedback, missing_ok=True))
    examples = merge(*sets)
    started = time.perf_counter()
    embed, embedder_id = embed_function(args.embedder, args.embed_model or embed_model)
    m = Matrices(embed([e.text for e in examples]), examples)
    print(f"embedded {len(examples)} messages ({int(m.y.sum())} search) with {embedder_id} in "
          f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
    settings = dict(C=args.C, scale=args.embedding_scale, folds=args.folds, target_precision=args.target_precision,
                    seed=args.seed)
    cv = cross_validate(m, repeats=args.repeats, **settings) if args.repeats else None
    meta = {"embedder": embedder_name(embedder_id), "embedder_id": embedder_id, "dim": int(m.embeddings.shape[1]),
            "examples": len(examples), "C": args.C, "embedding_scale": args.embedding_scale,
            "target_precision": args.target_precision,
            "data": [args.data.name, *(p.name for p in args.add)] + ([] if args.no_feedback else ["feedback"])}
    head = train_head(m, **settings, meta=meta)
    head.save(args.out)
    if cv is not None:
        report(cv, sys.stdout)
    print(f"thresholds: {', '.join(f'{k} {v:.3f}' for k, v in head.thresholds.items())}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
