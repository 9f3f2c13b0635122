"""Which addresses result pages may come from: public unicast only, unless allow-listed exactly."""

import pytest

from server.search.netpolicy import AddressPolicy, AddressRefused, parse_allow

NON_PUBLIC = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1",  # loopback, private
    "169.254.169.254", "169.254.0.1",  # link-local: cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0", "255.255.255.255", "240.0.0.1",  # unspecified, broadcast, reserved
    "224.0.0.1", "239.255.255.250",  # multicast
    "192.0.2.10", "198.51.100.7", "203.0.113.9",  # documentation
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "ff0e::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::1",  # IPv4 inside IPv6 (mapped, 6to4)
    "fe80::1%eth0",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_refused_by_default(address):
    policy = AddressPolicy()
    assert not policy.permits(address, 80)
    with pytest.raises(AddressRefused):
        policy.check(address, 443)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_permitted(address):
    assert AddressPolicy().permits(address, 443)


def test_an_allow_entry_with_a_port_permits_exactly_that_socket_address():
    policy = AddressPolicy(parse_allow("127.0.0.1:8123"))
    assert policy.permits("127.0.0.1", 8123)
    assert not policy.permits("127.0.0.1", 8124)
    assert not policy.permits("127.0.0.2", 8123)
    assert not policy.permits("169.254.169.254", 80)


def test_allow_entries_accept_networks_and_ipv6_with_ports():
    policy = AddressPolicy(parse_allow(" 10.1.0.0/16, [::1]:9000 ,192.168.7.7"))
    assert policy.permits("10.1.200.3", 443) and not policy.permits("10.2.0.1", 443)
    assert policy.permits("::1", 9000) and not policy.permits("::1", 9001)
    assert policy.permits("192.168.7.7", 1)


@pytest.mark.parametrize("spec", ["localhost", "127.0.0.1:http", "127.0.0.1:0", "10.0.0.0/33", "[::1]:70000",
                                  "example.com:80"])
def test_malformed_allow_entries_are_rejected_with_the_entry_named(spec):
    with pytest.raises(ValueError, match="SEARCH_FETCH_ALLOW entry"):
        parse_allow(spec)


def test_start_up_refuses_a_bad_allow_list_and_a_provider_without_its_settings():
    from server.config import Settings
    from server.errors import StartupError
    from server.search.factory import check_search

    def refusal(**values) -> str:
        with pytest.raises(StartupError) as error:
            check_search(Settings(_env_file=None, **values))
        return str(error.value)

    assert "SEARCH_FETCH_ALLOW entry 'nope'" in refusal(search_fetch_allow="nope")  # even with search off
    assert "needs GOOGLE_CSE_ID" in refusal(search_provider="google", google_api_key="AIza-secret-value")
    assert "needs SEARCH_URL" in refusal(search_provider="searxng")
    brave = refusal(search_provider="brave", google_api_key="AIza-secret-value")
    assert "needs BRAVE_API_KEY" in brave and "AIza-secret-value" not in brave
    assert "choose one of none, google, searxng, brave" in refusal(search_provider="Bing")
    check_search(Settings(_env_file=None, search_provider=" Brave ", brave_api_key="BSA-secret-value"))
