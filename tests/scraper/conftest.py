"""Fixtures for the scraper tests: a loopback Wikisource mirror (real aiohttp server on 127.0.0.1)
and crawl settings tuned so injected faults cost milliseconds, not the polite production seconds."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import unquote

import pytest

from scraper.config import CrawlConfig
from scraper.corpus import Poem
from tests.scraper.mirror import CORPUS_DIR, Catalog, Expected, Mirror, MirrorConfig, load_catalog

CONTACT = "scraper-tests@example.org"
# A share of the index that keeps every notable link (stubs, redirects, red links, duplicates,
# several-poem pages, the <small> volumes) plus a sample of ordinary ones: ~470 pages.
SUBSET = 0.05


def pytest_collection_modifyitems(items):
    if not CORPUS_DIR.is_dir():  # pragma: no cover - the shared corpus ships with the workspace
        skip = pytest.mark.skip(reason=f"shared corpus not found at {CORPUS_DIR}")
        for item in items:
            if "tests/scraper" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
async def start_mirror(catalog) -> AsyncIterator[Callable[..., object]]:
    """Start mirrors on 127.0.0.1 in the test's event loop; all are stopped at teardown."""
    started: list[Mirror] = []

    async def start(**config) -> Mirror:
        mirror = await Mirror(MirrorConfig(**config), catalog).start()
        started.append(mirror)
        return mirror

    yield start
    for mirror in started:
        await mirror.stop()


def fast_config(mirror: Mirror, out: Path, **overrides) -> CrawlConfig:
    values = dict(
        index_url=mirror.index_url,
        out_dir=out,
        concurrency=8,
        rate=0,
        contact=CONTACT,
        timeout=0.5,
        max_attempts=5,
        backoff_initial=0.01,
        backoff_max=0.2,
        progress=False,
    )
    values.update(overrides)
    return CrawlConfig(**values)


def read_jsonl(path: Path) -> list[Poem]:
    return [Poem(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_matches_expected(out_dir: Path, expected: Expected) -> list[Poem]:
    got = read_jsonl(out_dir / "poems.jsonl")
    assert len(got) == len(expected.works)
    assert [p.title for p in got] == expected.titles
    for poem, want in zip(got, expected.works, strict=True):
        assert poem.text == want.text, poem.title
        assert poem.volume == want.volume, poem.title
        assert unquote(poem.url) == want.url, poem.title
    return got


def settled_titles(state_path: Path) -> set[str]:
    """Titles of pages the state has committed an answer for (read-only, like a second process would)."""
    from scraper.urls import title_of

    with sqlite3.connect(f"file:{state_path}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT url FROM pages WHERE status IN ('done', 'missing') OR (status = 'failed' AND transient = 0)"
        ).fetchall()
    return {title_of(url) for (url,) in rows}
