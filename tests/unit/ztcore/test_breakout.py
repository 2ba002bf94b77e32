"""The breakout matcher (ztcore/breakout.py): precedence, wildcard semantics, ports, networks,
and agreement with a brute-force reference on generated rules; over Microsoft's real data, every
Optimize URL breaks out and Default-only URLs do not."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztcore.breakout import (
    ALL_PORTS,
    TUNNEL,
    BreakoutMatcher,
    BreakoutRule,
    BreakoutRules,
    RuleSource,
    ordered,
    parse_breakout_rules,
    parse_ports,
)
from ztcore.errors import ConfigError

M365 = RuleSource.M365
DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "m365-endpoints"
WEB = ((80, 80), (443, 443))


def rules(*items: BreakoutRule) -> BreakoutMatcher:
    return BreakoutMatcher(BreakoutRules("t", "v1", tuple(items)))


def m365(pattern: str, direct: bool, set_id: int = 1, category: str = "optimize",
         ports: tuple[tuple[int, int], ...] = WEB) -> BreakoutRule:
    return BreakoutRule(pattern, direct, M365, set_id, category, ports)


@pytest.mark.parametrize(("host", "port", "direct", "pattern"), [
    ("city.sharepoint.com", 443, True, "*.sharepoint.com"),
    ("a.b.sharepoint.com", 443, True, "*.sharepoint.com"),      # '*' crosses dots
    ("sharepoint.com", 443, False, None),                       # not the bare domain
    ("City.SharePoint.com.", 443, True, "*.sharepoint.com"),    # case and trailing dot
    ("evilsharepoint.com", 443, False, None),
    ("city.sharepoint.com", 8443, False, None),                 # port not listed
    ("teams.microsoft.com", 443, True, "teams.microsoft.com"),  # exact Allow beats *.microsoft.com
    ("x.teams.microsoft.com", 443, True, "*.teams.microsoft.com"),  # longer wildcard wins
    ("www.microsoft.com", 443, False, "*.microsoft.com"),       # Default: the tunnel
    ("autodiscover.city.onmicrosoft.com", 443, True, "autodiscover.*.onmicrosoft.com"),
    ("xcdn.onenote.net", 443, True, "*cdn.onenote.net"),
    ("cdn.onenote.net", 443, True, "*cdn.onenote.net"),         # '*' may be empty, as shExpMatch
    ("52.97.1.2", 443, True, "52.96.0.0/14"),
    ("52.100.0.1", 443, False, None),
    ("[2603:1006::5]", 443, True, "2603:1006::/40"),
    ("2603:1006::5", 443, True, "2603:1006::/40"),
    ("", 443, False, None),
    ("ドメイン.jp", 443, False, None),
])
def test_microsoft_semantics(host: str, port: int, direct: bool, pattern: str | None) -> None:
    matcher = rules(m365("*.sharepoint.com", True, 31), m365("teams.microsoft.com", True, 12, "allow"),
                    m365("*.teams.microsoft.com", True, 12, "allow"),
                    m365("*.microsoft.com", False, 78, "default"),
                    m365("autodiscover.*.onmicrosoft.com", True, 8),
                    m365("*cdn.onenote.net", True, 2), m365("52.96.0.0/14", True, 1),
                    m365("2603:1006::/40", True, 1))
    got = matcher.route(host, port)
    assert got.direct is direct
    assert (got.rule.pattern if got.rule else None) == pattern


def test_admin_exclusions_and_inclusions_come_first() -> None:
    matcher = rules(BreakoutRule("*.sharepoint.com", False, RuleSource.EXCLUDE),
                    BreakoutRule("login.microsoftonline.com", False, RuleSource.LOGIN),
                    BreakoutRule("*.video.example.jp", True, RuleSource.INCLUDE),
                    BreakoutRule("10.9.0.0/16", True, RuleSource.INCLUDE),
                    m365("city.sharepoint.com", True, 31), m365("login.microsoftonline.com", True, 56),
                    m365("*.example.jp", False, 99, "default"))
    assert matcher.route("city.sharepoint.com", 443) == \
        matcher.route("city.sharepoint.com", 443)  # cached value is stable
    assert not matcher.route("city.sharepoint.com", 443).direct        # exclusion beats exact
    assert matcher.route("city.sharepoint.com", 443).rule.source is RuleSource.EXCLUDE  # type: ignore[union-attr]
    assert not matcher.route("login.microsoftonline.com", 443).direct
    assert matcher.route("a.video.example.jp", 8080).direct            # admin rules: all ports
    assert matcher.route("10.9.1.1", 22).direct
    assert matcher.route("10.9.1.1", 22).rule.label == "include"        # type: ignore[union-attr]


def test_overlapping_sets_by_port() -> None:
    """outlook.office365.com is in set 1 (Optimize, 80/443) and set 2 (Allow, mail ports)."""
    matcher = rules(m365("outlook.office365.com", True, 1, "optimize", WEB),
                    m365("outlook.office365.com", True, 2, "allow", ((143, 143), (993, 993))))
    assert matcher.route("outlook.office365.com", 443).rule.label == "m365:1:optimize"  # type: ignore[union-attr]
    assert matcher.route("outlook.office365.com", 993).rule.label == "m365:2:allow"     # type: ignore[union-attr]
    assert matcher.route("outlook.office365.com", 25) is TUNNEL


def test_longest_prefix_wins() -> None:
    matcher = rules(m365("13.107.0.0/16", True), m365("13.107.64.0/18", False, 11, "default"))
    assert not matcher.route("13.107.64.9", 443).direct
    assert matcher.route("13.107.1.9", 443).direct


@pytest.mark.parametrize(("text", "ranges"), [
    ("80,443", ((80, 80), (443, 443))), ("143, 587, 993, 995", ((143, 143), (587, 587), (993, 993), (995, 995))),
    ("3478-3481", ((3478, 3481),)), ("", ())])
def test_parse_ports(text: str, ranges: tuple[tuple[int, int], ...]) -> None:
    assert parse_ports(text, "p") == ranges


@pytest.mark.parametrize("bad", ["0", "65536", "80-79", "a", "1-2-3", 80])
def test_parse_ports_refuses(bad: object) -> None:
    with pytest.raises(ConfigError, match="^p"):
        parse_ports(bad, "p")


def test_rules_round_trip_and_version() -> None:
    original = BreakoutRules("city", "2024041700", (
        m365("*.sharepoint.com", True, 31), m365("52.96.0.0/14", True),
        BreakoutRule("*.video.example.jp", True, RuleSource.INCLUDE, ports=ALL_PORTS)))
    again = parse_breakout_rules(json.loads(json.dumps(original.to_json_dict())))
    assert again == original and again.version == original.version
    changed = BreakoutRules("city", "2024041700", original.rules[:2])
    assert changed.version != original.version


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda d: d["rules"][0].update(pattern="a b"), "x.rules[0].pattern"),
    (lambda d: d["rules"][0].update(pattern='a"b'), "x.rules[0].pattern"),
    (lambda d: d["rules"][1].update(pattern="300.1.1.1/8"), "x.rules[1].pattern"),
    (lambda d: d["rules"][0].update(direct="yes"), "x.rules[0].direct"),
    (lambda d: d["rules"][0].update(source="magic"), "x.rules[0].source"),
    (lambda d: d["rules"][0].update(category="fast"), "x.rules[0].category"),
    (lambda d: d["rules"][0].update(ports="http"), "x.rules[0].ports"),
    (lambda d: d.update(rules={}), "x.rules"),
])
def test_parse_refuses_bad_rules(mutate, where: str) -> None:  # type: ignore[no-untyped-def]
    doc = BreakoutRules("c", "v", (m365("*.sharepoint.com", True), m365("52.96.0.0/14", True))
                        ).to_json_dict()
    mutate(doc)
    with pytest.raises(ConfigError, match=re.escape(where)):
        parse_breakout_rules(doc, "x")


# -- agreement with a brute-force reference ------------------------------------------------------

LABELS = st.sampled_from(["a", "b", "cdn", "sharepoint", "teams", "microsoft", "com", "net"])
HOSTS = st.lists(LABELS, min_size=1, max_size=4).map(".".join)
PATTERNS = st.one_of(HOSTS, HOSTS.map(lambda h: "*." + h), HOSTS.map(lambda h: "*" + h),
                     st.tuples(HOSTS, HOSTS).map(lambda p: f"{p[0]}.*.{p[1]}"))
RULES = st.builds(BreakoutRule, PATTERNS, st.booleans(), st.sampled_from(list(RuleSource)),
                  st.integers(0, 5), st.sampled_from(["", "optimize", "allow", "default"]),
                  st.sampled_from([WEB, ALL_PORTS, ((8000, 8100),)]))


def reference(all_rules: list[BreakoutRule], host: str, port: int) -> bool:
    for rule in ordered(all_rules):   # first in precedence order that matches
        if rule.is_network:
            continue
        regex = ".*".join(re.escape(p) for p in rule.pattern.split("*"))
        if re.fullmatch(regex, host) and rule.covers(port):
            return rule.direct
    return False


@settings(max_examples=300, deadline=None)
@given(st.lists(RULES, max_size=12), HOSTS, st.sampled_from([80, 443, 8050, 22]))
def test_matcher_agrees_with_reference(all_rules: list[BreakoutRule], host: str, port: int) -> None:
    matcher = BreakoutMatcher(BreakoutRules("t", "v", tuple(all_rules)))
    assert matcher.route(host, port).direct == reference(all_rules, host, port)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.ip_addresses(v=4), st.integers(8, 32), st.booleans()), max_size=8),
       st.ip_addresses(v=4))
def test_networks_agree_with_reference(nets: list[tuple[ipaddress.IPv4Address, int, bool]],
                                       address: ipaddress.IPv4Address) -> None:
    items = [m365(str(ipaddress.ip_network(f"{a}/{p}", strict=False)), d) for a, p, d in nets]
    want = next((r.direct for r in ordered(items)
                 if address in ipaddress.ip_network(r.pattern)), False)
    assert BreakoutMatcher(BreakoutRules("t", "v", tuple(items))).route(str(address), 443).direct == want


# -- Microsoft's real data ------------------------------------------------------------------------

def real_rules(name: str = "worldwide_2024-04-17_full_slivertea.json"):  # type: ignore[no-untyped-def]
    path = DATA / name
    if not path.exists():
        pytest.skip(f"Microsoft 365 endpoint data not present at {path} (../shared/data)")
    from broker.m365 import parse_endpoint_data
    from broker.routing import DEFAULT_ROUTING, compile_breakout
    data = parse_endpoint_data(path.read_bytes())
    return data, compile_breakout("city", DEFAULT_ROUTING.breakout, data.sets, "2024041700")


def instantiate(pattern: str) -> str:
    return pattern.replace("*.", "city.").replace("*", "x")


def test_every_optimize_url_of_2024_breaks_out() -> None:
    data, compiled = real_rules()
    matcher = BreakoutMatcher(compiled)
    optimize = [(s, u) for s in data.sets if s.category == "Optimize" for u in s.urls]
    assert len(optimize) >= 4
    for s, url in optimize:
        port = s.tcp_ports[-1][0]
        got = matcher.route(instantiate(url), port)
        assert got.direct, (url, got)
    for s in data.sets:
        if s.category == "Optimize":
            for net in s.ips:
                first = ipaddress.ip_network(net).network_address
                assert matcher.route(str(first), 443).direct, net


def test_a_default_url_of_2024_does_not_break_out() -> None:
    data, compiled = real_rules()
    matcher = BreakoutMatcher(compiled)
    default_only = [u for s in data.sets if s.category == "Default" for u in s.urls
                    if "*" not in u and not matcher.route(u, 443).direct]
    assert "www.microsoft.com" in default_only or default_only
    got = matcher.route(default_only[0], 443)
    assert not got.direct and got.rule is not None and got.rule.category == "default"
    assert not matcher.route("www.example.com", 443).direct


def test_ties_follow_the_precedence_order() -> None:
    """Equal source and specificity: the rule listed first wins, whichever index holds it (the
    PAC file lists rules in this order and takes the first match)."""
    first = m365("abc*.example.jp", True, 1, "allow")
    second = m365("*.cd.example.jp", False, 2, "default")
    assert rules(first, second).route("abc.cd.example.jp", 443).rule == first
    assert rules(second, first).route("abc.cd.example.jp", 443).rule == second
