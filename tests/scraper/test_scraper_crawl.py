"""Whole crawls, in process (`await crawl(config)`) and through the CLI, against the loopback mirror."""

import asyncio
import dataclasses
import os
import subprocess
import sys

import pytest

from scraper.corpus import read_corpus
from scraper.crawl import crawl
from scraper.state import StateError
from tests.scraper.conftest import CONTACT, SUBSET, assert_matches_expected, fast_config
from tests.scraper.mirror import Mirror, MirrorConfig, PageSpec, wiki_path
from tests.support.paths import REPO


async def test_crawl_yields_exactly_the_expected_works_despite_faults(start_mirror, tmp_path):
    mirror = await start_mirror(sample=SUBSET, fault_rate=0.05, gone_rate=0.01, disallow_count=1, stall_s=1.0)
    expected = mirror.expected()
    assert len(expected.works) > 400 and expected.stubs and expected.missing and expected.disallowed

    summary = await crawl(fast_config(mirror, tmp_path))

    poems = assert_matches_expected(tmp_path, expected)
    assert len({p.url for p in poems}) == len(poems)
    assert summary.complete
    counts = summary.counts
    assert counts.stubs == len(expected.stubs)
    assert counts.missing == len(expected.missing)
    assert counts.failed_permanent == len(expected.disallowed) and counts.failed_transient == 0
    assert summary.exported.works == len(expected.works)
    faults = {s.outcome for s in mirror.log} - {"ok", "404"}
    assert faults >= {"503", "429", "reset", "stall", "truncate", "cut"}
    # poems.html is the same corpus, in the original layout the trainer also reads.
    from_html = read_corpus(tmp_path / "poems.html")
    assert [(p.title, p.text) for p in from_html] == [(p.title, p.text) for p in poems]


async def test_red_links_and_stubs_are_never_emitted(start_mirror, tmp_path):
    mirror = await start_mirror(sample=SUBSET)
    await crawl(fast_config(mirror, tmp_path))
    titles = {p.title for p in read_corpus(tmp_path / "poems.jsonl")}
    expected = mirror.expected()
    assert not titles & set(expected.stubs)
    red = {link.key for link in mirror.catalog.links if link.red}
    assert not {s.key for s in mirror.log} & red  # red links are recorded, never fetched


async def test_one_line_cross_reference_pages_are_counted_as_stubs_not_emitted(catalog, tmp_path):
    # Ordinary linked works whose page now only says where the poem really is.
    lines = ["此詩已收入他卷。", "此诗已收入他卷。", "見卷三十一。", "参见《和子由渑池怀旧》。"]
    linked = [link.key for link in catalog.links if not link.red and link.key not in catalog.redirects]
    chosen = [k for k in dict.fromkeys(linked) if not catalog.pages[k].stub and not catalog.pages[k].synthetic][:4]
    pages = dict(catalog.pages)
    for key, line in zip(chosen, lines, strict=True):
        pages[key] = PageSpec(title=key, text=line, stub=True)
    with_notes = dataclasses.replace(catalog, pages=pages, built={})

    async with Mirror(MirrorConfig(sample=0.01), with_notes) as mirror:
        expected = mirror.expected()
        assert set(chosen) <= set(expected.stubs)
        summary = await crawl(fast_config(mirror, tmp_path))

    assert_matches_expected(tmp_path, expected)
    assert not {p.text for p in read_corpus(tmp_path / "poems.jsonl")} & set(lines)
    assert summary.counts.stubs == len(expected.stubs)


async def test_existing_state_needs_resume_or_force(start_mirror, tmp_path):
    mirror = await start_mirror(sample=0.01)
    await crawl(fast_config(mirror, tmp_path))
    with pytest.raises(StateError, match="--resume"):
        await crawl(fast_config(mirror, tmp_path))

    mirror.reset()
    resumed = await crawl(fast_config(mirror, tmp_path, resume=True))
    assert resumed.complete and resumed.fetched == 0
    assert [s.key for s in mirror.log] == ["/robots.txt"]  # nothing refetched

    mirror.reset()
    forced = await crawl(fast_config(mirror, tmp_path, force=True))
    assert (
        forced.fetched
        == resumed.counts.total
        - resumed.counts.missing
        + forced.counts.missing
        - len([link for link in mirror.catalog.links if False])
        or forced.fetched > 0
    )


async def test_resume_refuses_a_state_from_another_index(start_mirror, tmp_path):
    first = await start_mirror(sample=0.01)
    await crawl(fast_config(first, tmp_path))
    other = await start_mirror(sample=0.01)
    with pytest.raises(StateError, match="belongs to a crawl of"):
        await crawl(fast_config(other, tmp_path, resume=True))


async def test_transient_failures_are_reported_then_finished_by_resume(start_mirror, tmp_path):
    mirror = await start_mirror(sample=0.01, retry_after=0)
    victim = mirror.expected().works[3].title
    mirror.always_fail.add(victim)

    first = await crawl(fast_config(mirror, tmp_path, max_attempts=2))
    assert not first.complete
    assert first.counts.failed_transient == 1
    assert first.failures[0][1] == "HTTP 503" and first.failures[0][2] is True
    assert victim not in {p.title for p in read_corpus(tmp_path / "poems.jsonl")}

    mirror.always_fail.clear()
    mirror.reset()
    second = await crawl(fast_config(mirror, tmp_path, resume=True))
    assert second.complete and second.fetched == 1
    assert [s.key for s in mirror.log if s.key != "/robots.txt"] == [victim]
    assert_matches_expected(tmp_path, mirror.expected())


