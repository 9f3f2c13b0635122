"""The chat page as a person sees it, read through Playwright (sync API)."""

from __future__ import annotations

import time

from playwright.sync_api import Page

# Every chat message in page order: who wrote it, the title of a collapsible block, the text shown, its links.
_MESSAGES_JS = """() => [...document.querySelectorAll('#chat [data-testid="user"], #chat [data-testid="bot"]')]
  .map(el => {
    const title = el.querySelector('.thought-group .title');
    return {role: el.dataset.testid, title: title ? title.innerText.trim() : null, text: el.innerText,
            links: [...el.querySelectorAll('a[href]')].map(a => ({text: a.innerText.trim(), href: a.href}))};
  })"""


class ChatPage:
    def __init__(self, page: Page, url: str):
        self.page = page
        self.url = url

    def open(self) -> ChatPage:
        self.page.goto(self.url)
        return self

    def wait_loaded(self) -> None:
        self.page.locator("#session-info code").wait_for(timeout=30_000)

    def sign_in(self, token: str) -> ChatPage:
        self.page.locator("#token input").wait_for(timeout=30_000)
        self.page.fill("#token input", token)
        self.page.click("#sign-in")
        self.wait_loaded()
        return self

    def reload(self) -> None:
        self.page.reload()
        self.wait_loaded()

    @property
    def session(self) -> str:
        return self.page.inner_text("#session-info code").strip()

    @property
    def info(self) -> str:
        return self.page.inner_text("#session-info")

    def send(self, text: str) -> None:
        self.page.fill("#message textarea", text)
        self.page.press("#message textarea", "Enter")

    def chat(self, text: str) -> str:
        """Send a message and wait for the reply to end; returns the reply's text."""
        before = self.user_messages()
        self.send(text)
        # The message shows and Send still shows right after Enter, before the turn's first update. Anything after
        # the message (memories, sources, reply, error) comes from that update, which swaps Send for Stop; the last
        # update swaps them back.
        wait_until(lambda: self.user_messages() > before and len(self.last_turn()) > 1 and self.page.is_visible(
            "#send"), timeout=120, what="the turn to end")
        return self.reply()

    def user_messages(self) -> int:
        return self.page.locator('#chat [data-testid="user"]').count()

    def messages(self) -> list[dict]:
        return self.page.evaluate(_MESSAGES_JS)

    def last_turn(self) -> list[dict]:
        """The last user message and everything shown after it."""
        messages = self.messages()
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        return messages[users[-1]:] if users else []

    def reply(self) -> str:
        """The text of the last turn's reply so far ('' before the first token shows)."""
        return next((m["text"] for m in self.last_turn()[1:] if m["title"] is None and not m["text"].startswith(
            ("⚠️", "Sources"))), "")

    def block(self, prefix: str) -> dict | None:
        """The last turn's collapsible block whose title starts with `prefix`."""
        return next((m for m in self.last_turn() if m["title"] and m["title"].startswith(prefix)), None)

    def titles(self) -> list[str]:
        return [m["title"] for m in self.last_turn() if m["title"]]

    def streaming(self) -> bool:
        return self.page.is_visible("#stop")

    def wait_streaming(self, timeout: float = 30) -> None:
        self.page.locator("#stop").wait_for(state="visible", timeout=timeout * 1000)

    def wait_idle(self, timeout: float = 120) -> None:
        self.page.locator("#send").wait_for(state="visible", timeout=timeout * 1000)

    def wait_for_reply_text(self, timeout: float = 60) -> str:
        return wait_until(self.reply, timeout, "reply text")

    def chats(self) -> list[str]:
        """The sidebar's list of chats, as labelled."""
        return [t.strip() for t in self.page.locator("#chats label").all_inner_texts()]


def wait_until(condition, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached in {timeout}s")


def settled(check, timeout: float = 30):
    """Run `check` (which asserts) until it passes: the chat re-renders its last update a moment after the
    controls change (markdown, links), so what a finished turn shows can lag the Send button by a little."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

