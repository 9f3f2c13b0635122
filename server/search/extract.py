"""From fetched bytes to the text the summariser reads: main-text extraction and a token budget."""

from __future__ import annotations

import re
from collections.abc import Callable

from server.estimate import approximate_tokens
from server.search.fetch import FetchedPage

_BREAK = re.compile(r"[.!?。！？；;\n]\s*")


def main_text(page: FetchedPage) -> str:
    """The page's main content, without navigation, ads or comments. Blocking: call it from a worker thread."""
    if page.content_type == "text/plain":
        return page.body.decode(page.charset or "utf-8", errors="replace").strip()
    import trafilatura

    # no `deduplicate`: trafilatura's cache is process-wide, so a page fetched again in a later turn would lose text
    text = trafilatura.extract(page.body, url=page.url, include_comments=False, include_tables=True,
                               include_images=False, include_links=False, favor_precision=True)
    return (text or "").strip()


def truncate_tokens(text: str, budget: int, count: Callable[[str], int]) -> str:
    """The longest prefix of `text` within `budget` tokens, cut at a sentence end when one is near."""
    if budget <= 0 or not text:
        return ""
    tokens = count(text)
    if tokens <= budget:
        return text
    keep = int(len(text) * budget / tokens)
    while keep > 0 and count(text[:keep]) > budget:
        keep = int(keep * 0.9)
    prefix = text[:keep]
    ends = [m.end() for m in _BREAK.finditer(prefix)]
    if ends and ends[-1] >= keep * 0.7:  # a sentence end in the last 30%: drop the half sentence
        prefix = prefix[:ends[-1]]
    return prefix.rstrip() + " …"


def safe_counter(count: Callable[[str], int]) -> Callable[[str], int]:
    """Token counting from a worker thread; a tokenizer busy in another thread falls back to an estimate."""

    def counted(text: str) -> int:
        try:
            return count(text)
        except RuntimeError:  # "Already borrowed": the Rust tokenizer is being reconfigured elsewhere
            return approximate_tokens(text)

    return counted
