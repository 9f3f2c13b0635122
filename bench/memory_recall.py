"""Memory recall: which retrieval brings back the turns that answer a question, and at what cost.

Data: tests/data/memory_recall/ (built by bench/memory_data.py; this bench reads only the committed files):
20 conversations of 205-235 turns over 13-17 dated sessions, half English, half Chinese, and 480 questions,
each labelled with the turns that answer it: single facts, dates, facts that changed (the newest turn is the
answer, the superseded one is labelled stale), multi-hop (two turns needed) and small talk (answer: nothing).

Each scheme indexes one conversation at a time (the user's memories) and answers that conversation's questions.
Figures, per language and overall, side by side, all measured in this run:
  R@2, R@5   the documents ranked 1-2 (1-5) hold every answering turn (multi-hop: both turns)
  R@1500     the documents that fit in a 1,500-character budget (in rank order; --budget) hold every answering turn
  ×orig      R@1500 over the original scheme's R@1500 (dense over pairs, as the server shipped; it injected the
             top 2: its R@2 and characters are printed below the table)
  ×top2      R@1500 over the original scheme as it shipped: its R@2
  turns      the share of a question's answering turns that the budget holds, averaged (partial credit where a
             question needs several turns; equals R@1500 where it needs one)
  strict     as R@1500, but a turn counts only if a returned text of it holds the answer's words (a scheme of single
             messages that returns the reply of the answering turn, not the message stating the fact, misses)
The product's rows: its ranking in process, and the product itself through its API (a real server with its
default settings; conversations imported with POST /sessions/{id}/import, questions asked with
GET /memories?query=). Its budget is its own, MEMORY_BUDGET_TOKENS=450 estimated tokens (about 1,550 characters of
English, 490 of Chinese), not --budget.
  chars      characters of memory text injected within the budget, on average (answerable questions)
  ms         one search within the budget, mean and p99 (the query's embedding excluded: a turn computes it
             anyway; its own cost is printed below)
  talk docs  memories injected for the small-talk questions, on average (they should get none)
A second table per language splits R@1500 by kind, with multi-hop counted both ways (all turns / any turn) and
"stale": the share of changed facts whose budget holds the superseded turn but not the current one.

Embeddings come from the server's own embedders (--embedder, default both, in one run): MiniLM (the packaged
all-MiniLM-L6-v2, loaded and run by server.memory.embed_worker) and the static model distilled from it
(EMBEDDER=static, server.memory.static_embedder). With both, a last table sets them side by side for the schemes
the server can run: R@budget of each, the difference static − MiniLM with its 95% interval over the questions
(paired: the same questions), one message's embedding time, and recall per millisecond of embedding.
MiniLM's document vectors are cached under ~/.cache/dongpo-chat/memory_recall/ (--no-cache).

    python bench/memory_recall.py              # everything: ~4 minutes on a quiet 2-core machine the first time
                                               # (longer while other jobs run), ~1 minute with the vectors cached
    python bench/memory_recall.py --limit 2    # 2 conversations per language
    python bench/memory_recall.py --embedder static --no-api
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for path in (str(REPO), str(BENCH)):
    if path not in sys.path:
        sys.path.insert(0, path)

from memory_api import retrieval_latency, through_api  # noqa: E402
from memory_schemes import ENCODERS, SCHEMAS, Dense, Encoder, Hybrid, Lexical, Product, load_cached  # noqa: E402

DATA = REPO / "tests" / "data" / "memory_recall"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dongpo-chat" / "memory_recall"
ORIGINAL = "original: dense · pairs"
PRODUCT_RANKING = "product ranking, in process"
SCHEMES = [  # (label, document schema, factory: encoder -> scheme); add a row to measure another scheme
    (ORIGINAL, "pairs", Dense), ("bm25 · pairs", "pairs", Lexical), ("hybrid · pairs", "pairs", Hybrid),
    ("dense · utterances", "utterances", Dense), ("bm25 · utterances", "utterances", Lexical),
    ("hybrid · utterances", "utterances", Hybrid), ("dense · windows3", "windows3", Dense),
    ("bm25 · windows3", "windows3", Lexical), ("hybrid · windows3", "windows3", Hybrid),
    ("hybrid · dated pairs", "dated pairs", Hybrid), (PRODUCT_RANKING, "named utterances", Product),
]
API = "product via the API (default)"
LANGS = {"en": "English", "zh": "Chinese", None: "Overall"}


def default_threads() -> int:
    """Every core when the machine is otherwise idle; one when it is busy (torch's threads spin at their barriers
    and, on a shared 2-core machine, two threads embed three times slower than one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores if os.getloadavg()[0] < cores - 0.5 else 1


def load(data: Path, limit: int | None) -> list[tuple[dict, list[dict], list[dict]]]:
    def rows(name):
        with open(data / f"{name}.jsonl", encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    turns, questions = defaultdict(list), defaultdict(list)
    for t in rows("turns"):
        turns[t["conv"]].append(t)
    for q in rows("questions"):
        questions[q["conv"]].append(q)
    convs, per_lang = [], defaultdict(int)
    for meta in rows("conversations"):
        per_lang[meta["lang"]] += 1
        if limit is None or per_lang[meta["lang"]] <= limit:
            convs.append((meta, turns[meta["conv"]], questions[meta["conv"]]))
    return convs


def prepare(convs, encoder: Encoder, use_cache: bool) -> float:
    """Embed every document the schemes will index (cached per conversation) and every question; returns seconds."""
    started = time.perf_counter()
    for meta, turns, _ in convs:
        texts = list(dict.fromkeys(d.embed or d.text for schema in dict.fromkeys(s for _, s, _ in SCHEMES)
                                   for d in SCHEMAS[schema](turns, meta)))
        key = hashlib.sha256("\0".join([str(encoder.info), *texts]).encode()).hexdigest()[:20]
        load_cached(encoder, texts, CACHE / f"{meta['conv']}-{key}.npz" if use_cache else None)
    encoder.embed([q["question"] for _, _, qs in convs for q in qs])
    return time.perf_counter() - started


def holds_evidence(q: dict, chosen: list[tuple[tuple[int, ...], str]]) -> bool:
    """Stricter than holding the answering turns: for each, a chosen text of that turn holds the answer's words
    (a scheme that returns the reply of the answering turn but not the message that says the fact misses)."""
    return all(any(ev["turn"] in turns and all(w.lower() in text.lower() for w in ev["contains"])
                   for turns, text in chosen) for ev in q["evidence"])


def score(q: dict, ranked, chosen) -> dict:
    answers, stale = set(q["answers"]), set(q["stale"])

    def held(docs):
        return {t for d in docs for t in d.turns}
    top2, top5, budget = held(ranked[:2]), held(ranked[:5]), held(chosen)
    return {"lang": q["lang"], "kind": q["kind"], "docs": len(chosen), "chars": sum(len(d.text) for d in chosen),
            "strict": holds_evidence(q, [(d.turns, d.text) for d in chosen]),
            "r2": answers <= top2, "r5": answers <= top5, "rb": answers <= budget, "any": bool(answers & budget),
            "turns": len(answers & budget) / len(answers) if answers else float("nan"),
            "stale": bool(stale & budget) and not answers <= budget, "top2_chars": sum(len(d.text) for d in ranked[:2])}


def run(convs, encoder: Encoder, budget: int) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = defaultdict(list)
    for meta, turns, questions in convs:
        docs = {name: build(turns, meta) for name, build in SCHEMAS.items()}
        for label, schema, factory in SCHEMES:
            scheme = factory(encoder)
            scheme.index(docs[schema])
            for q in questions:
                ranked = scheme.search(q["question"], None)
                started = time.perf_counter()
                chosen = scheme.search(q["question"], budget)
                ms = (time.perf_counter() - started) * 1000
                results[label].append({**score(q, ranked, chosen), "ms": ms})
    return results


def mean(rows: list[dict], key: str) -> float:
    values = [float(r[key]) for r in rows if key in r]
    return statistics.fmean(values) if values else float("nan")


def main_table(results, lang, budget: int) -> list[str]:
    base = [r for r in results[ORIGINAL] if lang in (None, r["lang"]) and r["kind"] != "smalltalk"]
    base_rb, shipped = mean(base, "rb"), mean(base, "r2")
    head = f"{'scheme':<31}{'R@2':>6}{'R@5':>6}{f'R@{budget}':>13}{'×orig':>7}{'×top2':>7}{'turns':>7}" \
           f"{'strict':>7}{'chars':>7}{'docs':>6}{'ms':>7}{'p99':>7}{'talk docs':>11}"
    lines = [head, "-" * len(head)]
    for label in results:
        rows = [r for r in results[label] if lang in (None, r["lang"])]
        answerable = [r for r in rows if r["kind"] != "smalltalk"]
        talk = [r for r in rows if r["kind"] == "smalltalk"]
        rb = mean(answerable, "rb")
        spread = 1.96 * (rb * (1 - rb) / max(len(answerable), 1)) ** 0.5
        lines.append(f"{label:<31}{mean(answerable, 'r2'):>6.2f}{mean(answerable, 'r5'):>6.2f}"
                     f"{f'{rb:.2f} ±{spread:.2f}':>13}{rb / base_rb if base_rb else float('nan'):>6.2f}×"
                     f"{rb / shipped if shipped else float('nan'):>6.2f}×"
                     f"{mean(answerable, 'turns'):>7.2f}{mean(answerable, 'strict'):>7.2f}"
                     f"{mean(answerable, 'chars'):>7.0f}{mean(answerable, 'docs'):>6.1f}"
                     f"{mean(rows, 'ms'):>7.2f}{float(np.percentile([r['ms'] for r in rows], 99)):>7.2f}"
                     f"{mean(talk, 'docs'):>11.1f}")
    lines.append(f"original as shipped (top 2): R@2 {mean(base, 'r2'):.2f}, "
                 f"{mean(base, 'top2_chars'):.0f} characters injected on average, 2 memories for every small talk")
    return lines


def kind_table(results, lang) -> list[str]:
    kinds = ["single", "date", "changed", "multihop"]
    head = f"{'R@budget by kind':<31}" + "".join(f"{k:>9}" for k in kinds) + f"{'mh any':>9}{'stale':>9}"
    lines = [head, "-" * len(head)]
    for label in results:
        rows = [r for r in results[label] if lang in (None, r["lang"])]
        by = {k: [r for r in rows if r["kind"] == k] for k in kinds}
        lines.append(f"{label:<31}" + "".join(f"{mean(by[k], 'rb'):>9.2f}" for k in kinds)
                     + f"{mean(by['multihop'], 'any'):>9.2f}{mean(by['changed'], 'stale'):>9.2f}")
    return lines


def report(convs, results, budget: int) -> None:
    for lang, name in LANGS.items():
        picked = [q for _, _, qs in convs for q in qs if lang in (None, q["lang"])]
        counts = defaultdict(int)
        for q in picked:
            counts[q["kind"]] += 1
        n_convs = sum(1 for meta, _, _ in convs if lang in (None, meta["lang"]))
        if not picked:  # e.g. LoCoMo (bench/locomo.py): English only
            continue
        print(f"\n{name}: {n_convs} conversations, {len(picked)} questions "
              f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
        print("\n".join(main_table(results, lang, budget)))
        print()
        print("\n".join(kind_table(results, lang)))


COMPARED = [ORIGINAL, "hybrid · utterances", PRODUCT_RANKING, API]


def paired(a: list[dict], b: list[dict], key: str) -> tuple[float, float]:
    """Mean of b − a over the same questions, and its 95% half-interval (normal approximation)."""
    diffs = [float(y[key]) - float(x[key]) for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2:
        return (diffs[0] if diffs else float("nan")), float("nan")
    return statistics.fmean(diffs), 1.96 * statistics.stdev(diffs) / len(diffs) ** 0.5


def compare(per: dict[str, tuple[dict, list[float]]], budget: int) -> None:
    (base_name, (base, base_ms)), (other_name, (other, other_ms)) = list(per.items())[:2]
    one = {base_name: statistics.median(base_ms), other_name: statistics.median(other_ms)}
    print(f"\n{other_name} against {base_name}: R@{budget} on the same questions (answerable ones), "
          f"one message's embedding {one[base_name]:.2f} ms vs {one[other_name]:.2f} ms (median)")
    head = (f"{'':10}{'scheme':<31}{base_name:>8}{other_name:>8}{'Δ (95%)':>16}"
            f"{f'{base_name} R/ms':>13}{f'{other_name} R/ms':>13}")
    print(head + "\n" + "-" * len(head))
    for lang, name in LANGS.items():
        for label in COMPARED:
            if label not in base or label not in other:
                continue

            def rows(results, label=label, lang=lang):
                return [r for r in results[label] if lang in (None, r["lang"]) and r["kind"] != "smalltalk"]
            a, b = rows(base), rows(other)
            if not a:
                continue
            delta, spread = paired(a, b, "rb")
            ra, rb = mean(a, "rb"), mean(b, "rb")
            print(f"{name:<10}{label:<31}{ra:>8.3f}{rb:>8.3f}{f'{delta:+.3f} ±{spread:.3f}':>16}"
                  f"{ra / one[base_name]:>13.3f}{rb / one[other_name]:>13.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="conversations per language (default: all)")
    parser.add_argument("--budget", type=int, default=1500, help="characters of memories per prompt")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for MiniLM (default: every core if the machine is idle, else 1)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--no-cache", action="store_true", help="embed the documents again")
    parser.add_argument("--no-api", action="store_true", help="skip the product measured through a real server")
    parser.add_argument("--embedder", choices=("both", *ENCODERS), default="both",
                        help="the server's embedders to measure (default: both, compared at the end)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    convs = load(args.data, args.limit)
    begun = time.perf_counter()
    threads = args.threads or default_threads()
    per: dict[str, tuple[dict, list[float]]] = {}
    for kind in (list(ENCODERS) if args.embedder == "both" else [args.embedder]):
        print(f"\n======== embedder: {kind} ========", flush=True)
        per[kind] = measure(kind, convs, args, threads)
    if len(per) > 1:
        compare(per, args.budget)
    p50, p99 = retrieval_latency(convs)
    print(f"\nretrieval at 10,000 memories of one user (embedded store, search + fusion + budget, the message's "
          f"embedding excluded): p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p99 <= 5 ms)")
    print(f"\ntotal {time.perf_counter() - begun:.0f} s")


def measure(kind: str, convs, args, threads: int) -> tuple[dict, list[float]]:
    """Every scheme with one embedder: its results per scheme, and one message's embedding times (ms)."""
    started = time.perf_counter()
    encoder = Encoder(threads=threads) if kind == "minilm" else ENCODERS[kind]()
    print(f"{kind} loaded in {time.perf_counter() - started:.1f} s ({encoder.info['precision']}, "
          f"{threads if kind == 'minilm' else 1} thread(s)); embedding documents and questions ...", flush=True)
    seconds = prepare(convs, encoder, not args.no_cache and kind == "minilm")
    sample = [q["question"] for _, _, qs in convs for q in qs][:40]
    encoder.time_one(sample[:5])  # warm-up
    one = encoder.time_one(sample)
    print(f"embedded {len(encoder.vectors)} texts in {seconds:.1f} s; one question alone: "
          f"{statistics.median(one):.2f} ms median, {max(one):.2f} ms max (not counted in 'ms' below)", flush=True)
    started = time.perf_counter()
    results = run(convs, encoder, args.budget)
    print(f"{len(SCHEMES)} schemes × {sum(len(qs) for _, _, qs in convs)} questions in "
          f"{time.perf_counter() - started:.1f} s")
    if not args.no_api:
        started = time.perf_counter()
        results[API], import_seconds = through_api(convs, holds_evidence, embedder=kind)
        print(f"product via the API: {sum(len(t) for _, t, _ in convs)} turns imported in {import_seconds:.1f} s, "
              f"questions asked in {time.perf_counter() - started - import_seconds:.1f} s ('ms' is the HTTP call, "
              "the query's embedding included)")
    report(convs, results, args.budget)
    return results, one


if __name__ == "__main__":
    main()
