"""What the search head reads besides the embedding: the message's language and its words as n-grams.

The embedding model is an English one: in Chinese its vectors say little about whether a message asks for a
fact or for a poem. Character n-grams do (天气, 多少钱, 最新 against 写一首, 你觉得, 你还记得), and so do English
words and word pieces. Both are weighted TF-IDF, as scikit-learn's TfidfVectorizer computes them at training
time (`sublinear_tf`, smooth idf, l2 norm); `NgramBlock.contributions` recomputes the same numbers with a dict
and no scikit-learn, so that serving stays in the tens of microseconds.

The follow-up context (the previous user turn and the bot's last reply) is a block of its own, with its own
vocabulary, read only when the message leans on it (short, a pronoun or a connective: `is_followup`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from server.search.query import is_followup

LANGUAGES = ("en", "zh")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_TOKENS = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+|[a-z0-9]+(?:'[a-z]+)?|[?？!！]")
_LATIN_WORD = re.compile(r"[a-z0-9]")


def language(text: str) -> str:
    """'zh' when Chinese characters weigh at least as much as Latin words (mixed messages are mostly Chinese ones
    with an English word or two), else 'en'."""
    cjk = len(_CJK.findall(text))
    if not cjk:
        return "en"
    words = len(re.findall(r"[A-Za-z]{2,}", text))
    return "zh" if cjk >= words else "en"


def _normalise(text: str) -> str:
    # NFKC folds full-width Latin letters and punctuation (？！ stay distinct from ?! only as tokens below)
    return unicodedata.normalize("NFKC", text).lower()


def ngrams(text: str) -> list[str]:
    """Character 1–3-grams of Chinese runs, English words, word pairs and in-word 3-grams, '?' and '!', and
    the message's first and last token (a question particle at the end, a greeting at the start)."""
    tokens = _TOKENS.findall(_normalise(text))
    out: list[str] = []
    previous_word = None
    for token in tokens:
        if _CJK.match(token):
            previous_word = None
            for n in (1, 2, 3):
                out.extend(token[i:i + n] for i in range(len(token) - n + 1))
        elif _LATIN_WORD.match(token):
            out.append(token)
            if previous_word is not None:
                out.append(f"{previous_word} {token}")
            previous_word = token
            padded = f"<{token}>"
            if len(token) > 3:
                out.extend(padded[i:i + 3] for i in range(len(padded) - 2))
        else:
            previous_word = None
            out.append("?" if token in "?？" else "!")
    if tokens:
        first, last = tokens[0], tokens[-1]
        out.append(f"^{first[:2] if _CJK.match(first) else first}")
        out.append(f"{last[-2:] if _CJK.match(last) else last}$")
    return out


@dataclass(frozen=True, slots=True)
class Context:
    """The turn before this one, as the classifier sees it."""

    user: str = ""
    bot: str = ""

    @classmethod
    def of(cls, value: object) -> Context:
        """From a labelled row's `context`: a string (the previous user turn) or {"user", "bot"}."""
        if isinstance(value, Context):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict):
            return cls(str(value.get("user") or ""), str(value.get("bot") or value.get("assistant") or ""))
        return cls()


def context_ngrams(text: str, context: Context) -> list[str]:
    """The context's n-grams, marked by where they come from; none unless the message reads as a follow-up."""
    if not (context.user or context.bot) or not is_followup(text):
        return []
    out = ["followup"]
    out += [f"u:{g}" for g in ngrams(context.user)]
    out += [f"b:{g}" for g in ngrams(context.bot)]
    return out


class NgramBlock:
    """A TF-IDF block at serving time: term → (idf, weight); the block's share of the logit and its terms."""

    def __init__(self, vocabulary: Iterable[str], idf: np.ndarray, weights: np.ndarray):
        terms = list(vocabulary)
        if not len(terms) == len(idf) == len(weights):
            raise ValueError("an n-gram block needs one idf and one weight per term")
        self.terms = terms
        self.idf = np.asarray(idf, dtype=np.float32)
        self.weights = np.asarray(weights, dtype=np.float32)
        self._table = {t: (float(i), float(w)) for t, i, w in zip(terms, idf, weights, strict=True)}

    def contributions(self, grams: list[str]) -> list[tuple[str, float]]:
        """(term, its share of the logit) for each known term: sublinear tf × idf, l2-normalised, × weight."""
        found = [(t, c) for t, c in Counter(grams).items() if t in self._table]
        if not found:
            return []
        values = [(t, (1.0 + math.log(c)) * self._table[t][0]) for t, c in found]
        norm = math.sqrt(sum(v * v for _, v in values))
        return [(t, v / norm * self._table[t][1]) for t, v in values]


def analyse(text: str) -> list[str]:
    """scikit-learn's `analyzer` for the message block (a named function: the head stores no pickles)."""
    return ngrams(text)


def analyse_context(pair: tuple[str, Context]) -> list[str]:
    return context_ngrams(*pair)
