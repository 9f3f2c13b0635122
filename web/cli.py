"""Command line of `python -m web`: options, environment defaults, warnings, then serve."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

DEFAULT_SERVER = "ws://127.0.0.1:8080/ws"

SHARE_WARNING = """\
warning: --share publishes this UI on a public gradio.live link through Gradio's tunnel servers.
         Anyone who gets the link can chat through your chat server, with this UI's API token if it has
         one, and use up its resources. Use it only for short demos."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m web", description="Streaming chat UI (Gradio) for the chat server")
    parser.add_argument("--server", default=os.environ.get("CHAT_SERVER_WS") or DEFAULT_SERVER,
                        help=f"the server's websocket URL (default: CHAT_SERVER_WS or {DEFAULT_SERVER})")
    parser.add_argument("--host", default="127.0.0.1", help="interface to serve the UI on (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=7860, help="port of the UI (default: 7860)")
    parser.add_argument("--share", action="store_true",
                        help="also publish a public gradio.live link (off by default; prints a warning)")
    parser.add_argument("--token", default=None,
                        help="API token for a server with SERVER_TOKENS (default: CHAT_SERVER_TOKEN; prefer the "
                             "variable, command lines are visible to other users of the machine)")
    return parser


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is between 0 and 65535")
    return port


def main(argv: list[str] | None = None) -> int:
    from dotenv import load_dotenv

    load_dotenv(override=False)  # same as the server: settings come from the environment or .env
    args = build_parser().parse_args(argv)
    token = args.token or os.environ.get("CHAT_SERVER_TOKEN") or None

    from web.offline import keep_offline

    keep_offline()
    from web.client import ChatClient
    from web.wire import ChatError

    if args.share:
        print(SHARE_WARNING, file=sys.stderr, flush=True)
    try:
        client = ChatClient(args.server, token)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(asyncio.wait_for(client.health(), 5))
    except (ChatError, TimeoutError) as exc:
        print(f"warning: {exc or 'the chat server did not answer in time'}; the page will show errors until it is up",
              file=sys.stderr, flush=True)

    from web.app import serve

    print(f"web UI on http://{args.host}:{args.port} for the chat server {args.server}", flush=True)
    try:
        serve(client, args.host, args.port, args.share)
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
