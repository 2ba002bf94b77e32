"""The PAC with Microsoft's real endpoint data, run by an independent PAC engine (npm
pac-resolver in QuickJS, tests/peers/pac_engine.py): it must send to the proxy or direct exactly
what the agent's own matcher (ztcore.breakout.BreakoutMatcher) does.

The data is Microsoft's worldwide list of 2024-04-17 (../shared/data/m365-endpoints); the tests
skip, with the reason, when it is absent, or when node or npm are missing.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

import pytest

from agent.pac import render_pac
from broker.m365 import EndpointData, parse_endpoint_data
from broker.routing import DEFAULT_ROUTING, LOGIN_HOSTS, BreakoutPolicy, compile_breakout
from tests.peers.pac_engine import PacEngine, start_engine
from ztcore.breakout import BreakoutMatcher, BreakoutRule, BreakoutRules, RuleSource

DATA_FILE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "m365-endpoints"
             / "worldwide_2024-04-17_full_slivertea.json")
VERSION = "2024041700"
PROXY_HOST, PROXY_PORT = "127.0.0.1", 3128
PROXY = f"PROXY {PROXY_HOST}:{PROXY_PORT}"
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
NOT_MICROSOFT = ["example.jp", "www.city.example.lg.jp", "github.com", "www.google.com",
                 "sharepoint.com.evil.example", "evilsharepoint.com", "outlook.office365.com.evil.jp",
                 "microsoft.com.example.jp", "onenote.net.example"]


@pytest.fixture(scope="module")
def engine() -> PacEngine:
    return start_engine()


@cache
def data() -> EndpointData:
    if not DATA_FILE.exists():
        pytest.skip(f"Microsoft's endpoint data is not at {DATA_FILE.resolve()}")
    return parse_endpoint_data(DATA_FILE.read_bytes())


def rules_for(policy: BreakoutPolicy = DEFAULT_ROUTING.breakout) -> BreakoutRules:
    return compile_breakout("demo", policy, data().sets, VERSION)


def instances(pattern: str) -> list[str]:
    """Host names a pattern covers: `*` as a whole label becomes `city` (a leading `*.` also
    two labels), inside a label `x` (`*cdn.onenote.net` → `xcdn.onenote.net`)."""
    def fill(label_word: str) -> str:
        return re.sub(r"(?<![^.])\*(?![^.])", label_word, pattern).replace("*", "x")
    names = [fill("city")]
    if pattern.startswith("*."):
        names.append(fill("a.b-2"))
    return names


def url(host: str, port: int, scheme: str = "https") -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    suffix = "" if DEFAULT_PORTS.get(scheme) == port else f":{port}"
    return f"{scheme}://{shown}{suffix}/"


def answers(engine: PacEngine, pac: str, cases: Sequence[tuple[str, int]], *,
            is_in_net_ex: bool = False) -> list[str]:
    return engine.evaluate(pac, [(url(host, port), host) for host, port in cases],
                           is_in_net_ex=is_in_net_ex)


def expected(rules: BreakoutRules, cases: Iterable[tuple[str, int]]) -> list[str]:
    matcher = BreakoutMatcher(rules)
    return ["DIRECT" if matcher.route(host, port).direct else PROXY for host, port in cases]


def disagreements(got: Sequence[str], want: Sequence[str],
                  cases: Sequence[tuple[str, int]]) -> list[str]:
    return [f"{host}:{port}: engine {g}, matcher {w}"
            for (host, port), g, w in zip(cases, got, want) if g != w]


# -- what Microsoft says, by category ---------------------------------------------------------------

def test_every_optimize_url_goes_direct(engine: PacEngine) -> None:
    cases = [(host, port)
             for s in data().sets if s.category == "Optimize" and s.tcp_ports
             for pattern in s.urls for host in instances(pattern)
             for port in (80, 443) if any(lo <= port <= hi for lo, hi in s.tcp_ports)]
    assert {"city.sharepoint.com", "outlook.office365.com"} <= {h for h, _ in cases}
    assert answers(engine, render_pac(PROXY_HOST, PROXY_PORT, rules_for()), cases) == \
        ["DIRECT"] * len(cases)


def test_default_only_and_other_hosts_go_to_the_proxy(engine: PacEngine) -> None:
    """A Default host that no Optimize or Allow pattern covers (fnmatch, not the matcher) and
    hosts that are not Microsoft's, some made to look like it."""
    import fnmatch

    direct = [p for s in data().sets if s.category in ("Optimize", "Allow") and s.tcp_ports
              for p in s.urls]
    default_only = sorted({host for s in data().sets if s.category == "Default"
                           for p in s.urls for host in instances(p)
                           if not any(fnmatch.fnmatchcase(host, d) for d in direct)})
    assert "www.microsoft.com" in default_only and len(default_only) > 50
    cases = [(host, 443) for host in [*default_only, *NOT_MICROSOFT]]
    assert answers(engine, render_pac(PROXY_HOST, PROXY_PORT, rules_for()), cases) == \
        [PROXY] * len(cases)


