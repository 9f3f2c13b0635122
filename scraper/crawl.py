"""`await crawl(config)`: discover the works on the index page, fetch and parse every page not yet
settled in the state, commit each result as it arrives, then export the corpus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scraper.config import CrawlConfig
from scraper.discovery import DiscoveryError, discover
from scraper.export import ExportResult, export, remove_stale_temporaries
from scraper.fetch import Fetcher, FetchError, NotFound, PermanentError, TransientError
from scraper.parse import ParsedPage, parse_page
from scraper.state import Counts, PageResult, State, StateError

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # (settled so far, total)


class CrawlError(RuntimeError):
    """The crawl cannot run at all (index page unreachable, robots.txt forbids it, ...)."""


@dataclass(frozen=True, slots=True)
class CrawlSummary:
    counts: Counts
    exported: ExportResult | None
    fetched: int  # pages fetched in this run
    requests: int  # HTTP requests in this run, retries included
    elapsed: float
    failures: list[tuple[str, str, bool]]  # a sample: (url, reason, transient)

    @property
    def complete(self) -> bool:
        """Nothing left that a --resume could still get."""
        return self.counts.pending == 0 and self.counts.failed_transient == 0


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """One crawler per output directory: two would fetch every page twice."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no advisory locks, trust the user
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"{out_dir} is in use by another crawl") from None
        yield
    finally:
        os.close(fd)


def _open_state(config: CrawlConfig) -> State:
    path = config.state_path
    exists = State.exists(path)
    if config.export_only:
        if not exists:
            raise StateError(f"--export-only: no crawl state at {path}")
        return State.open(path)
    if exists and config.force:
        State.remove(path)
    elif exists and not config.resume:
        state = State.open(path)
        if not state.discovered:  # an earlier start failed before finding any work: nothing to keep
            return state
        try:
            counts = state.counts()
        finally:
            state.close()
        raise StateError(
            f"{path} already holds a crawl ({counts.settled} of {counts.total} pages settled): "
            "pass --resume to continue it or --force to discard it and start over"
        )
    state = State.open(path)
    recorded = state.index_url
    if recorded is not None and recorded != config.index_url:
        state.close()
        raise StateError(
            f"{path} belongs to a crawl of {recorded}, not {config.index_url}: use another --out or --force"
        )
    return state


class _Writer:
    """Commits results from a queue in a worker thread; whatever is ready goes in one transaction."""

    def __init__(self, state: State, on_commit: Callable[[int], None]) -> None:
        self._state = state
        self._on_commit = on_commit
        self._queue: asyncio.Queue[PageResult | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="state-writer")

    def put(self, result: PageResult) -> None:
        if self._task.done():
            self._task.result()  # surfaces a failed commit (disk full, ...) to the producer
        self._queue.put_nowait(result)

    async def _run(self) -> None:
        closing = False
        while not closing:
            batch: list[PageResult] = []
            item = await self._queue.get()
            while True:
                if item is None:
                    closing = True
                else:
                    batch.append(item)
                if self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await asyncio.to_thread(self._state.commit, batch)
                self._on_commit(len(batch))

    async def close(self) -> None:
        self._queue.put_nowait(None)
        # Shielded: on Ctrl-C the results already fetched are still worth committing.
        await asyncio.shield(self._task)


def _result(url: str, page: ParsedPage, attempts: int) -> PageResult:
    if page.stub:
        return PageResult(
            url, "done", kind="stub", title=page.title, canonical=page.canonical, note=page.stub, attempts=attempts
        )
    return PageResult(
        url, "done", kind="work", title=page.title, text=page.text, canonical=page.canonical, attempts=attempts
    )


async def _process(fetcher: Fetcher, url: str) -> PageResult:
    if not fetcher.allowed(url):
        return PageResult(url, "failed", note="disallowed by robots.txt", attempts=0)
    attempts = [0]
    try:
        page = await fetcher.get(url, parse_page, attempts=attempts)
    except NotFound as exc:
        return PageResult(url, "missing", note=exc.reason, http_status=exc.status, attempts=attempts[0])
    except PermanentError as exc:
        return PageResult(url, "failed", note=exc.reason, http_status=exc.status, attempts=attempts[0])
    except TransientError as exc:
        return PageResult(url, "failed", note=exc.reason, transient=True, http_status=exc.status, attempts=attempts[0])
    assert isinstance(page, ParsedPage)
    return _result(url, page, attempts[0])


