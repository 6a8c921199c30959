"""Input checks for the edge role that argument_specs cannot express.

ansible.utils' ipaddr filters need netaddr, which payops does not install; Python's ipaddress
module is enough to tell an address or network nginx accepts from a typo.
"""

from __future__ import annotations

import ipaddress
import re

# host:port, or [IPv6]:port; the host part is what nginx's upstream "server" accepts.
_UPSTREAM = re.compile(
    r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?))"
    r":(?P<port>[0-9]{1,5})$"
)


def _is_network(entry: object) -> bool:
    """True for an IPv4/IPv6 address or a network without host bits (10.0.0.0/8, not 10.0.0.1/8)."""
    if not isinstance(entry, str):
        return False
    try:
        ipaddress.ip_network(entry.strip(), strict=True)
    except ValueError:
        return False
    return entry == entry.strip()


def _is_upstream(entry: object) -> bool:
    if not isinstance(entry, str):
        return False
    match = _UPSTREAM.match(entry)
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        return False
    if match.group("ipv6") is not None:
        try:
            ipaddress.IPv6Address(match.group("ipv6"))
        except ValueError:
            return False
    return True


def edge_invalid_networks(entries: list) -> list:
    """The entries that are not IP addresses or networks, in their order."""
    return [entry for entry in entries if not _is_network(entry)]


def edge_invalid_upstreams(entries: list) -> list:
    """The entries that are not host:port (or [IPv6]:port) with a port from 1 to 65535."""
    return [entry for entry in entries if not _is_upstream(entry)]


class FilterModule:
    def filters(self) -> dict:
        return {
            "edge_invalid_networks": edge_invalid_networks,
            "edge_invalid_upstreams": edge_invalid_upstreams,
        }
