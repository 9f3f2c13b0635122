"""End to end in headless Chromium: `python -m server` (tiny local model), `python -m web`, a real browser."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ServerProcess
from tests.web.chat_page import ChatPage
from tests.web.conftest import SERVER_TOKENS, TOKEN, TURNS_PER_MINUTE
from tests.web.processes import WebProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Headless, and nothing in the background: the test machine has no internet and Chromium would keep trying.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions"]

# Greedy decoding on the tiny random model never picks EOS, so every reply runs to MAX_NEW_TOKENS: several
# seconds of real generation, long enough to watch a reply grow and to press Stop in the middle of it (its
# first words can take seconds to show: the model's streamer holds text back until a word boundary).
SERVER_ENV = {"LLM_BACKEND": "transformers", "MAX_NEW_TOKENS": "3000", "CONTEXT_TOKENS": "4096", "TEMPERATURE": "0",
              "MAX_MESSAGE_CHARS": "200", "LOG_FORMAT": "console", "SERVER_TOKENS": SERVER_TOKENS,
              "TURNS_PER_MINUTE": str(TURNS_PER_MINUTE)}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def servers(tiny_model_dir, tmp_path_factory):
    """`python -m server` and `python -m web`, started together (each takes seconds to import) and both awaited."""
    workdir = tmp_path_factory.mktemp("web-e2e")
    server = ServerProcess(workdir / "server", {"MODEL": str(tiny_model_dir), "DATA_DIR": str(workdir / "data"),
                                                **SERVER_ENV})
    ui = WebProcess(workdir / "ui", server.ws_url, env={"CHAT_SERVER_TOKEN": TOKEN})
    server.start(wait=False)  # its /health wants the token: waited for below
    try:
        ui.start()
        wait_until(lambda: server.proc.poll() is not None or _healthy(server.url), timeout=120, what="the server")
        assert server.proc.poll() is None, f"the server exited:\n{server.logs()}"
        yield server, ui
    finally:
        ui.stop()
        server.stop()


@pytest.fixture(scope="module")
def server(servers):
    return servers[0]


@pytest.fixture(scope="module")
def ui(servers):
    return servers[1]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `scripts/setup.sh test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives each launch a fresh, temporary user-data-dir
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def chat(browser, ui, tmp_path):
    """A page in a browser of its own (empty localStorage, so a session of its own)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    chat = ChatPage(page, ui.url)
    chat.external = []
    page.on("request", lambda r: None if r.url.startswith(ui.url) else chat.external.append(r.url))
    yield chat
    page.screenshot(path=tmp_path / "last.png", full_page=True)
    context.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", headers=AUTH, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def history(server, session: str) -> httpx.Response:
    return httpx.get(f"{server.url}/sessions/{session}/history", headers=AUTH)


