"""swg/ioc.py (with the STIX reading of swg/stix.py and the URL rules of swg/url_canonical.py):
values, the CSV and STIX 2.1 formats with their reports, the index's matching rules and merged
feeds; table-driven with a fixed `now`, and Hypothesis: arbitrary text and JSON never raise
anything but IocFeedError, matching never raises, canonical URLs are stable, and matching agrees
with a brute-force reference."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swg.ioc import (
    EMPTY_INDEX,
    MAX_BAD_SHOWN,
    IocFeedError,
    IocHit,
    IocIndex,
    ParsedFeed,
    indicator,
    normalise_value,
    parse_csv,
    parse_stix,
)
from swg.stix import PatternError, pattern_comparisons, timestamp
from swg.url_canonical import UrlError, UrlSchemeError, canonical_url
from swg.urlcategories import CategoryListError, normalise_host

NOW = 1_780_000_000.0            # 2026-05-28T20:26:40Z
SHA = "9f86d081884c7d659a2feb1e5d9b8e1e6b9bbce0c2f0e6b3c1e4f2a7e0b1c2d3"


# -- values ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,value,expected", [
    ("domain", "evil.example", ("domain", "evil.example")),
    ("domain", "  Evil.EXAMPLE.  ", ("domain", "evil.example")),
    ("domain", "*.evil.example", ("domain", "evil.example")),
    ("domain", ".evil.example", ("domain", "evil.example")),
    ("domain", "例え.テスト", ("domain", "xn--r8jz45g.xn--zckzah")),
    ("domain", "ＥＶＩＬ．example", ("domain", "evil.example")),          # full-width, IDNA maps it
    ("domain", "xn--r8jz45g.xn--zckzah", ("domain", "xn--r8jz45g.xn--zckzah")),
    ("domain", "198.51.100.7", ("ip", "198.51.100.7")),                 # an IP literal is an address
    ("domain", "[2001:DB8::1]", ("ip", "2001:db8::1")),
    ("ip", "198.51.100.7", ("ip", "198.51.100.7")),
    ("ip", "198.51.100.7/32", ("ip", "198.51.100.7")),
    ("ip", "198.51.100.0/24", ("ip", "198.51.100.0/24")),
    ("ip", "2001:DB8:BAD::/48", ("ip", "2001:db8:bad::/48")),
    ("ip", "2001:db8::0001", ("ip", "2001:db8::1")),
    ("url", "HTTP://Evil.Example:80/Kit/?a=1#frag", ("url", "http://evil.example/Kit/?a=1")),
    ("url", "https://evil.example", ("url", "https://evil.example/")),
    ("url", "https://evil.example:8443/x", ("url", "https://evil.example:8443/x")),
    ("url", "http://user:pw@evil.example/x", ("url", "http://evil.example/x")),
    ("url", "http://例え.テスト/パス", ("url", "http://xn--r8jz45g.xn--zckzah/%E3%83%91%E3%82%B9")),
    ("url", "http://evil.example/a/./b/../c", ("url", "http://evil.example/a/c")),
    ("url", "http://evil.example/%7ejoe/%2f?q=%e3%81%82", ("url", "http://evil.example/~joe/%2F?q=%E3%81%82")),
    ("url", "http://[2001:DB8::1]:80/", ("url", "http://[2001:db8::1]/")),
    ("sha256", SHA.upper(), ("sha256", SHA)),
])
def test_values(kind: str, value: str, expected: tuple[str, str]) -> None:
    assert normalise_value(kind, value) == expected


@pytest.mark.parametrize("kind,value,message", [
    ("domain", "", "empty value"),
    ("domain", "com", "top-level domain alone"),
    ("domain", "evil..example", "not a domain name: empty label"),
    ("domain", "evil example.com", "not a domain name"),
    ("domain", "1.2.3", "not a domain name"),
    ("ip", "198.51.100.7/24", "has host bits set"),
    ("ip", "198.51.100.300", "not an IP address or network"),
    ("ip", "fe80::1%eth0", "not an IP address or network"),
    ("url", "evil.example/kit", "needs a scheme"),
    ("url", "http://evil.example/a b", "spaces or control characters"),
    ("url", "http://evil.example:99999/", "bad port"),
    ("url", "http://[2001:db8::1/", "bad IPv6 literal"),
    ("url", "http:///path", "bad host"),
    ("url", "ftp://evil.example/x", "cannot be matched: unsupported-url-scheme"),
    ("sha256", "abc", "not a SHA-256"),
    ("sha256", SHA + "0", "not a SHA-256"),
    ("md5", "d41d8cd98f00b204e9800998ecf8427e", "unknown kind"),
])
def test_bad_values(kind: str, value: str, message: str) -> None:
    with pytest.raises(IocFeedError, match=message):
        normalise_value(kind, value)


@given(st.lists(st.sampled_from(["a", "B", "0", "9", "x", "0x", "1f", "-", "_", "é", " "]), min_size=1,
                max_size=4).map("".join).flatmap(lambda label: st.lists(st.just(label) | st.sampled_from(
                    ["example", "0x1f", "123", "", "a" * 64]), min_size=1, max_size=4).map(".".join)))
def test_domains_are_normalised_as_url_categories_do(text: str) -> None:
    stripped = text.strip()
    try:
        reference: str | None = normalise_host(stripped.removeprefix("*."), leading_dot=True)
    except CategoryListError:
        reference = None
    try:
        _, value = normalise_value("domain", text)
    except IocFeedError:   # refused: a bad name, or a lone top-level domain
        assert reference is None or "." not in reference
        return
    assert value == reference


def test_ip_version_is_checked() -> None:
    assert normalise_value("ip", "198.51.100.1", 4) == ("ip", "198.51.100.1")
    with pytest.raises(IocFeedError, match="not an IPv6"):
        normalise_value("ip", "198.51.100.1", 6)


def test_indicator_in_code() -> None:
    assert indicator("domain", "Evil.Example", "own", "phishing") == \
        IocHit("domain", "evil.example", "own", "phishing")
    for feed in ("", " own", "o\nwn", "x" * 65, 3):
        with pytest.raises(IocFeedError, match="invalid feed name"):
            indicator("domain", "evil.example", feed)  # type: ignore[arg-type]


# -- CSV ---------------------------------------------------------------------------------------

PREFECTURE_CSV = f"""\ufeff# 県 共有IOC (prefecture shared feed)
type,value,source,description,first_seen
domain,Evil.Example.,JPCERT,フィッシング,2026-05-01
hostname,例え.テスト,,IDN phishing,
ipv4,198.51.100.0/24,,C2 range,
ip-dst,203.0.113.7,,,
IPv6,2001:db8:bad::/48,,,
url,HTTP://Kit.Example:80/dl/,,phishing kit,
URL,https://x.example/a?b=1#frag,,,
FileHash-SHA256,{SHA.upper()},,dropper,

