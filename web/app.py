"""The Gradio page: chats in a sidebar, a streaming chat with its memories and sources, a Memories tab, sign-in
and a few settings; the sign-in, the current chat and the settings are kept in the browser."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from web.client import ChatClient
from web.handlers import ChatHandlers

# Keys in the browser's localStorage.
STORAGE_KEY = "dongpo-chat-session"
TOKEN_KEY = "dongpo-chat-token"
PREFS_KEY = "dongpo-chat-prefs"
# BrowserState obfuscates what it stores with this key, which the page itself receives: it hides nothing from
# the browser's owner. A fixed key keeps every browser's chat across restarts of the UI (a random one would not).
STORAGE_SECRET = "dongpo-chat-browser-state"

TITLE = "東坡 Dongpo"
TAGLINE = ("Chat with **Su Dongpo** (蘇東坡, 1037–1101), poet of the Song dynasty, as a warm and curious friend. "
           "He remembers your earlier chats (see **Memories**) and looks things up on the web when he needs to.")
EXAMPLES = ["東坡先生，您在黃州的時候每天做什麼？", "给我讲讲《赤壁赋》里的“清风明月”。",
            "Tell me about the food you cooked in Huangzhou.", "Write me a short poem about the moon over the river."]

# Chinese (Traditional and Simplified) and emoji after the Latin faces: a glyph missing from one font is looked
# for in the next, so 「東坡」 and 🧠 render wherever one of these fonts is installed (never as boxes).
SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "Noto Sans",
        "Noto Sans CJK TC", "Noto Sans TC", "PingFang TC", "Microsoft JhengHei", "Noto Sans CJK SC", "Noto Sans SC",
        "PingFang SC", "Microsoft YaHei", "Source Han Sans", "WenQuanYi Micro Hei", "sans-serif", "Apple Color Emoji",
        "Segoe UI Emoji", "Noto Color Emoji"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "DejaVu Sans Mono", "Noto Sans Mono CJK TC",
        "Noto Sans Mono CJK SC", "monospace", "Noto Color Emoji"]

CSS = """
#chat [data-testid="user"] p { white-space: pre-wrap; }
#session-info, #account, #counter { opacity: 0.75; font-size: 0.85em; }
#chats .wrap, #memory-list .wrap { flex-direction: column; align-items: stretch; gap: 4px; }
#chats label, #memory-list label { width: 100%; white-space: normal; }
#counter { text-align: right; min-height: 1.2em; }
#counter.over { color: var(--error-text-color); opacity: 1; }
footer { display: none !important; }
#chat button[aria-label="Clear"], #chat button[title="Clear"] { display: none; }
"""

# The theme setting lives in this browser only (like Gradio's own, which the page no longer shows).
THEME_JS = """(choice) => {
  if (choice) localStorage.setItem('dongpo-theme', choice);
  else choice = localStorage.getItem('dongpo-theme') || 'System';
  const dark = choice === 'Dark' || (choice === 'System' && window.matchMedia('(prefers-color-scheme: dark)').matches);
  document.body.classList.toggle('dark', dark);
  return choice;
}"""

OPEN_SIDEBAR_JS = """() => {
  const toggle = document.querySelector('#sidebar .toggle-button');
  if (toggle && window.innerWidth >= 900 && !document.querySelector('#sidebar.open')) toggle.click();
}"""

# A character counter that appears near the server's limit (MAX_MESSAGE_CHARS): counted in the browser.
COUNTER_JS = """(text, limit) => {
  const el = document.getElementById('counter');
  const n = [...(text || '')].length;
  const near = limit > 0 && n >= 0.8 * limit;
  if (el) el.classList.toggle('over', limit > 0 && n > limit);
  return near ? `${n} / ${limit} characters` + (n > limit ? ' (too long to send)' : '') : '';
}"""


@dataclass
class Page:
    """The components the handlers update (web.handlers returns {component: update})."""

    token: gr.BrowserState
    session: gr.BrowserState
    prefs: gr.BrowserState
    shown: gr.State
    signin: gr.Column
    token_box: gr.Textbox
    signin_msg: gr.Markdown
    main: gr.Column
    account: gr.Markdown
    signout: gr.Button
    new: gr.Button
    chats: gr.Radio
    rename_box: gr.Textbox
    delete: gr.Button
    confirm: gr.Group
    chatbot: gr.Chatbot
    text: gr.Textbox
    send: gr.Button
    stop: gr.Button
    retry: gr.Button
    regenerate: gr.Button
    edit: gr.Button
    limit: gr.Number
    info: gr.Markdown
    memory_query: gr.Textbox
    memory_list: gr.Radio
    memory_items: gr.State
    memory_id: gr.State
    memory_text: gr.Textbox
    memory_new: gr.Textbox
    memory_note: gr.Markdown
    memory_file: gr.File

    def outputs(self, *names: str) -> list:
        return [getattr(self, n) for n in names]


PAGE_OUT = ("session", "chatbot", "shown", "info", "account", "signout", "signin", "main", "signin_msg", "limit",
            "chats")
CONTROLS = ("send", "stop", "new", "delete", "regenerate", "edit")


def example_text(evt: gr.SelectData) -> str:
    return evt.value["text"] if isinstance(evt.value, dict) else str(evt.value)


HIDDEN = {"api_visibility": "undocumented"}  # the handlers are the page's plumbing, not an API to document


# Each area's components, for wiring its events (Page holds only those the handlers update).
@dataclass
class Sidebar:
    account: gr.Markdown
    signout: gr.Button
    new: gr.Button
    chats: gr.Radio
    rename_box: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    confirm: gr.Group
    confirm_yes: gr.Button
    confirm_no: gr.Button
    theme: gr.Radio
    show_memories: gr.Checkbox
    show_sources: gr.Checkbox


@dataclass
class SignIn:
    column: gr.Column
    token_box: gr.Textbox
    button: gr.Button
    message: gr.Markdown


@dataclass
class ChatTab:
    chatbot: gr.Chatbot
    text: gr.Textbox
    send: gr.Button
    stop: gr.Button
    counter: gr.Markdown
    retry: gr.Button
    regenerate: gr.Button
    edit: gr.Button
    limit: gr.Number
    info: gr.Markdown


@dataclass
class MemoriesTab:
    tab: gr.Tab
    query: gr.Textbox
    search: gr.Button
    show_all: gr.Button
    note: gr.Markdown
    listing: gr.Radio
    text: gr.Textbox
    save: gr.Button
    delete: gr.Button
    new: gr.Textbox
    add: gr.Button
    export: gr.Button
    file: gr.File


def sidebar(title: str) -> Sidebar:
    # closed at first: on a phone it would cover the chat; a wide screen opens it on load (OPEN_SIDEBAR_JS)
    with gr.Sidebar(elem_id="sidebar", open=False):
        gr.Markdown(f"## {title}")
        account = gr.Markdown(elem_id="account")
        signout = gr.Button("Sign out", elem_id="sign-out", size="sm", visible=False)
        new = gr.Button("＋ New chat", elem_id="new-chat", variant="primary", size="sm")
        chats = gr.Radio([], elem_id="chats", container=False)
        with gr.Accordion("This chat", open=False, elem_id="chat-actions"):
            rename_box = gr.Textbox(elem_id="rename-box", placeholder="New name", container=False)
            rename = gr.Button("Rename", elem_id="rename-chat", size="sm")
            delete = gr.Button("Delete this chat…", elem_id="delete-chat", size="sm", variant="stop")
            with gr.Group(visible=False, elem_id="confirm-delete") as confirm:
                gr.Markdown("Delete this chat and the memories made of it? This cannot be undone.")
                with gr.Row():
                    confirm_yes = gr.Button("Delete", elem_id="confirm-delete-yes", variant="stop", size="sm")
                    confirm_no = gr.Button("Keep it", elem_id="confirm-delete-no", size="sm")
        with gr.Accordion("Settings", open=False, elem_id="settings"):
            theme = gr.Radio(["System", "Light", "Dark"], value="System", label="Theme", elem_id="theme")
            show_memories = gr.Checkbox(True, label="Show recalled memories", elem_id="show-memories")
            show_sources = gr.Checkbox(True, label="Show search and sources", elem_id="show-sources")
    return Sidebar(account, signout, new, chats, rename_box, rename, delete, confirm, confirm_yes, confirm_no, theme,
                   show_memories, show_sources)


def sign_in_form(title: str) -> SignIn:
    with gr.Column(visible=False, elem_id="signin") as column:
        gr.Markdown(f"# {title}\n{TAGLINE}\n\n### Sign in")
        token_box = gr.Textbox(elem_id="token", type="password", label="API token",
                               placeholder="the token the server's operator gave you")
        button = gr.Button("Sign in", elem_id="sign-in", variant="primary")
        message = gr.Markdown(elem_id="signin-msg")
    return SignIn(column, token_box, button, message)


def chat_tab() -> ChatTab:
    with gr.Tab("Chat", id="chat-tab", elem_id="chat-tab"):
        gr.Markdown(TAGLINE, elem_id="tagline")
        chatbot = gr.Chatbot(elem_id="chat", render_markdown=True, sanitize_html=True, scale=1,
                             height="62vh", show_label=False, buttons=["copy", "copy_all"],
                             feedback_options=None, examples=[{"text": e} for e in EXAMPLES],
                             placeholder="**蘇東坡 · Su Dongpo** — ask in Chinese or English; replies "
                                         "stream as they are written.")
        with gr.Row(equal_height=True):
            text = gr.Textbox(elem_id="message", placeholder="Message 東坡…", scale=8,
                              lines=1, max_lines=8, autofocus=True, container=False)
            send = gr.Button("Send", elem_id="send", variant="primary", scale=1, min_width=80)
            stop = gr.Button("Stop", elem_id="stop", variant="stop", scale=1, min_width=80, visible=False)
        counter = gr.Markdown(elem_id="counter")
        with gr.Row():
            retry = gr.Button("↻ Retry", elem_id="retry", size="sm", visible=False)
            regenerate = gr.Button("↻ Regenerate last reply", elem_id="regenerate", size="sm")
            edit = gr.Button("✎ Edit last message", elem_id="edit-last", size="sm")
        limit = gr.Number(0, visible=False, elem_id="limit")
        info = gr.Markdown(elem_id="session-info")
    return ChatTab(chatbot, text, send, stop, counter, retry, regenerate, edit, limit, info)


def memories_tab() -> MemoriesTab:
    with gr.Tab("Memories", id="memories-tab", elem_id="memories-tab") as tab:
        gr.Markdown("What 東坡 remembers of your chats: he recalls the closest of these into each reply. "
                    "Edit one and replies recall the new text; forget one and no reply recalls it again.")
        with gr.Row(equal_height=True):
            query = gr.Textbox(elem_id="memory-query", placeholder="Search: what would a message "
                               "like this recall?", scale=6, container=False)
            search = gr.Button("Search", elem_id="memory-search", scale=1, min_width=80)
            show_all = gr.Button("All", elem_id="memory-all", scale=1, min_width=60)
        note = gr.Markdown(elem_id="memory-note")
        listing = gr.Radio([], elem_id="memory-list", container=False)
        text = gr.Textbox(elem_id="memory-text", label="The chosen memory", lines=3)
        with gr.Row():
            save = gr.Button("Save changes", elem_id="memory-save", size="sm", variant="primary")
            delete = gr.Button("Forget it", elem_id="memory-delete", size="sm", variant="stop")
        new = gr.Textbox(elem_id="memory-new", label="Add a memory", lines=2,
                         placeholder="Something 東坡 should know about you")
        with gr.Row():
            add = gr.Button("Add", elem_id="memory-add", size="sm")
            export = gr.Button("Export all (JSONL)", elem_id="memory-export", size="sm")
        file = gr.File(elem_id="memory-file", visible=False, label="Export", interactive=False)
    return MemoriesTab(tab, query, search, show_all, note, listing, text, save, delete, new, add, export, file)


def wire_sign_in(demo: gr.Blocks, h: ChatHandlers, ui: Page, form: SignIn, side: Sidebar) -> None:
    page_out = ui.outputs(*PAGE_OUT)
    demo.load(h.restore, inputs=[ui.token, ui.session, ui.prefs], outputs=page_out, **HIDDEN)
    demo.load(None, inputs=None, outputs=[side.theme], js="() => { (" + OPEN_SIDEBAR_JS + ")(); return ("
              + THEME_JS + ")(null); }")
    signed_in = {"fn": h.sign_in, "inputs": [form.token_box, ui.session, ui.prefs],
                 "outputs": [*page_out, ui.token, form.token_box], **HIDDEN}
    form.button.click(**signed_in)
    form.token_box.submit(**signed_in)
    # signing out forgets this browser's token and chat, then starts the page afresh: the sign-in form
    side.signout.click(None, js=f"() => {{ localStorage.removeItem('{TOKEN_KEY}'); "
                                f"localStorage.removeItem('{STORAGE_KEY}'); window.location.reload(); }}")


def wire_turns(h: ChatHandlers, ui: Page, tab: ChatTab) -> None:
    turn_in = [tab.text, ui.token, ui.session, ui.shown, ui.prefs]
    turn_out = ui.outputs("session", "chatbot", "shown", "text", "retry", "chats", *CONTROLS)
    respond = {"fn": h.respond, "inputs": turn_in, "outputs": turn_out, "concurrency_limit": None,
               "show_progress": "hidden", **HIDDEN}
    gr.on([tab.text.submit, tab.send.click, tab.retry.click], trigger_mode="once", **respond)
    # Stop must run while the turn's event is still streaming: its own event, never queued behind it
    tab.stop.click(h.stop, inputs=[ui.session], outputs=None, concurrency_limit=None, show_progress="hidden",
                   **HIDDEN)
    tab.chatbot.example_select(example_text, inputs=None, outputs=[tab.text], **HIDDEN).then(**respond)
    tab.regenerate.click(h.last_message, inputs=[ui.token, ui.session], outputs=[tab.text], **HIDDEN).then(**respond)
    tab.edit.click(h.last_message, inputs=[ui.token, ui.session], outputs=[tab.text], **HIDDEN)
    tab.text.change(None, inputs=[tab.text, tab.limit], outputs=[tab.counter], js=COUNTER_JS)


def wire_chats(h: ChatHandlers, ui: Page, side: Sidebar) -> None:
    new_out = ui.outputs("session", "chatbot", "shown", "info", "chats", "retry")
    side.new.click(h.new_chat, inputs=None, outputs=new_out, **HIDDEN)
    side.chats.input(h.switch, inputs=[ui.token, side.chats, ui.prefs], outputs=ui.outputs(*PAGE_OUT), **HIDDEN)
    renamed = {"fn": h.rename, "inputs": [ui.token, ui.session, side.rename_box],
               "outputs": [side.rename_box, side.chats, ui.info], **HIDDEN}
    side.rename.click(**renamed)
    side.rename_box.submit(**renamed)
    side.delete.click(h.ask_delete, inputs=None, outputs=[side.confirm], **HIDDEN)
    side.confirm_no.click(h.cancel_delete, inputs=None, outputs=[side.confirm], **HIDDEN)
    side.confirm_yes.click(h.delete, inputs=[ui.token, ui.session], outputs=[side.confirm, *new_out], **HIDDEN)


def wire_settings(demo: gr.Blocks, h: ChatHandlers, ui: Page, side: Sidebar) -> None:
    side.theme.input(None, inputs=[side.theme], outputs=[side.theme], js=THEME_JS)
    for box, key in ((side.show_memories, "memories"), (side.show_sources, "sources")):
        box.input(lambda on, p, key=key: {**(p if isinstance(p, dict) else {}), key: on},
                  inputs=[box, ui.prefs], outputs=[ui.prefs], **HIDDEN
                  ).then(h.rerender, inputs=[ui.token, ui.session, ui.prefs], outputs=[ui.chatbot, ui.shown], **HIDDEN)
    demo.load(lambda p: (p.get("memories", True) is not False, p.get("sources", True) is not False)
              if isinstance(p, dict) else (True, True), inputs=[ui.prefs],
              outputs=[side.show_memories, side.show_sources], **HIDDEN)


def wire_memories(h: ChatHandlers, ui: Page, tab: MemoriesTab) -> None:
    memory_out = ui.outputs("memory_list", "memory_items", "memory_note", "memory_text", "memory_id")
    tab.tab.select(h.list_memories, inputs=[ui.token], outputs=memory_out, **HIDDEN)
    tab.show_all.click(h.list_memories, inputs=[ui.token], outputs=memory_out, **HIDDEN)
    tab.search.click(h.list_memories, inputs=[ui.token, tab.query], outputs=memory_out, **HIDDEN)
    tab.query.submit(h.list_memories, inputs=[ui.token, tab.query], outputs=memory_out, **HIDDEN)
    tab.listing.input(h.pick_memory, inputs=[tab.listing, ui.memory_items], outputs=[ui.memory_id, tab.text], **HIDDEN)
    tab.save.click(h.save_memory, inputs=[ui.token, ui.memory_id, tab.text, tab.query], outputs=memory_out,
                   **HIDDEN)
    tab.delete.click(h.delete_memory, inputs=[ui.token, ui.memory_id, tab.query], outputs=memory_out, **HIDDEN)
    tab.add.click(h.add_memory, inputs=[ui.token, tab.new], outputs=[*memory_out, tab.new], **HIDDEN)
    tab.export.click(h.export_memories, inputs=[ui.token], outputs=[tab.file, tab.note], **HIDDEN)


def build_ui(client: ChatClient, title: str = TITLE) -> gr.Blocks:
    with gr.Blocks(title=title, analytics_enabled=False, fill_height=True) as demo:
        token = gr.BrowserState("", storage_key=TOKEN_KEY, secret=STORAGE_SECRET)
        session = gr.BrowserState(None, storage_key=STORAGE_KEY, secret=STORAGE_SECRET)
        prefs = gr.BrowserState({"memories": True, "sources": True}, storage_key=PREFS_KEY, secret=STORAGE_SECRET)
        shown = gr.State([])  # the messages on screen, in the plain form the chatbot takes as output
        memory_items, memory_id = gr.State({}), gr.State(None)
        side = sidebar(title)
        form = sign_in_form(title)
        with gr.Column(visible=True, elem_id="main") as main, gr.Tabs(elem_id="tabs"):
            chat, memories = chat_tab(), memories_tab()

        ui = Page(token, session, prefs, shown, form.column, form.token_box, form.message, main, side.account,
                  side.signout, side.new, side.chats, side.rename_box, side.delete, side.confirm, chat.chatbot,
                  chat.text, chat.send, chat.stop, chat.retry, chat.regenerate, chat.edit, chat.limit, chat.info,
                  memories.query, memories.listing, memory_items, memory_id, memories.text, memories.new,
                  memories.note, memories.file)
        h = ChatHandlers(client, ui)
        wire_sign_in(demo, h, ui, form, side)
        wire_turns(h, ui, chat)
        wire_chats(h, ui, side)
        wire_settings(demo, h, ui, side)
        wire_memories(h, ui, memories)
    # many people chat at once; every handler only waits on the network
    demo.queue(default_concurrency_limit=None)
    demo.chat_handlers = h  # for tests: the handlers and, through them, the page's components
    return demo


def serve(client: ChatClient, host: str, port: int, share: bool) -> None:
    """Block serving the UI until interrupted (Gradio prints the public link when sharing)."""
    demo = build_ui(client)
    theme = gr.themes.Default(primary_hue="amber", font=SANS, font_mono=MONO)
    demo.launch(server_name=host, server_port=port, share=share, ssr_mode=False, css=CSS, theme=theme,
                quiet=not share, show_error=False, footer_links=[], mcp_server=False, pwa=False,
                enable_monitoring=False, strict_cors=True)
