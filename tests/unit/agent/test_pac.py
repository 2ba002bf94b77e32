"""The PAC text with breakout rules (agent/pac.py): what it lists, in which order, and that no
rule, tenant or version can change its code. What a PAC engine answers for real URLs is in
tests/integration/test_pac_engine.py (an independent engine, and the real Microsoft data)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pac import render_pac
from ztcore.breakout import (
    ALL_PORTS,
    EMPTY_RULES,
    BreakoutRule,
    BreakoutRules,
    RuleSource,
    ordered,
)

PROXY = "PROXY 127.0.0.1:3128"
NODE = shutil.which("node")
RESOLVING = ("dnsResolve", "isResolvable", "myIpAddress", "dnsResolveEx", "isResolvableEx")
_ARRAY = re.compile(r"^var (SEKIMORI_HOSTS|SEKIMORI_NET4|SEKIMORI_NET6) = (\[\]|\[\n.*?\n\]);$",
                    re.MULTILINE | re.DOTALL)


def m365(pattern: str, direct: bool, set_id: int, category: str,
         ports: tuple[tuple[int, int], ...] = ((80, 80), (443, 443))) -> BreakoutRule:
    return BreakoutRule(pattern, direct=direct, source=RuleSource.M365, set_id=set_id,
                        category=category, ports=ports)


RULES = BreakoutRules("city", "2024041700", (
    # the broker's order: exclusions, inclusions, then Microsoft's sets by id
    BreakoutRule("*.sharepoint.com", direct=False, source=RuleSource.EXCLUDE),
    BreakoutRule("*.example-video.jp", direct=True, source=RuleSource.INCLUDE),
    BreakoutRule("203.0.113.0/24", direct=True, source=RuleSource.INCLUDE),
    m365("outlook.office365.com", True, 1, "optimize"),
    m365("52.96.0.0/14", True, 1, "optimize"),
    m365("2603:1006::/40", True, 1, "optimize"),
    m365("*.lync.com", True, 12, "allow"),
    m365("*.teams.microsoft.com", True, 12, "allow"),
    m365("teams.microsoft.com", True, 12, "allow"),
    m365("52.112.0.0/14", True, 12, "allow"),
    m365("52.122.0.0/15", True, 12, "allow"),
    m365("2603:1027::/48", True, 12, "allow"),
    m365("*.microsoft.com", False, 50, "default", ((443, 443),)),
    m365("autodiscover.*.onmicrosoft.com", False, 8, "default"),
    m365("*cdn.onenote.net", False, 51, "default"),
    m365("udp-only.example.com", True, 11, "optimize", ()),
))


def arrays(pac: str) -> dict[str, list[Any]]:
    found = {name: json.loads(body) for name, body in _ARRAY.findall(pac)}
    assert set(found) == {"SEKIMORI_HOSTS", "SEKIMORI_NET4", "SEKIMORI_NET6"}
    return found


def skeleton(pac: str) -> str:
    """The code without its header comment and with empty data: what no input may change."""
    code = "\n".join(line for line in pac.splitlines() if not line.startswith("// "))
    return _ARRAY.sub(lambda m: f"var {m.group(1)} = [];", code)


def returns(pac: str) -> list[str]:
    return re.findall(r'return\s+"([^"]*)"', pac)


def run_node(script: str) -> Any:
    assert NODE is not None
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return json.loads(out)


# -- without rules: today's PAC, unchanged -------------------------------------------------------

def test_without_rules_the_pac_is_unchanged() -> None:
    assert render_pac("127.0.0.1", 3128) == (
        "// Sekimori agent proxy auto-configuration\n"
        "function FindProxyForURL(url, host) {\n"
        '  if (host === "localhost" || host === "127.0.0.1" || host === "[::1]" || host === "::1") {\n'
        '    return "DIRECT";\n'
        "  }\n"
        '  return "PROXY 127.0.0.1:3128";\n'
        "}\n")


# -- fail closed, loopback, the proxy line -------------------------------------------------------

@pytest.mark.parametrize("rules", [RULES, EMPTY_RULES], ids=["rules", "empty"])
def test_only_two_answers_and_no_fallback(rules: BreakoutRules) -> None:
    pac = render_pac("127.0.0.1", 3128, rules)
    assert returns(pac) == ["DIRECT", PROXY]
    assert pac.count('"DIRECT"') == 1 and pac.count("PROXY") == 1
    assert pac.endswith(f'  return "{PROXY}";\n}}\n')
    assert "; DIRECT" not in pac and ";DIRECT" not in pac and "SOCKS" not in pac


@pytest.mark.parametrize("rules", [None, RULES, EMPTY_RULES], ids=["none", "rules", "empty"])
def test_never_resolves_a_name(rules: BreakoutRules | None) -> None:
    pac = render_pac("127.0.0.1", 3128, rules)
    for name in RESOLVING:
        assert name not in pac


def test_direct_branch_is_loopback_or_the_rules() -> None:
    pac = render_pac("127.0.0.1", 3128, RULES)
    branch = pac[:pac.index('return "DIRECT"')]
    condition = branch[branch.rindex("if ("):]
    assert set(re.findall(r'host === "([^"]*)"', condition)) == {"localhost", "127.0.0.1",
                                                                 "[::1]", "::1"}
    assert "sekimoriDirect(url, host)" in condition
    direct = pac[pac.index("function sekimoriDirect"):]
    assert re.match(r"function sekimoriDirect\(url, host\) \{\s+try \{\s+return sekimoriBreakout"
                    r"\(url, host\);\s+\} catch \(e\) \{\s+return false;", direct)   # fails closed
    # lower-cased once, before loopback and the rules are looked at
    body = pac[pac.index("function FindProxyForURL"):]
    assert body.index("host = host.toLowerCase();") < body.index("if (")


@pytest.mark.parametrize("host, line", [("::1", "PROXY [::1]:3128"),
                                        ("fd00::5", "PROXY [fd00::5]:3128"),
                                        ("localhost", "PROXY localhost:3128")])
def test_proxy_line_brackets_an_ipv6_proxy(host: str, line: str) -> None:
    assert returns(render_pac(host, 3128, RULES))[-1] == line
    assert returns(render_pac(host, 3128))[-1] == line


# -- the data: in the matcher's order, ports flattened ----------------------------------------------

def test_rules_listed_in_precedence_order() -> None:
    data = arrays(render_pac("127.0.0.1", 3128, RULES))
    hosts = [r for r in ordered(RULES.rules) if not r.is_network and r.ports]
    assert [row[0] for row in data["SEKIMORI_HOSTS"]] == [r.pattern for r in hosts] == [
        "*.sharepoint.com",                 # the exclusion first
        "*.example-video.jp",               # then the admin's own
        "outlook.office365.com",            # then exact hosts
        "teams.microsoft.com",
        "autodiscover.*.onmicrosoft.com",   # then wildcards, the most literal characters first
        "*.teams.microsoft.com",
        "*cdn.onenote.net",                 # 15 literal characters
        "*.microsoft.com",                  # 14
        "*.lync.com",
    ]
    assert [row[1] for row in data["SEKIMORI_HOSTS"]] == [r.direct for r in hosts]
    assert data["SEKIMORI_NET4"] == [
        ["203.0.113.0", "255.255.255.0", True, [1, 65535]],
        ["52.122.0.0", "255.254.0.0", True, [80, 80, 443, 443]],   # /15 before the /14s
        ["52.96.0.0", "255.252.0.0", True, [80, 80, 443, 443]],
        ["52.112.0.0", "255.252.0.0", True, [80, 80, 443, 443]],
    ]
    assert data["SEKIMORI_NET6"] == [["2603:1027::/48", True, [80, 80, 443, 443]],
                                     ["2603:1006::/40", True, [80, 80, 443, 443]]]


def test_ports_flattened_and_portless_rules_left_out() -> None:
    data = arrays(render_pac("127.0.0.1", 3128, RULES))
    by_pattern = {row[0]: row[2] for row in data["SEKIMORI_HOSTS"]}
    assert by_pattern["*.microsoft.com"] == [443, 443]
    assert by_pattern["*.example-video.jp"] == [lo_hi for pair in ALL_PORTS for lo_hi in pair]
    assert "udp-only.example.com" not in by_pattern


def test_header_names_the_rules_and_data_versions() -> None:
    pac = render_pac("127.0.0.1", 3128, RULES)
    header = pac.split("var ", 1)[0]
    assert RULES.version in header and '"2024041700"' in header
    assert "9 host patterns, 4 IPv4 and 2 IPv6 networks" in header
    assert all(line.startswith("//") for line in header.splitlines())


def test_empty_rules_give_empty_tables() -> None:
    pac = render_pac("127.0.0.1", 3128, EMPTY_RULES)
    assert arrays(pac) == {"SEKIMORI_HOSTS": [], "SEKIMORI_NET4": [], "SEKIMORI_NET6": []}
    assert '"none"' in pac


def test_code_stays_es3_for_every_pac_engine() -> None:
    code = skeleton(render_pac("127.0.0.1", 3128, RULES))
    for modern in ("let ", "const ", "=>", ".endsWith(", ".startsWith(", ".includes(", "`"):
        assert modern not in code


# -- nothing from the data becomes code -------------------------------------------------------------

HOSTILE = [   # no "/": a pattern with one is read as a network
    '"];return "DIRECT";var z=["',
    '\\"];return "DIRECT";var z=["',   # a backslash to eat a naive escape of the quote
    'a"b\\c',
    "x\n}\nfunction FindProxyForURL(u, h) { return 'DIRECT'; }\nvar z = '",
    "x\u2028return 'DIRECT';",            # a line terminator for JavaScript, not for JSON
    "x'; return 'DIRECT'; '",
    "${FindProxyForURL = null}",
    "nul\x00and\x1bescape",
]


def _with_patterns(patterns: list[str], tenant: str = "t", version: str = "none") -> BreakoutRules:
    return BreakoutRules(tenant, version, tuple(
        BreakoutRule(p, direct=bool(i % 2), source=RuleSource.M365, set_id=i,
                     category="allow", ports=((443, 443),)) for i, p in enumerate(patterns)))


def test_hostile_patterns_stay_data() -> None:
    pac = render_pac("127.0.0.1", 3128, _with_patterns(HOSTILE))
    assert [row[0] for row in arrays(pac)["SEKIMORI_HOSTS"]] == [
        r.pattern for r in ordered(_with_patterns(HOSTILE).rules)]
    assert skeleton(pac) == skeleton(render_pac("127.0.0.1", 3128, _with_patterns(["a.jp"])))
    assert "\u2028" not in pac and returns(pac) == ["DIRECT", PROXY]


def test_hostile_tenant_and_version_stay_in_the_comment() -> None:
    rules = _with_patterns(["a.jp"], tenant='x\nreturn "DIRECT";\n/* */',
                           version='1\u2029return "DIRECT";\r')
    pac = render_pac("127.0.0.1", 3128, rules)
    assert skeleton(pac) == skeleton(render_pac("127.0.0.1", 3128, _with_patterns(["a.jp"])))
    assert "\u2029" not in pac and returns(pac) == ["DIRECT", PROXY]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40).filter(lambda p: "/" not in p),  # "/": a network
                min_size=1, max_size=8), st.text(), st.text())
def test_any_pattern_tenant_or_version_stays_data(patterns: list[str], tenant: str,
                                                   version: str) -> None:
    rules = _with_patterns(patterns, tenant, version)
    pac = render_pac("127.0.0.1", 3128, rules)
    assert [row[0] for row in arrays(pac)["SEKIMORI_HOSTS"]] == [
        r.pattern for r in ordered(rules.rules)]
    assert skeleton(pac) == skeleton(render_pac("127.0.0.1", 3128, _with_patterns(["a.jp"])))


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_hostile_patterns_parse_back_exactly_in_javascript() -> None:
    rules = _with_patterns(HOSTILE)
    pac = render_pac("127.0.0.1", 3128, rules)
    got = run_node(pac + "\nconsole.log(JSON.stringify(SEKIMORI_HOSTS.map(function (r) "
                         "{ return r[0]; })));\n")
    assert got == [r.pattern for r in ordered(rules.rules)]


# -- the port of the URL ---------------------------------------------------------------------------

PORTS = [
    ("https://outlook.office365.com/", 443),
    ("http://outlook.office365.com/", 80),
    ("HTTPS://outlook.office365.com/", 443),
    ("wss://teams.microsoft.com/ws", 443),
    ("ws://teams.microsoft.com/ws", 80),
    ("https://outlook.office365.com:8443/", 8443),
    ("http://example.jp:443/", 443),
    ("https://user:secret@example.jp:444/", 444),
    ("https://user:sec@ret@example.jp/", 443),
    ("http://[::1]:8080/", 8080),
    ("http://[2603:1006::1]/", 80),
    ("https://example.jp:/", 443),
    ("https://example.jp?next=a:1", 443),
    ("https://example.jp#a:1", 443),
    ("https://example.jp/a:1", 443),
    ("https://example.jp:abc/", 0),      # no port a rule can cover: the proxy
    ("https://example.jp:123456/", 0),
    ("ftp://example.jp/", 0),
    ("example.jp", 0),
]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_port_parsed_from_the_url() -> None:
    pac = render_pac("127.0.0.1", 3128, RULES)
    urls = [u for u, _ in PORTS]
    got = run_node(pac + f"\nconsole.log(JSON.stringify({json.dumps(urls)}.map(sekimoriPort)));\n")
    assert dict(zip(urls, got)) == dict(PORTS)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_port_ranges_are_inclusive() -> None:
    pac = render_pac("127.0.0.1", 3128, RULES)
    cases = [[[80, 80, 443, 443], 80], [[80, 80, 443, 443], 443], [[80, 80, 443, 443], 81],
             [[3478, 3481], 3478], [[3478, 3481], 3481], [[3478, 3481], 3482], [[], 443]]
    got = run_node(pac + f"\nconsole.log(JSON.stringify({json.dumps(cases)}.map(function (c) "
                         "{ return sekimoriCovers(c[0], c[1]); })));\n")
    assert got == [True, True, False, True, True, False, False]
