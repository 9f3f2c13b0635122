"""`python -m server [--host 127.0.0.1] [--port 8080]`"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description="Chat server with long-term memory")
    parser.add_argument("--host", help="interface to bind (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: PORT or 8080)")
    args = parser.parse_args(argv)

    from server.config import Settings
    from server.logs import configure_logging, get_logger

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    log = get_logger("server")

    from aiohttp import web

    from server.app import build_app
    from server.llm.transformers_backend import ModelLoadError

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    try:
        web.run_app(build_app(settings), host=settings.host, port=settings.port, access_log=None,
                    shutdown_timeout=settings.drain_timeout + 5, print=None,
                    handler_cancellation=True)
    except ModelLoadError as exc:
        log.error("cannot start", reason=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