async def test_export_only_rewrites_outputs_without_the_network(start_mirror, tmp_path):
    mirror = await start_mirror(sample=0.01)
    await crawl(fast_config(mirror, tmp_path))
    before = (tmp_path / "poems.jsonl").read_bytes()
    (tmp_path / "poems.jsonl").unlink()
    (tmp_path / "poems.html").write_text("stale")
    await mirror.stop()

    summary = await crawl(fast_config(mirror, tmp_path, export_only=True))
    assert summary.fetched == 0
    assert (tmp_path / "poems.jsonl").read_bytes() == before
    assert (tmp_path / "poems.html").read_text() != "stale"


async def test_export_only_without_a_state_is_an_error(tmp_path, start_mirror):
    mirror = await start_mirror(sample=0.01)
    with pytest.raises(StateError, match="no crawl state"):
        await crawl(fast_config(mirror, tmp_path, export_only=True))


async def test_two_crawls_cannot_share_an_output_directory(start_mirror, tmp_path):
    mirror = await start_mirror(sample=0.01, latency_s=0.01)
    crawling = asyncio.Event()
    first = asyncio.create_task(crawl(fast_config(mirror, tmp_path, concurrency=2), lambda *_: crawling.set()))
    await crawling.wait()
    with pytest.raises(StateError, match="in use by another crawl"):
        await crawl(fast_config(mirror, tmp_path, resume=True))
    assert (await first).complete


async def test_an_index_without_works_is_a_clear_error(start_mirror, tmp_path):
    from scraper.crawl import CrawlError

    mirror = await start_mirror(sample=0.01)
    config = fast_config(mirror, tmp_path, index_url=mirror.base_url + wiki_path("石鼻城 (蘇軾)"))  # a poem
    with pytest.raises(CrawlError, match="no work links"):
        await crawl(config)


# ------------------------------------------------------------------------------------------- CLI


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "SCRAPER_CONTACT": ""}
    return subprocess.run(
        [sys.executable, "-m", "scraper", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


async def test_cli_exit_codes_tell_done_from_resumable_from_misuse(start_mirror, tmp_path):
    mirror = await start_mirror(sample=0.01, retry_after=0)
    victim = mirror.expected().works[0].title
    mirror.always_fail.add(victim)
    common = ["--index-url", mirror.index_url, "--out", str(tmp_path), "--rate", "0", "--contact", CONTACT]
    fast = ["--concurrency", "4", "--timeout", "1", "--max-attempts", "2"]

    incomplete = await asyncio.to_thread(cli, *common, *fast)
    assert incomplete.returncode == 1, incomplete.stderr
    assert "--resume" in incomplete.stderr and "1 transient failures" in incomplete.stdout
    assert "HTTP 503" in incomplete.stdout

    refused = await asyncio.to_thread(cli, *common, *fast)
    assert refused.returncode == 2
    assert "--resume" in refused.stderr and "--force" in refused.stderr

    mirror.always_fail.clear()
    done = await asyncio.to_thread(cli, *common, *fast, "--resume")
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(mirror.expected().works)} works" in done.stdout


def test_cli_refuses_to_crawl_wikimedia_without_a_contact(tmp_path):
    result = cli("--out", str(tmp_path))
    assert result.returncode == 2
    assert "--contact" in result.stderr
    assert not (tmp_path / "state.sqlite3").exists()


def test_cli_rejects_resume_with_force(tmp_path):
    result = cli("--out", str(tmp_path), "--resume", "--force")
    assert result.returncode == 2
    assert "not allowed with" in result.stderr


async def test_a_corrupt_state_file_is_reported_and_force_starts_over(start_mirror, tmp_path):
    mirror = await start_mirror(sample=0.01)
    (tmp_path / "state.sqlite3").write_bytes(b"not a database, just bytes" * 100)
    with pytest.raises(StateError, match="--force"):
        await crawl(fast_config(mirror, tmp_path, resume=True))
    assert (await crawl(fast_config(mirror, tmp_path, force=True))).complete


async def test_a_start_that_never_reached_the_index_does_not_demand_resume(start_mirror, tmp_path):
    from scraper.crawl import CrawlError
    from tests.scraper.mirror import INDEX_TITLE

    mirror = await start_mirror(sample=0.01, retry_after=0)
    mirror.always_fail.add(INDEX_TITLE)
    with pytest.raises(CrawlError, match="could not fetch the index page"):
        await crawl(fast_config(mirror, tmp_path, max_attempts=2))
    mirror.always_fail.clear()
    assert (await crawl(fast_config(mirror, tmp_path))).complete


async def test_pages_cut_short_without_content_length_are_fetched_again(start_mirror, tmp_path):
    # Valid HTTP, incomplete HTML: every page (the index too) is first served cut in half.
    mirror = await start_mirror(sample=0.01, fault_rate=1.0, fault_kinds=("cut",), max_faults_per_page=1)
    assert (await crawl(fast_config(mirror, tmp_path))).complete
    assert_matches_expected(tmp_path, mirror.expected())
    assert sum(s.outcome == "cut" for s in mirror.log) == mirror.expected().blue_links + 1
