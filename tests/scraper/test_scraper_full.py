import pytest

from scraper.crawl import crawl
from tests.scraper.conftest import assert_matches_expected, fast_config


@pytest.mark.slow
async def test_full_collection_crawl_yields_every_expected_work(start_mirror, tmp_path):
    """All ~6,260 pages of the real index, 5% of requests faulty, link spellings varied."""
    mirror = await start_mirror(fault_rate=0.05, gone_rate=0.005, disallow_count=1, stall_s=1.0)
    expected = mirror.expected()
    assert len(expected.works) > 6000

    summary = await crawl(fast_config(mirror, tmp_path, concurrency=16))

    assert summary.complete
    assert_matches_expected(tmp_path, expected)
    assert summary.counts.stubs == len(expected.stubs)
    assert summary.counts.missing == len(expected.missing)