def test_addresses_and_ports(engine: PacEngine) -> None:
    rules = rules_for()
    optimize_v4 = [ipaddress.ip_network(ip) for s in data().sets
                   if s.category == "Optimize" and s.tcp_ports for ip in s.ips if ":" not in ip]
    inside = ["52.96.1.1", "13.107.64.5",   # 13.107.64.0/18: Skype's Allow set over TCP
              *(str(a) for n in optimize_v4 for a in (n.network_address, n.broadcast_address))]
    outside = ["8.8.8.8", "52.95.255.254", "203.0.113.9", "10.0.0.5", "127.0.0.2"]
    cases = [*((ip, 443) for ip in inside), *((ip, 443) for ip in outside),
             ("52.96.1.1", 8443), ("outlook.office365.com", 8443), ("city.sharepoint.com", 8080),
             ("outlook.office365.com", 993),  # Exchange Allow (IMAP) is direct too
             ("localhost", 8000), ("127.0.0.1", 3128), ("::1", 80)]
    want = [*(["DIRECT"] * len(inside)), *([PROXY] * len(outside)),
            PROXY, PROXY, PROXY, "DIRECT", "DIRECT", "DIRECT", "DIRECT"]
    pac = render_pac(PROXY_HOST, PROXY_PORT, rules)
    assert answers(engine, pac, cases) == want
    assert expected(rules, cases[:-3]) == want[:-3]   # loopback is the PAC's own, not a rule


def test_ipv6_literals_need_isinnetex(engine: PacEngine) -> None:
    """Without Chromium's isInNetEx an IPv6 address goes to the proxy; with it, as the matcher."""
    rules = rules_for()
    nets = [ipaddress.ip_network(ip) for s in data().sets if s.tcp_ports for ip in s.ips if ":" in ip]
    cases = [(str(n.network_address + 1), 443) for n in nets] + [("2001:db8::1", 443),
                                                                  ("2603:1006::1", 8443)]
    pac = render_pac(PROXY_HOST, PROXY_PORT, rules)
    assert answers(engine, pac, cases) == [PROXY] * len(cases)
    want = expected(rules, cases)
    assert "DIRECT" in want and PROXY in want
    assert answers(engine, pac, cases, is_in_net_ex=True) == want


# -- the bulk comparison: engine and matcher agree -------------------------------------------------

def bulk_cases(rules: BreakoutRules, seed: int = 20240417) -> list[tuple[str, int]]:
    """Every pattern instantiated, look-alikes, random names, addresses in, at the edge of and
    next to every network, on the ports that matter; about a thousand (host, port)."""
    rng = random.Random(seed)
    patterns = sorted({r.pattern for r in rules.rules if not r.is_network})
    hosts = [h for p in patterns for h in instances(p)]
    suffixes = sorted({p.lstrip("*.").split("*")[-1].lstrip(".") for p in patterns})
    for _ in range(150):
        label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(6))
        suffix = rng.choice(suffixes)
        hosts.append(rng.choice([f"{label}.{suffix}", f"{label}{suffix}", f"{suffix}.{label}.jp",
                                 f"{label}.example.jp", suffix]))
    hosts += ["CITY.SharePoint.COM", "city.sharepoint.com.", "outlook.office365.com.",
              "Teams.Microsoft.Com", "autodiscover.a.b.onmicrosoft.com", "cdn.onenote.net",
              "[2603:1006::1]", "2603:1006::ABCD", "52.96.1.1.", "052.96.1.1"]
    for r in rules.rules:
        if r.is_network:
            net = ipaddress.ip_network(r.pattern)
            hosts += [str(net.network_address), str(net.broadcast_address)]
            if int(net.broadcast_address) + 1 < 2 ** net.max_prefixlen:
                hosts.append(str(net.broadcast_address + 1))
            if int(net.network_address) > 0:
                hosts.append(str(net.network_address - 1))
    hosts += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(50)]
    ports = [443, 80, 8443, 25, 587, 993]
    unique = list(dict.fromkeys(hosts))
    return [(h, ports[i % len(ports)] if i % 3 == 0 else (443, 80)[i % 2])
            for i, h in enumerate(unique)]


POLICIES = {
    "default": DEFAULT_ROUTING.breakout,
    "tenant": BreakoutPolicy(exclude=("*.sharepoint.com",), include=("*.example-video.jp",)),
    "login-on-tunnel": BreakoutPolicy(keep_login_on_tunnel=True),
    "optimize-only": BreakoutPolicy(categories=frozenset({"optimize"})),
    "all-categories": BreakoutPolicy(categories=frozenset({"optimize", "allow", "default"})),
}


