"""Chat turns as Gradio 6 chatbot messages (role/content dicts; `metadata` makes a collapsible block).

The chatbot renders message content as sanitised HTML, so model and user text is escaped here and shown
exactly as sent (whitespace is kept by the page's CSS); only the links to search sources are markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web.client import PastTurn, Searched

# C0/C1 control characters other than tab and newline: a model can emit them, a page cannot show them
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: str) -> str:
    return html.escape(_CONTROL.sub("", text), quote=False)


@dataclass
class TurnView:
    """What the page shows of one turn while it streams and after it ends."""

    user: str
    search: Searched | None = None
    reply: str = ""
    memories: Sequence[Any] = ()
    stopped: bool = False
    error: str | None = None
    pending: bool = False  # stored but unfinished: another tab or UI process is still streaming it


def user_message(text: str) -> dict:
    return {"role": "user", "content": plain(text)}


def reply_message(text: str) -> dict:
    return {"role": "assistant", "content": plain(text)}


def search_message(search: Searched) -> dict:
    query = html.escape(search.query)
    title = f"🔎 Web search skipped ({html.escape(search.skipped)}): “{query}”" if search.skipped \
        else f"🔎 Searched the web: “{query}”"
    parts = [f"<p>{plain(search.summary)}</p>"] if search.summary else []
    if search.sources:
        parts.append("<ul>" + "".join(f"<li>{_link(url)}</li>" for url in search.sources) + "</ul>")
    return {"role": "assistant", "content": "".join(parts) or "(no results)",
            "metadata": {"title": title, "status": "done"}}


def memories_message(ids: Sequence[Any]) -> dict:
    listed = ", ".join(f"#{html.escape(str(i))}" for i in ids)
    return {"role": "assistant", "content": "Earlier exchanges recalled from long-term memory and given to the model "
                                            "with this message.",
            "metadata": {"title": f"🧠 Memories used: {listed}", "status": "done"}}


def stopped_message() -> dict:
    return {"role": "assistant", "content": "The reply was stopped before it was finished.",
            "metadata": {"title": "⏹ Stopped", "status": "done"}}


def pending_message() -> dict:
    return {"role": "assistant", "content": "This reply was still being written when the chat was loaded; reload "
                                            "the page to see all of it.",
            "metadata": {"title": "⏳ Still being written", "status": "pending"}}


def error_message(text: str) -> dict:
    return {"role": "assistant", "content": f"⚠️ {plain(text[:1].upper() + text[1:])}"}


def turn_messages(view: TurnView) -> list[dict]:
    messages = [user_message(view.user)]
    if view.search is not None:
        messages.append(search_message(view.search))
    if view.reply:
        messages.append(reply_message(view.reply))
    if view.stopped:
        messages.append(stopped_message())
    if view.pending:
        messages.append(pending_message())
    if view.memories:
        messages.append(memories_message(view.memories))
    if view.error:
        messages.append(error_message(view.error))
    return messages


def history_messages(turns: Sequence[PastTurn]) -> list[dict]:
    """A stored conversation (GET /sessions/{id}/history); search and memory details are not stored there."""
    messages: list[dict] = []
    for turn in turns:
        failed = "the server failed while answering this message" if turn.status == "failed" else None
        messages += turn_messages(TurnView(turn.user, reply=turn.response, stopped=turn.status == "interrupted",
                                           pending=turn.status == "pending", error=failed))
    return messages


def _link(url: str) -> str:
    shown = html.escape(url)
    if not url.startswith(("http://", "https://")):
        return shown  # never make javascript: or other schemes clickable
    return f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener noreferrer">{shown}</a>'
