from collections import Counter

import aiohttp
import pytest

from scraper.discovery import DiscoveryError, discover
from scraper.parse import MalformedPage
from scraper.urls import normalize_url, title_of
from tests.scraper.conftest import CONTACT
from tests.scraper.mirror import CORPUS_DIR

INDEX_URL = "https://zh.wikisource.org/wiki/%E6%9D%B1%E5%9D%A1%E5%85%A8%E9%9B%86"


@pytest.fixture(scope="module")
def real_index():
    return discover((CORPUS_DIR / "dongpo_index.html").read_text(encoding="utf-8"), INDEX_URL)


def test_real_index_yields_every_page_the_original_crawl_visited_once(real_index):
    visited = (CORPUS_DIR / "poem_urls.txt").read_text().split()
    assert {link.url for link in real_index.links} == {normalize_url(u) for u in visited}
    assert len(real_index.links) == 6346
    assert real_index.duplicates == 294


def test_red_links_are_recorded_as_missing(real_index):
    red = [link for link in real_index.links if link.missing]
    assert len(red) == 89
    assert all("redlink" not in link.url for link in red)


def test_small_runs_are_discovered_with_their_volume(real_index):
    by_title = {link.title: link for link in real_index.links}
    assert by_title["記過合浦"].volume == "卷一百一"
    assert by_title["記承天夜遊"].volume == "卷一百一"
    small_volumes = Counter(
        link.volume for link in real_index.links if link.volume.startswith("卷一百") and len(link.volume) == 4
    )
    assert {"卷一百一", "卷一百二", "卷一百三", "卷一百四", "卷一百五"} <= set(small_volumes)


def test_volume_labels_follow_the_page(real_index):
    first, last = real_index.links[0], real_index.links[-1]
    assert (first.title, first.volume) == ("辛丑十一月十九日既與子由別於鄭州西門之外馬上賦詩一篇寄之", "卷一")
    assert last.volume == "補遺"
    volumes = list(dict.fromkeys(link.volume for link in real_index.links))
    assert volumes[:3] == ["卷一", "卷二", "卷三"]
    assert None not in volumes


def test_furniture_links_are_not_works(real_index):
    titles = {link.title for link in real_index.links}
    assert "東坡全集 (四庫全書本)" not in titles  # the "see also" note
    assert not any(t.startswith(("Author:", "Category:", "東坡全集/")) for t in titles)


async def test_mirror_index_with_respelled_duplicates_gives_the_same_links(start_mirror):
    # The mirror writes repeated links as index.php?title=, lower-case escapes, #fragments, absolute URLs.
    mirror = await start_mirror(link_variants=True)
    headers = {"User-Agent": f"t/1 ({CONTACT}) aiohttp/3"}
    async with aiohttp.ClientSession(headers=headers) as session, session.get(mirror.index_url) as resp:
        html = await resp.text()
    assert "/w/index.php?title=" in html
    found = discover(html, mirror.index_url)
    assert len(found.links) == 6346
    assert found.duplicates == 294
    assert all(title_of(link.url) == link.title for link in found.links)


def test_a_page_without_mediawiki_content_is_rejected():
    with pytest.raises(DiscoveryError, match="mw-parser-output"):
        discover("<html><body><ol><li><a href='/wiki/X'>X</a></li></ol></body></html>", INDEX_URL)


def test_a_cut_short_index_is_refused_rather_than_half_discovered():
    html = (CORPUS_DIR / "dongpo_index.html").read_text(encoding="utf-8")
    with pytest.raises(MalformedPage, match="truncated"):
        discover(html[: len(html) // 2], INDEX_URL)