md5,d41d8cd98f00b204e9800998ecf8427e,,,
ip,198.51.100.7/24,,,
domain,com,,,
url,ftp://files.example/x,,,
domain,evil.example,,,
sha256,nothex,,,
"only one column"
domain,"unterminated
,value-without-kind,,,
"""


def test_csv_feed() -> None:
    parsed = parse_csv(PREFECTURE_CSV, "prefecture")
    assert [(h.kind, h.value) for h in parsed.indicators] == [
        ("domain", "evil.example"), ("domain", "xn--r8jz45g.xn--zckzah"), ("ip", "198.51.100.0/24"),
        ("ip", "203.0.113.7"), ("ip", "2001:db8:bad::/48"), ("url", "http://kit.example/dl/"),
        ("url", "https://x.example/a?b=1"), ("sha256", SHA)]
    first = parsed.indicators[0]
    assert (first.feed, first.source, first.description) == ("prefecture", "JPCERT", "フィッシング")
    report = parsed.report
    assert (report.feed, report.loaded, report.bad_count) == ("prefecture", 8, 6)
    assert report.skipped == Counter({"unsupported-kind": 1, "unsupported-url-scheme": 1, "duplicate": 1})
    assert {b.where: b.problem for b in report.bad} == {
        "line 13": "ip '198.51.100.7/24': not an IP address or network: 198.51.100.7/24 has host bits set",
        "line 14": "domain 'com': a top-level domain alone would match every site under it",
        "line 17": "sha256 'nothex': not a SHA-256 (64 hexadecimal digits)",
        "line 18": "1 columns, the header has more",
        "line 19": "not valid CSV (unexpected end of data)",
        "line 20": "no kind for 'value-without-kind'",
    }


@pytest.mark.parametrize("header,row,expected", [
    ("type,value", "domain,evil.example", ("domain", "evil.example", "", "")),
    ("indicator,type", "evil.example,domain", ("domain", "evil.example", "", "")),
    ("Indicator Type,Indicator,Description", "URL,http://e.example/,kit",
     ("url", "http://e.example/", "kit", "")),
    ("uuid,event_id,category,type,value,comment,to_ids,date",
     "5f0c,12,Network activity,ip-dst,203.0.113.9,seen in logs,1,20260501",
     ("ip", "203.0.113.9", "seen in logs", "")),
    ("IOC_TYPE ; x,IOC,Source", "fqdn,a.evil.example,CERT", None),   # ';' is not a separator
    ("ioc_type,ioc,source", "fqdn,a.evil.example,CERT", ("domain", "a.evil.example", "", "CERT")),
    ("kind,observable,comment", "sha-256," + SHA + ",x", ("sha256", SHA, "x", "")),
    ('"type","value"', '"domain","evil.example"', ("domain", "evil.example", "", "")),
    ("type\tvalue", "", None),
])
def test_csv_headers(header: str, row: str, expected: tuple[str, str, str, str] | None) -> None:
    if expected is None:
        with pytest.raises(IocFeedError, match="names no (kind|value) column"):
            parse_csv(f"{header}\n{row}\n", "f")
        return
    (hit,) = parse_csv(f"{header}\r\n{row}\r\n", "f").indicators
    assert (hit.kind, hit.value, hit.description, hit.source) == expected


@pytest.mark.parametrize("data,message", [
    ("", "no header row"),
    ("# only a comment\n\n", "no header row"),
    ("value,source\nevil.example,x\n", "names no kind column"),
    ('type,"value\n', "the header is not valid CSV"),
    (b"\xff\xfe\x00t\x00y\x00p\x00e", "the header is not valid CSV"),   # UTF-16: not UTF-8 text
    (3, "expected text or bytes"),
])
def test_csv_unreadable(data: Any, message: str) -> None:
    with pytest.raises(IocFeedError, match=message) as caught:
        parse_csv(data, "prefecture")
    assert str(caught.value).startswith("prefecture: ")


def test_csv_bytes_with_a_bad_line() -> None:
    data = b"type,value\ndomain,evil.example\ndomain,\xff\xfe.example\ndomain,ok.example\n" + \
        b"domain," + b"a" * 9000 + b".example\n"
    parsed = parse_csv(data, "f")
    assert [h.value for h in parsed.indicators] == ["evil.example", "ok.example"]
    assert [(b.where, b.problem) for b in parsed.report.bad] == [
        ("line 3", "not UTF-8 text"), ("line 5", "longer than 8192 characters")]


def test_csv_bad_entries_are_capped_but_counted() -> None:
    rows = "\n".join(f"ip,not-an-ip-{i}" for i in range(MAX_BAD_SHOWN + 50))
    report = parse_csv("type,value\n" + rows, "f").report
    assert (len(report.bad), report.bad_count, report.loaded) == (MAX_BAD_SHOWN, MAX_BAD_SHOWN + 50, 0)
    assert report.bad[0].where == "line 2"


def test_csv_description_is_one_line_and_cut() -> None:
    (hit,) = parse_csv('type,value,description\ndomain,e.example,"a   b\t' + "c" * 1000 + '"\n',
                       "f").indicators
    assert hit.description.startswith("a b c") and len(hit.description) == 512


# -- STIX 2.1 ----------------------------------------------------------------------------------

def bundle(*objects: Any) -> str:
    return json.dumps({"type": "bundle", "id": "bundle--1", "objects": list(objects)})


def stix_indicator(pattern: str, n: int = 1, **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{n:04d}",
            "created": "2026-05-01T00:00:00Z", "modified": "2026-05-01T00:00:00Z",
            "pattern": pattern, "pattern_type": "stix", "valid_from": "2026-05-01T00:00:00Z", **extra}


@pytest.mark.parametrize("pattern,loaded,skipped", [
    ("[domain-name:value = 'Evil.Example']", [("domain", "evil.example")], {}),
    ("[domain-name:value = '例え.テスト']", [("domain", "xn--r8jz45g.xn--zckzah")], {}),
    ("[ipv4-addr:value = '198.51.100.0/24']", [("ip", "198.51.100.0/24")], {}),
    ("[ipv6-addr:value = '2001:db8:bad::/48']", [("ip", "2001:db8:bad::/48")], {}),
    ("[url:value = 'http://kit.example/dl/']", [("url", "http://kit.example/dl/")], {}),
    (f"[file:hashes.'SHA-256' = '{SHA}']", [("sha256", SHA)], {}),
    (f"[file:hashes.SHA256 = '{SHA.upper()}']", [("sha256", SHA)], {}),
    ("[domain-name:value = 'a.example' OR ipv4-addr:value = '203.0.113.1']",
     [("domain", "a.example"), ("ip", "203.0.113.1")], {}),
    ("[domain-name:value = 'a.example'] OR [url:value = 'https://b.example/x']",
     [("domain", "a.example"), ("url", "https://b.example/x")], {}),
    ("([domain-name:value = 'a.example'] OR ([domain-name:value = 'b.example']))",
     [("domain", "a.example"), ("domain", "b.example")], {}),
    ("[(domain-name:value = 'a.example' OR domain-name:value = 'b.example')]",
     [("domain", "a.example"), ("domain", "b.example")], {}),
    ("[ipv4-addr:value IN ('203.0.113.1', '203.0.113.2')]", [("ip", "203.0.113.1"), ("ip", "203.0.113.2")], {}),
    ("[domain-name:value = 'it''s.example']", None, None),   # '' is not an escape: a syntax error
    ("[domain-name:value = 'a.example' and ipv4-addr:value = '203.0.113.1']", [], {"and-combination": 1}),
    ("[domain-name:value = 'a.example'] AND [url:value = 'http://b.example/']", [], {"and-combination": 1}),
    ("[domain-name:value = 'a.example'] OR [domain-name:value = 'b.example' AND "
     "domain-name:value = 'c.example']", [("domain", "a.example")], {"and-combination": 1}),
    ("[domain-name:value = 'a.example'] FOLLOWEDBY [url:value = 'http://b.example/']", [],
     {"followedby-sequence": 1}),
    ("[domain-name:value = 'a.example'] WITHIN 600 SECONDS", [], {"qualified-observation": 1}),
    ("[domain-name:value = 'a.example'] REPEATS 5 TIMES", [], {"qualified-observation": 1}),
    ("[domain-name:value = 'a.example'] START t'2026-01-01T00:00:00Z' STOP t'2027-01-01T00:00:00Z'",
     [], {"qualified-observation": 1}),
    ("[domain-name:value != 'a.example']", [], {"unsupported-operator": 1}),
    ("[domain-name:value NOT = 'a.example']", [], {"unsupported-operator": 1}),
    ("[domain-name:value LIKE '%.example']", [], {"unsupported-operator": 1}),
    ("[domain-name:value MATCHES '^a']", [], {"unsupported-operator": 1}),
    ("[ipv4-addr:value ISSUBSET '198.51.100.0/24']", None, None),   # ISSUBSET takes a list here
    ("[email-addr:value = 'x@evil.example']", [], {"unsupported-object-type": 1}),
    ("[file:name = 'invoice.exe']", [], {"unsupported-property": 1}),
    ("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']", [], {"unsupported-hash-algorithm": 1}),
    ("[domain-name:resolves_to_refs[*].value = '203.0.113.1']", [], {"unsupported-property": 1}),
    ("[url:value = 'ftp://files.example/x']", [], {"unsupported-url-scheme": 1}),
    ("[email-addr:value = 'x@evil.example' OR domain-name:value = 'evil.example']",
     [("domain", "evil.example")], {"unsupported-object-type": 1}),
])
def test_stix_patterns(pattern: str, loaded: list[tuple[str, str]] | None,
                       skipped: dict[str, int] | None) -> None:
    parsed = parse_stix(bundle(stix_indicator(pattern)), "prefecture", now=NOW)
    if loaded is None:
        assert parsed.indicators == () and parsed.report.bad[0].where == "indicator--0001"
        assert parsed.report.bad[0].problem.startswith("pattern: ")
        return
    assert [(h.kind, h.value) for h in parsed.indicators] == loaded
    assert parsed.report.skipped == Counter(skipped)
    assert parsed.report.bad == ()


def test_stix_bundle() -> None:
    objects = [
        {"type": "identity", "id": "identity--pref", "name": "県CSIRT", "identity_class": "organization"},
        stix_indicator("[domain-name:value = 'evil.example']", 1, created_by_ref="identity--pref",
                       name="Phishing domain", description="見本の説明"),
        stix_indicator("[domain-name:value = 'named.example']", 2, name="Named only",
                       created_by_ref="identity--unknown"),
        stix_indicator("[domain-name:value = 'revoked.example']", 3, revoked=True),
        stix_indicator("[domain-name:value = 'expired.example']", 4, valid_until="2026-01-01T00:00:00Z"),
        stix_indicator("[domain-name:value = 'at-now.example']", 5, valid_until="2026-05-28T20:26:40Z"),
        stix_indicator("[domain-name:value = 'later.example']", 6, valid_until="2027-01-01T00:00:00.5Z",
                       revoked=False),
        stix_indicator("title:phish", 7, pattern_type="sigma"),
        {"type": "malware", "id": "malware--1", "name": "Emotet", "is_family": True},
        {"type": "relationship", "id": "relationship--1", "relationship_type": "indicates"},
        stix_indicator("[domain-name:value = 'no-type.example']", 8, pattern_type=None) | {"pattern_type": 5},
        {k: v for k, v in stix_indicator("[domain-name:value = 'stix20.example']", 9).items()
         if k != "pattern_type"},
        "not an object",
        {"id": "indicator--notype"},
        stix_indicator("[domain-name:value = 'x.example'", 10),
        stix_indicator("[domain-name:value = 'bad-time.example']", 11, valid_until="2026-13-01T00:00:00Z"),
        stix_indicator("[domain-name:value = 'bad-time2.example']", 12, valid_until="yesterday"),
        stix_indicator("[domain-name:value = 'bad-revoked.example']", 13, revoked="yes"),
        stix_indicator("[ipv4-addr:value = '2001:db8::1' OR ipv4-addr:value = '203.0.113.5']", 14),
        stix_indicator("[ipv4-addr:value = 5]", 15),
        {"type": "indicator", "id": "indicator--nopattern", "pattern_type": "stix"},
        stix_indicator("[domain-name:value = 'evil.example']", 16),
    ]
    parsed = parse_stix(bundle(*objects), "prefecture", now=NOW)
    assert [h.value for h in parsed.indicators] == [
        "evil.example", "named.example", "later.example", "stix20.example", "203.0.113.5"]
    evil, named = parsed.indicators[:2]
    assert (evil.feed, evil.source, evil.description) == ("prefecture", "県CSIRT", "見本の説明")
    assert (named.source, named.description) == ("", "Named only")
    report = parsed.report
    assert report.skipped == Counter({"revoked": 1, "expired": 2, "pattern-type-not-stix": 1,
                                      "not-an-indicator": 3, "duplicate": 1})
    problems = {b.where: b.problem for b in report.bad}
    assert problems == {
        "indicator--0008": '"pattern_type" is not a string',
        "objects[12]": "not a JSON object",
        "indicator--notype": 'no "type"',
        "indicator--0010": "pattern: expected ']' at offset 32, found the end",
        "indicator--0011": "'2026-13-01T00:00:00Z': month must be in 1..12",
        "indicator--0012": "'yesterday' is not a STIX timestamp (YYYY-MM-DDTHH:MM:SS[.s]Z)",
        "indicator--0013": '"revoked" is not true or false',
        "indicator--0014": "ipv4-addr:value '2001:db8::1': not an IPv4 address or network",
        "indicator--0015": "ipv4-addr:value: the value must be a quoted string",
        "indicator--nopattern": 'no "pattern" string',
    }
    assert report.bad_count == len(problems) and report.loaded == 5


@pytest.mark.parametrize("data,message", [
    ("", "not JSON"),
    ("{", "not JSON"),
    (b"\xff\xfe{}", "not JSON"),
    ("[]", "not a STIX bundle"),
    ('{"type": "indicator", "pattern": "[domain-name:value = \'a.example\']"}', "not a STIX bundle"),
    ('{"type": "bundle", "objects": {}}', "not a STIX bundle"),
    ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ('{"type": "bundle", "objects": [' + "1" * 5000 + "]}", "not JSON"),   # int too long for Python
    (None, "expected text or bytes"),
])
def test_stix_unreadable(data: Any, message: str) -> None:
    with pytest.raises(IocFeedError, match=message) as caught:
        parse_stix(data, "prefecture", now=NOW)
    assert str(caught.value).startswith("prefecture: ")


def test_stix_bundle_without_objects_is_empty() -> None:
    parsed = parse_stix('{"type": "bundle", "id": "bundle--1"}', "f", now=NOW)
    assert parsed.indicators == () and parsed.report.loaded == 0


@pytest.mark.parametrize("pattern,message", [
    ("", "expected '[' at offset 0, found the end"),
    ("domain-name:value = 'a'", "expected '[' at offset 0, found 'domain-name'"),
    ("[domain-name:value = 'a'", "expected ']' at offset 24, found the end"),
    ("[domain-name:value = 'a]", "unexpected an unterminated string at offset 21"),
    ("[domain-name:value 'a']", "expected a comparison operator at offset 19"),
    ("[domain-name = 'a']", "expected ':' at offset 13, found '='"),
    ("[domain-name:value = ]", "expected a value at offset 21"),
    ("[domain-name:value = 'a\\n']", "invalid escape \\n"),
    ("[domain-name:value = 'a'] WITHIN SECONDS", "expected a number at offset 33"),
    ("[domain-name:value = 'a'] OR", "expected '[' at offset 28"),
    ("[domain-name:value = 'a'] [url:value = 'b']", "expected the end at offset 26"),
    ("[file:hashes.5 = 'a']", "expected a property name at offset 13"),
    ("[a:b[x] = 'a']", "expected a list index or '*' at offset 5"),
    ("[a:b = 'a'] § ", "unexpected '§ ' at offset 12"),
    ("(" * 40 + "[a:b = 'x']" + ")" * 40, "nested deeper than 32"),
    ("[" + "(" * 40 + "a:b = 'x'" + ")" * 40 + "]", "nested deeper than 32"),
    ("[a:b = '" + "x" * 20_000 + "']", "longer than 16384 characters"),
])
def test_pattern_errors(pattern: str, message: str) -> None:
    with pytest.raises(PatternError) as caught:
        pattern_comparisons(pattern)
    assert message in str(caught.value)


def test_pattern_escapes_and_keywords_in_any_case() -> None:
    (comparison,), skipped = pattern_comparisons(
        r"[url:value = 'http://e.example/it\'s\\x'] or [a:b = 'c'] and [d:e = 'f']")
    assert comparison.values == ("http://e.example/it's\\x",) and skipped == ("and-combination",)


def test_timestamps() -> None:
    assert timestamp("2026-05-28T20:26:40Z") == NOW
    assert timestamp("2026-05-28T20:26:40.250Z") == NOW + 0.25


# -- the index ---------------------------------------------------------------------------------

PREFECTURE = parse_csv(f"""type,value,description
domain,evil.example,phishing
domain,deep.sub.evil.example,deeper listing
domain,例え.テスト,idn
ip,198.51.100.0/24,range
ip,198.51.100.128/25,half
ip,198.51.100.200,one
ip,2001:db8:bad::/48,v6 range
ip,2001:db8:bad:1::1,v6 one
url,http://kit.example/dl/,kit folder
url,http://kit.example/dl/tools/,tools folder
url,https://kit.example/login.php?session=1,exact
url,http://root.example/,whole site
sha256,{SHA},dropper
""", "prefecture")
OWN = parse_csv("""type,value,description
domain,evil.example,our own
domain,city-only.example,ours
""", "city")
INDEX = IocIndex.merge([PREFECTURE, OWN])


def described(hits: tuple[IocHit, ...]) -> list[str]:
    return [f"{h.feed}:{h.description}" for h in hits]


@pytest.mark.parametrize("host,expected", [
    ("evil.example", ["prefecture:phishing", "city:our own"]),
    ("a.b.evil.example", ["prefecture:phishing", "city:our own"]),
    ("EVIL.Example.", ["prefecture:phishing", "city:our own"]),
    ("sub.evil.example", ["prefecture:phishing", "city:our own"]),
    ("x.deep.sub.evil.example", ["prefecture:deeper listing"]),      # the most specific listing
    ("badevil.example", []),                                         # label boundaries only
    ("evil.example.com", []),
    ("example", []),
    ("例え.テスト", ["prefecture:idn"]),
    ("www.xn--r8jz45g.xn--zckzah", ["prefecture:idn"]),
    ("city-only.example", ["city:ours"]),
    ("198.51.100.7", ["prefecture:range"]),                          # an IP literal: addresses
    ("[2001:db8:bad::5]", ["prefecture:v6 range"]),
    ("", []),
    ("a..b", []),
    ("not a host", []),
    ("\udcff.example", []),
])
def test_match_host(host: str, expected: list[str]) -> None:
    assert described(INDEX.match_host(host)) == expected


@pytest.mark.parametrize("address,expected", [
    ("198.51.100.1", ["prefecture:range"]),
    ("198.51.100.129", ["prefecture:half"]),
    ("198.51.100.200", ["prefecture:one"]),
    ("198.51.101.1", []),
    ("::ffff:198.51.100.200", ["prefecture:one"]),                   # IPv4-mapped: as IPv4
    ("2001:db8:bad:2::1", ["prefecture:v6 range"]),
    ("2001:db8:bad:1::1", ["prefecture:v6 one"]),
    ("2001:db8:bae::1", []),
    (ipaddress.ip_address("198.51.100.5"), ["prefecture:range"]),
    ("not an address", []),
])
def test_match_address(address: Any, expected: list[str]) -> None:
    assert described(INDEX.match_address(address)) == expected


@pytest.mark.parametrize("url,expected", [
    ("http://kit.example/dl/", ["prefecture:kit folder"]),
    ("http://kit.example/dl/setup.exe", ["prefecture:kit folder"]),
    ("http://KIT.example:80/dl/setup.exe?x=1#top", ["prefecture:kit folder"]),
    ("http://kit.example/dl/tools/x.exe", ["prefecture:tools folder"]),     # the longest prefix
    ("http://kit.example/dl/x/../tools/x.exe", ["prefecture:tools folder"]),
    ("http://kit.example/dl", []),                                           # not below /dl/
    ("http://kit.example/dlx/a", []),
    ("https://kit.example/dl/setup.exe", []),                                # another scheme
    ("http://kit.example:8080/dl/setup.exe", []),                            # another port
    ("https://kit.example/login.php?session=1", ["prefecture:exact"]),
    ("https://kit.example:443/login.php?session=1#f", ["prefecture:exact"]),
    ("https://kit.example/login.php?session=2", []),
    ("https://kit.example/login.php", []),
    ("http://root.example/anything/at/all?q", ["prefecture:whole site"]),
    ("http://root.example", ["prefecture:whole site"]),
    ("http://evil.example/", []),                                            # hosts are match_host's
    ("not a url", []),
    ("ftp://kit.example/dl/", []),
])
def test_match_url(url: str, expected: list[str]) -> None:
    assert described(INDEX.match_url(url)) == expected


def test_match_sha256() -> None:
    assert described(INDEX.match_sha256(SHA.upper())) == ["prefecture:dropper"]
    assert INDEX.match_sha256("0" * 64) == () and INDEX.match_sha256("") == ()


def test_merged_index() -> None:
    assert INDEX.feeds == ("prefecture", "city")
    assert INDEX.size == len(PREFECTURE.indicators) + len(OWN.indicators)
    twice = IocIndex.merge([PREFECTURE, PREFECTURE, OWN])    # the same feed twice: no double hits
    assert twice.size == INDEX.size
    assert described(twice.match_host("evil.example")) == ["prefecture:phishing", "city:our own"]
    reversed_order = IocIndex.merge([OWN, PREFECTURE])
    assert described(reversed_order.match_host("evil.example")) == ["city:our own", "prefecture:phishing"]
    assert IocIndex.build([indicator("ip", "203.0.113.0/24", "own")]).match_host("203.0.113.9")


def test_empty_index() -> None:
    assert EMPTY_INDEX.size == 0 and EMPTY_INDEX.feeds == ()
    assert EMPTY_INDEX.match_host("evil.example") == EMPTY_INDEX.match_address("198.51.100.1") == ()
    assert EMPTY_INDEX.match_url("http://kit.example/") == EMPTY_INDEX.match_sha256(SHA) == ()


def test_index_is_frozen() -> None:
    with pytest.raises(AttributeError):
        INDEX.size = 0  # type: ignore[misc]


# -- Hypothesis --------------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) |
                    st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4),
                    max_leaves=12)
PATTERN_WORDS = st.sampled_from([
    "[", "]", "(", ")", ":", ".", ",", "*", "=", "!=", "<", ">=", "AND", "OR", "NOT", "IN", "LIKE",
    "MATCHES", "FOLLOWEDBY", "WITHIN", "SECONDS", "REPEATS", "TIMES", "START", "STOP", "EXISTS",
    "domain-name", "ipv4-addr", "url", "file", "hashes", "'SHA-256'", "value", "'evil.example'",
    "'198.51.100.0/24'", "'http://e.example/'", "t'2026-01-01T00:00:00Z'", "5", "'a\\'b'", "'"])
PATTERNS = st.lists(PATTERN_WORDS, max_size=25).map(" ".join)


def only_feed_errors(parse: Any, *args: Any, **kwargs: Any) -> ParsedFeed | None:
    try:
        parsed: ParsedFeed = parse(*args, **kwargs)
    except IocFeedError:
        return None
    assert parsed.report.loaded == len(parsed.indicators)
    return parsed


@settings(max_examples=300)
@given(st.text(max_size=400) | st.binary(max_size=400))
def test_arbitrary_csv_raises_only_feed_errors(data: str | bytes) -> None:
    only_feed_errors(parse_csv, data, "f")


@settings(max_examples=300)
@given(st.lists(st.lists(st.sampled_from(["domain", "ip", "url", "sha256", "md5", "evil.example",
                                          "198.51.100.0/24", "http://e.example/", SHA, "", '"', ",",
                                          "\r", "例え.テスト", "\x00", "#"]), max_size=5), max_size=8))
def test_csv_shaped_text_raises_only_feed_errors(rows: list[list[str]]) -> None:
    text = "type,value,description\n" + "\n".join(",".join(row) for row in rows)
    parsed = only_feed_errors(parse_csv, text, "f")
    assert parsed is not None


@settings(max_examples=200)
@given(JSON | st.text(max_size=200))
def test_arbitrary_json_raises_only_feed_errors(document: Any) -> None:
    text = document if isinstance(document, str) else json.dumps(document)
    only_feed_errors(parse_stix, text, "f", now=NOW)


SCALAR = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
INDICATORS = st.fixed_dictionaries(
    {"type": st.just("indicator"), "pattern": PATTERNS | st.text(max_size=40)},
    optional={"id": st.text(max_size=10) | st.integers(), "revoked": SCALAR,
              "valid_until": SCALAR | st.just("2027-01-01T00:00:00Z"),
              "pattern_type": st.sampled_from(["stix", "sigma"]) | SCALAR,
              "created_by_ref": SCALAR, "name": SCALAR, "description": SCALAR})


@settings(max_examples=200)
@given(st.lists(INDICATORS | SCALAR | st.dictionaries(st.sampled_from(["type", "id", "name"]), SCALAR),
                max_size=5))
def test_arbitrary_bundles_raise_only_feed_errors(objects: list[Any]) -> None:
    parsed = parse_stix(bundle(*objects), "f", now=NOW)
    assert parsed.report.bad_count >= len(parsed.report.bad)


@settings(max_examples=500)
@given(PATTERNS | st.text(max_size=60))
def test_arbitrary_patterns_raise_only_pattern_errors(pattern: str) -> None:
    try:
        comparisons, skipped = pattern_comparisons(pattern)
    except PatternError:
        return
    assert all(c.values for c in comparisons)


LEAVES = st.integers(0, 99).map(lambda n: f"domain-name:value = 'd{n}.example'")
TREES = st.recursive(LEAVES, lambda inner: st.tuples(st.sampled_from(["AND", "OR"]),
                                                     st.lists(inner, min_size=2, max_size=3)), max_leaves=8)


def render(tree: Any) -> str:
    return tree if isinstance(tree, str) else "(" + f" {tree[0]} ".join(map(render, tree[1])) + ")"


def alone(tree: Any) -> list[str]:
    """The comparisons that alone satisfy the tree: through ORs only."""
    if isinstance(tree, str):
        return [tree.split("'")[1]]
    return [] if tree[0] == "AND" else [leaf for child in tree[1] for leaf in alone(child)]


@given(st.lists(TREES, min_size=1, max_size=3), st.sampled_from(["AND", "OR"]))
def test_patterns_keep_exactly_the_comparisons_joined_by_or(trees: list[Any], join: str) -> None:
    pattern = f" {join} ".join(f"[{render(tree)}]" for tree in trees)
    comparisons, skipped = pattern_comparisons(pattern)
    found = [value for c in comparisons for value in c.values]
    if join == "AND" and len(trees) > 1:
        assert (found, skipped) == ([], ("and-combination",))
    else:
        assert found == [leaf for tree in trees for leaf in alone(tree)]


@given(st.text(max_size=80))
def test_matching_never_raises(text: str) -> None:
    assert isinstance(INDEX.match_host(text), tuple)
    assert isinstance(INDEX.match_address(text), tuple)
    assert isinstance(INDEX.match_url(text), tuple)
    assert isinstance(INDEX.match_url("http://kit.example/" + text), tuple)
    assert isinstance(INDEX.match_sha256(text), tuple)


URL_PARTS = st.sampled_from(["a", "B", "%2e", "%41", "%e3%81%82", "..", ".", "/", "?", "=", "&", "#",
                             "~", "%", "日", "%2F", "-"])


@given(st.sampled_from(["http", "HTTPS", "hTTp"]), st.sampled_from(["Kit.Example", "kit.example.",
                                                                     "[2001:DB8::1]", "198.51.100.7"]),
       st.sampled_from(["", ":80", ":443", ":8080"]), st.lists(URL_PARTS, max_size=12).map("".join))
def test_canonical_urls_are_stable(scheme: str, host: str, port: str, rest: str) -> None:
    try:
        once = canonical_url(f"{scheme}://{host}{port}/{rest}")
    except UrlSchemeError:
        raise AssertionError("http and https are supported") from None
    except UrlError:
        return
    assert canonical_url(once) == once
    assert once.startswith(("http://", "https://")) and once.isascii()


LISTED_DOMAINS = ["evil.example", "a.evil.example", "b.example", "x.y.z.example"]
LISTED_NETWORKS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "2001:db8::/32",
                   "2001:db8:1::/48"]


@given(st.lists(st.sampled_from(["a", "b", "evil", "x", "y", "z", "example", "com"]), min_size=1,
                max_size=5).map(".".join))
def test_host_matching_agrees_with_a_reference(host: str) -> None:
    index = IocIndex.build(indicator("domain", d, "f", d) for d in LISTED_DOMAINS)
    covering = [d for d in LISTED_DOMAINS if host == d or host.endswith("." + d)]
    expected = max(covering, key=len) if covering else None
    assert [h.value for h in index.match_host(host)] == ([expected] if expected else [])


@given(st.integers(0, 2**32 - 1) | st.integers(0x2001_0db8 << 96, (0x2001_0db8 << 96) + 2**81))
def test_address_matching_agrees_with_a_reference(value: int) -> None:
    index = IocIndex.build(indicator("ip", n, "f") for n in LISTED_NETWORKS)
    address = ipaddress.ip_address(value)
    covering = [ipaddress.ip_network(n) for n in LISTED_NETWORKS
                if address in ipaddress.ip_network(n) and ipaddress.ip_network(n).version == address.version]
    expected = max(covering, key=lambda n: n.prefixlen) if covering else None
    hits = index.match_address(address)
    assert [ipaddress.ip_network(h.value) for h in hits] == ([expected] if expected else [])
