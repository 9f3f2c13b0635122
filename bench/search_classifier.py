"""Quality and speed of the "does this need the web?" classifier (server/search/classifier.py).

Quality: nested, repeated, stratified cross-validation of "search" on the labelled set
(tests/data/search_labels.jsonl): in every outer fold the head and its precision-first threshold are fitted on
the training part only, then scored on the held-out part; precision and recall are pooled per repeat and
reported as mean ± std over repeats, overall and per language.

Speed: the per-message decision of the shipped head (`LinearHeadClassifier.decide` on a 384-d vector), timed one
call at a time, p50/p99/max — excluding the embedding, which the turn computes anyway for memory retrieval.
Baseline in the same run: scikit-learn's `LogisticRegression.predict_proba` on one vector, the obvious way to
serve the same head; and, for scale, embedding one message (the cost the classifier does not add).

    python bench/search_classifier.py                 # 5 repeats, 20,000 timed decisions
    python bench/search_classifier.py --repeats 2     # quicker

Targets: precision >= 0.90 at recall >= 0.80; decision p99 < 2 ms.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    us = np.array(samples_ns, dtype=np.float64) / 1000.0
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)), "max": float(us.max())}


def time_calls(fn, vectors: np.ndarray, n: int) -> list[int]:
    samples = []
    for i in range(n):
        v = vectors[i % len(vectors)]
        started = time.perf_counter_ns()
        fn(v)
        samples.append(time.perf_counter_ns() - started)
    return samples


def main(argv: list[str] | None = None) -> int:
    from scripts.train_classifier import (
        DEFAULT_C,
        DEFAULT_DATA,
        DEFAULT_TARGET_PRECISION,
        cross_validate,
        embed_texts,
        load_examples,
    )
    from server.search.classifier import LinearHeadClassifier

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--decisions", type=int, default=20_000)
    args = parser.parse_args(argv)

    examples = load_examples(args.data)
    started = time.perf_counter()
    X = embed_texts([e.text for e in examples])
    embed_s = time.perf_counter() - started
    y = np.array([e.search for e in examples], dtype=int)
    print(f"labelled set: {len(examples)} messages ({int(y.sum())} search; "
          f"{sum(e.lang == 'en' for e in examples)} English, {sum(e.lang == 'zh' for e in examples)} Chinese)")

    cv = cross_validate(X, y, examples, C=DEFAULT_C, folds=args.folds, repeats=args.repeats,
                        target_precision=DEFAULT_TARGET_PRECISION)
    s = cv.summary()
    print(f"\nnested {args.repeats}x{args.folds}-fold cross-validation of 'search' "
          f"(threshold tuned for precision >= {DEFAULT_TARGET_PRECISION} inside each training split):")
    print(f"  all      precision {s['precision']:.3f} ± {s['precision_std']:.3f}   "
          f"recall {s['recall']:.3f} ± {s['recall_std']:.3f}   (threshold mean {s['threshold_mean']:.3f})")
    for lang, c in sorted(cv.by_lang.items()):
        print(f"  {lang:<8} precision {c.precision:.3f}           recall {c.recall:.3f}   (pooled over repeats)")
    quality_ok = s["precision"] >= 0.90 and s["recall"] >= 0.80

    head = LinearHeadClassifier.load()
    from sklearn.linear_model import LogisticRegression

    baseline = LogisticRegression()
    baseline.classes_ = np.array([0, 1])
    baseline.coef_ = head.weights[None, :].astype(np.float64)
    baseline.intercept_ = np.array([head.bias])

    time_calls(head.decide, X, 2000)  # warm-up
    ours = percentiles(time_calls(head.decide, X, args.decisions))
    sk = percentiles(time_calls(lambda v: baseline.predict_proba(v[None, :]), X, max(2000, args.decisions // 10)))
    print(f"\ndecision latency, shipped head, {args.decisions} calls one at a time (embedding excluded):")
    print(f"  ours      p50 {ours['p50']:8.1f} µs   p99 {ours['p99']:8.1f} µs   max {ours['max']:8.1f} µs")
    print(f"  sklearn   p50 {sk['p50']:8.1f} µs   p99 {sk['p99']:8.1f} µs   (predict_proba on one vector)")
    print(f"  ratio     sklearn / ours: p50 {sk['p50'] / ours['p50']:.1f}x, p99 {sk['p99'] / ours['p99']:.1f}x")
    print(f"  for scale: embedding the {len(examples)} messages took {embed_s:.1f}s "
          f"({embed_s / len(examples) * 1000:.1f} ms a message, batched, incl. model load)")
    speed_ok = ours["p99"] < 2000

    print(f"\ntarget precision >= 0.90 at recall >= 0.80: {'PASS' if quality_ok else 'FAIL'}")
    print(f"target decision p99 < 2 ms: {'PASS' if speed_ok else 'FAIL'}")
    return 0 if quality_ok and speed_ok else 1


if __name__ == "__main__":
    sys.exit(main())
