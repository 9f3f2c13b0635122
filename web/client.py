"""Async client of the chat server: the websocket turn protocol and the session endpoints (README "Protocol").

Each turn gets its own websocket: the `cancel` frame must travel on the connection that carries the turn,
and closing that connection is how an abandoned turn (a closed browser tab) gets interrupted on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

from web.endpoints import http_base
from web.wire import (
    Account,
    ChatError,
    ChatInfo,
    Ended,
    Event,
    PastTurn,
    Recalled,
    ServerError,
    ServerUnreachable,
    Started,
    parse_event,
    parse_memories,
    parse_search,
)


class ChatClient:
    def __init__(self, ws_url: str, token: str | None = None, *, connect_timeout: float = 10.0,
                 idle_timeout: float = 300.0):
        self.ws_url = ws_url
        self.http_url = http_base(ws_url)
        self._token = token or None
        self.connect_timeout = connect_timeout
        # generation may queue behind other users' turns; only a server silent this long is considered gone
        self.idle_timeout = idle_timeout

    def __repr__(self) -> str:  # never show the token
        return f"ChatClient({self.ws_url!r}, token={'set' if self._token else 'none'})"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _http(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(headers=self.headers, timeout=aiohttp.ClientTimeout(
            total=self.connect_timeout + 20, connect=self.connect_timeout))

    def with_token(self, token: str | None) -> ChatClient:
        """The same server as another user: a browser's own sign-in (its token), or this client's default."""
        if not token or token == self._token:
            return self
        return ChatClient(self.ws_url, token, connect_timeout=self.connect_timeout, idle_timeout=self.idle_timeout)

    @property
    def has_token(self) -> bool:
        return self._token is not None

    async def _request(self, method: str, path: str, body: Any = None, raw: bool = False) -> tuple[int, Any]:
        url = f"{self.http_url}{path}"
        try:
            async with self._http() as http, http.request(method, url, json=body) as resp:
                if raw and resp.status == 200:
                    return resp.status, await resp.read()
                try:
                    body = await resp.json(content_type=None)
                except (json.JSONDecodeError, UnicodeDecodeError, aiohttp.ContentTypeError):
                    body = None
                return resp.status, body
        except aiohttp.ClientConnectionError as exc:
            raise ServerUnreachable(f"cannot reach the chat server at {self.http_url} ({reason(exc)})") from None
        except aiohttp.ClientError as exc:
            raise ChatError(f"cannot talk to the chat server at {self.http_url} ({reason(exc)})") from None
        except TimeoutError:
            raise ServerUnreachable(f"the chat server at {self.http_url} did not answer in time") from None

    @staticmethod
    def _raise_for(status: int, body: Any, what: str) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            raise ServerError(str(error.get("code", status)), str(error["message"]))
        if status in (401, 403):
            raise ServerError("unauthorized", f"the chat server refused to {what} (HTTP {status}); check the API token")
        raise ChatError(f"the chat server could not {what} (HTTP {status})")

    async def health(self) -> dict:
        status, body = await self._request("GET", "/health")
        if status != 200 or not isinstance(body, dict):
            self._raise_for(status, body, "report its health")
        return body

    async def history(self, session: str) -> list[PastTurn]:
        """The session's turns, oldest first; a session the server has never seen has none."""
        status, body = await self._request("GET", f"/sessions/{_path(session)}/history")
        if status == 404 and _code(body) == "not_found":
            return []
        if status != 200 or not isinstance(body, dict):
            self._raise_for(status, body, "load this chat")
        return [PastTurn(str(t.get("turn", "")), str(t.get("user") or ""), str(t.get("response") or ""),
                         str(t.get("status") or "complete"), parse_memories(t.get("memories")),
                         parse_search(t.get("search")))
                for t in body.get("turns", [])]

    async def account(self) -> Account:
        """Who this client chats as; raises ServerError("unauthorized") when the server wants a token."""
        status, body = await self._request("GET", "/whoami")
        if status != 200 or not isinstance(body, dict):
            self._raise_for(status, body, "say who you are")
        return Account(str(body.get("user") or ""), bool(body.get("single_user")),
                       int(body.get("max_message_chars") or 0))

    async def chats(self, limit: int = 100) -> list[ChatInfo]:
        """The user's chats, most recently active first."""
        status, body = await self._request("GET", f"/sessions?limit={limit}")
        if status != 200 or not isinstance(body, dict):
            self._raise_for(status, body, "list your chats")
        return [ChatInfo(str(s.get("id")), str(s.get("title") or ""), s.get("updated"), int(s.get("turns") or 0))
                for s in body.get("sessions", [])]

    async def rename(self, session: str, title: str) -> None:
        status, body = await self._request("PATCH", f"/sessions/{_path(session)}", {"title": title})
        if status != 200:
            self._raise_for(status, body, "rename this chat")

    async def memories(self, query: str = "", limit: int = 200) -> list[Recalled]:
        """All of the user's memories, newest first; with a query, what a message like it would recall."""
        path = f"/memories?query={quote(query)}&limit={limit}" if query.strip() else f"/memories?limit={limit}"
        status, body = await self._request("GET", path)
        if status != 200 or not isinstance(body, dict):
            self._raise_for(status, body, "list your memories")
        return list(parse_memories(body.get("memories")))

    async def add_memory(self, text: str) -> Recalled:
        status, body = await self._request("POST", "/memories", {"text": text})
        if status != 201 or not isinstance(body, dict):
            self._raise_for(status, body, "add this memory")
        return parse_memories([body])[0]

    async def edit_memory(self, memory: int, text: str) -> Recalled:
        status, body = await self._request("PATCH", f"/memories/{int(memory)}", {"text": text})
        if status != 200 or not isinstance(body, dict):
            self._raise_for(status, body, "change this memory")
        return parse_memories([body])[0]

    async def delete_memory(self, memory: int) -> None:
        status, body = await self._request("DELETE", f"/memories/{int(memory)}")
        if status != 200:
            self._raise_for(status, body, "forget this memory")

    async def export_memories(self) -> bytes:
        """The memory API's JSONL export, as the server wrote it."""
        status, body = await self._request("GET", "/memories/export", raw=True)
        if status != 200 or not isinstance(body, bytes):
            self._raise_for(status, body, "export your memories")
        return body

    async def forget(self, session: str) -> int:
        """Delete the session's turns and memories; returns how many memories went. Unknown sessions are a no-op."""
        status, body = await self._request("DELETE", f"/sessions/{_path(session)}")
        if status == 404 and _code(body) == "not_found":
            return 0
        if status != 200 or not isinstance(body, dict):
            self._raise_for(status, body, "forget this chat")
        return int(body.get("memories_removed") or 0)

    def turn(self, session: str, text: str) -> Turn:
        return Turn(self, session, text)