@pytest.mark.parametrize("name", POLICIES)
def test_engine_agrees_with_the_matcher(engine: PacEngine, name: str) -> None:
    rules = rules_for(POLICIES[name])
    cases = bulk_cases(rules)
    assert len(cases) >= 500
    want = expected(rules, cases)
    assert "DIRECT" in want and PROXY in want
    pac = render_pac(PROXY_HOST, PROXY_PORT, rules)
    got = answers(engine, pac, cases, is_in_net_ex=True)
    assert disagreements(got, want, cases) == []


def test_a_tenants_exclusions_and_inclusions(engine: PacEngine) -> None:
    rules = rules_for(POLICIES["tenant"])
    sharepoint_ip = next(ipaddress.ip_network(ip) for s in data().sets if s.id == 31
                         for ip in s.ips if ":" not in ip)
    cases = [("city.sharepoint.com", 443), ("city-my.sharepoint.com", 80),
             ("video.example-video.jp", 443), ("a.b.example-video.jp", 8443),
             ("example-video.jp", 443), ("example-video.jp.evil.example", 443),
             ("outlook.office365.com", 443),
             (str(sharepoint_ip.network_address + 1), 443)]   # the exclusion names hosts only
    want = [PROXY, PROXY, "DIRECT", "DIRECT", PROXY, PROXY, "DIRECT", "DIRECT"]
    assert expected(rules, cases) == want
    assert answers(engine, render_pac(PROXY_HOST, PROXY_PORT, rules), cases) == want


def test_login_hosts_kept_on_the_tunnel(engine: PacEngine) -> None:
    rules = rules_for(POLICIES["login-on-tunnel"])
    cases = [(host, 443) for host in LOGIN_HOSTS]
    assert answers(engine, render_pac(PROXY_HOST, PROXY_PORT, rules), cases) == [PROXY] * 3
    assert answers(engine, render_pac(PROXY_HOST, PROXY_PORT, rules_for()), cases) == \
        expected(rules_for(), cases) == ["DIRECT"] * 3


# -- nothing in a rule becomes code ------------------------------------------------------------------

def test_quotes_and_backslashes_in_patterns_stay_data(engine: PacEngine) -> None:
    """ztcore.breakout refuses such patterns; a rule built directly still renders as data."""
    hostile = ['"];return "DIRECT";var z=["', '\\"];return "DIRECT";var z=["',
               "x\"y.example.jp", "a\\\\b.example.jp", "x\n}\nfunction FindProxyForURL(u, h) "
               "{ return 'DIRECT'; }\nvar z = '"]
    rules = BreakoutRules("t", "none", (
        *(BreakoutRule(p, direct=False, source=RuleSource.EXCLUDE) for p in hostile),
        BreakoutRule("x\"y.example.jp", direct=True, source=RuleSource.INCLUDE),
        BreakoutRule("*[.example.jp", direct=True, source=RuleSource.INCLUDE),
        BreakoutRule("*.example-video.jp", direct=True, source=RuleSource.INCLUDE)))
    cases = [("example.jp", 443), ("www.example-video.jp", 443), ("x\"y.example.jp", 443)]
    pairs = [("https://example.jp/", "example.jp"), ("https://www.example-video.jp/",
              "www.example-video.jp"), ("https://xy.example.jp/", "x\"y.example.jp")]
    pac = render_pac(PROXY_HOST, PROXY_PORT, rules)
    got = engine.evaluate(pac, pairs)
    assert got == [PROXY, "DIRECT", PROXY]   # the exclusion of x"y.example.jp comes first
    assert got == expected(rules, cases)
    # "*[.example.jp" is no regular expression for shExpMatch: it throws, and the PAC fails
    # closed where the matcher (which escapes it) would go direct.
    assert engine.evaluate(pac, [("https://a.example.jp/", "a[.example.jp")]) == [PROXY]
    assert expected(rules, [("a[.example.jp", 443)]) == ["DIRECT"]


# -- ties ------------------------------------------------------------------------------------------

def test_a_tie_between_a_suffix_and_another_wildcard(engine: PacEngine) -> None:
    rules = BreakoutRules("t", "none", (
        BreakoutRule("abc*.example.jp", direct=True, source=RuleSource.M365, set_id=1,
                     category="allow", ports=((443, 443),)),
        BreakoutRule("*.cd.example.jp", direct=False, source=RuleSource.M365, set_id=2,
                     category="default", ports=((443, 443),))))
    cases = [("abc.cd.example.jp", 443)]
    assert answers(engine, render_pac(PROXY_HOST, PROXY_PORT, rules), cases) == \
        expected(rules, cases)
