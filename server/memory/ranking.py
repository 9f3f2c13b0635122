"""Which memories a message gets: dense and word rankings fused, a relevance floor, a token budget, dates.

The choices here were made by measurement (bench/memory_recall.py), not by taste:
- Rankings are fused by weighted reciprocal rank. The weight follows the message's script: MiniLM reads
  English well and Chinese poorly, and BM25 over character bigrams is the better judge of Chinese. For Latin
  script both count the same: our own English conversations (paraphrased questions) favour the dense ranking
  and LoCoMo (public, questions in the conversation's words; `bench/locomo.py`) the word ranking, so equal
  weights, the untuned default of reciprocal rank fusion, rather than a weight fitted to either.
- Its constant k is 10, not the customary 60: with two rankings and a budget of ~20 memories, a smaller k lets
  the top of either ranking in ahead of memories both put mid-way. Every k from 2 to 10 did better than 60 on
  both English sets (ours 0.85 vs 0.81, LoCoMo 0.64 vs 0.61 within 1,500 characters), Chinese the same.
- Tried and left out (same budget, through the API): fusing standard scores (z) instead of ranks, our English
  0.88 vs 0.86 but Chinese 0.39 vs 0.46 (MiniLM's Chinese ranking is noise that rank fusion damps better),
  LoCoMo 0.72 both (share of answering turns); with it, the memory before each in its chat as a second, lighter
  field of the word index: LoCoMo 0.74, ours 0.85 / 0.43, and a millisecond more at p99 with 10,000 memories.
- A message that speaks of someone by relation ("my uncle's job") adds a third ranking, the memories that name
  that person (`server.memory.people`), weighed as the dense one: the answer names the person, not the relation.
- The floor is on the message: small talk ("ok", "thanks!", "你好", "sounds good, see you later!", see
  `server.store.lexical.small_talk`) gets no memories. Scores could not do it: "good morning!" is closer to a
  memory that says good morning than most questions are to their answers.
- Selection fills a budget of tokens in rank order, instead of a fixed count: many short memories, or a few
  long ones. 450 estimated tokens is about 1,550 characters of English on both sets, under the 1,600 the
  product allows itself per prompt (400 took 1,370, and held the answer a little less often on all three).
- The prompt lists the chosen memories oldest first, each with its date (`server.prompt.memory_order`), so
  that where a fact changed ("I moved to Paris") the newest statement is read last, nearest the question.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from server.protocols import Hit
from server.store.lexical import CJK, small_talk

_CJK = re.compile(f"[{CJK}]")

# Ranks beyond this are not worth fusing: a memory that neither ranking puts this high is not chosen.
DEPTH = 50


@dataclass(frozen=True, slots=True)
class RankingPolicy:
    budget_tokens: int = 450
    rrf_k: float = 10.0
    lexical_weight_latin: float = 1.0  # weight of the word ranking for a message in Latin script
    lexical_weight_cjk: float = 8.0  # ... and in CJK script (the dense ranking's weight is 1)


def worth_recalling(message: str) -> bool:
    """The floor: small talk (no content word, or only small-talk phrases) recalls nothing."""
    return not small_talk(message)


def cjk_share(text: str) -> float:
    letters = sum(1 for c in text if c.isalpha())
    return len(_CJK.findall(text)) / letters if letters else 0.0


def fuse(dense: Sequence[Hit], lexical: Sequence[Hit], query: str, policy: RankingPolicy,
         people: Sequence[Hit] = ()) -> list[Hit]:
    """Every ranking's memories, best first; each Hit's score is its fused score. `people`: the memories that
    name the people the message speaks of by relation (`server.memory.people`), weighed as the dense ranking."""
    share = cjk_share(query)
    lexical_weight = policy.lexical_weight_latin + share * (policy.lexical_weight_cjk - policy.lexical_weight_latin)
    scores: dict[int, float] = {}
    docs = {}
    for ranking, weight in ((lexical, lexical_weight), (dense, 1.0), (people, 1.0)):
        for rank, hit in enumerate(ranking):
            docs[hit.doc.id] = hit.doc
            scores[hit.doc.id] = scores.get(hit.doc.id, 0.0) + weight / (policy.rrf_k + rank + 1)
    return [Hit(docs[i], scores[i]) for i in sorted(scores, key=scores.__getitem__, reverse=True)]


def within_budget(ranked: Sequence[Hit], budget_tokens: int, count: Callable[[str], int],
                  limit: int | None = None) -> list[Hit]:
    """In rank order, every memory that still fits the budget (one that does not is skipped)."""
    chosen, left = [], budget_tokens
    for hit in ranked:
        cost = count(hit.doc.text)
        if cost <= left:
            chosen.append(hit)
            left -= cost
            if limit is not None and len(chosen) >= limit:
                break
    return chosen
