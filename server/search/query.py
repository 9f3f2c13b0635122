"""Turn a chat message into a standalone web query, using the recent turns for follow-ups.

"And what about his brother?" means nothing to a search engine; prefixed with the previous question ("Who was
Su Shi?") it does. No model call: a follow-up is recognised by its shape (short, opening with a connective or
leaning on a pronoun), which is cheap and, when wrong, only makes the query a little longer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from server.protocols import TurnRecord

MAX_QUERY_CHARS = 300

_FILLERS = (
    re.compile(r"^(?:(?:hey|hi|hello|ok(?:ay)?|so|um+|well)\b[\s,!.]*)*"
               r"(?:(?:can|could|would) you (?:please )?(?:tell me|explain|look up|find out)\s*|"
               r"(?:do you know|i wonder|i'm wondering|please tell me|tell me)\s*)?", re.IGNORECASE),
    re.compile(r"^(?:(?:请问|你知道|告诉我|帮我查一下|帮我查查|我想知道)[，,\s]*)+"),
)
_FOLLOWUP_EN = re.compile(
    r"^\s*(?:and|but|also|so|then|what about|how about|what of)\b"
    r"|\b(?:he|him|his|she|her|hers|it|its|they|them|their|there|that one|this one|those|these)\b",
    re.IGNORECASE)
_FOLLOWUP_ZH = re.compile(r"^(?:那|还有|那么|另外)|[他她它]|那里|那边|这个|那个")
_CJK = re.compile(r"[\u3400-\u9fff]")


def is_followup(text: str) -> bool:
    if _CJK.search(text):
        return len(text) <= 16 and bool(_FOLLOWUP_ZH.search(text))
    return len(text.split()) <= 10 and bool(_FOLLOWUP_EN.search(text))


def clean(text: str) -> str:
    text = " ".join(text.split())
    stripped = text
    for filler in _FILLERS:
        stripped = filler.sub("", stripped, count=1).strip()
    return stripped or text


def standalone_query(text: str, recent: Sequence[TurnRecord] = ()) -> str:
    query = clean(text)
    if recent and is_followup(query):
        previous = clean(recent[-1].user_text)
        if previous and previous != query:
            query = f"{previous} {query}"
    return query[:MAX_QUERY_CHARS].strip()
