"""The PAC file the agent serves at /proxy.pac (pure text generation).

Fail closed: the PAC names only the agent's proxy, with no `; DIRECT` fallback, so a browser
whose agent is down does not silently go direct. Loopback stays direct (it is the agent itself
and local development servers).

With breakout rules (ztcore/breakout.py) the PAC also sends Microsoft 365 traffic direct, giving
for every URL the answer of `BreakoutMatcher(rules).route(host, port).direct`:
- rules are listed as data in `ordered()` order and one loop returns the first that matches
  the host and covers the URL's port, so no code is generated per rule and every string in the
  data is JSON-encoded (a pattern can never become code);
- host names are compared lower-case, without trailing dots, with `shExpMatch` (its `*` is the
  matcher's `*`); a cheap suffix check on the literal text after the last `*` skips most calls;
- IPv4 literals are compared with `isInNet` against IPv4 rules only, IPv6 literals with
  `isInNetEx` (Microsoft's IPv6 extension, which Chromium implements) where the engine has it,
  else they go to the proxy; neither is compared with host patterns, as in the matcher;
- an error while matching (a pattern that is no valid `shExpMatch` expression, say) sends the
  URL to the proxy: a PAC that throws makes some browsers go direct;
- names are never resolved (no `dnsResolve`, no `isResolvable`): slow, and it leaks every name
  the browser visits to the local resolver.
The JavaScript stays within ES3 (`var`, `substring`), which every PAC engine runs, WinHTTP's
included. This module must not read the rules from anywhere: they are a parameter.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence

from ztcore.breakout import BreakoutRule, BreakoutRules, ordered

Row = list[object]
_LOOPBACK = 'host === "localhost" || host === "127.0.0.1" || host === "[::1]" || host === "::1"'

# The port of the URL, as the agent sees the connection: an explicit one, else the scheme's.
# An unknown scheme without a port, or a port that is not a number, gives 0: no rule covers it.
# The IPv4 test is as strict as Python's `ipaddress` (no leading zeros), so the PAC and the
# matcher agree on which hosts are addresses.
_CODE = r"""
var SEKIMORI_IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function sekimoriPort(url) {
  var s = url.indexOf("://");
  if (s < 0) {
    return 0;
  }
  var scheme = url.substring(0, s + 1).toLowerCase();
  var rest = url.substring(s + 3);
  var end = rest.search(/[\/?#]/);
  var authority = end < 0 ? rest : rest.substring(0, end);
  authority = authority.substring(authority.lastIndexOf("@") + 1);
  var colon = authority.lastIndexOf(":");
  if (colon >= 0 && colon > authority.lastIndexOf("]")) {
    var digits = authority.substring(colon + 1);
    if (/^[0-9]{1,5}$/.test(digits)) {
      return parseInt(digits, 10);
    }
    if (digits !== "") {
      return 0;
    }
  }
  if (scheme === "https:" || scheme === "wss:") {
    return 443;
  }
  if (scheme === "http:" || scheme === "ws:") {
    return 80;
  }
  return 0;
}

function sekimoriCovers(ports, port) {
  for (var k = 0; k < ports.length; k += 2) {
    if (port >= ports[k] && port <= ports[k + 1]) {
      return true;
    }
  }
  return false;
}

function sekimoriBreakout(url, host) {
  var i, r, p, tail;
  var port = sekimoriPort(url);
  while (host.charAt(host.length - 1) === ".") {
    host = host.substring(0, host.length - 1);
  }
  if (host.charAt(0) === "[" && host.charAt(host.length - 1) === "]") {
    host = host.substring(1, host.length - 1);
  }
  if (host.indexOf(":") >= 0) {
    if (typeof isInNetEx !== "function") {
      return false;
    }
    for (i = 0; i < SEKIMORI_NET6.length; i++) {
      r = SEKIMORI_NET6[i];
      if (sekimoriCovers(r[2], port) && isInNetEx(host, r[0])) {
        return r[1];
      }
    }
    return false;
  }
  if (SEKIMORI_IPV4.test(host)) {
    for (i = 0; i < SEKIMORI_NET4.length; i++) {
      r = SEKIMORI_NET4[i];
      if (sekimoriCovers(r[3], port) && isInNet(host, r[0], r[1])) {
        return r[2];
      }
    }
    return false;
  }
  if (host === "" || /[^\x00-\x7f]/.test(host)) {
    return false;
  }
  for (i = 0; i < SEKIMORI_HOSTS.length; i++) {
    r = SEKIMORI_HOSTS[i];
    p = r[0];
    tail = p.substring(p.lastIndexOf("*") + 1);
    if (host.length >= tail.length && host.substring(host.length - tail.length) === tail
        && sekimoriCovers(r[2], port) && shExpMatch(host, p)) {
      return r[1];
    }
  }
  return false;
}

function sekimoriDirect(url, host) {
  try {
    return sekimoriBreakout(url, host);
  } catch (e) {
    return false;
  }
}
"""


def render_pac(proxy_host: str, proxy_port: int, rules: BreakoutRules | None = None) -> str:
    """The PAC text. Without `rules`, only loopback goes direct; with them, also what they send
    direct (see the module docstring). A rule whose pattern has a `/` but is no network raises
    ValueError, as it does in `BreakoutMatcher`."""
    host = f"[{proxy_host}]" if ":" in proxy_host else proxy_host  # an IPv6 proxy is bracketed
    proxy = json.dumps(f"PROXY {host}:{proxy_port}")
    if rules is None:
        return (
            "// Sekimori agent proxy auto-configuration\n"
            "function FindProxyForURL(url, host) {\n"
            f"  if ({_LOOPBACK}) {{\n"
            '    return "DIRECT";\n'
            "  }\n"
            f"  return {proxy};\n"
            "}\n"
        )
    names, net4, net6 = _tables(ordered(rules.rules))
    return (
        "// Sekimori agent proxy auto-configuration\n"
        f"// Breakout rules {rules.version} of tenant {json.dumps(rules.tenant_id)}, "
        f"Microsoft endpoint data {json.dumps(rules.source_version)}:\n"
        f"// {len(names)} host patterns, {len(net4)} IPv4 and {len(net6)} IPv6 networks, each in the order\n"
        "// of precedence: the first entry that matches the host and covers the port wins.\n"
        "// [pattern, direct, [low port, high port, ...]], [base, mask, direct, ports] and\n"
        "// [prefix, direct, ports]. Names are never resolved here.\n"
        f"var SEKIMORI_HOSTS = {_array(names)};\n"
        f"var SEKIMORI_NET4 = {_array(net4)};\n"
        f"var SEKIMORI_NET6 = {_array(net6)};\n"
        f"{_CODE}\n"
        "function FindProxyForURL(url, host) {\n"
        "  host = host.toLowerCase();\n"
        f"  if ({_LOOPBACK}\n"
        "      || sekimoriDirect(url, host)) {\n"
        '    return "DIRECT";\n'
        "  }\n"
        f"  return {proxy};\n"
        "}\n"
    )


def _tables(rules: Sequence[BreakoutRule]) -> tuple[list[Row], list[Row], list[Row]]:
    """Host, IPv4 and IPv6 rows, each in the given order. A rule without ports never matches
    and is left out."""
    names: list[Row] = []
    net4: list[Row] = []
    net6: list[Row] = []
    for rule in rules:
        if not rule.ports:
            continue
        ports: list[object] = [bound for pair in rule.ports for bound in pair]
        if not rule.is_network:
            names.append([rule.pattern, rule.direct, ports])
            continue
        net = ipaddress.ip_network(rule.pattern)
        if net.version == 4:
            net4.append([str(net.network_address), str(net.netmask), rule.direct, ports])
        else:
            net6.append([str(net), rule.direct, ports])
    return names, net4, net6


def _array(rows: Sequence[Row]) -> str:
    """One JSON row a line. `json.dumps` escapes quotes, backslashes, control characters and
    (ASCII-only) U+2028/U+2029, so no row can end its string, its line or the array."""
    if not rows:
        return "[]"
    return "[\n" + ",\n".join("  " + json.dumps(row) for row in rows) + "\n]"