async def _discover(fetcher: Fetcher, state: State, index_url: str) -> None:
    if not fetcher.allowed(index_url):
        raise CrawlError(f"robots.txt does not allow fetching the index page {index_url}")
    try:
        discovery = await fetcher.get(index_url, lambda html, _url: discover(html, index_url))
    except NotFound as exc:
        raise CrawlError(f"index page not found: {exc}") from exc
    except FetchError as exc:
        raise CrawlError(f"could not fetch the index page: {exc}") from exc
    except DiscoveryError as exc:  # pragma: no cover - parse errors are retried as transient
        raise CrawlError(str(exc)) from exc
    links = discovery.links  # type: ignore[union-attr]
    if not any(not link.missing for link in links):
        raise CrawlError(f"{index_url}: no work links found in its <ol> lists or <small> runs")
    await asyncio.to_thread(state.save_discovery, index_url, links)
    log.info(
        "discovered %d works (%d red links, %d duplicate links dropped)",
        len(links),
        sum(link.missing for link in links),
        discovery.duplicates,  # type: ignore[union-attr]
    )


async def crawl(config: CrawlConfig, progress: ProgressCallback | None = None) -> CrawlSummary:
    """Run (or continue) the crawl described by `config`; returns what the state holds at the end.

    Raises StateError or CrawlError when the crawl cannot run; a page that fails is recorded,
    never raised. Cancellation (Ctrl-C) commits the results already fetched before it propagates.
    """
    started = time.monotonic()
    with _exclusive(config.out_dir):
        remove_stale_temporaries(config.out_dir)
        state = await asyncio.to_thread(_open_state, config)
        try:
            if config.export_only:
                if not state.discovered:
                    raise StateError(f"--export-only: the crawl in {config.state_path} has not started")
                exported = await asyncio.to_thread(export, state, config.out_dir)
                return _summary(state, exported, 0, 0, started)
            async with Fetcher(config) as fetcher:
                try:
                    await fetcher.load_robots(config.index_url)
                except FetchError as exc:
                    raise CrawlError(str(exc)) from exc
                if not state.discovered:
                    await _discover(fetcher, state, config.index_url)
                fetched = await _fetch_pending(config, fetcher, state, progress)
            exported = await asyncio.to_thread(export, state, config.out_dir)
            return _summary(state, exported, fetched, fetcher.requests, started)
        finally:
            state.close()


async def _fetch_pending(config: CrawlConfig, fetcher: Fetcher, state: State, progress: ProgressCallback | None) -> int:
    todo = await asyncio.to_thread(state.todo)
    counts = await asyncio.to_thread(state.counts)
    total = counts.total
    settled = total - len(todo)
    if progress:
        progress(settled, total)

    def committed(n: int) -> None:
        nonlocal settled
        settled += n
        if progress:
            progress(settled, total)

    writer = _Writer(state, committed)
    # Far more pages in flight than connections: a page sleeping out a backoff or a Retry-After
    # holds no connection, and with a few percent of requests failing, hundreds may be asleep at once.
    window = asyncio.Semaphore(max(256, 8 * config.concurrency))

    async def one(url: str) -> None:
        try:
            writer.put(await _process(fetcher, url))
        finally:
            window.release()

    try:
        async with asyncio.TaskGroup() as group:
            for item in todo:
                await window.acquire()
                group.create_task(one(item.url))
    finally:
        await writer.close()
    return len(todo)


def _summary(state: State, exported: ExportResult | None, fetched: int, requests: int, started: float) -> CrawlSummary:
    return CrawlSummary(
        counts=state.counts(),
        exported=exported,
        fetched=fetched,
        requests=requests,
        elapsed=time.monotonic() - started,
        failures=state.failures(),
    )
