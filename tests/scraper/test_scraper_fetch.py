"""The HTTP layer against the loopback mirror: retries, Retry-After, permanent answers, politeness."""

import asyncio
import time

import pytest

from scraper.config import CrawlConfig
from scraper.fetch import Fetcher, NotFound, RateLimiter, TransientError
from scraper.parse import parse_page
from tests.scraper.conftest import fast_config
from tests.scraper.mirror import FAULT_KINDS, UA_POLICY, wiki_path

PAGE = "石鼻城 (蘇軾)"


def page_url(mirror, title=PAGE):
    return mirror.base_url + wiki_path(title)


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_each_injected_fault_is_retried_until_the_page_arrives(start_mirror, tmp_path, kind):
    mirror = await start_mirror(fault_rate=1.0, fault_kinds=(kind,), max_faults_per_page=2, retry_after=0, stall_s=1.0)
    async with Fetcher(fast_config(mirror, tmp_path, timeout=0.3)) as fetcher:
        attempts = [0]
        page = await fetcher.get(page_url(mirror), parse_page, attempts=attempts)
    assert page.title == PAGE and page.text
    assert [s.outcome for s in mirror.log] == [kind, kind, "ok"]
    # aiohttp itself resends a GET once when a reused connection turns out dead.
    assert attempts == [3] or (kind == "reset" and attempts == [2])


async def test_retry_after_is_waited_out_even_when_backoff_is_shorter(start_mirror, tmp_path):
    mirror = await start_mirror(fault_rate=1.0, fault_kinds=("503",), max_faults_per_page=1, retry_after=1)
    async with Fetcher(fast_config(mirror, tmp_path)) as fetcher:
        await fetcher.get(page_url(mirror), parse_page)
    first, second = mirror.log
    assert (first.outcome, second.outcome) == ("503", "ok")
    assert second.at - first.at >= 0.95


async def test_a_retry_after_beyond_the_cap_leaves_the_page_for_later(start_mirror, tmp_path):
    mirror = await start_mirror(fault_rate=1.0, fault_kinds=("429",), retry_after=3600)
    started = time.monotonic()
    async with Fetcher(fast_config(mirror, tmp_path, max_retry_after=60)) as fetcher:
        with pytest.raises(TransientError, match="HTTP 429") as caught:
            await fetcher.get(page_url(mirror), parse_page)
    assert caught.value.retry_after == 3600
    assert len(mirror.log) == 1 and time.monotonic() - started < 5


async def test_transient_failures_stop_after_max_attempts(start_mirror, tmp_path):
    mirror = await start_mirror(retry_after=0)
    mirror.always_fail.add(PAGE)
    async with Fetcher(fast_config(mirror, tmp_path, max_attempts=3)) as fetcher:
        with pytest.raises(TransientError, match="HTTP 503"):
            await fetcher.get(page_url(mirror), parse_page)
    assert len(mirror.log) == 3


async def test_a_404_is_answered_once_not_retried(start_mirror, tmp_path):
    mirror = await start_mirror()
    async with Fetcher(fast_config(mirror, tmp_path)) as fetcher:
        with pytest.raises(NotFound) as caught:
            await fetcher.get(page_url(mirror, "No such poem"), parse_page)
    assert caught.value.status == 404
    assert len(mirror.log) == 1


async def test_user_agent_has_wikimedia_form_with_the_contact(start_mirror, tmp_path):
    mirror = await start_mirror()
    config = fast_config(mirror, tmp_path, contact="poet@example.org")
    async with Fetcher(config) as fetcher:
        await fetcher.get(page_url(mirror), parse_page)
    (agent,) = mirror.user_agents
    assert UA_POLICY.match(agent)
    assert agent.startswith("dongpo-scraper/") and "(poet@example.org)" in agent and " aiohttp/" in agent


def test_wikimedia_targets_require_a_contact():
    with pytest.raises(ValueError, match="--contact"):
        CrawlConfig(contact="")
    assert CrawlConfig(contact="me@example.org").targets_wikimedia


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"concurrency": 0}, "--concurrency"),
        ({"rate": -1}, "--rate"),
        ({"resume": True, "force": True}, "pick one"),
        ({"index_url": "ftp://example.org/x"}, "--index-url"),
        ({"contact": "me (x)"}, "parentheses"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(settings, message):
    with pytest.raises(ValueError, match=message):
        CrawlConfig(**{"contact": "me@example.org", **settings})


async def test_robots_txt_is_honoured(start_mirror, tmp_path):
    mirror = await start_mirror(sample=0.05, disallow_count=1)
    (forbidden,) = mirror.expected().disallowed
    async with Fetcher(fast_config(mirror, tmp_path)) as fetcher:
        await fetcher.load_robots(mirror.index_url)
        assert not fetcher.allowed(page_url(mirror, forbidden))
        assert fetcher.allowed(page_url(mirror))
        assert not fetcher.allowed(mirror.base_url + "/w/index.php?title=X&action=edit")


async def test_concurrency_caps_simultaneous_requests(start_mirror, tmp_path):
    mirror = await start_mirror(latency_s=0.05)
    titles = [link.key for link in mirror.catalog.links if not link.red][:24]
    async with Fetcher(fast_config(mirror, tmp_path, concurrency=3)) as fetcher:
        await asyncio.gather(*(fetcher.get(page_url(mirror, t), parse_page) for t in titles))
    assert mirror.max_inflight == 3


async def test_rate_limit_spaces_requests(start_mirror, tmp_path):
    mirror = await start_mirror()
    titles = [link.key for link in mirror.catalog.links if not link.red][:16]
    async with Fetcher(fast_config(mirror, tmp_path, concurrency=8, rate=40)) as fetcher:
        await asyncio.gather(*(fetcher.get(page_url(mirror, t), parse_page) for t in titles))
    times = [s.at for s in mirror.log]
    assert times[-1] - times[0] >= 15 / 40 * 0.95


async def test_rate_limiter_without_rate_never_waits():
    limiter = RateLimiter(None)
    started = time.monotonic()
    for _ in range(1000):
        await limiter.wait()
    assert time.monotonic() - started < 0.5
