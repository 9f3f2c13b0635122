"""The page's handlers against a real server: streaming, Stop, errors, sign-in, chats and memories."""

import asyncio

import pytest

from server import failpoints
from tests.support.servers import free_port
from tests.web.conftest import TOKEN, new_session
from web.app import build_ui
from web.client import ChatClient
from web.render import reply_message, user_message


@pytest.fixture(scope="module")
def page():
    """The handlers of a page built without a default token: every call names the browser's own."""
    return build_ui(ChatClient("ws://127.0.0.1:9/ws")).chat_handlers


def bound(page, server):
    page.client = ChatClient(server.ws_url)
    return page, page.ui


async def turn(handlers, text: str, session: str) -> list[dict]:
    return [u async for u in handlers.respond(text, TOKEN, session, [], {})]


async def test_a_turn_streams_then_shows_the_stored_chat_and_leaves_the_controls_as_they_were(page, chat_server):
    h, ui = bound(page, chat_server)
    session = new_session()
    updates = await turn(h, "Tell me about the moon", session)
    first, last = updates[0], updates[-1]
    assert first[ui.session] == session and first[ui.text] == ""
    assert first[ui.stop]["visible"] is True and first[ui.send]["visible"] is False
    assert last[ui.stop]["visible"] is False and last[ui.send]["visible"] is True
    reply = (await h.client.with_token(TOKEN).history(session))[0].response
    assert last[ui.chatbot] == last[ui.shown] and last[ui.shown][0] == user_message("Tell me about the moon")
    assert last[ui.shown][1] == reply_message(reply)
    assert session in [value for _, value in last[ui.chats]["choices"]]
    assert h.running == {}


async def test_stop_ends_the_streaming_turn_on_the_server_and_the_chat_says_it_stopped(page, chat_server, monkeypatch):
    monkeypatch.setitem(failpoints._ARMED, "generate.before", "sleep:5")
    h, ui = bound(page, chat_server)
    session = new_session()
    stream = h.respond("a long reply", TOKEN, session, [], {})
    await anext(stream)  # the Stop button is showing now
    stopper = asyncio.create_task(h.stop(session))
    updates = [u async for u in stream]
    await stopper
    assert updates[-1][ui.chatbot][-1]["metadata"]["title"] == "⏹ Stopped"
    assert (await h.client.with_token(TOKEN).history(session))[0].status == "interrupted"


async def test_a_refused_message_shows_why_keeps_the_text_and_offers_a_retry(page, chat_server):
    h, ui = bound(page, chat_server)
    too_long = "x" * (chat_server.settings.max_message_chars + 1)
    last = (await turn(h, too_long, new_session()))[-1]
    assert last[ui.chatbot][-1]["content"].startswith(f"⚠️ The message has {len(too_long)} characters")
    assert last[ui.text] == too_long and last[ui.retry]["visible"] is True


async def test_without_a_token_the_page_asks_to_sign_in_and_a_wrong_token_is_refused(page, chat_server):
    h, ui = bound(page, chat_server)
    signed_out = await h.restore("", None, {})
    assert signed_out[ui.signin]["visible"] is True and signed_out[ui.main]["visible"] is False
    refused = await h.sign_in("not-the-token-at-all", None, {})
    assert refused[ui.signin_msg] == "⚠️ That token was refused."
    signed_in = await h.sign_in(TOKEN, None, {})
    assert signed_in[ui.token] == TOKEN and signed_in[ui.main]["visible"] is True
    assert "Signed in as **web\\-tester**" in signed_in[ui.account]


async def test_chats_are_listed_renamed_and_deleted_with_their_memories(page, chat_server):
    h, ui = bound(page, chat_server)
    session = new_session()
    await turn(h, "a chat to rename", session)
    renamed = await h.rename(TOKEN, session, "Moon poems 月")
    assert ("Moon poems 月", session) in [(label.split(" · ")[0], value) for label, value in
                                           renamed[ui.chats]["choices"]]
    deleted = await h.delete(TOKEN, session)
    assert deleted[ui.session] != session and deleted[ui.chatbot] == []
    assert session not in [value for _, value in deleted[ui.chats]["choices"]]
    assert await h.client.with_token(TOKEN).history(session) == []


async def test_memories_are_added_edited_and_forgotten_from_the_memories_tab(page, chat_server):
    h, ui = bound(page, chat_server)
    added = await h.add_memory(TOKEN, "My tortoise is called Shell.")
    [(_, memory)] = [c for c in added[ui.memory_list]["choices"] if "tortoise" in c[0]]
    picked = await h.pick_memory(memory, added[ui.memory_items])
    assert picked[ui.memory_text] == "My tortoise is called Shell."
    saved = await h.save_memory(TOKEN, memory, "My tortoise is called Dome.", "")
    assert saved[ui.memory_items][memory] == "My tortoise is called Dome."
    gone = await h.delete_memory(TOKEN, memory, "")
    assert memory not in gone[ui.memory_items] and gone[ui.memory_note].startswith("Forgotten")


async def test_an_unreachable_server_is_explained_on_the_page_instead_of_failing(page):
    page.client = ChatClient(f"ws://127.0.0.1:{free_port()}/ws")
    ui = page.ui
    shown = await page.restore("", None, {})
    assert shown[ui.main]["visible"] is True and "Could not load this chat: cannot reach the chat server" in \
        shown[ui.info]
    last = [u async for u in page.respond("hello?", "", new_session(), [], {})][-1]
    assert last[ui.chatbot][-1]["content"].startswith("⚠️ Cannot reach the chat server at ws\\://127\\.0\\.0\\.1\\:")
