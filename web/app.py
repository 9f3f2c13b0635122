"""The Gradio page: a streaming chatbot wired to the handlers, with the session kept in the browser."""

from __future__ import annotations

import gradio as gr

from web.client import ChatClient
from web.handlers import ChatHandlers

# The key of the session id in the browser's localStorage.
STORAGE_KEY = "dongpo-chat-session"
# BrowserState obfuscates what it stores with this key, which the page itself receives: it hides nothing from
# the browser's owner. A fixed key keeps every browser's chat across restarts of the UI (a random one would not).
STORAGE_SECRET = "dongpo-chat-browser-state"

# Replies are shown as the text the server sent: keep its spaces and line breaks (poems rely on them).
CSS = """
#chat [data-testid="bot"], #chat [data-testid="user"] { white-space: pre-wrap; }
#chat .thought-group { white-space: normal; }
#session-info { opacity: 0.75; font-size: 0.85em; }
"""


def build_ui(client: ChatClient, title: str = "Dongpo chat") -> gr.Blocks:
    handlers = ChatHandlers(client)
    with gr.Blocks(title=title, analytics_enabled=False, fill_height=True) as demo:
        session = gr.BrowserState(None, storage_key=STORAGE_KEY, secret=STORAGE_SECRET)
        shown = gr.State([])  # the messages on screen, in the plain form the chatbot takes as output
        gr.Markdown(f"## {title}")
        chatbot = gr.Chatbot(elem_id="chat", render_markdown=False, scale=1, height="70vh", show_label=False,
                             buttons=["copy", "copy_all"], feedback_options=None,
                             placeholder="Ask anything — replies stream as they are written.")
        with gr.Row(equal_height=True):
            text = gr.Textbox(elem_id="message", placeholder="Message", show_label=False, scale=8, lines=1,
                              max_lines=8, autofocus=True, container=False)
            send = gr.Button("Send", elem_id="send", variant="primary", scale=1, min_width=80)
            stop = gr.Button("Stop", elem_id="stop", variant="stop", scale=1, min_width=80, visible=False)
        with gr.Row():
            new = gr.Button("New chat", elem_id="new-chat", size="sm")
            forget = gr.Button("Forget this chat", elem_id="forget-chat", size="sm", variant="secondary")
        info = gr.Markdown(elem_id="session-info")

        page = [session, chatbot, shown, info]
        demo.load(handlers.restore, inputs=[session], outputs=page, api_visibility="undocumented")
        gr.on([text.submit, send.click], handlers.respond, inputs=[text, session, shown],
              outputs=[session, chatbot, shown, text, send, stop, new, forget], concurrency_limit=None,
              show_progress="hidden", trigger_mode="once", api_visibility="undocumented")
        # Stop must run while the turn's event is still streaming: its own event, never queued behind it
        stop.click(handlers.stop, inputs=[session], outputs=None, concurrency_limit=None, show_progress="hidden",
                   api_visibility="undocumented")
        new.click(handlers.new_chat, inputs=None, outputs=page, api_visibility="undocumented")
        chatbot.clear(handlers.new_chat, inputs=None, outputs=page, api_visibility="undocumented")
        forget.click(handlers.forget, inputs=[session], outputs=page, api_visibility="undocumented")
    # many people chat at once; every handler only waits on the network
    demo.queue(default_concurrency_limit=None)
    return demo


def serve(client: ChatClient, host: str, port: int, share: bool) -> None:
    """Block serving the UI until interrupted (Gradio prints the public link when sharing)."""
    demo = build_ui(client)
    demo.launch(server_name=host, server_port=port, share=share, ssr_mode=False, css=CSS, quiet=not share,
                show_error=False, footer_links=["settings"], mcp_server=False, pwa=False, enable_monitoring=False,
                strict_cors=True)
