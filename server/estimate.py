"""Token counts without a tokenizer: budgets for remote models, a fallback while a tokenizer is busy, and long texts
cut into pieces that fit a budget (long messages become several memories)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

# CJK ideographs, kana and hangul: BPE vocabularies spend about one token (often more) on each.
_WIDE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]")
# English averages about four characters per token in GPT vocabularies; 3.5 errs on the high side,
# so a prompt counted this way still fits the real window.
_CHARS_PER_TOKEN = 3.5
# Chat templates add a few tokens of markup around every message.
PER_MESSAGE_OVERHEAD = 8


def approximate_tokens(text: str) -> int:
    wide = len(_WIDE.findall(text))
    return wide + math.ceil((len(text) - wide) / _CHARS_PER_TOKEN)


# A sentence: up to its end mark (a line's end counts) and the spaces after it.
_SENTENCE = re.compile(r"[^.!?;。！？；…\n]*(?:[.!?;。！？；…\n]+\s*|$)")
_WORD = re.compile(r"\S+\s*|\s+")


def split_to_fit(text: str, max_tokens: int) -> list[str]:
    """`text` in consecutive pieces of at most `max_tokens` (estimated) each, cut between sentences where it can,
    else between words, else between characters; the pieces joined give `text` back."""
    pieces, current = [], ""
    for atom in _atoms(text, max_tokens):
        if current and approximate_tokens(current + atom) > max_tokens:
            pieces.append(current)
            current = ""
        current += atom
    return [*pieces, current] if current else pieces


def _atoms(text: str, max_tokens: int) -> Iterator[str]:
    """Sentences; a sentence too long for a piece as its words; a word too long as runs of characters."""
    for sentence in filter(None, _SENTENCE.findall(text)):
        if approximate_tokens(sentence) <= max_tokens:
            yield sentence
            continue
        for word in _WORD.findall(sentence):
            while approximate_tokens(word) > max_tokens:
                cut = _longest_prefix(word, max_tokens)
                yield word[:cut]
                word = word[cut:]
            if word:
                yield word


def _longest_prefix(text: str, max_tokens: int) -> int:
    """The length of the longest prefix of `text` within `max_tokens` (at least one character)."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if approximate_tokens(text[:middle]) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return low
