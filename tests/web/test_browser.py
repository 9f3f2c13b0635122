"""End to end in headless Chromium: `python -m server` (a scripted OpenAI-compatible model and a search API with
result pages, all on 127.0.0.1), `python -m web` without a token of its own, and a real browser per person.

One server, one UI and one browser for the whole module (they take seconds to start); each test opens its own
browser context (its own localStorage: its own person) and uses its own chats.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.search.fakeweb import FakeWeb
from tests.support.scripted_openai import Reply, ScriptedOpenAI
from tests.support.servers import ServerProcess
from tests.web.chat_page import ChatPage, settled, wait_until
from tests.web.processes import WebProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Headless, and nothing in the background: the test machine has no internet and Chromium would keep trying.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions"]

ALICE, BOB = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef"
LIMIT = 200
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
# Screenshots worth keeping (SCREENSHOTS=dir), e.g. the README's.
SHOTS = os.environ.get("SCREENSHOTS")


def words(text: str, delay: float = 0.0) -> Reply:
    """A scripted reply streamed in small pieces."""
    return Reply(tokens=[piece for word in text.split(" ") for piece in (word, " ")][:-1], token_delay_s=delay)


@pytest.fixture(scope="module")
def model():
    scripted = ScriptedOpenAI().start()
    yield scripted
    scripted.stop()


@pytest.fixture(scope="module")
def web():
    fake = FakeWeb().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def servers(model, web, tmp_path_factory):
    """`python -m server` and `python -m web`, started together (each takes seconds to import) and both awaited."""
    workdir = tmp_path_factory.mktemp("web-e2e")
    search = web.settings_for("searxng")
    server = ServerProcess(workdir / "server", {
        "LLM_BACKEND": "openai", "OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-scripted", "MODEL": model.model,
        "DATA_DIR": str(workdir / "data"), "MAX_MESSAGE_CHARS": str(LIMIT), "LOG_FORMAT": "console",
        "SERVER_TOKENS": f"{ALICE}:alice,{BOB}:bob", "TURNS_PER_MINUTE": "10000", "FLUSH_EVERY": "1000",
        "SEARCH_PROVIDER": "searxng", "SEARCH_URL": search["search_url"],
        "SEARCH_FETCH_ALLOW": search["search_fetch_allow"], "SEARCH_BREAKER_FAILURES": "1000"})
    ui = WebProcess(workdir / "ui", server.ws_url, env={"CHAT_SERVER_TOKEN": ""})
    server.start(wait=False)
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
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def person(browser, ui, model, tmp_path):
    """Open a page as a new person (a browser context of their own: empty localStorage)."""
    contexts = []
    model.reset()

    def open_page(token: str | None = ALICE, viewport: dict = DESKTOP) -> ChatPage:
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        chat = ChatPage(page, ui.url)
        chat.external, chat.dialogs = [], []
        page.on("request", lambda r: None if r.url.startswith(ui.url) else chat.external.append(r.url))
        page.on("dialog", lambda d: (chat.dialogs.append(d.message), d.dismiss()))
        chat.open()
        if token:
            chat.sign_in(token)
        return chat

    yield open_page
    for i, context in enumerate(contexts):
        for page in context.pages:
            page.screenshot(path=tmp_path / f"last-{i}.png", full_page=True)
        context.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", headers=auth(ALICE), timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def history(server, session: str, token: str = ALICE) -> httpx.Response:
    return httpx.get(f"{server.url}/sessions/{session}/history", headers=auth(token))


def prompt_of(model, index: int = -1) -> str:
    """Everything the model was given for its `index`-th request."""
    return "\n".join(str(m.get("content")) for m in model.requests[index].body["messages"])


def shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=path)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=Path(SHOTS) / name)
    return path


def test_a_first_look_desktop_and_phone(person, tmp_path):
    desk = person(ALICE)
    assert "Signed in as alice" in desk.page.inner_text("#account")
    shot(desk.page, tmp_path, "desktop-empty.png")
    phone = person(ALICE, PHONE)
    shot(phone.page, tmp_path, "phone-empty.png")
    print(tmp_path)


def test_a_reply_streams_into_the_page_ends_as_the_servers_text_and_is_still_there_after_a_reload(
        person, server, model):
    chat = person()
    session = chat.session
    model.push(words("Nothing much, I walked by the river and wrote two lines about the plum blossoms "
                     "that came out early this year.", delay=0.1))
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
    turns = history(server, session).json()["turns"]
    assert [(t["user"], t["status"]) for t in turns] == [("How was your day?", "complete")]
    assert final == turns[0]["response"]
    chat.reload()
    wait_until(chat.reply, what="the reply after the reload")
    assert chat.session == session
    assert [(m["role"], m["text"]) for m in chat.messages()] == [("user", "How was your day?"), ("bot", final)]
    assert chat.external == [], "the page loads everything from the UI process, nothing from the internet"


def test_stop_halts_a_long_reply_and_the_server_records_the_turn_as_interrupted(person, server, model):
    chat = person()
    model.push(words(" ".join(f"word{i}" for i in range(200)), delay=0.05))
    chat.send("Tell me everything about poems")
    partial = chat.wait_for_reply_text()
    chat.page.click("#stop")
    chat.wait_idle(timeout=30)
    shown = wait_until(lambda: "⏹ Stopped" in chat.titles() and chat.reply(), what="the stopped turn")
    assert shown.startswith(partial) and len(shown.split()) < 200
    turn = history(server, chat.session).json()["turns"][0]
    assert turn["status"] == "interrupted" and turn["response"].strip() == shown  # the page trims what it shows


def test_switching_back_to_an_earlier_chat_continues_it_and_chats_can_be_renamed_and_deleted(person, server):
    chat = person()
    first = chat.session
    chat.chat("Plum blossoms in the snow")
    chat.page.click("#new-chat")
    second = wait_until(lambda: chat.session != first and chat.session, what="a new chat")
    assert chat.messages() == []
    chat.chat("Bamboo shoots for dinner")
    labels = wait_until(lambda: len(chat.chats()) >= 2 and chat.chats(), what="both chats listed")
    assert labels[0].startswith("Bamboo shoots for dinner") and labels[1].startswith("Plum blossoms in the snow")

    chat.page.locator("#chats label", has_text="Plum blossoms").click()
    wait_until(lambda: chat.session == first, what="the earlier chat")
    wait_until(lambda: [m["text"] for m in chat.messages() if m["role"] == "user"] == ["Plum blossoms in the snow"],
               what="its messages")
    chat.chat("And what about the moon?")
    assert [t["user"] for t in history(server, first).json()["turns"]] == ["Plum blossoms in the snow",
                                                                            "And what about the moon?"]
    chat.reload()
    assert chat.session == first and len([m for m in chat.messages() if m["role"] == "user"]) == 2

    chat.page.click("#chat-actions >> text=This chat")  # the chat's actions are one click away
    chat.page.fill("#rename-box textarea", "Winter flowers 冬花")
    chat.page.click("#rename-chat")
    wait_until(lambda: any(label.startswith("Winter flowers 冬花") for label in chat.chats()), what="the new name")

    chat.page.click("#delete-chat")
    chat.page.locator("#confirm-delete-yes").wait_for()
    chat.page.click("#confirm-delete-no")  # second thoughts: nothing is deleted
    chat.page.locator("#confirm-delete-yes").wait_for(state="hidden")
    assert history(server, first).status_code == 200
    chat.page.click("#delete-chat")
    chat.page.click("#confirm-delete-yes")
    wait_until(lambda: chat.session not in (first, second), what="a new chat after the delete")
    assert history(server, first).status_code == 404
    wait_until(lambda: not any(label.startswith("Winter flowers") for label in chat.chats()), what="gone from list")
    assert any(label.startswith("Bamboo shoots") for label in chat.chats())


SUMMARY = ("The deadlift starts with the barbell over the middle of your foot [1]. Keep your back flat and neutral "
           "and brace your core [2]. <script>window.__pwned = 'summary'</script>")
REPLY = ("Stand with the bar over **mid-foot** [1], keep a *flat back* and brace [2].\n\n"
         "<script>window.__pwned = 'reply'</script><img src=x onerror=\"window.__pwned='img'\">\n\n"
         "```python\nbar = 'over mid-foot'\n```")


def test_sources_are_numbered_links_markers_link_to_them_no_script_runs_and_a_reload_keeps_it(
        person, web, model, tmp_path):
    chat = person()
    web.results = [web.result("/deadlift"), web.result("/deadlift-mistakes")]
    model.push(Reply(tokens=[SUMMARY]), words(REPLY))
    chat.chat("How do you perform a deadlift properly?")

    def check() -> None:
        turn = chat.last_turn()
        search = chat.block("🔎 Searched the web")
        assert search is not None, [m["title"] for m in turn]
        sources = next(m for m in turn if m["text"].startswith("Sources"))
        urls = [web.page_url("/deadlift"), web.page_url("/deadlift-mistakes")]
        assert [link["href"] for link in sources["links"]] == urls
        assert [link["text"] for link in sources["links"]] == ["How to deadlift with good form",
                                                              "Five deadlift mistakes beginners make"]
        assert "[1] How to deadlift with good form · 127.0.0.1" in sources["text"]
        assert "[2] Five deadlift mistakes beginners make · 127.0.0.1" in sources["text"]
        reply = next(m for m in turn[1:] if m["title"] is None and m["text"].startswith("Stand with"))
        assert [(link["text"], link["href"]) for link in reply["links"]] == [("[1]", urls[0]), ("[2]", urls[1])]
        assert chat.page.locator("#chat strong", has_text="mid-foot").count() == 1, "the reply is markdown"
        assert chat.page.evaluate("window.__pwned") is None and chat.dialogs == []
        assert chat.page.locator("#chat img[src='x']").count() == 0 or \
            chat.page.evaluate("[...document.querySelectorAll('#chat img')].every(i => !i.getAttribute('onerror'))")

    settled(check)
    # the summary is text from web pages: shown as text, never run
    chat.page.locator("#chat .thought-group .title", has_text="Searched the web").last.click()
    wait_until(lambda: "<script>window.__pwned = 'summary'</script>" in chat.page.inner_text("#chat"),
               what="the summary shown as text")
    assert chat.page.locator("#chat pre code", has_text="bar = 'over mid-foot'").count() == 1
    assert chat.page.locator("#chat pre button, #chat .copy_code_button, #chat [aria-label*='opy']").count() >= 1
    shot(chat.page, tmp_path, "desktop-search.png")
    chat.reload()
    wait_until(lambda: chat.block("🔎 Searched the web"), what="the search block after a reload")
    settled(check)


def memory_titles(chat: ChatPage) -> str:
    block = chat.block("🧠 Recalled")
    return block["text"] if block else ""


def open_memories(chat: ChatPage) -> None:
    chat.page.click("#tabs button[role='tab']:has-text('Memories')")
    chat.page.locator("#memory-note").filter(has_text="memor").wait_for()


def test_a_recalled_memory_shows_its_text_is_edited_on_the_memories_page_and_forgotten_for_good(
        person, model, tmp_path):
    chat = person(BOB)  # bob's memories are his own: nothing of the other tests is recalled here
    open_memories(chat)
    chat.page.fill("#memory-new textarea", "My grey whippet is called Pixel.")
    chat.page.click("#memory-add")
    chat.page.locator("#memory-list label", has_text="My grey whippet is called Pixel.").wait_for()

    chat.page.click("#tabs button[role='tab']:has-text('Chat')")
    chat.chat("Do you remember my grey whippet Pixel?")
    block = wait_until(lambda: chat.block("🧠 Recalled"), what="the recalled memories")
    assert "My grey whippet is called Pixel." in prompt_of(model)
    # collapsed: one click shows the memory's text and date
    chat.page.locator("#chat .thought-group .title", has_text="Recalled").last.click()
    wait_until(lambda: "My grey whippet is called Pixel." in chat.page.inner_text("#chat"), what="memory text")
    assert time.strftime("%Y-%m-%d", time.gmtime()) in chat.page.inner_text("#chat")
    shot(chat.page, tmp_path, "desktop-memories.png")

    open_memories(chat)
    chat.page.locator("#memory-list label", has_text="Pixel").click()
    wait_until(lambda: "Pixel" in chat.page.input_value("#memory-text textarea"), what="the memory in the editor")
    chat.page.fill("#memory-text textarea", "My grey whippet is called Byte.")
    chat.page.click("#memory-save")
    chat.page.locator("#memory-list label", has_text="My grey whippet is called Byte.").wait_for()
    shot(chat.page, tmp_path, "desktop-memories-page.png")

    chat.page.click("#tabs button[role='tab']:has-text('Chat')")
    chat.chat("What is my grey whippet called?")
    assert "My grey whippet is called Byte." in prompt_of(model)
    assert "My grey whippet is called Pixel." not in prompt_of(model)
    chat.page.locator("#chat .thought-group .title", has_text="Recalled").last.click()
    wait_until(lambda: "My grey whippet is called Byte." in chat.last_turn()[-1]["text"] or
               any("called Byte." in m["text"] for m in chat.last_turn()), what="the edited memory recalled")
    assert block is not None

    open_memories(chat)
    chat.page.locator("#memory-list label", has_text="Byte").click()
    wait_until(lambda: "Byte" in chat.page.input_value("#memory-text textarea"), what="the memory in the editor")
    chat.page.click("#memory-delete")
    chat.page.locator("#memory-note", has_text="Forgotten").wait_for()
    assert chat.page.locator("#memory-list label", has_text="whippet is called").count() == 0
    chat.page.click("#tabs button[role='tab']:has-text('Chat')")
    chat.chat("Tell me about my grey whippet again")
    assert "whippet is called" not in prompt_of(model)
    assert chat.block("🧠 Recalled") is None

    open_memories(chat)
    with chat.page.expect_download() as download:
        chat.page.click("#memory-export")
        chat.page.locator("#memory-file a").first.click()
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert "whippet" not in exported


def test_two_people_signed_in_on_one_ui_never_see_each_others_chats_or_memories(person, server):
    alice, bob = person(ALICE), person(BOB)
    secret = f"Alice's secret garden {uuid.uuid4().hex[:6]}"
    alice.chat(secret)
    httpx.post(f"{server.url}/memories", headers=auth(ALICE), json={"text": f"{secret} has roses"}).raise_for_status()
    wait_until(lambda: any(label.startswith("Alice's secret garden") for label in alice.chats()), what="her chat")
    bob.reload()
    assert "Signed in as bob" in bob.page.inner_text("#account")
    assert not any("secret garden" in label for label in bob.chats())
    open_memories(bob)
    assert "secret garden" not in bob.page.inner_text("#memory-list")
    bob.page.fill("#memory-query textarea", "secret garden roses")
    bob.page.click("#memory-search")
    bob.page.locator("#memory-note", has_text="recalled for").wait_for()
    assert "secret garden" not in bob.page.inner_text("#memory-list")
    # alice's chat opened in bob's browser is not shown to him
    assert history(server, alice.session, BOB).status_code == 403

    alice.page.click("#sign-out")
    alice.page.locator("#token input").wait_for()
    assert alice.page.is_hidden("#main") and "secret garden" not in alice.page.inner_text("body")
    alice.page.reload()
    alice.page.locator("#token input").wait_for()
    alice.page.fill("#token input", "not-a-token-of-this-server")
    alice.page.click("#sign-in")
    alice.page.locator("#signin-msg", has_text="refused").wait_for()


def test_errors_keep_the_text_to_retry_and_controls_edit_regenerate_and_count(person, server, model):
    chat = person()
    too_long = "x" * (LIMIT + 1)
    chat.page.fill("#message textarea", too_long)
    chat.page.locator("#counter", has_text=f"{LIMIT + 1} / {LIMIT} characters").wait_for()
    chat.page.press("#message textarea", "Enter")
    message = wait_until(lambda: next((m["text"] for m in chat.last_turn() if m["text"].startswith("⚠️")), None),
                         what="the error message")
    assert message.strip() == f"⚠️ The message has {LIMIT + 1} characters; the limit is {LIMIT}"
    chat.wait_idle()
    assert chat.page.input_value("#message textarea") == too_long, "the text stays to send again"
    chat.page.locator("#retry").wait_for()
    chat.page.fill("#message textarea", "short now")
    chat.page.locator("#counter").filter(has_text="characters").wait_for(state="detached", timeout=5000) \
        if chat.page.locator("#counter", has_text="characters").count() else None
    chat.page.click("#retry")
    chat.wait_idle()
    # the chat exists once its first turn is stored: until then its history is not_found
    wait_until(lambda: [t["user"] for t in history(server, chat.session).json().get("turns", [])] == ["short now"],
               what="the retried message stored")

    chat.page.click("#edit-last")
    wait_until(lambda: chat.page.input_value("#message textarea") == "short now", what="the last message to edit")
    chat.page.fill("#message textarea", "short now, edited")
    chat.page.press("#message textarea", "Enter")
    # the send button is still showing right after Enter: wait for the turn itself before regenerating it
    wait_until(lambda: [(t["user"], t["status"]) for t in history(server, chat.session).json()["turns"]][-1:] == [
        ("short now, edited", "complete")], what="the edited message answered")
    chat.wait_idle()
    model.push(words("A second answer."))
    chat.page.click("#regenerate")
    wait_until(lambda: len(history(server, chat.session).json()["turns"]) == 3, what="the regenerated turn")
    chat.wait_idle()
    assert [t["user"] for t in history(server, chat.session).json()["turns"]] == [
        "short now", "short now, edited", "short now, edited"]
    regenerated = history(server, chat.session).json()["turns"][-1]["response"]
    wait_until(lambda: chat.reply() == regenerated, what="the regenerated reply")


def test_the_users_text_shows_as_typed_and_settings_hide_memories_and_sources(person, web, model):
    chat = person()
    typed = "# not a heading\n  *not emphasis* <b>not bold</b> 1. not a list"
    chat.chat(typed)
    user = [m for m in chat.messages() if m["role"] == "user"][-1]
    assert user["text"].strip() == typed.replace("  ", "\u00a0\u00a0") or user["text"].strip().replace(
        "\u00a0", " ") == typed
    assert chat.page.locator("#chat [data-testid='user'] b, #chat [data-testid='user'] h1").count() == 0

    web.results = [web.result("/su-shi")]
    model.push(Reply(tokens=["Su Shi, also known as Su Dongpo, was a Chinese poet of the Song dynasty [1]."]),
               words("My brother Su Zhe [1]."))
    chat.chat("Who was Su Shi's younger brother according to the web?")
    assert chat.block("🔎 Searched the web") is not None
    chat.page.click("#settings >> text=Settings")
    chat.page.click("#show-sources input")
    wait_until(lambda: chat.block("🔎 Searched the web") is None, what="search hidden")
    assert not any(m["text"].startswith("Sources") for m in chat.last_turn())
    chat.reload()  # the setting is kept in the browser
    assert chat.block("🔎 Searched the web") is None
    chat.page.click("#settings >> text=Settings")
    chat.page.click("#theme label:has-text('Dark')")
    wait_until(lambda: chat.page.evaluate("document.body.classList.contains('dark')"), what="dark theme")
    chat.page.click("#show-sources input")
    wait_until(lambda: chat.block("🔎 Searched the web") is not None, what="search shown again")


def glyph_boxes(page, selector: str, chars: str) -> list[bytes]:
    """The rendered pixels of each character of `chars` (found in the element), cut from a screenshot."""
    from io import BytesIO

    from PIL import Image

    rects = page.evaluate("""([selector, chars]) => {
      const root = document.querySelector(selector);
      const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      let node;
      while ((node = walker.nextNode())) {
        const at = node.data.indexOf(chars);
        if (at < 0) continue;
        return [...chars].map((_, i) => {
          const range = document.createRange();
          range.setStart(node, at + i); range.setEnd(node, at + i + 1);
          const r = range.getBoundingClientRect();
          return [r.left, r.top, r.right, r.bottom];
        });
      }
      return null;
    }""", [selector, chars])
    assert rects, f"{chars!r} is not on the page"
    image = Image.open(BytesIO(page.screenshot())).convert("L")
    scale = image.width / page.viewport_size["width"]
    return [image.crop(tuple(round(v * scale) for v in rect)).resize((24, 24)).tobytes() for rect in rects]


def test_chinese_renders_as_glyphs_not_tofu_boxes(person, tmp_path):
    chat = person(ALICE, PHONE)
    chat.page.evaluate("""() => { const p = document.createElement('p'); p.id = 'glyphs';
        p.style.cssText = 'font-size:48px;font-family:var(--font);position:fixed;top:0;left:0;z-index:9999;'
                        + 'background:white;color:black;margin:0';
        p.textContent = '「東坡」 \\u{E000}\\u{E001}'; document.body.appendChild(p); }""")
    east, slope = glyph_boxes(chat.page, "#glyphs", "東坡")
    missing = glyph_boxes(chat.page, "#glyphs", "\ue000\ue001")  # private-use code points: no font has them
    assert east != slope, "東 and 坡 render as two different glyphs, not as identical tofu boxes"
    assert east not in missing and slope not in missing, "neither looks like a character without a glyph"
    ink = [sum(1 for b in box if b < 128) for box in (east, slope)]
    assert all(n > 20 for n in ink), f"the glyphs have ink: {ink}"
    chat.page.evaluate("document.getElementById('glyphs').remove()")
    chat.chat("東坡先生，您在黃州的時候每天做什麼？ 🌙")
    shot(chat.page, tmp_path, "phone-chat.png")


def test_the_servers_front_page_points_a_browser_to_the_ui(server):
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "python -m web" in page.text and 'href="http://127.0.0.1:7860"' in page.text
    me = httpx.get(f"{server.url}/whoami", headers=auth(BOB)).json()
    assert me == {"user": "bob", "single_user": False, "max_message_chars": LIMIT}
    assert httpx.get(f"{server.url}/memories").status_code == 401, "only `/` is open without a token"
