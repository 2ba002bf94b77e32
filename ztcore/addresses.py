"""Which IP addresses the broker must never connect to, and why.

This module owns the address-class tables (IANA special-purpose registries, RFC 6890 and its
updates, plus the cloud metadata endpoints) and `classify_address`, which returns the `Reason`
an address is forbidden for, or None for a globally routable address. It is a pure function
called once per resolved address of every CONNECT, so the tables are compiled at import to
integer (value, mask) rows, bucketed by first byte, and scanned in order.

It must not know about allowed ports or the admin's exceptions (`destinations.py` applies
those), and it must not resolve names or do I/O.

Order matters: the first matching row wins, so a metadata address inside link-local or CGNAT
space gets its own reason, and `::1` is loopback before `::/96` makes it "IPv4-compatible".
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_network

from ztcore.reasons import Reason

# Cloud instance metadata / control endpoints: reaching them from the broker leaks the broker's
# own cloud credentials (the classic SSRF prize), so they come first, before any broader row.
_METADATA = (
    "169.254.169.254/32",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack IMDS
    "169.254.170.2/32",    # AWS ECS task metadata and credentials
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "168.63.129.16/32",    # Azure WireServer (a public address: only this table catches it)
    "192.0.0.192/32",      # Oracle Cloud legacy metadata
    "fd00:ec2::254/128",   # AWS IMDS over IPv6
)

_IPV4_TABLE_SOURCE: tuple[tuple[str, Reason], ...] = (
    *((net, Reason.ADDRESS_METADATA) for net in _METADATA if ":" not in net),
    ("127.0.0.0/8", Reason.ADDRESS_LOOPBACK),
    ("10.0.0.0/8", Reason.ADDRESS_PRIVATE),
    ("172.16.0.0/12", Reason.ADDRESS_PRIVATE),
    ("192.168.0.0/16", Reason.ADDRESS_PRIVATE),
    ("169.254.0.0/16", Reason.ADDRESS_LINK_LOCAL),
    ("100.64.0.0/10", Reason.ADDRESS_CGNAT),
    ("0.0.0.0/8", Reason.ADDRESS_RESERVED),        # "this network"; 0.0.0.0 reaches localhost
    ("192.0.0.0/24", Reason.ADDRESS_RESERVED),     # IETF protocol assignments (RFC 6890)
    ("192.0.2.0/24", Reason.ADDRESS_RESERVED),     # TEST-NET-1 (RFC 5737)
    ("192.88.99.0/24", Reason.ADDRESS_RESERVED),   # 6to4 relay anycast, deprecated (RFC 7526)
    ("198.18.0.0/15", Reason.ADDRESS_RESERVED),    # benchmarking (RFC 2544)
    ("198.51.100.0/24", Reason.ADDRESS_RESERVED),  # TEST-NET-2
    ("203.0.113.0/24", Reason.ADDRESS_RESERVED),   # TEST-NET-3
    ("224.0.0.0/4", Reason.ADDRESS_RESERVED),      # multicast
    ("240.0.0.0/4", Reason.ADDRESS_RESERVED),      # reserved, includes 255.255.255.255
)

_IPV6_TABLE_SOURCE: tuple[tuple[str, Reason], ...] = (
    *((net, Reason.ADDRESS_METADATA) for net in _METADATA if ":" in net),
    # A socket to ::ffff:a.b.c.d is a socket to a.b.c.d: refused whatever the IPv4 address, so
    # the IPv4 tables can never be bypassed by spelling the address in IPv6.
    ("::ffff:0:0/96", Reason.ADDRESS_IPV4_MAPPED),
    ("::1/128", Reason.ADDRESS_LOOPBACK),
    ("fc00::/7", Reason.ADDRESS_PRIVATE),          # unique local (RFC 4193)
    ("fe80::/10", Reason.ADDRESS_LINK_LOCAL),
    ("::/128", Reason.ADDRESS_RESERVED),           # unspecified
    ("::/96", Reason.ADDRESS_RESERVED),            # IPv4-compatible, deprecated (RFC 4291)
    ("::ffff:0:0:0/96", Reason.ADDRESS_RESERVED),  # IPv4-translated (SIIT, RFC 2765)
    # Local-use NAT64 (RFC 8215): the IPv4 address may sit at any of the RFC 6052 offsets, so
    # it cannot be read back and checked; and the prefix is not globally routed anyway.
    ("64:ff9b:1::/48", Reason.ADDRESS_RESERVED),
    ("100::/64", Reason.ADDRESS_RESERVED),         # discard-only (RFC 6666)
    # IETF protocol assignments: Teredo 2001::/32 (tunnels to an IPv4 address we could not
    # check), benchmarking, ORCHID, AMT, AS112. Nothing an agent needs through the broker.
    ("2001::/23", Reason.ADDRESS_RESERVED),
    ("2001:db8::/32", Reason.ADDRESS_RESERVED),    # documentation
    ("3fff::/20", Reason.ADDRESS_RESERVED),        # documentation (RFC 9637)
    ("5f00::/16", Reason.ADDRESS_RESERVED),        # SRv6 SIDs (RFC 9602)
    ("fec0::/10", Reason.ADDRESS_RESERVED),        # site-local, deprecated (RFC 3879)
    ("ff00::/8", Reason.ADDRESS_RESERVED),         # multicast
)

# Addresses that carry an IPv4 address and are judged by it (RFC 6052 well-known NAT64 prefix,
# RFC 3056 6to4): a NAT64 gateway or 6to4 relay would deliver the packet to that IPv4 address.
_NAT64 = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")
# IANA allocates global unicast only from 2000::/3; everything else is unassigned or special.
_GLOBAL_UNICAST = IPv6Network("2000::/3")

_Row = tuple[int, int, Reason]  # (network address, netmask, reason) as integers
_Buckets = tuple[tuple[_Row, ...], ...]


def _compile(rows: tuple[tuple[str, Reason], ...], bits: int) -> _Buckets:
    """Split the ordered rows into 256 buckets by the address's first byte, keeping their order
    in each bucket: a lookup scans only the rows that could match (none, for most public
    addresses) and still returns the first matching row of the whole table."""
    networks = [(ip_network(text), reason) for text, reason in rows]
    shift = bits - 8
    buckets: list[list[_Row]] = [[] for _ in range(256)]
    for net, reason in networks:
        if net.max_prefixlen != bits:
            raise ValueError(f"{net} does not belong in a {bits}-bit table")
        row = (int(net.network_address), int(net.netmask), reason)
        first = int(net.network_address) >> shift
        last = int(net.broadcast_address) >> shift
        for byte in range(first, last + 1):
            buckets[byte].append(row)
    return tuple(tuple(bucket) for bucket in buckets)


_IPV4_BUCKETS = _compile(_IPV4_TABLE_SOURCE, 32)
_IPV6_BUCKETS = _compile(_IPV6_TABLE_SOURCE, 128)
_NAT64_VALUE, _NAT64_MASK = int(_NAT64.network_address), int(_NAT64.netmask)
_6TO4_VALUE, _6TO4_MASK = int(_SIX_TO_FOUR.network_address), int(_SIX_TO_FOUR.netmask)
_GUA_VALUE, _GUA_MASK = int(_GLOBAL_UNICAST.network_address), int(_GLOBAL_UNICAST.netmask)


def _classify_v4(value: int) -> Reason | None:
    for network, mask, reason in _IPV4_BUCKETS[value >> 24]:
        if value & mask == network:
            return reason
    return None


def classify_address(ip: IPv4Address | IPv6Address) -> Reason | None:
    """The reason `ip` must not be reached, or None for a globally routable address."""
    value = int(ip)
    if isinstance(ip, IPv4Address):
        return _classify_v4(value)
    for network, mask, reason in _IPV6_BUCKETS[value >> 120]:
        if value & mask == network:
            return reason
    if value & _NAT64_MASK == _NAT64_VALUE:
        return _classify_v4(value & 0xFFFFFFFF)
    if value & _6TO4_MASK == _6TO4_VALUE:
        return _classify_v4((value >> 80) & 0xFFFFFFFF)  # 2002:AABB:CCDD::/48
    if value & _GUA_MASK != _GUA_VALUE:
        return Reason.ADDRESS_RESERVED
    return None


def embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address a NAT64 or 6to4 address is judged by, or None (for audit details)."""
    value = int(ip)
    if value & _NAT64_MASK == _NAT64_VALUE:
        return IPv4Address(value & 0xFFFFFFFF)
    if value & _6TO4_MASK == _6TO4_VALUE:
        return IPv4Address((value >> 80) & 0xFFFFFFFF)
    return None