class Turn:
    """One chat turn on its own websocket: `async with client.turn(s, text) as turn: async for event in turn`.

    `cancel()` may be called from another task while the turn streams; the stream then ends with
    `Ended(stopped=True)` carrying the partial reply.
    """

    def __init__(self, client: ChatClient, session: str, text: str):
        self.client = client
        self.session = session
        self.text = text
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._started = False
        self._finished = False
        self._cancel_wanted = False
        self._cancel_sent = False

    async def __aenter__(self) -> Turn:
        client = self.client
        # no total timeout: it would cut long replies; the handshake has the connect timeout, the stream idle_timeout
        self._http = aiohttp.ClientSession(headers=client.headers, timeout=aiohttp.ClientTimeout(
            total=None, connect=client.connect_timeout, sock_connect=client.connect_timeout))
        try:
            self._ws = await self._http.ws_connect(client.ws_url, heartbeat=30.0, autoping=True,
                                                   timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                                                   max_msg_size=0)
            await self._ws.send_str(json.dumps({"type": "chat", "session": self.session, "text": self.text}))
        except aiohttp.WSServerHandshakeError as exc:
            await self.close()
            if exc.status in (401, 403):
                raise ServerError("unauthorized", f"the chat server refused the connection (HTTP {exc.status}); "
                                                  "check the API token") from None
            raise ChatError(f"the chat server at {client.ws_url} refused the websocket (HTTP {exc.status})") from None
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            await self.close()
            raise ServerUnreachable(f"cannot reach the chat server at {client.ws_url} ({reason(exc)})") from None
        except aiohttp.ClientError as exc:
            await self.close()
            raise ChatError(f"cannot talk to the chat server at {client.ws_url} ({reason(exc)})") from None
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        # shielded: a cancelled caller (a closed browser tab) must still close the socket, which is what
        # tells the server to stop generating
        await asyncio.shield(self._close())

    async def _close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._http is not None and not self._http.closed:
            await self._http.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def events(self) -> AsyncIterator[Event]:
        if self._ws is None:
            raise RuntimeError("use `async with client.turn(...)` before iterating")
        while not self._finished:
            frame = await self._receive()
            try:
                event = parse_event(frame)
            except ServerError:
                self._finished = True
                raise
            if isinstance(event, Started):
                self._started = True
                if self._cancel_wanted:
                    await self._send_cancel()
            elif isinstance(event, Ended):
                self._finished = True
            yield event

    async def cancel(self) -> None:
        """Ask the server to stop this turn. Before `start` arrives the request waits for it: the server
        only knows the turn (and can answer with a stopped `end`) once it has stored the message."""
        self._cancel_wanted = True
        if self._started and not self._finished:
            await self._send_cancel()

    async def _send_cancel(self) -> None:
        if self._cancel_sent or self._ws is None or self._ws.closed:
            return
        self._cancel_sent = True
        # a failed send means the turn is ending anyway; the receive loop reports how
        with contextlib.suppress(ConnectionError):
            await self._ws.send_str(json.dumps({"type": "cancel", "session": self.session}))

    async def _receive(self) -> dict:
        assert self._ws is not None
        try:
            msg = await self._ws.receive(timeout=self.client.idle_timeout)
        except TimeoutError:
            raise ChatError(f"the chat server sent nothing for {self.client.idle_timeout:g} s") from None
        if msg.type == aiohttp.WSMsgType.TEXT:
            try:
                frame = json.loads(msg.data)
            except json.JSONDecodeError:
                raise ChatError("the chat server sent a frame that is not JSON") from None
            if not isinstance(frame, dict):
                raise ChatError("the chat server sent a frame that is not a JSON object")
            return frame
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            code, why = self._ws.close_code, msg.extra if isinstance(msg.extra, str) else ""
            if code == aiohttp.WSCloseCode.POLICY_VIOLATION and not self._started:
                # how the server refuses a websocket it will not serve (a missing or wrong API token)
                raise ServerError("refused", f"the chat server refused the connection: {why or 'policy violation'}")
            detail = f" ({code}: {why})" if code and why else f" ({code})" if code else ""
            raise ChatError(f"the chat server closed the connection before the reply ended{detail}")
        if msg.type == aiohttp.WSMsgType.ERROR:
            raise ChatError(f"the connection to the chat server failed ({reason(msg.data)})")
        raise ChatError(f"the chat server sent an unexpected {msg.type.name.lower()} frame")


def reason(exc: BaseException | object) -> str:
    """A short, secret-free reason for a network failure (aiohttp's own messages can be long)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused: is the server running?"
        return (exc.os_error.strerror or str(exc.os_error)) if exc.os_error else "connection failed"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return text or type(exc).__name__


def _code(body: Any) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _path(session: str) -> str:
    return quote(session, safe="")
