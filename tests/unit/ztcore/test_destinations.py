"""Destination checks: port, then every resolved address, with the admin's network exceptions."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztcore.addresses import classify_address
from ztcore.authority import parse_authority
from ztcore.decision import Action
from ztcore.destinations import (
    DestinationPolicy,
    check_addresses,
    check_destination,
    check_port,
)
from ztcore.errors import ConfigError
from ztcore.reasons import Reason

R = Reason
DEFAULT = DestinationPolicy()
LOOPBACK_ORIGIN = DestinationPolicy.from_config(ports=["8000-8999"], networks=["127.0.0.1"])

# (authority, resolved addresses (ignored for IP literals), policy, reason, status, detail part)
CASES: list[tuple[str, list[str], DestinationPolicy, Reason, int, str]] = [
    ("example.jp:443", ["93.184.215.14"], DEFAULT, R.DESTINATION_ALLOWED, 200, ""),
    ("example.jp:80", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"], DEFAULT,
     R.DESTINATION_ALLOWED, 200, ""),
    ("[2001:4860:4860::8888]:443", [], DEFAULT, R.DESTINATION_ALLOWED, 200, ""),
    ("xn--eckwd4c7c.xn--zckzah:443", ["8.8.8.8"], DEFAULT, R.DESTINATION_ALLOWED, 200, ""),
    # the tricky literals
    ("169.254.169.254:80", [], DEFAULT, R.ADDRESS_METADATA, 403, "169.254.169.254"),
    ("10.0.0.1:443", [], DEFAULT, R.ADDRESS_PRIVATE, 403, "10.0.0.1"),
    ("[::ffff:127.0.0.1]:443", [], DEFAULT, R.ADDRESS_IPV4_MAPPED, 403, "::ffff:7f00:1"),
    ("2130706433:80", [], DEFAULT, R.ADDRESS_LOOPBACK, 403, "127.0.0.1"),
    ("0x7f.1:80", [], DEFAULT, R.ADDRESS_LOOPBACK, 403, "127.0.0.1"),
    ("0177.0.0.1:80", [], DEFAULT, R.ADDRESS_LOOPBACK, 403, "127.0.0.1"),
    ("127.1:80", [], DEFAULT, R.ADDRESS_LOOPBACK, 403, "127.0.0.1"),
    ("[64:ff9b::a9fe:a9fe]:80", [], DEFAULT, R.ADDRESS_METADATA, 403, "169.254.169.254"),
    # names that resolve to forbidden addresses
    ("internal.example.jp:443", ["10.1.2.3"], DEFAULT, R.ADDRESS_PRIVATE, 403, "10.1.2.3"),
    ("localhost:443", ["127.0.0.1", "::1"], DEFAULT, R.ADDRESS_LOOPBACK, 403, "127.0.0.1"),
    # DNS rebinding: one public and one private answer is refused whole
    ("rebind.example:443", ["93.184.215.14", "192.168.0.10"], DEFAULT, R.ADDRESS_PRIVATE, 403,
     "192.168.0.10"),
    ("rebind.example:443", ["2606:4700::1", "fd00::1"], DEFAULT, R.ADDRESS_PRIVATE, 403,
     "fd00::1"),
    ("nothing.example:443", [], DEFAULT, R.DNS_NO_ADDRESS, 502, ""),
    # ports
    ("example.jp:22", ["93.184.215.14"], DEFAULT, R.PORT_NOT_ALLOWED, 403, "port 22"),
    ("example.jp:8443", ["93.184.215.14"], DEFAULT, R.PORT_NOT_ALLOWED, 403, "port 8443"),
    ("127.0.0.1:22", [], DEFAULT, R.PORT_NOT_ALLOWED, 403, "port 22"),   # port is checked first
    ("example.jp:8443", ["93.184.215.14"], LOOPBACK_ORIGIN, R.DESTINATION_ALLOWED, 200, ""),
    ("example.jp:9000", ["93.184.215.14"], LOOPBACK_ORIGIN, R.PORT_NOT_ALLOWED, 403, "9000"),
    # admin exceptions lift exactly what they cover
    ("127.0.0.1:8080", [], LOOPBACK_ORIGIN, R.DESTINATION_ALLOWED, 200, ""),
    ("127.0.0.2:8080", [], LOOPBACK_ORIGIN, R.ADDRESS_LOOPBACK, 403, "127.0.0.2"),
    ("localhost:8080", ["127.0.0.1", "::1"], LOOPBACK_ORIGIN, R.ADDRESS_LOOPBACK, 403, "::1"),
    ("[::ffff:127.0.0.1]:8080", [], LOOPBACK_ORIGIN, R.ADDRESS_IPV4_MAPPED, 403, ""),
    ("169.254.169.254:80", [], DestinationPolicy.from_config([], ["169.254.0.0/16"]),
     R.DESTINATION_ALLOWED, 200, ""),
]


@pytest.mark.parametrize(("text", "resolved", "policy", "reason", "status", "detail"), CASES)
def test_check_destination(text: str, resolved: list[str], policy: DestinationPolicy,
                           reason: Reason, status: int, detail: str) -> None:
    authority = parse_authority(text)
    decision = check_destination(authority, [ip_address(a) for a in resolved], policy)
    assert decision.reasons == (reason,)
    assert decision.status == status
    assert decision.allowed is (reason is R.DESTINATION_ALLOWED)
    assert detail in decision.detail


def test_a_literal_is_checked_even_if_the_shell_passes_other_addresses() -> None:
    decision = check_destination(parse_authority("10.0.0.1:443"),
                                 [IPv4Address("8.8.8.8")], DEFAULT)
    assert decision.action is Action.DENY
    assert decision.reason is R.ADDRESS_PRIVATE


def test_check_port() -> None:
    assert check_port(parse_authority("example.jp:443"), DEFAULT) is None
    assert check_port(parse_authority("example.jp:80"), DEFAULT) is None
    denial = check_port(parse_authority("example.jp:444"), DEFAULT)
    assert denial is not None
    assert denial.reason is R.PORT_NOT_ALLOWED
    assert denial.detail == "port 444 is not allowed (allowed: 80, 443)"


def test_default_policy() -> None:
    assert DEFAULT.allowed_ports == ((80, 80), (443, 443))
    assert DEFAULT.allowed_networks == ()
    assert DestinationPolicy.from_config([], []) == DEFAULT


# (ports, networks, expected ports, expected networks)
CONFIGS: list[tuple[list[str | int], list[str], tuple[tuple[int, int], ...], tuple[str, ...]]] = [
    ([443], [], ((80, 80), (443, 443)), ()),
    (["8443"], [], ((80, 80), (443, 443), (8443, 8443)), ()),
    (["8000-8999", 8080, " 22 "], [], ((22, 22), (80, 80), (443, 443), (8000, 8999)), ()),
    (["1-100", "81-442"], [], ((1, 443),), ()),
    (["65535"], ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"],
     ((80, 80), (443, 443), (65535, 65535)),
     ("127.0.0.1/32", "10.0.0.0/8", "::1/128", "fd00::/8")),
]


@pytest.mark.parametrize(("ports", "networks", "expected_ports", "expected_networks"), CONFIGS)
def test_from_config(ports: list[str | int], networks: list[str],
                     expected_ports: tuple[tuple[int, int], ...],
                     expected_networks: tuple[str, ...]) -> None:
    policy = DestinationPolicy.from_config(ports, networks)
    assert policy.allowed_ports == expected_ports
    assert policy.allowed_networks == tuple(ip_network(n) for n in expected_networks)


# (ports, networks, the exact error message)
BAD_CONFIGS: list[tuple[Sequence[object], Sequence[object], str]] = [
    ([443, 80, "70000"], [], "allowed_ports[2]: '70000' is not a port (1-65535)"),
    ([0], [], "allowed_ports[0]: 0 is not a port (1-65535)"),
    ([True], [], "allowed_ports[0]: True is not a port (1-65535)"),
    (["https"], [], "allowed_ports[0]: 'https' is not a port (1-65535)"),
    (["-1"], [], "allowed_ports[0]: '-1' is not a port (1-65535)"),
    (["+443"], [], "allowed_ports[0]: '+443' is not a port (1-65535)"),
    (["9000-8000"], [], "allowed_ports[0]: '9000-8000' is an empty range (9000 is above 8000)"),
    (["8000-"], [], "allowed_ports[0]: '8000-' is not a port (1-65535)"),
    (["8000-9000-10000"], [], "allowed_ports[0]: '8000-9000-10000' is not a port (1-65535)"),
    ([4.43], [], "allowed_ports[0]: 4.43 is not a port or a port range (\"8000-8999\")"),
    ("443", [], "allowed_ports: expected a list of ports, not a single string"),
    ([], "10.0.0.0/8", "allowed_networks: expected a list of networks, not a string"),
    ([], ["10.0.0.0/8", "intranet"],
     "allowed_networks[1]: 'intranet' is not a network: "
     "'intranet' does not appear to be an IPv4 or IPv6 network"),
    ([], ["10.0.0.1/8"],
     "allowed_networks[0]: '10.0.0.1/8' is not a network: 10.0.0.1/8 has host bits set"),
    ([], ["fe80::1%eth0"], "allowed_networks[0]: 'fe80::1%eth0': IPv6 zone ids are not allowed"),
    ([], [10], "allowed_networks[0]: 10 is not a network (expected a CIDR or an address)"),
]


@pytest.mark.parametrize(("ports", "networks", "message"), BAD_CONFIGS)
def test_from_config_errors(ports: Sequence[str | int], networks: Sequence[str],
                            message: str) -> None:
    with pytest.raises(ConfigError) as info:
        DestinationPolicy.from_config(ports, networks)
    assert str(info.value) == message


def test_direct_construction_rejects_bad_ranges() -> None:
    with pytest.raises(ConfigError, match="allowed_ports\\[0\\]"):
        DestinationPolicy(allowed_ports=((0, 80),))


def test_no_address_is_a_502() -> None:
    decision = check_addresses([], DEFAULT)
    assert (decision.reason, decision.status) == (R.DNS_NO_ADDRESS, 502)


# --- properties -------------------------------------------------------------------------------

def addresses_in(network: str) -> st.SearchStrategy[IPv4Address | IPv6Address]:
    net = ip_network(network)
    low = int(net.network_address)
    values = st.integers(min_value=low, max_value=low + net.num_addresses - 1)
    return values.map(IPv4Address) if net.version == 4 else values.map(IPv6Address)


FORBIDDEN = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
             "100.64.0.0/10", "fc00::/7", "::ffff:0:0/96"]
forbidden_addresses = st.one_of(*(addresses_in(n) for n in FORBIDDEN))
public_addresses = st.sampled_from(
    ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2001:4860:4860::8888"]).map(ip_address)


@given(forbidden_addresses)
def test_every_forbidden_address_is_denied(ip: IPv4Address | IPv6Address) -> None:
    decision = check_addresses([ip], DEFAULT)
    assert decision.action is Action.DENY
    assert decision.status == 403
    assert str(ip) in decision.detail


@given(st.lists(public_addresses, max_size=3), forbidden_addresses,
       st.lists(public_addresses, max_size=3))
def test_one_forbidden_address_denies_the_whole_answer(
        before: list[IPv4Address | IPv6Address], bad: IPv4Address | IPv6Address,
        after: list[IPv4Address | IPv6Address]) -> None:
    decision = check_addresses([*before, bad, *after], DEFAULT)
    assert decision.action is Action.DENY
    assert str(bad) in decision.detail


@given(st.lists(public_addresses, min_size=1, max_size=5))
def test_public_answers_are_allowed(addresses: list[IPv4Address | IPv6Address]) -> None:
    assert check_addresses(addresses, DEFAULT).allowed


@st.composite
def networks(draw: st.DrawFn) -> IPv4Network | IPv6Network:
    if draw(st.booleans()):
        base = draw(st.sampled_from([IPv4Address("10.0.0.0"), IPv4Address("127.0.0.0"),
                                     IPv4Address("169.254.0.0"), IPv4Address("192.168.0.0")]))
        prefix = draw(st.integers(min_value=8, max_value=32))
        offset = draw(st.integers(min_value=0, max_value=2**24 - 1))
        return IPv4Network((int(base) + offset, prefix), strict=False)
    offset = draw(st.integers(min_value=0, max_value=2**121 - 1))
    prefix = draw(st.integers(min_value=7, max_value=128))
    return IPv6Network((int(IPv6Address("fc00::")) + offset, prefix), strict=False)


@st.composite
def addresses_near(draw: st.DrawFn,
                   network: IPv4Network | IPv6Network) -> IPv4Address | IPv6Address:
    """An address inside `network`, or one just outside it, or anywhere in the private range."""
    low, high = int(network.network_address), int(network.broadcast_address)
    top = 2**32 - 1 if network.version == 4 else 2**128 - 1
    value = draw(st.one_of(
        st.integers(min_value=low, max_value=high),
        st.sampled_from([max(low - 1, 0), min(high + 1, top)]),
        st.integers(min_value=max(low - 2**16, 0), max_value=min(high + 2**16, top)),
    ))
    return IPv4Address(value) if network.version == 4 else IPv6Address(value)


@given(st.data(), networks())
def test_allowed_networks_lift_exactly_the_covered_addresses(
        data: st.DataObject, network: IPv4Network | IPv6Network) -> None:
    policy = DestinationPolicy.from_config([], [str(network)])
    ip = data.draw(addresses_near(network))
    decision = check_addresses([ip], policy)
    assert decision.allowed is (ip in network or classify_address(ip) is None)
    if ip not in network:
        assert decision == check_addresses([ip], DEFAULT)
