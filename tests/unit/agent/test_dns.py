"""ztcore/split_dns.py and agent/dns.py: the split-DNS config and the stub's decisions."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from dnslib import (  # type: ignore[import-untyped]
    CLASS,
    EDNS0,
    QTYPE,
    RCODE,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.dns import (
    DnsAnswer,
    DnsDrop,
    DnsForward,
    decide,
    is_reply_to,
    is_truncated,
    parse_resolv_conf,
    servfail,
    upstreams_without,
)
from ztcore.errors import ConfigError
from ztcore.split_dns import DnsRecord, SplitDnsConfig, parse_split_dns

RAW: dict[str, Any] = {
    "zones": ["City.Test.", "lg.example.jp"],
    "records": [
        {"name": "intra.city.test", "addresses": ["10.20.30.40", "10.20.30.41"]},
        {"name": "Dual.City.Test.", "addresses": ["192.168.0.8", "FD00:0:0::8"]},
        {"name": "v6only.city.test", "addresses": ["fd00::6"]},
        {"name": "a.deep.lg.example.jp", "addresses": ["10.1.1.1"]},
        {"name": "many.city.test", "addresses": [f"10.9.{i // 250}.{i % 250 + 1}" for i in range(60)]},
    ],
    "ttl_seconds": 300,
}
CONFIG = parse_split_dns(RAW)


def query(name: str, qtype: str = "A", *, edns: int | None = None, ident: int = 4321) -> bytes:
    q = DNSRecord(DNSHeader(id=ident), q=DNSQuestion(name, getattr(QTYPE, qtype)))  # no random id
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    return bytes(q.pack())


def answer(packet: bytes, config: SplitDnsConfig = CONFIG, **kwargs: Any) -> Any:
    decision = decide(packet, config, **kwargs)
    assert isinstance(decision, DnsAnswer), decision
    reply = DNSRecord.parse(decision.reply)
    assert reply.header.rcode == decision.rcode
    return reply


def rdata(reply: Any) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


# ---- the config -----------------------------------------------------------------------------------

def test_the_config_is_normalised() -> None:
    assert CONFIG.zones == ("city.test", "lg.example.jp")
    assert CONFIG.records[1] == DnsRecord(name="dual.city.test", addresses=("192.168.0.8", "fd00::8"))
    assert CONFIG.ttl_seconds == 300


def test_the_config_round_trips_through_json() -> None:
    assert parse_split_dns(CONFIG.to_json_dict()) == CONFIG
    assert parse_split_dns({}) == SplitDnsConfig() == SplitDnsConfig((), (), 60)


@pytest.mark.parametrize(("ttl", "ok"), [(0, True), (86400, True), (-1, False), (86401, False),
                                         ("60", False), (True, False), (1.5, False), (None, False)])
def test_ttl_range(ttl: object, ok: bool) -> None:
    if ok:
        assert parse_split_dns({"ttl_seconds": ttl}).ttl_seconds == ttl
    else:
        with pytest.raises(ConfigError, match=r"^dns\.ttl_seconds: expected an integer 0-86400"):
            parse_split_dns({"ttl_seconds": ttl})


def _with(records: object = (), **top: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"zones": ["city.test"], "records": records}
    raw.update(top)
    return raw


_OK = {"name": "a.city.test", "addresses": ["10.0.0.1"]}


@pytest.mark.parametrize(("raw", "message"), [
    ([], "dns: expected a mapping, got list"),
    ({"zone": ["city.test"]}, "dns.zone: unknown key (expected zones, records, ttl_seconds)"),
    ({1: 2}, "dns: key 1 is not a string"),
    ({"zones": "city.test"}, "dns.zones: expected a list, got str"),
    ({"zones": [5]}, "dns.zones[0]: expected a DNS name, got 5"),
    ({"zones": [""]}, "dns.zones[0]: expected a DNS name, got ''"),
    ({"zones": ["."]}, "dns.zones[0]: expected a DNS name, got '.'"),
    ({"zones": ["ok.test", "a..test"]}, "dns.zones[1]: 'a..test' has a label of 0 characters"),
    ({"zones": ["x" * 64 + ".test"]}, "dns.zones[0]: 'xxxx"),
    ({"zones": [("a" * 62 + ".") * 4 + "test"]}, "dns.zones[0]: name is 256 characters long (at most 253)"),
    ({"zones": ["ex ample.test"]}, "dns.zones[0]: 'ex ample.test' contains ' '"),
    ({"zones": ["city_hall.test"]}, "dns.zones[0]: 'city_hall.test' contains '_'"),
    ({"zones": ["市役所.jp"]}, "dns.zones[0]: '市役所.jp' contains '市'"),
    ({"zones": ["City.test", "city.test."]}, "dns.zones[1]: duplicate zone 'city.test' (also dns.zones[0])"),
    (_with(records={}), "dns.records: expected a list, got dict"),
    (_with(["a.city.test"]), "dns.records[0]: expected a mapping, got str"),
    (_with([_OK, {**_OK, "ttl": 5}]), "dns.records[1].ttl: unknown key"),
    (_with([{"addresses": ["10.0.0.1"]}]), "dns.records[0].name: missing"),
    (_with([{"name": "a.city.test"}]), "dns.records[0].addresses: missing"),
    (_with([{"name": "www.example.com", "addresses": ["10.0.0.1"]}]),
     "dns.records[0].name: 'www.example.com' is not inside any zone (city.test)"),
    (_with([{"name": "evilcity.test", "addresses": ["10.0.0.1"]}]),
     "dns.records[0].name: 'evilcity.test' is not inside any zone"),
    ({"records": [_OK]}, "dns.records[0].name: 'a.city.test' is not inside any zone (no zones configured)"),
    (_with([_OK, {"name": "b.city.test", "addresses": ["10.0.0.2"]},
            {"name": "c.city.test", "addresses": ["x"]}]),
     "dns.records[2].addresses[0]: not an IP address: 'x'"),
    (_with([{"name": "a.city.test", "addresses": "10.0.0.1"}]), "dns.records[0].addresses: expected a list"),
    (_with([{"name": "a.city.test", "addresses": []}]),
     "dns.records[0].addresses: expected at least one address"),
    (_with([{"name": "a.city.test", "addresses": ["10.0.0.1", 167772162]}]),
     "dns.records[0].addresses[1]: not an IP address: 167772162"),
    (_with([{"name": "a.city.test", "addresses": ["010.0.0.1"]}]),
     "dns.records[0].addresses[0]: not an IP address: '010.0.0.1'"),
    (_with([{"name": "a.city.test", "addresses": ["fe80::1%eth0"]}]),
     "dns.records[0].addresses[0]: a DNS record cannot carry a scope id"),
    (_with([{"name": "a.city.test", "addresses": ["::1", "0::1"]}]),
     "dns.records[0].addresses[1]: duplicate address '::1'"),
    (_with([_OK, {"name": "A.City.Test.", "addresses": ["10.0.0.2"]}]),
     "dns.records[1].name: duplicate record 'a.city.test' (also dns.records[0])"),
    (_with([{"name": "*.city.test", "addresses": ["10.0.0.2"]}]), "dns.records[0].name: '*.city.test'"),
])
def test_bad_configs_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_split_dns(raw)
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_path_prefix_is_the_callers() -> None:
    with pytest.raises(ConfigError, match=r"^agent\.json: dns\.zones: expected a list"):
        parse_split_dns({"zones": None}, where="agent.json: dns")


def test_a_record_may_be_the_zone_apex_and_zones_may_nest() -> None:
    config = parse_split_dns({"zones": ["city.test", "b.city.test"],
                              "records": [{"name": "city.test", "addresses": ["10.0.0.1"]},
                                          {"name": "x.b.city.test", "addresses": ["10.0.0.2"]}]})
    assert rdata(answer(query("city.test"), config)) == ["10.0.0.1"]
    soa = answer(query("nope.b.city.test"), config).auth[0]
    assert str(soa.rname) == "b.city.test."   # the innermost zone's SOA


# ---- decide(): answers from the config --------------------------------------------------------

def test_a_private_name_is_answered_from_the_config() -> None:
    reply = answer(query("intra.city.test", ident=777))
    assert reply.header.id == 777 and reply.header.qr == 1 and reply.header.aa == 1
    assert reply.header.rcode == RCODE.NOERROR and reply.header.tc == 0
    assert rdata(reply) == ["10.20.30.40", "10.20.30.41"]
    assert {rr.ttl for rr in reply.rr} == {300}
    assert reply.auth == [] and reply.ar == []


def test_aaaa_gets_the_ipv6_addresses_and_a_the_ipv4_ones() -> None:
    assert rdata(answer(query("dual.city.test", "AAAA"))) == ["fd00::8"]
    assert rdata(answer(query("dual.city.test", "A"))) == ["192.168.0.8"]
    assert rdata(answer(query("v6only.city.test", "AAAA"))) == ["fd00::6"]


@pytest.mark.parametrize(("name", "qtype"), [
    ("v6only.city.test", "A"),          # a record without an address of that family
    ("intra.city.test", "MX"), ("intra.city.test", "TXT"), ("intra.city.test", "ANY"),
    ("intra.city.test", "HTTPS"), ("intra.city.test", "CNAME"),
    ("city.test", "A"),                 # the zone apex exists
    ("deep.lg.example.jp", "A"),        # an empty non-terminal above a record (RFC 8020)
])
def test_existing_names_without_that_data_get_nodata(name: str, qtype: str) -> None:
    reply = answer(query(name, qtype))
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1 and reply.rr == []
    assert [rr.rtype for rr in reply.auth] == [QTYPE.SOA]   # RFC 2308 §3
    assert reply.auth[0].rdata.times[4] == 300


@pytest.mark.parametrize("name", ["nope.city.test", "www.intra.city.test", "lg.example.jp.city.test",
                                  "x.deep.lg.example.jp", "b.deep.lg.example.jp", "_ldap._tcp.city.test"])
def test_a_miss_inside_a_zone_is_nxdomain_and_never_forwarded(name: str) -> None:
    reply = answer(query(name))
    assert reply.header.rcode == RCODE.NXDOMAIN and reply.header.aa == 1
    assert str(reply.auth[0].rname) in ("city.test.", "lg.example.jp.")


def test_the_zone_apex_soa_is_answered() -> None:
    reply = answer(query("CITY.test", "SOA"))
    assert [rr.rtype for rr in reply.rr] == [QTYPE.SOA]


@pytest.mark.parametrize("name", ["example.com", "evilcity.test", "city.test.example.com", "test",
                                  "example.jp", "intra-city.test", "."])
def test_names_outside_every_zone_are_forwarded_unchanged(name: str) -> None:
    packet = query(name, edns=1232)
    assert decide(packet, CONFIG) == DnsForward(query=packet, qname=name.rstrip(".") + ".")


def test_names_compare_without_case_and_the_reply_keeps_the_askers_case() -> None:
    reply = answer(query("InTrA.CiTy.TeSt."))  # 0x20-randomised, as some resolvers send
    assert rdata(reply) == ["10.20.30.40", "10.20.30.41"]
    assert str(reply.q.qname) == "InTrA.CiTy.TeSt."
    assert str(reply.rr[0].rname) == "InTrA.CiTy.TeSt."
    assert isinstance(decide(query("NoPe.CITY.test"), CONFIG), DnsAnswer)


def test_trailing_dots_in_the_config_and_the_query_do_not_matter() -> None:
    config = parse_split_dns({"zones": ["corp.test."], "records": [{"name": "git.corp.test.",
                                                                     "addresses": ["10.0.0.9"]}]})
    assert rdata(answer(query("git.corp.test"), config)) == ["10.0.0.9"]
    assert rdata(answer(query("git.corp.test."), config)) == ["10.0.0.9"]


def test_another_class_inside_a_zone_is_not_forwarded() -> None:
    q = DNSRecord(DNSHeader(id=9), q=DNSQuestion("intra.city.test", QTYPE.A, CLASS.CH))
    assert answer(bytes(q.pack())).header.rcode == RCODE.NOERROR
    q = DNSRecord(DNSHeader(id=9), q=DNSQuestion("nope.city.test", QTYPE.TXT, CLASS.CH))
    assert answer(bytes(q.pack())).header.rcode == RCODE.NXDOMAIN


def test_an_empty_config_forwards_everything() -> None:
    assert isinstance(decide(query("intra.city.test"), SplitDnsConfig()), DnsForward)


def test_a_new_config_applies_to_the_next_query() -> None:
    moved = parse_split_dns({**RAW, "records": [{"name": "intra.city.test", "addresses": ["10.0.0.77"]}]})
    assert rdata(answer(query("intra.city.test"), moved)) == ["10.0.0.77"]
    assert rdata(answer(query("intra.city.test"), CONFIG)) == ["10.20.30.40", "10.20.30.41"]


# ---- EDNS and size --------------------------------------------------------------------------------

def test_edns_is_answered_with_edns() -> None:
    reply = answer(query("intra.city.test", edns=4096))
    assert [rr.rtype for rr in reply.ar] == [QTYPE.OPT] and reply.ar[0].rclass == 1232
    assert answer(query("intra.city.test")).ar == []


def test_a_big_answer_is_truncated_over_udp_only() -> None:
    small = answer(query("many.city.test"))
    assert small.header.tc == 1 and small.rr == [] and str(small.q.qname) == "many.city.test."
    assert len(answer(query("many.city.test"), udp=False).rr) == 60
    assert len(answer(query("many.city.test", edns=1232)).rr) == 60
    assert answer(query("many.city.test", edns=1232)).header.tc == 0


# ---- FORMERR, NOTIMP, drops ------------------------------------------------------------------------

def _header(ident: int, flags: int, qd: int, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


@pytest.mark.parametrize(("packet", "rcode"), [
    (_header(0x1234, 0x0100, 0), RCODE.FORMERR),                         # no question
    (_header(0x1234, 0x0100, 2) + query("a.test")[12:] * 2, RCODE.FORMERR),  # two questions
    (_header(0x1234, 0x2100, 1) + query("a.test")[12:], RCODE.NOTIMP),   # opcode 4, NOTIFY
    (_header(0x1234, 0x2800, 1) + query("a.test")[12:], RCODE.NOTIMP),   # opcode 5, UPDATE
    (_header(0x1234, 0x0900, 1) + query("a.test")[12:], RCODE.NOTIMP),   # opcode 1, IQUERY
])
def test_formerr_and_notimp_get_a_bare_header(packet: bytes, rcode: int) -> None:
    decision = decide(packet, CONFIG)
    assert isinstance(decision, DnsAnswer) and decision.rcode == rcode
    ident, flags, *counts = struct.unpack("!HHHHHH", decision.reply)
    assert ident == 0x1234 and flags & 0x8000 and flags & 0xF == rcode and counts == [0, 0, 0, 0]
    assert flags & 0x7800 == struct.unpack("!H", packet[2:4])[0] & 0x7800   # the opcode is echoed


def test_two_opt_records_are_a_format_error() -> None:
    q = DNSRecord.question("intra.city.test")
    q.add_ar(EDNS0(udp_len=1232))
    q.add_ar(EDNS0(udp_len=1232))
    assert answer(bytes(q.pack())).header.rcode == RCODE.FORMERR


@pytest.mark.parametrize(("packet", "why"), [
    (b"", "malformed: 0 bytes"),
    (b"\x12\x34\x01\x00\x00\x01", "malformed: 6 bytes"),
    (query("intra.city.test")[:-3], "malformed: DNSError"),       # the question is cut short
    (_header(1, 0x0100, 1) + b"\xc0\x0c\x00\x01\x00\x01", "malformed"),   # a pointer loop
    (_header(1, 0x0100, 1, ar=1) + query("a.test")[12:] + b"\x00\x00", "malformed"),
])
def test_garbage_is_dropped(packet: bytes, why: str) -> None:
    decision = decide(packet, CONFIG)
    assert isinstance(decision, DnsDrop) and decision.why.startswith(why), decision


def test_a_response_is_never_answered() -> None:
    reply = answer(query("intra.city.test"))
    assert decide(bytes(reply.pack()), CONFIG) == DnsDrop("a response, not a query")
    assert decide(_header(1, 0x8100, 0), CONFIG) == DnsDrop("a response, not a query")


# ---- servfail(), is_reply_to() ---------------------------------------------------------------------

def test_servfail_answers_the_query() -> None:
    reply = DNSRecord.parse(servfail(query("example.com", edns=1232, ident=99)))
    assert reply.header.id == 99 and reply.header.rcode == RCODE.SERVFAIL and reply.header.aa == 0
    assert str(reply.q.qname) == "example.com." and reply.ar[0].rtype == QTYPE.OPT
    assert servfail(b"junk") is None
    assert servfail(bytes(reply.pack())) is None   # never to a response


def test_is_reply_to() -> None:
    asked = query("example.com", ident=5)
    reply = DNSRecord.parse(asked).reply()
    assert is_reply_to(asked, bytes(reply.pack()))
    assert not is_reply_to(asked, asked)                                     # QR clear
    reply.header.id = 6
    assert not is_reply_to(asked, bytes(reply.pack()))                       # another ID
    assert not is_reply_to(asked, bytes(DNSRecord.parse(query("example.org", ident=5)).reply().pack()))
    assert not is_reply_to(asked, bytes(DNSRecord.parse(query("example.com", "AAAA", ident=5))
                                        .reply().pack()))
    assert is_reply_to(asked, bytes(DNSRecord.parse(query("EXAMPLE.com", ident=5)).reply().pack()))
    truncated = bytes(DNSRecord.parse(asked).reply().truncate().pack())      # no question, TC
    assert is_reply_to(asked, truncated) and is_truncated(truncated)
    assert not is_reply_to(asked, _header(5, 0x8000, 0))                     # no question, NOERROR
    assert not is_reply_to(asked, b"\x00\x05\x80") and not is_truncated(b"\x02")
    assert not is_reply_to(asked, _header(5, 0x8000, 1) + b"\x3f")


# ---- resolv.conf, upstreams ------------------------------------------------------------------------

def test_parse_resolv_conf() -> None:
    text = """# Generated by NetworkManager