def wait_until(condition, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached in {timeout}s")


def stopped_turn(chat: ChatPage, text: str) -> None:
    """Start a turn and stop it at once: a stored turn without waiting for a whole reply."""
    chat.send(text)
    chat.wait_streaming()
    chat.page.click("#stop")
    chat.wait_idle()


def test_the_page_loads_everything_from_the_ui_process_and_nothing_from_the_internet(chat):
    chat.open()
    # not "networkidle": Gradio keeps a heartbeat request open for as long as the page lives
    chat.page.wait_for_load_state("load")
    chat.page.wait_for_timeout(1000)
    assert chat.external == []


def test_a_reply_streams_into_the_page_ends_as_the_servers_text_and_is_still_there_after_a_reload(
        chat, server, tmp_path):
    chat.open()
    session = chat.session
    chat.send("How was your day?")
    chat.wait_streaming()
    seen: list[str] = []
    while chat.streaming():
        text = chat.reply()
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        time.sleep(0.05)
    final = chat.reply()
    assert len(seen) >= 3, f"the reply should grow over several polls, saw {len(seen)} states"
    assert all(later.startswith(earlier) and len(later) > len(earlier) for earlier, later in itertools.pairwise(seen))
    assert final.startswith(seen[-1]) and len(seen[0]) < len(final)

    turns = history(server, session).json()["turns"]
    assert [(t["user"], t["status"]) for t in turns] == [("How was your day?", "complete")]
    assert final == turns[0]["response"]
    chat.page.screenshot(path=tmp_path / "streamed-reply.png", full_page=True)

    chat.reload()
    wait_until(chat.reply, what="the reply after the reload")
    assert chat.session == session
    assert [(m["role"], m["text"]) for m in chat.messages()] == [("user", "How was your day?"), ("bot", final)]


def test_stop_halts_a_long_reply_and_the_server_records_the_turn_as_interrupted(chat, server, tmp_path):
    chat.open()
    chat.send("Tell me everything about poems")
    chat.wait_streaming()
    partial = chat.wait_for_reply_text()
    chat.page.click("#stop")
    chat.wait_idle(timeout=30)
    shown = chat.reply()
    assert "⏹ Stopped" in chat.titles()
    assert shown.startswith(partial)
    time.sleep(0.5)
    assert chat.reply() == shown, "the reply no longer grows"
    turn = history(server, chat.session).json()["turns"][0]
    assert turn["status"] == "interrupted" and turn["response"] == shown
    chat.page.screenshot(path=tmp_path / "stopped-reply.png", full_page=True)


def test_forget_this_chat_deletes_it_on_the_server_and_the_browser_starts_a_new_session(chat, server):
    chat.open()
    old = chat.session
    stopped_turn(chat, "Please forget this")
    assert len(history(server, old).json()["turns"]) == 1
    chat.page.click("#forget-chat")
    new = wait_until(lambda: chat.session != old and chat.session, what="a new session")
    assert chat.messages() == [] and "Forgot the previous chat" in chat.info
    assert history(server, old).status_code == 404
    chat.reload()
    assert chat.session == new and chat.messages() == []


def test_new_chat_starts_an_empty_session_and_leaves_the_old_chat_on_the_server(chat, server):
    chat.open()
    old = chat.session
    stopped_turn(chat, "Keep this one")
    chat.page.click("#new-chat")
    new = wait_until(lambda: chat.session != old and chat.session, what="a new session")
    assert chat.messages() == []
    assert [t["user"] for t in history(server, old).json()["turns"]] == ["Keep this one"]
    chat.reload()
    assert chat.session == new and chat.messages() == []


def test_a_new_chat_recalls_what_the_users_earlier_chat_told(chat, server):
    chat.open()
    earlier = chat.session
    told = httpx.post(f"{server.url}/sessions/{earlier}/import", headers=AUTH, timeout=120, json={"turns": [
        {"user": "My grey whippet is called Pixel.", "assistant": "A fine name for a fast dog."}]})
    assert told.status_code == 200, told.text
    pixel = next(m["id"] for m in httpx.get(f"{server.url}/memories", headers=AUTH).json()["memories"]
                 if "Pixel" in m["text"])
    chat.page.click("#new-chat")
    wait_until(lambda: chat.session != earlier and chat.session, what="a new session")
    stopped_turn(chat, "Do you remember my whippet Pixel?")
    # the turn's `end` names the memories its prompt held; the page shows them under the message
    used = wait_until(lambda: next((t for t in chat.titles() if "Memories used" in t), None), what="memories shown")
    assert f"#{pixel}" in used.replace(",", " ").split()


def test_a_server_error_shows_in_the_chat_as_a_readable_message(chat):
    chat.open()
    chat.send("x" * 201)
    message = wait_until(lambda: next((m["text"] for m in chat.last_turn() if m["text"].startswith("⚠️")), None),
                         what="the error message")
    assert message == "⚠️ The message has 201 characters; the limit is 200"
    chat.wait_idle()


def test_closing_the_tab_mid_reply_stops_generation_on_the_server(browser, ui, server):
    context = browser.new_context()
    chat = ChatPage(context.new_page(), ui.url).open()
    session = chat.session
    chat.send("I will not wait for this")
    chat.wait_for_reply_text()
    context.close()
    turn = wait_until(lambda: next((t for t in history(server, session).json()["turns"] if t["status"] != "pending"),
                                   None), what="the turn to end on the server")
    assert turn["status"] == "interrupted"
