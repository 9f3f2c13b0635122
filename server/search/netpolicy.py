"""Which addresses result pages may be fetched from: public unicast only, unless explicitly allow-listed.

Search results are untrusted URLs; without this a result (or a redirect) could point the server at its own
admin ports, the LAN, or the cloud metadata service (169.254.169.254).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(OSError):
    """Raised where a connection would be opened; an OSError so that connection machinery treats it as one."""


@dataclass(frozen=True, slots=True)
class AllowEntry:
    network: IPNetwork
    port: int | None = None

    def matches(self, ip: IPAddress, port: int) -> bool:
        return ip in self.network and (self.port is None or self.port == port)


def parse_allow(spec: str) -> tuple[AllowEntry, ...]:
    """`SEARCH_FETCH_ALLOW`: comma-separated IPs, CIDR networks or ip:port ([v6]:port); ValueError if malformed."""
    entries = []
    for raw in filter(None, (p.strip() for p in spec.split(","))):
        host, port = raw, None
        if raw.startswith("["):
            host, _, rest = raw[1:].partition("]")
            if rest:
                port = _port(rest.removeprefix(":"), raw)
        elif raw.count(":") == 1:
            host, _, port_text = raw.partition(":")
            port = _port(port_text, raw)
        try:
            network = ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise ValueError(f"SEARCH_FETCH_ALLOW entry {raw!r} is not an IP address, network or ip:port") from None
        entries.append(AllowEntry(network, port))
    return tuple(entries)


def _port(text: str, raw: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"SEARCH_FETCH_ALLOW entry {raw!r} has an invalid port")
    return int(text)


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast; IPv4 smuggled inside IPv6 (mapped, 6to4, Teredo) is judged as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            return is_public(inner)
    return ip.is_global and not ip.is_multicast


class AddressPolicy:
    def __init__(self, allow: tuple[AllowEntry, ...] = ()):
        self.allow = allow

    def permits(self, host: str, port: int) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            return False
        return is_public(ip) or any(entry.matches(ip, port) for entry in self.allow)

    def check(self, host: str, port: int) -> None:
        if not self.permits(host, port):
            raise AddressRefused(f"refusing to connect to non-public address {host} port {port}")

    def socket_factory(self, addr_info: tuple) -> socket.socket:
        """The last word: every TCP connection the fetcher opens goes through here with its final address."""
        family, type_, proto, _, sockaddr = addr_info
        self.check(sockaddr[0], sockaddr[1])
        return socket.socket(family=family, type=type_, proto=proto)
