"""Nested, repeated, stratified cross-validation of the search head, pooled per language and per kind.

In every outer fold the head (vectorizers, weights and its per-language thresholds, themselves chosen by an
inner cross-validation) is fitted on the training part only and decides the held-out part exactly as the
server would (`LinearHeadClassifier.decide` on the vector, the text and the context).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from server.search.training import (
    DEFAULT_C,
    DEFAULT_TARGET_PRECISION,
    EMBEDDING_SCALE,
    PERSONA_KINDS,
    Matrices,
    train_head,
)


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        self.tp += int(np.sum(truth & predicted))
        self.fp += int(np.sum(~truth & predicted))
        self.fn += int(np.sum(truth & ~predicted))
        self.tn += int(np.sum(~truth & ~predicted))

    @property
    def searched(self) -> int:
        return self.tp + self.fp

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


@dataclass
class CrossValidation:
    precision: list[float] = field(default_factory=list)  # one per repeat
    recall: list[float] = field(default_factory=list)
    lang_runs: dict[str, list[Counts]] = field(default_factory=dict)  # one Counts per repeat
    by_lang: dict[str, Counts] = field(default_factory=dict)  # pooled over the repeats
    by_kind: dict[str, Counts] = field(default_factory=dict)
    thresholds: list[dict[str, float]] = field(default_factory=list)

    @property
    def persona(self) -> Counts:
        """Requests to the bot itself (persona, creative, games): the share searched should be ~0."""
        pooled = Counts()
        for kind, c in self.by_kind.items():
            if kind in PERSONA_KINDS:
                pooled.tp, pooled.fp, pooled.fn, pooled.tn = (pooled.tp + c.tp, pooled.fp + c.fp, pooled.fn + c.fn,
                                                              pooled.tn + c.tn)
        return pooled

    def lang_summary(self, lang: str) -> dict[str, float]:
        runs = self.lang_runs.get(lang, [])
        p, r = [c.precision for c in runs], [c.recall for c in runs]
        return {"precision": float(np.mean(p)), "precision_std": float(np.std(p)),
                "recall": float(np.mean(r)), "recall_std": float(np.std(r))}

    def summary(self) -> dict:
        persona = self.persona
        return {"precision": round(float(np.mean(self.precision)), 4),
                "precision_std": round(float(np.std(self.precision)), 4),
                "recall": round(float(np.mean(self.recall)), 4), "recall_std": round(float(np.std(self.recall)), 4),
                "by_lang": {lang: {k: round(v, 4) for k, v in self.lang_summary(lang).items()}
                            for lang in sorted(self.lang_runs)},
                "persona_searched": round(persona.searched / persona.total, 4) if persona.total else 0.0,
                "repeats": len(self.precision)}


def cross_validate(m: Matrices, *, C: float = DEFAULT_C, scale: float = EMBEDDING_SCALE, folds: int = 5,
                   repeats: int = 3, target_precision: float = DEFAULT_TARGET_PRECISION,
                   seed: int = 0) -> CrossValidation:
    from sklearn.model_selection import StratifiedKFold

    result = CrossValidation()
    truth_all = m.y.astype(bool)
    labelled_langs = np.array([e.lang for e in m.examples])
    kinds = np.array([e.kind for e in m.examples])
    for repeat in range(repeats):
        counts, per_lang = Counts(), {}
        outer = StratifiedKFold(folds, shuffle=True, random_state=seed + repeat)
        for train, test in outer.split(m.embeddings, m.y):
            head = train_head(m, train, C=C, scale=scale, folds=folds, target_precision=target_precision,
                              seed=seed + repeat)
            result.thresholds.append(head.thresholds)
            predicted = np.array([head.decide(m.embeddings[i], m.examples[i].text, m.examples[i].context).search
                                  for i in test])
            truth = truth_all[test]
            counts.add(truth, predicted)
            for groups, table in ((labelled_langs[test], result.by_lang), (kinds[test], result.by_kind),
                                  (labelled_langs[test], per_lang)):
                for group in np.unique(groups):
                    mask = groups == group
                    table.setdefault(str(group), Counts()).add(truth[mask], predicted[mask])
        result.precision.append(counts.precision)
        result.recall.append(counts.recall)
        for lang, c in per_lang.items():
            result.lang_runs.setdefault(lang, []).append(c)
    return result


def report(cv: CrossValidation, out) -> None:
    s = cv.summary()
    print(f"nested {s['repeats']}x cross-validated 'search': precision {s['precision']:.3f} ± {s['precision_std']:.3f}"
          f", recall {s['recall']:.3f} ± {s['recall_std']:.3f}", file=out)
    for lang, figures in s["by_lang"].items():
        print(f"  {lang:<8} precision {figures['precision']:.3f} ± {figures['precision_std']:.3f}   "
              f"recall {figures['recall']:.3f} ± {figures['recall_std']:.3f}", file=out)
    persona = cv.persona
    print(f"  persona/creative requests searched: {persona.searched} of {persona.total} "
          f"({s['persona_searched']:.1%}, counts summed over the repeats)", file=out)
    print("  per group, counts summed over the repeats:", file=out)
    for name, table in (("language", cv.by_lang), ("kind", cv.by_kind)):
        for group, c in sorted(table.items()):
            print(f"  {name} {group:<22} searched {c.searched:>4}  missed {c.fn:>3}  wrongly searched {c.fp:>3}"
                  f"  of {c.total:>4}", file=out)