search city.test
nameserver 192.168.1.1
  nameserver   2001:db8::53   # a comment after it
; nameserver 10.9.9.9
#nameserver 10.8.8.8
nameserver
nameserver dns.example.com
nameserver 192.168.1.1
nameserver 300.1.1.1
nameserver fe80::1%eth0
options edns0 trust-ad
nameserverx 10.7.7.7
nameserver 127.0.0.53
"""
    assert parse_resolv_conf(text) == ("192.168.1.1", "2001:db8::53", "fe80::1%eth0", "127.0.0.53")
    assert parse_resolv_conf("") == () and parse_resolv_conf("\x00\xff garbage\n\n") == ()


@pytest.mark.parametrize(("host", "port", "servers", "kept"), [
    ("127.0.0.1", 53, ["127.0.0.1", "0.0.0.0", "127.0.0.53", "8.8.8.8"], ["127.0.0.53", "8.8.8.8"]),
    ("127.0.0.1", 53, ["::ffff:127.0.0.1", "::"], []),
    ("127.0.0.1", 5353, ["127.0.0.1", "8.8.8.8"], ["127.0.0.1", "8.8.8.8"]),
    ("0.0.0.0", 53, ["127.0.0.1", "::1", "10.0.0.5", "10.0.0.1"], ["10.0.0.1"]),
    ("::1", 53, ["::1", "::", "fe80::1%eth0"], ["fe80::1%eth0"]),
    ("127.0.0.1", 53, ["not-an-ip"], []),
])
def test_upstreams_leave_out_the_stub(host: str, port: int, servers: list[str], kept: list[str]) -> None:
    got = upstreams_without(host, port, servers, local_addresses=["10.0.0.5"])
    assert got == tuple((s, 53) for s in kept)


# ---- Hypothesis ------------------------------------------------------------------------------------

def _no_surprise(decision: object) -> None:
    assert isinstance(decision, DnsAnswer | DnsForward | DnsDrop)
    assert not (isinstance(decision, DnsDrop) and decision.why.startswith("internal-error")), decision
    if isinstance(decision, DnsAnswer):
        DNSRecord.parse(decision.reply)   # whatever we send parses


@settings(max_examples=500)
@given(st.binary(max_size=600))
@example(b"\x00" * 12)
def test_arbitrary_bytes_never_raise(packet: bytes) -> None:
    _no_surprise(decide(packet, CONFIG))
    _no_surprise(decide(packet, CONFIG, udp=False))


@settings(max_examples=500)
@given(st.integers(0, 0xFFFF), st.integers(0, 0x7FFF), st.integers(0, 3), st.integers(0, 3),
       st.integers(0, 3), st.binary(max_size=300))
def test_a_query_header_with_a_random_body_never_raises(ident: int, flags: int, an: int, ns: int,
                                                         ar: int, body: bytes) -> None:
    _no_surprise(decide(_header(ident, flags & 0x87FF, 1, an, ns, ar) + body, CONFIG))


NAMES = ["intra.city.test", "DUAL.city.test", "nope.city.test", "many.city.test", "city.test",
         "a.deep.lg.example.jp", "example.com", "evilcity.test"]


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    qtype = draw(st.sampled_from(["A", "AAAA", "MX", "TXT", "SOA", "ANY", "HTTPS"]))
    edns = draw(st.none() | st.integers(0, 65535))
    data = bytearray(query(draw(st.sampled_from(NAMES)), qtype, edns=edns))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "append", "insert"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=64))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@settings(max_examples=600)
@given(mutated_queries())
def test_mutated_queries_never_raise(packet: bytes) -> None:
    _no_surprise(decide(packet, CONFIG))
    _no_surprise(decide(packet, CONFIG, udp=False))


labels = st.binary(min_size=1, max_size=63)


@settings(max_examples=300)
@given(st.lists(labels, max_size=5), st.sampled_from(["city.test", "lg.example.jp"]),
       st.integers(0, 65535), st.integers(0, 65535))
def test_no_name_inside_a_zone_is_ever_forwarded(prefix: list[bytes], zone: str, qtype: int,
                                                  qclass: int) -> None:
    name = tuple(label.swapcase() for label in prefix) + tuple(zone.upper().encode().split(b"."))
    if sum(len(label) + 1 for label in name) > 254:
        return
    packet = bytes(DNSRecord(DNSHeader(id=1), q=DNSQuestion(DNSLabel(name), qtype, qclass)).pack())
    decision = decide(packet, CONFIG)
    assert not isinstance(decision, DnsForward)
    if all(_utf8(label) for label in name):   # dnslib refuses other labels: dropped, not forwarded
        assert isinstance(decision, DnsAnswer), decision


def _utf8(label: bytes) -> bool:
    try:
        label.decode()
    except UnicodeDecodeError:
        return False
    return True


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)
near_configs = st.fixed_dictionaries({}, optional={
    "zones": st.lists(st.sampled_from(["city.test", "CITY.TEST.", "a..b", "", "x"]) | json_values,
                      max_size=3),
    "records": st.lists(st.fixed_dictionaries(
        {"name": st.sampled_from(["a.city.test", "b.x", "x", "bad name"]) | json_values},
        optional={"addresses": st.lists(st.sampled_from(["10.0.0.1", "::1", "x", "fe80::1%1"])
                                        | json_values, max_size=3),
                  "extra": json_values}) | json_values, max_size=3),
    "ttl_seconds": st.integers(-5, 90000) | json_values,
})


@settings(max_examples=400)
@given(json_values | near_configs)
def test_any_json_value_parses_or_raises_config_error(raw: object) -> None:
    try:
        config = parse_split_dns(raw)
    except ConfigError as exc:
        assert str(exc).startswith("dns")
        return
    assert parse_split_dns(config.to_json_dict()) == config
    for record in config.records:
        _no_surprise(decide(query(record.name), config))
