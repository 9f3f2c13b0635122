"""Token counts without a tokenizer: budgets for remote models, and a fallback while a tokenizer is busy."""

from __future__ import annotations

import math
import re

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
