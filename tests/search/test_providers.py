"""Each provider against a loopback server speaking its real response and error formats."""

import pytest

from server.config import Settings
from server.search.factory import PROVIDERS as REGISTERED
from server.search.factory import create_provider
from server.search.protocols import ProviderError, SearchProvider
from server.search.providers.brave import BraveProvider
from server.search.providers.google import GoogleProvider
from server.search.providers.searxng import SearxngProvider, search_endpoint
from tests.search.fakeweb import BRAVE_KEY, GOOGLE_CSE, GOOGLE_KEY
from tests.support.servers import free_port

PROVIDERS = ["google", "searxng", "brave"]


def closed_port_url(path: str) -> str:
    return f"http://127.0.0.1:{free_port()}{path}"


def make(name: str, fake_web, **overrides):
    url = overrides.pop("url", fake_web.api_url(name))
    if name == "google":
        return GoogleProvider(overrides.pop("key", GOOGLE_KEY), GOOGLE_CSE, url, timeout=5)
    if name == "searxng":
        return SearxngProvider(url, timeout=5)
    return BraveProvider(overrides.pop("key", BRAVE_KEY), url, timeout=5)


def test_every_registered_provider_is_held_to_this_contract():
    assert sorted(REGISTERED) == sorted(PROVIDERS), "a provider in server/search/factory.py needs a fake API here"


@pytest.mark.parametrize("name", PROVIDERS)
async def test_the_factory_builds_each_registered_provider_from_settings(name, fake_web):
    provider = create_provider(Settings(_env_file=None, **fake_web.settings_for(name)))
    try:
        assert isinstance(provider, SearchProvider) and provider.name == name
        fake_web.results = [fake_web.result("/su-shi")]
        assert [r.url for r in await provider.search("su shi", 3)] == [fake_web.page_url("/su-shi")]
    finally:
        await provider.close()


@pytest.fixture
async def provider(request, fake_web):
    p = make(request.param, fake_web)
    yield p
    await p.close()


@pytest.mark.parametrize("provider", PROVIDERS, indirect=True)
async def test_results_are_parsed_from_the_providers_own_format(provider, fake_web):
    fake_web.results = [fake_web.result("/deadlift", "How to deadlift: keep the bar over mid-foot &amp; brace."),
                        fake_web.result("/su-shi")]
    results = await provider.search("how to deadlift", 5)
    assert [r.url for r in results] == [fake_web.page_url("/deadlift"), fake_web.page_url("/su-shi")]
    assert results[0].title == "How to deadlift with good form"
    assert results[0].snippet == "How to deadlift: keep the bar over mid-foot & brace.", "markup and entities removed"
    assert len(await provider.search("how to deadlift", 1)) == 1
    call = fake_web.calls()[0]
    assert call["params"]["q"] == "how to deadlift"


@pytest.mark.parametrize("provider", PROVIDERS, indirect=True)
async def test_no_match_is_an_empty_list(provider, fake_web):
    fake_web.mode = "empty"
    assert await provider.search("zxqv nothing matches", 3) == []


async def test_each_provider_sends_its_credentials_the_way_its_api_expects(fake_web):
    for name in PROVIDERS:
        p = make(name, fake_web)
        try:
            await p.search("deadlift", 3)
        finally:
            await p.close()
    google, searxng, brave = (fake_web.calls(n)[0] for n in PROVIDERS)
    assert google["params"]["key"] == GOOGLE_KEY and google["params"]["cx"] == GOOGLE_CSE
    assert searxng["params"]["format"] == "json"
    assert brave["headers"]["X-Subscription-Token"] == BRAVE_KEY
    assert "key" not in brave["params"]


ERRORS = [
    ("google", "forbidden", "forbidden", ["no access to the Custom Search JSON API", "2027-01-01"]),
    ("google", "disabled", "forbidden", ["disabled", "enable it in the Cloud console"]),
    ("google", "quota", "quota", ["quota is used up"]),
    ("google", "error", "unavailable", ["HTTP 500"]),
    ("searxng", "forbidden", "forbidden", ["format=json", "settings.yml"]),
    ("searxng", "quota", "rate_limited", ["limiter"]),
    ("searxng", "error", "unavailable", ["HTTP 500"]),
    ("brave", "forbidden", "forbidden", ["BRAVE_API_KEY"]),
    ("brave", "quota", "quota", ["monthly quota of 2000"]),
    ("brave", "error", "unavailable", ["HTTP 500"]),
]


@pytest.mark.parametrize(("name", "mode", "reason", "phrases"), ERRORS, ids=[f"{e[0]}-{e[1]}" for e in ERRORS])
async def test_api_errors_become_clear_reasons_and_never_echo_the_key(fake_web, name, mode, reason, phrases):
    fake_web.mode = mode
    p = make(name, fake_web)
    try:
        with pytest.raises(ProviderError) as error:
            await p.search("deadlift", 3)
    finally:
        await p.close()
    assert error.value.reason == reason
    for phrase in phrases:
        assert phrase in str(error.value)
    assert GOOGLE_KEY not in str(error.value) and BRAVE_KEY not in str(error.value)


async def test_a_wrong_google_key_is_reported_as_such_without_echoing_it(fake_web):
    p = make("google", fake_web, key="AIza-wrong-key-987654321")
    try:
        with pytest.raises(ProviderError) as error:
            await p.search("deadlift", 3)
    finally:
        await p.close()
    assert error.value.reason == "forbidden" and "GOOGLE_API_KEY is not a valid" in str(error.value)
    assert "AIza-wrong-key" not in str(error.value)


async def test_a_brave_rate_limit_within_the_quota_is_not_called_a_quota(fake_web):
    fake_web.mode = "rate"
    p = make("brave", fake_web)
    try:
        with pytest.raises(ProviderError) as error:
            await p.search("deadlift", 3)
    finally:
        await p.close()
    assert error.value.reason == "rate_limited" and "one query a second" in str(error.value)


async def test_a_wrong_brave_key_is_reported_as_such_without_echoing_it(fake_web):
    p = make("brave", fake_web, key="BSA-wrong-key-55555")
    try:
        with pytest.raises(ProviderError) as error:
            await p.search("deadlift", 3)
    finally:
        await p.close()
    assert error.value.reason == "forbidden" and "BSA-wrong-key" not in str(error.value)


@pytest.mark.parametrize("name", PROVIDERS)
async def test_an_unreachable_endpoint_is_unavailable_and_the_key_stays_out_of_the_message(name, fake_web):
    p = make(name, fake_web, url=closed_port_url("/customsearch/v1"))
    try:
        with pytest.raises(ProviderError) as error:
            await p.search("deadlift", 3)
    finally:
        await p.close()
    assert error.value.reason == "unavailable"
    assert GOOGLE_KEY not in str(error.value) and "key=" not in str(error.value)


def test_searxng_url_may_name_the_instance_or_its_search_endpoint():
    assert search_endpoint("http://10.0.0.5:8888") == "http://10.0.0.5:8888/search"
    assert search_endpoint("http://10.0.0.5:8888/searx/") == "http://10.0.0.5:8888/searx/search"
    assert search_endpoint("https://s.example/search") == "https://s.example/search"
