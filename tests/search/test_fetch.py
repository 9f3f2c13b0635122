"""Fetching result pages from real servers on 127.0.0.1: only allow-listed addresses, http(s), capped."""

import time

import pytest

from server.search.extract import main_text
from server.search.fetch import FetchRefused, SafeFetcher
from server.search.netpolicy import AddressPolicy, parse_allow
from tests.search.fakeweb import FILE_SECRET, PRIVATE_SECRET

LIMIT = 200_000


@pytest.fixture
async def fetcher(fake_web):
    """Allows exactly the result-page server, as the test configuration of the server does."""
    f = SafeFetcher(AddressPolicy(parse_allow(f"127.0.0.1:{fake_web.ports['pages']}")), LIMIT, timeout=2.0)
    yield f
    await f.close()


async def refused(fetcher: SafeFetcher, url: str) -> FetchRefused:
    with pytest.raises(FetchRefused) as error:
        await fetcher.fetch(url)
    return error.value


async def test_an_allow_listed_page_is_fetched_and_its_main_text_extracted(fetcher, fake_web):
    page = await fetcher.fetch(fake_web.page_url("/deadlift"))
    assert page.content_type == "text/html"
    text = main_text(page)
    assert "barbell over the middle of your foot" in text
    assert "newsletter" not in text and "All rights reserved" not in text, "boilerplate is left out"


async def test_by_default_no_loopback_address_is_fetched_not_even_the_test_pages(fake_web):
    fetcher = SafeFetcher(AddressPolicy(), LIMIT, timeout=2.0)
    try:
        error = await refused(fetcher, fake_web.page_url("/deadlift"))
    finally:
        await fetcher.close()
    assert error.reason == "address"
    assert fake_web.page_hits["/deadlift"] == 0, "refused before connecting"


@pytest.mark.parametrize("path", ["/redirect-private", "/redirect-metadata", "/redirect-localhost"])
async def test_a_redirect_to_a_private_address_is_refused_and_never_reaches_it(fetcher, fake_web, path):
    error = await refused(fetcher, fake_web.page_url(path))
    assert error.reason == "address"
    assert fake_web.page_hits[path] == 1
    assert fake_web.private_hits == []
    assert PRIVATE_SECRET not in str(error)


async def test_a_redirect_to_a_file_url_is_refused(fetcher, fake_web):
    error = await refused(fetcher, fake_web.page_url("/redirect-file"))
    assert error.reason == "scheme"
    assert FILE_SECRET not in str(error)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "javascript:alert(1)", "data:text/html,hi",
                                 "/relative/path", "http://user:pw@example.com/"])
async def test_urls_that_are_not_plain_http_are_refused(fetcher, url):
    assert (await refused(fetcher, url)).reason == "scheme"


async def test_redirects_between_allowed_pages_are_followed_but_not_forever(fetcher, fake_web):
    page = await fetcher.fetch(fake_web.page_url("/redirect-ok"))
    assert page.url.endswith("/deadlift")
    assert (await refused(fetcher, fake_web.page_url("/redirect-loop"))).reason == "redirects"


@pytest.mark.parametrize("path", ["/huge", "/huge-declared"])
async def test_a_page_over_the_size_cap_is_refused_without_reading_it_all(fetcher, fake_web, path):
    started = time.monotonic()
    error = await refused(fetcher, fake_web.page_url(path))
    assert error.reason == "too_large"
    assert time.monotonic() - started < 2.0


async def test_a_page_slower_than_the_time_cap_is_abandoned(fake_web):
    fetcher = SafeFetcher(AddressPolicy(parse_allow(f"127.0.0.1:{fake_web.ports['pages']}")), LIMIT, timeout=0.5)
    started = time.monotonic()
    try:
        error = await refused(fetcher, fake_web.page_url("/slow"))
    finally:
        await fetcher.close()
    assert error.reason == "timeout"
    assert time.monotonic() - started < 1.5


async def test_only_text_pages_are_read(fetcher, fake_web):
    assert (await refused(fetcher, fake_web.page_url("/binary"))).reason == "content_type"
    page = await fetcher.fetch(fake_web.page_url("/plain"))
    assert main_text(page).startswith("Deadlift cue")
