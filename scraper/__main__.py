"""`python -m scraper`: crawl a Wikisource collection into poems.jsonl and poems.html.

Exit status: 0 when every page is settled (works, stubs, missing pages and permanent failures are
all answers), 1 when pages with transient failures remain (run again with --resume), 2 for usage
errors and state conflicts, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from scraper.config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_INDEX_URL,
    DEFAULT_OUT_DIR,
    DEFAULT_RATE,
    ConfigError,
    CrawlConfig,
)
from scraper.crawl import CrawlError, CrawlSummary, crawl
from scraper.state import StateError

T = TypeVar("T")
EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scraper",
        description="Collect the works linked from a Wikisource index page into poems.jsonl and poems.html.",
    )
    parser.add_argument("--index-url", default=DEFAULT_INDEX_URL, help="collection index page (default: 東坡全集)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help="output and state directory")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the crawl saved in --out")
    mode.add_argument("--force", action="store_true", help="discard the crawl saved in --out and start over")
    mode.add_argument("--export-only", action="store_true", help="only rewrite the outputs from the saved state")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="simultaneous requests")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="max requests per second (0: no limit)")
    parser.add_argument("--contact", default=None, help="e-mail or URL for the User-Agent (or SCRAPER_CONTACT)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds of server silence before retrying")
    parser.add_argument("--max-attempts", type=int, default=6, help="requests per page before giving up this run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: every retry)")
    return parser


def config_from_args(args: argparse.Namespace) -> CrawlConfig:
    extra = {} if args.contact is None else {"contact": args.contact}
    return CrawlConfig(
        index_url=args.index_url,
        out_dir=args.out,
        resume=args.resume,
        force=args.force,
        export_only=args.export_only,
        concurrency=args.concurrency,
        rate=args.rate,
        timeout=args.timeout,
        max_attempts=args.max_attempts,
        progress=not args.no_progress,
        **extra,
    )


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed; SIGTERM cancels like Ctrl-C, so fetched results get committed."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        loop = runner.get_loop()
        task: asyncio.Task[T] = loop.create_task(main)
        with_term = hasattr(signal, "SIGTERM") and sys.platform != "win32"
        if with_term:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return runner.run(_await(task))
        finally:
            if with_term:
                loop.remove_signal_handler(signal.SIGTERM)


async def _await(task: asyncio.Task[T]) -> T:
    return await task


def _print_summary(console: Console, summary: CrawlSummary, out_dir: Path) -> None:
    c = summary.counts
    exported = summary.exported
    console.print(
        f"[bold]{c.works} pages with a work[/bold], {c.stubs} cross-reference stubs, {c.missing} missing pages, "
        f"{c.failed_permanent} permanent failures, {c.failed_transient} transient failures, "
        f"{c.pending} pending  ({summary.fetched} pages fetched with {summary.requests} requests "
        f"in {summary.elapsed:.1f}s)"
    )
    if exported is not None:
        note = f" ({exported.same_page} were redirects to a work already written)" if exported.same_page else ""
        console.print(f"wrote {exported.works} works to {out_dir / 'poems.jsonl'} and {out_dir / 'poems.html'}{note}")
    for url, reason, transient in summary.failures:
        console.print(f"  {'transient' if transient else 'permanent'}: {url}: {reason}", markup=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # soft_wrap: messages are log lines, and a wrapped URL is a broken URL.
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        console.print(f"error: {exc}", markup=False)
        return EXIT_USAGE

    show_progress = config.progress and console.is_terminal and not config.export_only
    progress = Progress(
        TextColumn("crawling"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress,
    )
    bar = progress.add_task("pages", total=None)

    def on_progress(settled: int, total: int) -> None:
        progress.update(bar, completed=settled, total=total)

    try:
        with progress:
            summary = run(crawl(config, on_progress))
    except (StateError, ConfigError) as exc:
        console.print(f"error: {exc}", markup=False)
        return EXIT_USAGE
    except CrawlError as exc:
        console.print(f"error: {exc}", markup=False)
        return EXIT_INCOMPLETE
    except OSError as exc:  # disk full, permissions: the state keeps every committed page
        console.print(f"error: {exc}; fix the cause and run again with --resume", markup=False)
        return EXIT_INCOMPLETE
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print(
            f"interrupted: every finished page is saved in {config.state_path}; run again with --resume "
            "to continue, or --export-only to write what has been collected so far",
            markup=False,
        )
        return EXIT_INTERRUPTED
    _print_summary(Console(highlight=False, soft_wrap=True), summary, config.out_dir)
    if not summary.complete:
        left = summary.counts.failed_transient + summary.counts.pending
        console.print(
            f"not finished: {left} page(s) failed with transient errors; run the same command again with "
            "--resume to retry them",
            markup=False,
        )
        return EXIT_INCOMPLETE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
