"""classify_address: each forbidden address class gets its own reason; public addresses pass."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztcore.addresses import classify_address, embedded_ipv4
from ztcore.reasons import Reason

R = Reason

# (address, expected reason; None = public)
CASES: list[tuple[str, Reason | None]] = [
    # cloud metadata comes before link-local / CGNAT / private
    ("169.254.169.254", R.ADDRESS_METADATA),
    ("169.254.170.2", R.ADDRESS_METADATA),
    ("100.100.100.200", R.ADDRESS_METADATA),
    ("168.63.129.16", R.ADDRESS_METADATA),
    ("fd00:ec2::254", R.ADDRESS_METADATA),
    ("168.63.129.17", None),
    # IPv4-mapped: always refused, whatever the IPv4 address
    ("::ffff:127.0.0.1", R.ADDRESS_IPV4_MAPPED),
    ("::ffff:8.8.8.8", R.ADDRESS_IPV4_MAPPED),
    ("::ffff:169.254.169.254", R.ADDRESS_IPV4_MAPPED),
    # loopback
    ("127.0.0.1", R.ADDRESS_LOOPBACK),
    ("127.255.255.254", R.ADDRESS_LOOPBACK),
    ("::1", R.ADDRESS_LOOPBACK),
    # private
    ("10.0.0.1", R.ADDRESS_PRIVATE),
    ("172.16.0.1", R.ADDRESS_PRIVATE),
    ("172.31.255.255", R.ADDRESS_PRIVATE),
    ("192.168.1.1", R.ADDRESS_PRIVATE),
    ("fc00::1", R.ADDRESS_PRIVATE),
    ("fd12:3456::1", R.ADDRESS_PRIVATE),
    ("fd00:ec2::253", R.ADDRESS_PRIVATE),
    ("172.15.255.255", None),
    ("172.32.0.0", None),
    # link-local
    ("169.254.0.1", R.ADDRESS_LINK_LOCAL),
    ("169.254.169.253", R.ADDRESS_LINK_LOCAL),
    ("fe80::1", R.ADDRESS_LINK_LOCAL),
    ("febf::1", R.ADDRESS_LINK_LOCAL),
    # CGNAT
    ("100.64.0.1", R.ADDRESS_CGNAT),
    ("100.127.255.255", R.ADDRESS_CGNAT),
    ("100.63.255.255", None),
    ("100.128.0.0", None),
    # reserved and special-purpose
    ("0.0.0.0", R.ADDRESS_RESERVED),
    ("0.1.2.3", R.ADDRESS_RESERVED),
    ("192.0.0.8", R.ADDRESS_RESERVED),
    ("192.0.0.192", R.ADDRESS_METADATA),
    ("192.0.2.1", R.ADDRESS_RESERVED),
    ("192.88.99.1", R.ADDRESS_RESERVED),
    ("198.18.0.1", R.ADDRESS_RESERVED),
    ("198.19.255.255", R.ADDRESS_RESERVED),
    ("198.51.100.1", R.ADDRESS_RESERVED),
    ("203.0.113.1", R.ADDRESS_RESERVED),
    ("224.0.0.1", R.ADDRESS_RESERVED),
    ("239.255.255.250", R.ADDRESS_RESERVED),
    ("240.0.0.1", R.ADDRESS_RESERVED),
    ("255.255.255.255", R.ADDRESS_RESERVED),
    ("::", R.ADDRESS_RESERVED),
    ("::127.0.0.1", R.ADDRESS_RESERVED),             # IPv4-compatible
    ("::8.8.8.8", R.ADDRESS_RESERVED),
    ("::ffff:0:8.8.8.8", R.ADDRESS_RESERVED),        # IPv4-translated
    ("64:ff9b:1::a00:1", R.ADDRESS_RESERVED),        # local-use NAT64
    ("100::1", R.ADDRESS_RESERVED),
    ("2001:db8::1", R.ADDRESS_RESERVED),
    ("2001::1", R.ADDRESS_RESERVED),                 # Teredo
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", R.ADDRESS_RESERVED),
    ("2001:2::1", R.ADDRESS_RESERVED),
    ("2001:1ff::1", R.ADDRESS_RESERVED),
    ("3fff::1", R.ADDRESS_RESERVED),
    ("5f00::1", R.ADDRESS_RESERVED),
    ("fec0::1", R.ADDRESS_RESERVED),
    ("ff02::1", R.ADDRESS_RESERVED),
    ("4000::1", R.ADDRESS_RESERVED),                 # outside 2000::/3: unassigned
    ("1::1", R.ADDRESS_RESERVED),
    ("e000::1", R.ADDRESS_RESERVED),
    # addresses carrying an IPv4 address are judged by it
    ("64:ff9b::10.0.0.1", R.ADDRESS_PRIVATE),
    ("64:ff9b::127.0.0.1", R.ADDRESS_LOOPBACK),
    ("64:ff9b::169.254.169.254", R.ADDRESS_METADATA),
    ("64:ff9b::8.8.8.8", None),
    ("2002:a00:1::1", R.ADDRESS_PRIVATE),            # 6to4 of 10.0.0.1
    ("2002:7f00:1::", R.ADDRESS_LOOPBACK),
    ("2002:a9fe:a9fe::1", R.ADDRESS_METADATA),
    ("2002:6440:1::1", R.ADDRESS_CGNAT),
    ("2002:808:808::1", None),                       # 6to4 of 8.8.8.8
    # public
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("93.184.215.14", None),
    ("223.255.255.255", None),
    ("2001:4860:4860::8888", None),
    ("2001:200::1", None),                           # just past 2001::/23
    ("2404:6800:4004:80a::200e", None),
    ("3ffe::1", None),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_classify(text: str, expected: Reason | None) -> None:
    assert classify_address(ip_address(text)) is expected


@pytest.mark.parametrize(("text", "embedded"), [
    ("64:ff9b::a00:1", "10.0.0.1"),
    ("2002:a00:1::1", "10.0.0.1"),
    ("2001:4860:4860::8888", None),
    ("::ffff:10.0.0.1", None),
])
def test_embedded_ipv4(text: str, embedded: str | None) -> None:
    found = embedded_ipv4(IPv6Address(text))
    assert found == (None if embedded is None else IPv4Address(embedded))


# --- properties -------------------------------------------------------------------------------

def addresses_in(network: str) -> st.SearchStrategy[IPv4Address | IPv6Address]:
    net = ip_network(network)
    low = int(net.network_address)
    return st.integers(min_value=low, max_value=low + net.num_addresses - 1).map(
        lambda value: ip_address(value) if net.version == 4 else IPv6Address(value))


# (network, the reason every address in it gets; METADATA is also accepted where a metadata
# endpoint sits inside the network)
FORBIDDEN_NETWORKS = [
    ("10.0.0.0/8", R.ADDRESS_PRIVATE),
    ("172.16.0.0/12", R.ADDRESS_PRIVATE),
    ("192.168.0.0/16", R.ADDRESS_PRIVATE),
    ("127.0.0.0/8", R.ADDRESS_LOOPBACK),
    ("169.254.0.0/16", R.ADDRESS_LINK_LOCAL),
    ("100.64.0.0/10", R.ADDRESS_CGNAT),
    ("fc00::/7", R.ADDRESS_PRIVATE),
    ("fe80::/10", R.ADDRESS_LINK_LOCAL),
    ("::ffff:0:0/96", R.ADDRESS_IPV4_MAPPED),
    ("0.0.0.0/8", R.ADDRESS_RESERVED),
    ("224.0.0.0/3", R.ADDRESS_RESERVED),
    ("198.18.0.0/15", R.ADDRESS_RESERVED),
    ("ff00::/8", R.ADDRESS_RESERVED),
    ("2001::/32", R.ADDRESS_RESERVED),
    ("2001:db8::/32", R.ADDRESS_RESERVED),
]


@pytest.mark.parametrize(("network", "reason"), FORBIDDEN_NETWORKS)
@given(data=st.data())
def test_every_address_in_a_forbidden_network_is_classified(
        network: str, reason: Reason, data: st.DataObject) -> None:
    ip = data.draw(addresses_in(network))
    assert classify_address(ip) in (reason, R.ADDRESS_METADATA)


any_ipv4 = st.integers(min_value=0, max_value=2**32 - 1).map(IPv4Address)
any_ipv6 = st.integers(min_value=0, max_value=2**128 - 1).map(IPv6Address)
global_unicast_ipv6 = st.integers(min_value=0x2000 << 112, max_value=(0x4000 << 112) - 1).map(
    IPv6Address)


@given(st.one_of(any_ipv4, any_ipv6, global_unicast_ipv6))
def test_allowed_addresses_are_global_for_the_stdlib_too(ip: IPv4Address | IPv6Address) -> None:
    # An independent judge: everything we let through, Python's ipaddress also calls global.
    # (The converse does not hold on purpose: multicast, 168.63.129.16, 6to4/NAT64 of private.)
    if classify_address(ip) is None:
        assert ip.is_global, ip


@given(any_ipv4)
def test_nat64_and_6to4_are_judged_by_the_ipv4_address(ip: IPv4Address) -> None:
    value = int(ip)
    nat64 = IPv6Address((0x64FF9B << 96) | value)
    six_to_four = IPv6Address((0x2002 << 112) | (value << 80) | 1)
    assert classify_address(nat64) is classify_address(ip)
    assert classify_address(six_to_four) is classify_address(ip)
    assert classify_address(IPv6Address((0xFFFF << 32) | value)) is R.ADDRESS_IPV4_MAPPED


@given(st.one_of(any_ipv4, any_ipv6))
def test_classification_matches_a_plain_ordered_scan(ip: IPv4Address | IPv6Address) -> None:
    # The bucketed tables must give the same answer as a naive first-match scan of the spec's
    # ordered list, written here independently with ipaddress containment.
    assert classify_address(ip) is _reference(ip)


_REFERENCE_V4 = [(IPv4Network(n), r) for n, r in [
    ("169.254.169.254/32", R.ADDRESS_METADATA), ("169.254.170.2/32", R.ADDRESS_METADATA),
    ("100.100.100.200/32", R.ADDRESS_METADATA), ("168.63.129.16/32", R.ADDRESS_METADATA),
    ("192.0.0.192/32", R.ADDRESS_METADATA),
    ("127.0.0.0/8", R.ADDRESS_LOOPBACK), ("10.0.0.0/8", R.ADDRESS_PRIVATE),
    ("172.16.0.0/12", R.ADDRESS_PRIVATE), ("192.168.0.0/16", R.ADDRESS_PRIVATE),
    ("169.254.0.0/16", R.ADDRESS_LINK_LOCAL), ("100.64.0.0/10", R.ADDRESS_CGNAT),
    ("0.0.0.0/8", R.ADDRESS_RESERVED), ("192.0.0.0/24", R.ADDRESS_RESERVED),
    ("192.0.2.0/24", R.ADDRESS_RESERVED), ("192.88.99.0/24", R.ADDRESS_RESERVED),
    ("198.18.0.0/15", R.ADDRESS_RESERVED), ("198.51.100.0/24", R.ADDRESS_RESERVED),
    ("203.0.113.0/24", R.ADDRESS_RESERVED), ("224.0.0.0/4", R.ADDRESS_RESERVED),
    ("240.0.0.0/4", R.ADDRESS_RESERVED)]]
_REFERENCE_V6 = [(IPv6Network(n), r) for n, r in [
    ("fd00:ec2::254/128", R.ADDRESS_METADATA), ("::ffff:0:0/96", R.ADDRESS_IPV4_MAPPED),
    ("::1/128", R.ADDRESS_LOOPBACK), ("fc00::/7", R.ADDRESS_PRIVATE),
    ("fe80::/10", R.ADDRESS_LINK_LOCAL), ("::/96", R.ADDRESS_RESERVED),
    ("::ffff:0:0:0/96", R.ADDRESS_RESERVED), ("64:ff9b:1::/48", R.ADDRESS_RESERVED),
    ("100::/64", R.ADDRESS_RESERVED), ("2001::/23", R.ADDRESS_RESERVED),
    ("2001:db8::/32", R.ADDRESS_RESERVED), ("3fff::/20", R.ADDRESS_RESERVED),
    ("5f00::/16", R.ADDRESS_RESERVED), ("fec0::/10", R.ADDRESS_RESERVED),
    ("ff00::/8", R.ADDRESS_RESERVED)]]


def _reference(ip: IPv4Address | IPv6Address) -> Reason | None:
    if isinstance(ip, IPv4Address):
        return next((r for n, r in _REFERENCE_V4 if ip in n), None)
    found = next((r for n, r in _REFERENCE_V6 if ip in n), None)
    if found is not None:
        return found
    if ip in IPv6Network("64:ff9b::/96"):
        return _reference(IPv4Address(ip.packed[12:]))
    if ip.sixtofour is not None:
        return _reference(ip.sixtofour)
    if ip not in IPv6Network("2000::/3"):
        return R.ADDRESS_RESERVED
    return None


@pytest.mark.parametrize("network", [n for n, _ in _REFERENCE_V4 + _REFERENCE_V6])
def test_table_edges_match_the_reference(network: IPv4Network | IPv6Network) -> None:
    # Hypothesis rarely lands on a network's first or last address, or just outside it.
    low, high = int(network.network_address), int(network.broadcast_address)
    top = 2**32 - 1 if network.version == 4 else 2**128 - 1
    for value in {low, high, max(low - 1, 0), min(high + 1, top)}:
        ip = IPv4Address(value) if network.version == 4 else IPv6Address(value)
        assert classify_address(ip) is _reference(ip), ip
