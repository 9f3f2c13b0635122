"""Where the chat server's HTTP endpoints live, given the websocket URL the UI was pointed at."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def http_base(ws_url: str) -> str:
    """`ws://host:8080/ws` → `http://host:8080`; `wss://host/chat/ws` → `https://host/chat`.

    One URL to configure: the HTTP routes (`/sessions/...`, `/health`) sit beside `/ws` on the same
    server, also when a reverse proxy mounts it under a prefix.
    """
    parts = urlsplit(ws_url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"the chat server URL must look like ws://host:port/ws or wss://host/ws, not {ws_url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/ws"):
        path = path[: -len("/ws")]
    return urlunsplit(("https" if parts.scheme == "wss" else "http", parts.netloc, path, "", ""))
