"""What the page's buttons do: load a chat, stream a turn, stop it, start a new chat, forget one.

Every handler turns ChatError into a message on the page; nothing the server says ends up as a traceback.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from web.client import ChatClient, ChatError, Ended, Searched, Token, Turn
from web.render import TurnView, history_messages, plain, turn_messages


def new_session_id() -> str:
    return f"web-{uuid.uuid4().hex}"


def usable_session(value: Any) -> bool:
    # the same rule the server applies; anything else in localStorage (an old format, an edit) starts afresh
    return isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable() and bool(value.strip())


def session_info(session: str, notice: str = "") -> str:
    line = f"Session `{session}`"
    return f"{line} · {plain(notice)}" if notice else line


class ChatHandlers:
    def __init__(self, client: ChatClient, stream_interval: float = 0.05):
        self.client = client
        # re-rendering the whole chat for every token costs the browser more than it is worth; a few
        # updates a second still read as streaming
        self.stream_interval = stream_interval
        # turns streaming from this process, by session, so that Stop (a separate request) reaches the
        # websocket that carries the turn
        self.running: dict[str, Turn] = {}

    async def restore(self, session: Any) -> tuple:
        """On page load: the browser's session (or a new one) and its history from the server."""
        if not usable_session(session):
            session = new_session_id()
        try:
            messages, notice = history_messages(await self.client.history(session)), ""
        except ChatError as exc:
            messages, notice = [], f"⚠️ Could not load this chat: {exc}"
        return session, messages, messages, session_info(session, notice)

    async def respond(self, text: str, session: Any, shown: list[dict]) -> AsyncIterator[tuple]:
        """Stream one turn. Outputs: session, chatbot, shown (state), textbox, send, stop, new, forget."""
        if not (text or "").strip():
            yield (gr.skip(),) * 8
            return
        if not usable_session(session):
            session = new_session_id()
        shown = list(shown or [])
        view = TurnView(text)
        # registered before the Stop button shows, so that no click can miss the turn
        turn = self.client.turn(session, text)
        self.running[session] = turn
        loop = asyncio.get_running_loop()
        last = 0.0
        try:
            yield (session, shown + turn_messages(view), gr.skip(), "", *_controls(busy=True))
            async with turn:
                async for event in turn:
                    if isinstance(event, Ended):  # the last event: the final update follows the loop
                        view.reply, view.memories, view.stopped = event.text, event.memories, event.stopped
                        continue
                    if isinstance(event, Token):
                        view.reply += event.text
                    elif isinstance(event, Searched):
                        view.search, last = event, 0.0  # worth showing at once
                    else:
                        continue  # Started: nothing new to show
                    if loop.time() - last >= self.stream_interval:
                        last = loop.time()
                        yield (gr.skip(), shown + turn_messages(view), *(gr.skip(),) * 6)
        except ChatError as exc:
            view.error = str(exc)
        finally:
            if self.running.get(session) is turn:
                del self.running[session]
        shown += turn_messages(view)
        yield (gr.skip(), shown, shown, gr.skip(), *_controls(busy=False))

    async def stop(self, session: Any) -> None:
        turn = self.running.get(session) if usable_session(session) else None
        if turn is not None:
            await turn.cancel()

    async def new_chat(self) -> tuple:
        """Outputs: session, chatbot, shown, info. The old chat stays on the server."""
        session = new_session_id()
        return session, [], [], session_info(session, "Started a new chat.")

    async def forget(self, session: Any) -> tuple:
        """Outputs: session, chatbot, shown, info. The server deletes the turns and memories of the session."""
        if not usable_session(session):
            return await self.new_chat()
        try:
            removed = await self.client.forget(session)
        except ChatError as exc:
            return gr.skip(), gr.skip(), gr.skip(), session_info(session, f"⚠️ Could not forget this chat: {exc}")
        session = new_session_id()
        memories = f"{removed} memor{'y' if removed == 1 else 'ies'}"
        return session, [], [], session_info(session, f"Forgot the previous chat and its {memories}.")


def _controls(busy: bool) -> tuple:
    """send, stop, new, forget: while a turn streams only Stop makes sense."""
    return (gr.update(visible=not busy), gr.update(visible=busy), gr.update(interactive=not busy),
            gr.update(interactive=not busy))
