"""The broker's destination decision for one CONNECT: allowed port, then allowed addresses.

This module owns `DestinationPolicy` (allowed port ranges and the admin's explicit network
exceptions, parsed from configuration with the path of any bad item) and the checks that turn
a parsed `Authority` and the addresses the broker resolved into a `Decision`.

It must not resolve names, open sockets or read the clock. The shell resolves a name once,
passes every address here, and connects only to the addresses that were checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from ztcore.addresses import classify_address, embedded_ipv4
from ztcore.authority import Authority
from ztcore.decision import Decision, allow, deny
from ztcore.errors import ConfigError
from ztcore.reasons import Reason

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

DEFAULT_PORTS: tuple[tuple[int, int], ...] = ((80, 80), (443, 443))
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class DestinationPolicy:
    """Allowed port ranges (inclusive) and networks that skip the address-class check.

    `allowed_networks` are explicit admin exceptions (an internal app, or the loopback origin
    of the demo and the integration tests); an address inside one is allowed whatever its class.
    """

    allowed_ports: tuple[tuple[int, int], ...] = DEFAULT_PORTS
    allowed_networks: tuple[Network, ...] = field(default=())

    def __post_init__(self) -> None:
        for index, (low, high) in enumerate(self.allowed_ports):
            if not (1 <= low <= high <= 65535):
                raise ConfigError(f"DestinationPolicy.allowed_ports[{index}]: {low}-{high} "
                                  "is not a port range within 1-65535")

    @classmethod
    def from_config(cls, ports: Sequence[str | int],
                    networks: Sequence[str]) -> DestinationPolicy:
        """Build a policy from configuration. Ports 80 and 443 are always allowed; `ports` adds
        to them (`443`, `"8443"`, `"8000-8999"`). `networks` are CIDRs or single addresses."""
        if isinstance(ports, (str, bytes)):
            raise ConfigError("allowed_ports: expected a list of ports, not a single string")
        if isinstance(networks, (str, bytes)):
            raise ConfigError("allowed_networks: expected a list of networks, not a string")
        ranges = list(DEFAULT_PORTS)
        for index, item in enumerate(ports):
            ranges.append(_parse_port_item(f"allowed_ports[{index}]", item))
        parsed_networks = tuple(
            _parse_network_item(f"allowed_networks[{index}]", item)
            for index, item in enumerate(networks))
        return cls(allowed_ports=merge_ranges(ranges), allowed_networks=parsed_networks)

    def port_allowed(self, port: int) -> bool:
        return any(low <= port <= high for low, high in self.allowed_ports)

    def network_exception(self, address: Address) -> Network | None:
        """The allowed network `address` falls in, or None."""
        for network in self.allowed_networks:
            # `in` across versions is simply False: an IPv4 exception never covers an IPv6
            # (or IPv4-mapped) spelling of the same host.
            if address in network:
                return network
        return None


def _parse_port_number(path: str, text: str, original: object) -> int:
    if not text or not all(c in _DIGITS for c in text) or len(text) > 5:
        raise ConfigError(f"{path}: {original!r} is not a port (1-65535)")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{path}: {original!r} is not a port (1-65535)")
    return port


def _parse_port_item(path: str, item: object) -> tuple[int, int]:
    if isinstance(item, bool):
        raise ConfigError(f"{path}: {item!r} is not a port (1-65535)")
    if isinstance(item, int):
        if not 1 <= item <= 65535:
            raise ConfigError(f"{path}: {item!r} is not a port (1-65535)")
        return (item, item)
    if not isinstance(item, str):
        raise ConfigError(f"{path}: {item!r} is not a port or a port range (\"8000-8999\")")
    text = item.strip()
    low_text, dash, high_text = text.partition("-")
    low = _parse_port_number(path, low_text.strip(), item)
    if not dash:
        return (low, low)
    high = _parse_port_number(path, high_text.strip(), item)
    if low > high:
        raise ConfigError(f"{path}: {item!r} is an empty range ({low} is above {high})")
    return (low, high)


def _parse_network_item(path: str, item: object) -> Network:
    if not isinstance(item, str):
        raise ConfigError(f"{path}: {item!r} is not a network (expected a CIDR or an address)")
    text = item.strip()
    if "%" in text:
        raise ConfigError(f"{path}: {item!r}: IPv6 zone ids are not allowed")
    try:
        return ip_network(text, strict=True)
    except ValueError as exc:
        raise ConfigError(f"{path}: {item!r} is not a network: {exc}") from None


def merge_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, with overlapping and adjacent ranges joined: `443,80` equals `80,443`."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


def _describe_ports(policy: DestinationPolicy) -> str:
    return ", ".join(str(low) if low == high else f"{low}-{high}"
                     for low, high in policy.allowed_ports)


def check_port(authority: Authority, policy: DestinationPolicy) -> Decision | None:
    """None if the port is allowed, else a deny naming the port."""
    if policy.port_allowed(authority.port):
        return None
    return deny(Reason.PORT_NOT_ALLOWED,
                detail=f"port {authority.port} is not allowed (allowed: {_describe_ports(policy)})")


def check_addresses(addresses: Sequence[Address], policy: DestinationPolicy) -> Decision:
    """Allow only if there is at least one address and every address may be reached."""
    if not addresses:
        return deny(Reason.DNS_NO_ADDRESS, status=502, detail="the name resolved to no address")
    # Every address must pass, not just one: a name answering with a public and a private
    # address (DNS rebinding, or an attacker's record pointing at 10.0.0.1 beside a decoy) would
    # otherwise let the connect, or a later retry on the next address, reach the private one.
    for address in addresses:
        if policy.network_exception(address) is not None:
            continue
        reason = classify_address(address)
        if reason is not None:
            return deny(reason, detail=_describe_address(address, reason))
    return allow(Reason.DESTINATION_ALLOWED)


def _describe_address(address: Address, reason: Reason) -> str:
    if isinstance(address, IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return f"address {address} (carrying {embedded}) is {reason.value}"
    return f"address {address} is {reason.value}"


def check_destination(authority: Authority, addresses: Sequence[Address],
                      policy: DestinationPolicy) -> Decision:
    """Port first, then the addresses.

    For an IP literal the literal itself is always checked, even if the shell passes other (or
    no) addresses: a literal must never be connected to unchecked.
    """
    port_denial = check_port(authority, policy)
    if port_denial is not None:
        return port_denial
    if authority.ip is not None and authority.ip not in addresses:
        addresses = (authority.ip, *addresses)
    return check_addresses(addresses, policy)
