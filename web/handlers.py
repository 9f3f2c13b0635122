"""What the page's controls do: sign in, list and switch chats, stream a turn, stop it, rename and delete chats,
and the Memories tab. Each handler returns `{component: update}` for the page's components (web.app.Page).

Every browser chats as the user of its own token (kept in its localStorage, sent with every request), or as the
UI's default token, or, on a server without tokens, as the instance's single local user. Every handler turns
ChatError into a message on the page; nothing the server says ends up as a traceback.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from web.client import ChatClient, Turn
from web.render import Show, TurnView, as_typed, date_of, history_messages, plain, turn_messages
from web.wire import Account, ChatError, ChatInfo, Ended, Searched, ServerError, Token

if TYPE_CHECKING:
    from web.app import Page

# A refusal that means "sign in (again)": no token, or one the server no longer knows.
_SIGN_IN = {"unauthorized", "refused"}


def new_session_id() -> str:
    return f"web-{uuid.uuid4().hex}"


def usable_session(value: Any) -> bool:
    # the same rule the server applies; anything else in localStorage (an old format, an edit) starts afresh
    return isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable() and bool(value.strip())


def session_info(session: str, notice: str = "") -> str:
    line = f"Session `{session}`"
    return f"{line} · {plain(notice)}" if notice else line


def show_of(prefs: Any) -> Show:
    prefs = prefs if isinstance(prefs, dict) else {}
    return Show(memories=prefs.get("memories", True) is not False, sources=prefs.get("sources", True) is not False)


def account_line(account: Account, own_token: bool) -> str:
    if account.single_user:
        return "🏠 Single-user instance: this server has no sign-in, so everyone using it shares one history."
    how = "" if own_token else " (this UI's shared token)"
    return f"👤 Signed in as **{as_typed(account.user)}**{how}"


def chat_choices(chats: list[ChatInfo]) -> list[tuple[str, str]]:
    return [(f"{(c.title or 'New chat').strip()[:60]} · {date_of(c.updated)}", c.id) for c in chats]


def memory_choices(memories) -> list[tuple[str, int]]:
    return [(f"{date_of(m.created)} · {m.text[:160]}", m.id) for m in memories]


class ChatHandlers:
    def __init__(self, client: ChatClient, ui: Page, stream_interval: float = 0.05):
        self.client = client
        self.ui = ui
        # re-rendering the whole chat for every token costs the browser more than it is worth; a few
        # updates a second still read as streaming
        self.stream_interval = stream_interval
        # turns streaming from this process, by session, so that Stop (a separate request) reaches the
        # websocket that carries the turn
        self.running: dict[str, Turn] = {}

    def _client(self, token: Any) -> ChatClient:
        return self.client.with_token(token if isinstance(token, str) and token.strip() else None)

    # ------------------------------------------------------------------------------------ signing in

    def _signed_out(self, message: str) -> dict:
        ui = self.ui
        return {ui.signin: gr.update(visible=True), ui.main: gr.update(visible=False), ui.signin_msg: message,
                ui.account: "", ui.signout: gr.update(visible=False)}

    async def _open(self, client: ChatClient, token: Any, session: Any, prefs: Any, notice: str = "") -> dict:
        """The whole page for a signed-in browser: account, chats, the current chat."""
        ui = self.ui
        try:
            account = await client.account()
        except ServerError as exc:
            if exc.code in _SIGN_IN:
                return self._signed_out("This server needs a sign-in: paste the API token you were given.")
            raise
        except ChatError as exc:
            if not usable_session(session):
                session = new_session_id()
            return {ui.session: session, ui.chatbot: [], ui.shown: [], ui.main: gr.update(visible=True),
                    ui.signin: gr.update(visible=False), ui.info: session_info(session, f"⚠️ Could not load this "
                                                                                        f"chat: {exc}")}
        if not usable_session(session):
            session = new_session_id()
        try:
            turns = await client.history(session)
        except ServerError as exc:
            if exc.code != "forbidden":
                raise
            session, turns = new_session_id(), []  # another user's chat (a sign-out left it here): not ours
        messages = history_messages(turns, show_of(prefs))
        return {ui.session: session, ui.chatbot: messages, ui.shown: messages, ui.info: session_info(session, notice),
                ui.account: account_line(account, bool(token) or not client.has_token),
                ui.signout: gr.update(visible=not account.single_user and bool(token)),
                ui.signin: gr.update(visible=False), ui.main: gr.update(visible=True), ui.signin_msg: "",
                ui.limit: account.max_message_chars, **await self._chats(client, session)}

    async def _chats(self, client: ChatClient, session: str) -> dict:
        try:
            chats = await client.chats()
        except ChatError:
            return {}
        return {self.ui.chats: gr.update(choices=chat_choices(chats),
                                         value=session if any(c.id == session for c in chats) else None)}

    async def restore(self, token: Any, session: Any, prefs: Any) -> dict:
        """On page load: the browser's sign-in, its chat (or a new one), its list of chats."""
        try:
            return await self._open(self._client(token), token, session, prefs)
        except ChatError as exc:
            return self._signed_out(f"⚠️ {exc}")

    async def sign_in(self, entered: str, session: Any, prefs: Any) -> dict:
        token = (entered or "").strip()
        if not token:
            return {self.ui.signin_msg: "Paste your API token first."}
        client = self.client.with_token(token)
        try:
            account = await client.account()
        except ChatError as exc:
            refused = isinstance(exc, ServerError) and exc.code in _SIGN_IN
            return {self.ui.signin_msg: "⚠️ That token was refused." if refused else f"⚠️ {exc}"}
        if account.single_user:
            token = ""
        # the chat this browser had belonged to whoever was signed in before: start afresh
        page = await self._open(client, token, new_session_id(), prefs)
        return {**page, self.ui.token: token, self.ui.token_box: ""}

    # ----------------------------------------------------------------------------------------- chats

    async def switch(self, token: Any, chosen: Any, prefs: Any) -> dict:
        if not usable_session(chosen):
            return {}
        return await self._open(self._client(token), token, chosen, prefs)

    async def new_chat(self) -> dict:
        """The old chat stays on the server and in the list."""
        ui = self.ui
        session = new_session_id()
        return {ui.session: session, ui.chatbot: [], ui.shown: [],
                ui.info: session_info(session, "Started a new chat."), ui.chats: gr.update(value=None),
                ui.retry: gr.update(visible=False)}

    async def rename(self, token: Any, session: Any, title: str) -> dict:
        ui = self.ui
        title = (title or "").strip()
        if not usable_session(session) or not title:
            return {ui.info: session_info(str(session), "Type a new name for this chat first.")}
        client = self._client(token)
        try:
            await client.rename(session, title)
        except ChatError as exc:
            notice = "Send a message first: an empty chat has nothing to rename." \
                if isinstance(exc, ServerError) and exc.code == "not_found" else f"⚠️ Could not rename this chat: {exc}"
            return {ui.info: session_info(session, notice)}
        return {ui.rename_box: "", ui.info: session_info(session, "Renamed."), **await self._chats(client, session)}

    async def ask_delete(self) -> dict:
        return {self.ui.confirm: gr.update(visible=True)}

    async def cancel_delete(self) -> dict:
        return {self.ui.confirm: gr.update(visible=False)}

    async def delete(self, token: Any, session: Any) -> dict:
        """After the confirmation: the server deletes the chat's turns and memories; the browser starts a new chat."""
        ui = self.ui
        hide = {ui.confirm: gr.update(visible=False)}
        if not usable_session(session):
            return {**hide, **await self.new_chat()}
        client = self._client(token)
        try:
            removed = await client.forget(session)
        except ChatError as exc:
            return {**hide, ui.info: session_info(session, f"⚠️ Could not delete this chat: {exc}")}
        session = new_session_id()
        memories = f"{removed} memor{'y' if removed == 1 else 'ies'}"
        return {**hide, ui.session: session, ui.chatbot: [], ui.shown: [],
                ui.info: session_info(session, f"Deleted the chat and its {memories}."),
                **await self._chats(client, session)}

    async def last_message(self, token: Any, session: Any) -> str:
        """The chat's last message (edit-and-resend, regenerate)."""
        if not usable_session(session):
            return ""
        try:
            turns = await self._client(token).history(session)
        except ChatError:
            return ""
        return turns[-1].user if turns else ""

    async def rerender(self, token: Any, session: Any, prefs: Any) -> dict:
        """The current chat again, as the settings now ask to show it."""
        if not usable_session(session):
            return {}
        try:
            turns = await self._client(token).history(session)
        except ChatError:
            return {}
        messages = history_messages(turns, show_of(prefs))
        return {self.ui.chatbot: messages, self.ui.shown: messages}

    # ------------------------------------------------------------------------------------------ turns

    async def respond(self, text: str, token: Any, session: Any, shown: list[dict], prefs: Any
                      ) -> AsyncIterator[dict]:
        """Stream one turn; afterwards the chat is shown as the server stored it (memories and sources included)."""
        ui = self.ui
        if not (text or "").strip():
            yield {}
            return
        if not usable_session(session):
            session = new_session_id()
        client, show = self._client(token), show_of(prefs)
        shown = list(shown or [])
        view = TurnView(text)
        # registered before the Stop button shows, so that no click can miss the turn
        turn = client.turn(session, text)
        self.running[session] = turn
        loop = asyncio.get_running_loop()
        last = 0.0
        try:
            yield {ui.session: session, ui.chatbot: shown + turn_messages(view, show), ui.text: "",
                   ui.retry: gr.update(visible=False), **_controls(ui, busy=True)}
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
                        yield {ui.chatbot: shown + turn_messages(view, show)}
        except ChatError as exc:
            view.error = str(exc)
        finally:
            if self.running.get(session) is turn:
                del self.running[session]
        if view.error:
            # the message stays in the box, to send again as it is or changed
            shown += turn_messages(view, show)
            yield {ui.chatbot: shown, ui.shown: shown, ui.text: text, ui.retry: gr.update(visible=True),
                   **_controls(ui, busy=False)}
            return
        try:  # as stored: the memories' text and the sources' titles come with the stored turn
            shown = history_messages(await client.history(session), show)
        except ChatError:
            shown += turn_messages(view, show)
        yield {ui.chatbot: shown, ui.shown: shown, **_controls(ui, busy=False), **await self._chats(client, session)}

    async def stop(self, session: Any) -> None:
        turn = self.running.get(session) if usable_session(session) else None
        if turn is not None:
            await turn.cancel()

    # --------------------------------------------------------------------------------------- memories

    async def list_memories(self, token: Any, query: str = "", notice: str = "") -> dict:
        ui = self.ui
        try:
            memories = await self._client(token).memories(query or "")
        except ChatError as exc:
            return {ui.memory_note: f"⚠️ {plain(str(exc))}"}
        if not notice:
            found = f"{len(memories)} memor{'y' if len(memories) == 1 else 'ies'}"
            notice = f"{found} recalled for “{plain(query)}”" if (query or "").strip() else f"{found}, newest first"
        return {ui.memory_list: gr.update(choices=memory_choices(memories), value=None),
                ui.memory_items: {m.id: m.text for m in memories}, ui.memory_note: notice,
                ui.memory_text: "", ui.memory_id: None}

    async def pick_memory(self, chosen: Any, items: Any) -> dict:
        items = items if isinstance(items, dict) else {}
        text = items.get(chosen, items.get(str(chosen)))
        if text is None:
            return {}
        return {self.ui.memory_id: chosen, self.ui.memory_text: text}

    async def save_memory(self, token: Any, memory: Any, text: str, query: str) -> dict:
        if memory is None:
            return {self.ui.memory_note: "Choose a memory in the list first."}
        try:
            await self._client(token).edit_memory(int(memory), text)
        except ChatError as exc:
            return {self.ui.memory_note: f"⚠️ {plain(str(exc))}"}
        return await self.list_memories(token, query, "Saved: replies recall the new text from now on.")

    async def delete_memory(self, token: Any, memory: Any, query: str) -> dict:
        if memory is None:
            return {self.ui.memory_note: "Choose a memory in the list first."}
        try:
            await self._client(token).delete_memory(int(memory))
        except ChatError as exc:
            return {self.ui.memory_note: f"⚠️ {plain(str(exc))}"}
        return await self.list_memories(token, query, "Forgotten: no reply will recall it again.")

    async def add_memory(self, token: Any, text: str) -> dict:
        if not (text or "").strip():
            return {self.ui.memory_note: "Type what to remember first."}
        try:
            await self._client(token).add_memory(text)
        except ChatError as exc:
            return {self.ui.memory_note: f"⚠️ {plain(str(exc))}"}
        return {**await self.list_memories(token, "", "Added."), self.ui.memory_new: ""}

    async def export_memories(self, token: Any) -> dict:
        try:
            data = await self._client(token).export_memories()
        except ChatError as exc:
            return {self.ui.memory_note: f"⚠️ {plain(str(exc))}"}
        folder = Path(tempfile.mkdtemp(prefix="dongpo-export-"))
        path = folder / "memories.jsonl"
        path.write_bytes(data)
        return {self.ui.memory_file: gr.update(value=str(path), visible=True),
                self.ui.memory_note: "Your memories as JSONL (the memory API's import takes the same file)."}


def _controls(ui: Page, busy: bool) -> dict:
    """While a turn streams only Stop makes sense."""
    idle = gr.update(interactive=not busy)
    return {ui.send: gr.update(visible=not busy), ui.stop: gr.update(visible=busy), ui.new: idle, ui.delete: idle,
            ui.regenerate: idle, ui.edit: idle}
