"""The split-DNS stub's decision: one DNS message in, an answer, a forward or a drop out.

This module owns what the agent's DNS stub does with a packet from a client (`decide`), the
replies it builds itself (config answers, NXDOMAIN, FORMERR, NOTIMP, SERVFAIL), the check
that an upstream's reply belongs to a forwarded query (`is_reply_to`), and the choice of
upstream servers (`parse_resolv_conf`, `upstreams_without`). The semantics of the config are
documented in `ztcore/split_dns.py`.

It must not touch a socket, a file or a clock: `runtime/dns_stub.py` receives the packets,
reads /etc/resolv.conf, carries out the forward and counts the outcomes.

dnslib raises DNSError, but also ValueError, UnicodeError and others, on garbage: every
exception from parsing a client's packet is caught here, at the edge, and becomes a DnsDrop.
(dnslib also refuses labels that are not UTF-8: such a query is dropped, never forwarded.)
A reply is never sent to a message that is itself a response (QR set), so two stubs can never
bounce an error back and forth.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from dnslib import (  # type: ignore[import-untyped]  # dnslib ships no type hints
    AAAA,
    CLASS,
    EDNS0,
    QTYPE,
    RR,
    SOA,
    A,
    DNSBuffer,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
)

from ztcore.split_dns import SplitDnsConfig

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP = 0, 1, 2, 3, 4   # RFC 1035 §4.1.1 RCODE
DNS_PORT = 53
EDNS_UDP_BYTES = 1232   # the payload size we advertise (DNS flag day 2020)
CLASSIC_UDP_BYTES = 512   # RFC 1035 §2.3.4: the limit for a client without EDNS
_HEADER = struct.Struct("!HHHHHH")
_QR, _TC, _RD, _RA, _CD = 0x8000, 0x0200, 0x0100, 0x0080, 0x0010
_OPCODE_QUERY = 0
_MAX_WHY = 160
# Negative answers carry a SOA (RFC 2308 §3) whose MINIMUM is the config's TTL; the names in it
# are placeholders, as the stub is no real primary server.
_SOA_MNAME, _SOA_RNAME = "localhost", "hostmaster.invalid"

Labels = tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """Send `reply` to the client. `rcode` and `why` are for counters and logs."""
    reply: bytes
    rcode: int
    why: str


@dataclass(frozen=True, slots=True)
class DnsForward:
    """Relay `query` unchanged to the upstream resolver; `qname` is for logs."""
    query: bytes
    qname: str


@dataclass(frozen=True, slots=True)
class DnsDrop:
    """Send nothing. A `why` starting with `internal-error` is a bug on our side."""
    why: str


@dataclass(frozen=True, slots=True)
class _Index:
    zones: tuple[Labels, ...]            # longest first, so the innermost zone wins
    existing: frozenset[Labels]          # records, their ancestors inside a zone, zone apexes
    ipv4: dict[Labels, tuple[tuple[int, ...], ...]]
    ipv6: dict[Labels, tuple[tuple[int, ...], ...]]

    def zone_of(self, name: Labels) -> Labels | None:
        return next((z for z in self.zones if _below(name, z)), None)


def decide(packet: bytes, config: SplitDnsConfig, *, udp: bool = True) -> DnsAnswer | DnsForward | DnsDrop:
    """What to do with one message from a client. Never raises.

    `udp` says the reply goes back over UDP, where it must fit the client's payload size (512
    bytes, or what its EDNS OPT record says); a bigger answer goes out truncated (TC), and
    the client retries over TCP.
    """
    if len(packet) < _HEADER.size:
        return DnsDrop(f"malformed: {len(packet)} bytes, shorter than a DNS header")
    ident, flags, qdcount, _, _, _ = _HEADER.unpack_from(packet)
    if flags & _QR:
        return DnsDrop("a response, not a query")
    opcode = (flags >> 11) & 0xF
    if opcode != _OPCODE_QUERY:
        # RFC 1035 §4.1.1: NOTIMP is the code for "does not support the requested kind of query".
        return DnsAnswer(_header_only(ident, flags, NOTIMP), NOTIMP, f"notimp: opcode {opcode}")
    if qdcount != 1:
        return DnsAnswer(_header_only(ident, flags, FORMERR), FORMERR,
                         f"formerr: {qdcount} questions, expected 1")
    try:
        query = DNSRecord.parse(packet)
        name: Labels = tuple(bytes(label).lower() for label in query.questions[0].qname.label)
    except Exception as exc:   # dnslib raises many kinds on garbage (module doc)
        return DnsDrop(_why("malformed", exc))
    try:
        return _decide(packet, query, name, config, udp)
    except Exception as exc:   # a bug must neither escape nor become a forward
        return DnsDrop(_why("internal-error", exc))


def _decide(packet: bytes, query: Any, name: Labels, config: SplitDnsConfig,
            udp: bool) -> DnsAnswer | DnsForward:
    index = _index(config)
    zone = index.zone_of(name)
    if zone is None:
        return DnsForward(query=packet, qname=_text(name))
    rq = _Query(query)
    if rq.opt_count > 1:   # RFC 6891 §6.1.1: more than one OPT RR is a format error
        return rq.answer(FORMERR, "formerr: more than one OPT record", udp=udp)
    question = rq.question
    if question.qclass == CLASS.IN and name in index.ipv4 and question.qtype in (QTYPE.A, QTYPE.AAAA):
        table = index.ipv4 if question.qtype == QTYPE.A else index.ipv6
        rdata = (A(a) for a in table[name]) if question.qtype == QTYPE.A else (AAAA(a) for a in table[name])
        answers = [RR(question.qname, question.qtype, CLASS.IN, config.ttl_seconds, r) for r in rdata]
        if answers:
            return rq.answer(NOERROR, "answer", answers=answers, udp=udp)
    soa = _soa(zone, config.ttl_seconds)
    if name == zone and question.qtype == QTYPE.SOA and question.qclass == CLASS.IN:
        return rq.answer(NOERROR, "answer: zone soa", answers=[soa], udp=udp)
    if name in index.existing:
        return rq.answer(NOERROR, "nodata", authority=[soa], udp=udp)
    return rq.answer(NXDOMAIN, "nxdomain", authority=[soa], udp=udp)


class _Query:
    """A parsed query and the replies to it (dnslib objects stay inside this module)."""

    def __init__(self, query: Any) -> None:
        self._query = query
        self.question = query.questions[0]
        opts = [rr for rr in query.ar if rr.rtype == QTYPE.OPT]
        self.opt_count = len(opts)
        self.udp_limit = max(CLASSIC_UDP_BYTES, int(opts[0].rclass)) if opts else CLASSIC_UDP_BYTES

    def answer(self, rcode: int, why: str, *, answers: Sequence[Any] = (),
               authority: Sequence[Any] = (), udp: bool, aa: bool = True) -> DnsAnswer:
        head = self._query.header
        reply = DNSRecord(DNSHeader(id=head.id, bitmap=0, qr=1, aa=int(aa), rd=head.rd, ra=1,
                                    cd=head.cd, rcode=rcode),
                          questions=[self.question], rr=list(answers), auth=list(authority))
        if self.opt_count:
            reply.add_ar(EDNS0(udp_len=EDNS_UDP_BYTES))
        data = bytes(reply.pack())
        if udp and len(data) > self.udp_limit:
            # RFC 2181 §9: too big for UDP, so send the header and question with TC set.
            reply.rr, reply.auth = [], []
            reply.header.tc = 1
            data = bytes(reply.pack())
            why += " (truncated)"
        return DnsAnswer(reply=data, rcode=rcode, why=why)


def servfail(query: bytes) -> bytes | None:
    """The SERVFAIL reply to a query none of the upstreams answered; None if it is no query."""
    try:
        parsed = DNSRecord.parse(query)
        if parsed.header.qr or len(parsed.questions) != 1:
            return None
        return _Query(parsed).answer(SERVFAIL, "servfail", udp=True, aa=False).reply
    except Exception:   # dnslib raises many kinds on garbage (module doc)
        return None


def is_reply_to(query: bytes, reply: bytes) -> bool:
    """Whether `reply` answers `query`: same ID, QR set and the same question (RFC 5452 §9.1).

    A reply without a question is accepted only if it is truncated or an error, as a server may
    strip the question from those.
    """
    if len(query) < _HEADER.size or len(reply) < _HEADER.size:
        return False
    rid, rflags, rqd, _, _, _ = _HEADER.unpack_from(reply)
    if rid != _HEADER.unpack_from(query)[0] or not rflags & _QR:
        return False
    if rqd == 0:
        return bool(rflags & _TC) or rflags & 0xF != NOERROR
    try:
        asked = _question_at_12(query)
        got = _question_at_12(reply)
    except Exception:   # dnslib raises many kinds on garbage (module doc)
        return False
    return asked == got


def is_truncated(reply: bytes) -> bool:
    return len(reply) >= _HEADER.size and bool(_HEADER.unpack_from(reply)[1] & _TC)


def parse_resolv_conf(text: str) -> tuple[str, ...]:
    """The `nameserver` addresses of a resolv.conf, in order, without duplicates.

    Comments (`#`, `;`), other options and lines whose address is not an IP literal are ignored;
    an IPv6 scope (`fe80::1%eth0`) is kept, as a socket needs it.
    """
    servers: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        try:
            server = str(ip_address(words[1]))
        except ValueError:
            continue
        if server not in servers:
            servers.append(server)
    return tuple(servers)


def upstreams_without(stub_host: str, stub_port: int, servers: Iterable[str], *, port: int = DNS_PORT,
                      local_addresses: Iterable[str] = ()) -> tuple[tuple[str, int], ...]:
    """The (server, port) pairs to forward to, leaving out the stub itself.

    A stub listening on port 53 must not forward to its own address, to 0.0.0.0 or :: (which
    reach the local host) when it listens on loopback, nor, when it listens on every address,
    to loopback or to any of `local_addresses` (the shell knows those; this core cannot).
    """
    if stub_port != port:
        return tuple((s, port) for s in servers)
    stub = _address(stub_host)
    local = {a for a in map(_address, local_addresses) if a is not None}
    kept = []
    for text in servers:
        server = _address(text)
        if server is None or server == stub or server in local:
            continue
        if server.is_unspecified and (stub is None or stub.is_loopback or stub.is_unspecified):
            continue
        if stub is not None and stub.is_unspecified and server.is_loopback:
            continue
        kept.append((text, port))
    return tuple(kept)


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        address = ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _header_only(ident: int, flags: int, rcode: int) -> bytes:
    """A reply of just a header: for a query whose question section cannot be trusted."""
    echoed = flags & (0x7800 | _RD | _CD)   # opcode, RD and CD are copied (RFC 1035, RFC 4035)
    return _HEADER.pack(ident, _QR | echoed | _RA | rcode, 0, 0, 0, 0)


def _question_at_12(packet: bytes) -> tuple[Labels, int, int]:
    buffer = DNSBuffer(packet)
    buffer.offset = _HEADER.size
    question = DNSQuestion.parse(buffer)
    labels = tuple(bytes(label).lower() for label in question.qname.label)
    return labels, int(question.qtype), int(question.qclass)


@functools.lru_cache(maxsize=8)
def _index(config: SplitDnsConfig) -> _Index:
    """The config as lookup tables; cached, as the same config serves many queries."""
    zones = tuple(sorted({_labels(z) for z in config.zones}, key=len, reverse=True))
    existing: set[Labels] = set(zones)
    ipv4: dict[Labels, tuple[tuple[int, ...], ...]] = {}
    ipv6: dict[Labels, tuple[tuple[int, ...], ...]] = {}
    for record in config.records:
        name = _labels(record.name)
        addresses = [ip_address(a) for a in record.addresses]
        ipv4[name] = tuple(tuple(a.packed) for a in addresses if isinstance(a, IPv4Address))
        ipv6[name] = tuple(tuple(a.packed) for a in addresses if isinstance(a, IPv6Address))
        zone = next((z for z in zones if _below(name, z)), ())
        # The ancestors of a record inside its zone are empty non-terminals: they exist, so
        # they get NODATA, never NXDOMAIN (RFC 8020), or resolvers would deny the record too.
        existing.update(name[i:] for i in range(len(name) - len(zone) + 1))
    return _Index(zones=zones, existing=frozenset(existing), ipv4=ipv4, ipv6=ipv6)


def _below(name: Labels, zone: Labels) -> bool:
    """Whether `name` is `zone` or lies below it."""
    return len(name) >= len(zone) and name[len(name) - len(zone):] == zone


def _labels(name: str) -> Labels:
    return tuple(name.lower().rstrip(".").encode("ascii").split(b"."))


def _soa(zone: Labels, ttl_seconds: int) -> Any:
    times = (1, 3600, 600, 86400, ttl_seconds)   # serial, refresh, retry, expire, minimum
    return RR(DNSLabel(zone), QTYPE.SOA, CLASS.IN, ttl_seconds, SOA(_SOA_MNAME, _SOA_RNAME, times))


def _text(name: Labels) -> str:
    return ".".join(label.decode("ascii", "backslashreplace") for label in name) + "."


def _why(kind: str, exc: Exception) -> str:
    return f"{kind}: {type(exc).__name__}: {exc}"[:_MAX_WHY]
