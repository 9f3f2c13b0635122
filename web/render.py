"""Chat turns as Gradio 6 chatbot messages (role/content dicts; `metadata` makes a collapsible block).

The chatbot renders markdown and sanitises the HTML it makes (Gradio's `sanitize_html`), so a model's reply is
shown as markdown with no raw HTML or script able to run. Everything else is text, escaped here so that it shows
exactly as written: the user's message (markdown in it is shown as typed), search summaries, memories, titles.
Only the markup made here is markup: links to search sources and the `[n]` markers that point at them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from web.wire import PastTurn, Recalled, Searched

# C0/C1 control characters other than tab and newline: a model can emit them, a page cannot show them
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# characters markdown gives a meaning to: escaped, a text shows as typed
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~=:])")
_LEADING_SPACES = re.compile(r"^( +)", re.MULTILINE)
_MARKER = re.compile(r"\[(\d{1,3})\]")


def plain(text: str) -> str:
    return html.escape(_CONTROL.sub("", text), quote=False)


def as_typed(text: str) -> str:
    """Text shown exactly as written inside rendered markdown: no markup, emphasis, lists or indented code."""
    escaped = _MARKDOWN.sub(r"\\\1", plain(text))
    return _LEADING_SPACES.sub(lambda m: "&nbsp;" * len(m.group(1)), escaped)


@dataclass(frozen=True)
class Show:
    """What the person chose to see under replies (the page's settings)."""

    memories: bool = True
    sources: bool = True


@dataclass
class TurnView:
    """What the page shows of one turn while it streams and after it ends."""

    user: str
    search: Searched | None = None
    reply: str = ""
    memories: Sequence[Recalled | Any] = ()  # Recalled (stored turns) or bare ids (a live `end` frame)
    stopped: bool = False
    error: str | None = None
    pending: bool = False  # stored but unfinished: another tab or UI process is still streaming it


def user_message(text: str) -> dict:
    return {"role": "user", "content": as_typed(text)}


def _safe_url(url: str) -> str | None:
    return url if url.startswith(("http://", "https://")) and "\n" not in url else None


def _md_url(url: str) -> str:
    """A URL as a markdown link target: <...> keeps parentheses and spaces in it from ending the link."""
    return "<" + url.replace("<", "%3C").replace(">", "%3E") + ">"


def reply_message(text: str, search: Searched | None = None) -> dict:
    """The model's reply as markdown; its `[n]` markers link to the search's n-th source."""
    text = _CONTROL.sub("", text)
    sources = search.sources if search is not None and not search.skipped else ()

    def link(match: re.Match) -> str:
        n = int(match.group(1))
        url = _safe_url(sources[n - 1]) if 1 <= n <= len(sources) else None
        return f"[\\[{n}\\]]({_md_url(url)})" if url else match.group(0)

    return {"role": "assistant", "content": _MARKER.sub(link, text) if sources else text}


def host(url: str) -> str:
    try:
        return urlsplit(url).hostname or url
    except ValueError:
        return url


def search_message(search: Searched) -> dict:
    query = plain(search.query)
    title = f"🔎 Web search skipped ({plain(search.skipped)}): “{query}”" if search.skipped \
        else f"🔎 Searched the web: “{query}”"
    return {"role": "assistant", "content": as_typed(search.summary) if search.summary else "(no summary)",
            "metadata": {"title": title, "status": "done"}}


def sources_message(search: Searched) -> dict:
    """The sources, numbered as the reply's `[n]` markers count them, with their titles and hosts."""
    lines = ["**Sources**"]
    for n, url in enumerate(search.sources, 1):
        name = search.titles[n - 1] if n <= len(search.titles) and search.titles[n - 1].strip() else host(url)
        safe = _safe_url(url)
        shown = f"[{as_typed(name)}]({_md_url(safe)})" if safe else as_typed(url)
        lines.append(f"\\[{n}\\] {shown} · {as_typed(host(url))}")
    return {"role": "assistant", "content": "  \n".join(lines)}


def date_of(created: str | float | None) -> str:
    if isinstance(created, int | float):
        return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d")
    return str(created)[:10] if created else "undated"


def memories_message(memories: Sequence[Recalled | Any]) -> dict:
    known = [m for m in memories if isinstance(m, Recalled)]
    count = f"{len(memories)} memor{'y' if len(memories) == 1 else 'ies'}"
    if known:
        body = "\n".join(f"- **{date_of(m.created)}** · {as_typed(m.text)}" for m in known)
    else:  # a live turn's `end` names them only by id; the stored turn has their text
        body = "Memories " + ", ".join(f"\\#{plain(str(i))}" for i in memories) + " were recalled."
    return {"role": "assistant", "content": body,
            "metadata": {"title": f"🧠 Recalled {count} from earlier chats", "status": "done"}}


def stopped_message() -> dict:
    return {"role": "assistant", "content": "The reply was stopped before it was finished.",
            "metadata": {"title": "⏹ Stopped", "status": "done"}}


def pending_message() -> dict:
    return {"role": "assistant", "content": "This reply was still being written when the chat was loaded; reload "
                                            "the page to see all of it.",
            "metadata": {"title": "⏳ Still being written", "status": "pending"}}


def error_message(text: str) -> dict:
    return {"role": "assistant", "content": f"⚠️ {as_typed(text[:1].upper() + text[1:])}"}


def turn_messages(view: TurnView, show: Show = Show()) -> list[dict]:
    messages = [user_message(view.user)]
    searched = view.search is not None and not view.search.skipped and view.search.sources
    if view.search is not None and show.sources:
        messages.append(search_message(view.search))
    if view.reply:
        messages.append(reply_message(view.reply, view.search))
    if searched and show.sources:
        messages.append(sources_message(view.search))
    if view.stopped:
        messages.append(stopped_message())
    if view.pending:
        messages.append(pending_message())
    if view.memories and show.memories:
        messages.append(memories_message(view.memories))
    if view.error:
        messages.append(error_message(view.error))
    return messages


def history_messages(turns: Sequence[PastTurn], show: Show = Show()) -> list[dict]:
    """A stored conversation (GET /sessions/{id}/history), with the search and memories each turn stored."""
    messages: list[dict] = []
    for turn in turns:
        failed = "the server failed while answering this message" if turn.status == "failed" else None
        messages += turn_messages(TurnView(turn.user, search=turn.search, reply=turn.response,
                                           memories=turn.memories, stopped=turn.status == "interrupted",
                                           pending=turn.status == "pending", error=failed), show)
    return messages
