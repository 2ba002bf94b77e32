"""Local breakout rules and their matcher: which connections leave the laptop directly.

The broker compiles a tenant's breakout rules from Microsoft's endpoint data and the tenant's
choices (broker/breakout.py); the agent receives them signed, routes with `BreakoutMatcher`,
and renders the same rules into its PAC file. Pure: no I/O, no clock.

A rule is a host pattern or an address range, the TCP ports it covers, and where it goes:
`direct` (breakout) or through the tunnel. Patterns are lower-case; `*` matches any run of
characters, dots included (the semantics of Microsoft's data and of the PAC `shExpMatch`):
`*.sharepoint.com` matches `city.sharepoint.com` and `a.b.sharepoint.com`, not
`sharepoint.com`; `autodiscover.*.onmicrosoft.com` and `*cdn.onenote.net` are as written.

Which rule wins when several match a host and port:
1. the admin's exclusions (and Microsoft's login hosts when the tenant keeps login on the
   tunnel) — always the tunnel;
2. the admin's own additions — always direct;
3. Microsoft's endpoint sets, the most specific pattern first: an exact host beats a wildcard,
   and a wildcard with more literal characters beats a shorter one. So `teams.microsoft.com`
   (Allow) goes direct although `*.microsoft.com` (Default) does not.
For an address, the longest matching prefix wins within each of those three groups.
A rule only matches the ports it lists; Microsoft's UDP-only sets never match a TCP connection.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from ztcore.errors import ConfigError


class RuleSource(str, Enum):
    M365 = "m365"          # Microsoft's endpoint data
    INCLUDE = "include"    # the admin's own direct pattern
    EXCLUDE = "exclude"    # the admin's exclusion: always the tunnel
    LOGIN = "login"        # Microsoft's login hosts kept on the tunnel (tenant restrictions)


PRIORITY: Final = {RuleSource.EXCLUDE: 0, RuleSource.LOGIN: 0, RuleSource.INCLUDE: 1,
                   RuleSource.M365: 2}
ALL_PORTS: Final = ((1, 65535),)
CATEGORIES: Final = ("optimize", "allow", "default")
_HOST_PATTERN = re.compile(r"^[a-z0-9*]([a-z0-9*.-]{0,251}[a-z0-9*])?$")
_MAX_RULES = 20000


@dataclass(frozen=True, slots=True)
class BreakoutRule:
    pattern: str                          # host pattern, or a network in CIDR form
    direct: bool
    source: RuleSource
    set_id: int = 0                       # Microsoft's endpoint-set id; 0 for the admin's own
    category: str = ""                    # optimize | allow | default ("" for the admin's own)
    ports: tuple[tuple[int, int], ...] = ALL_PORTS   # inclusive TCP port ranges

    def covers(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.ports)

    @property
    def is_network(self) -> bool:
        return "/" in self.pattern

    @property
    def label(self) -> str:
        """How logs and the audit event name the rule: `m365:31:optimize` or `include`."""
        if self.source is RuleSource.M365:
            return f"m365:{self.set_id}:{self.category}"
        return str(self.source.value)

    def to_json_dict(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "direct": self.direct, "source": self.source.value,
                "set_id": self.set_id, "category": self.category,
                "ports": format_ports(self.ports)}


@dataclass(frozen=True, slots=True)
class BreakoutRules:
    """One tenant's compiled rules; `version` is a digest of their content."""
    tenant_id: str
    source_version: str                  # the Microsoft data version they came from, or "none"
    rules: tuple[BreakoutRule, ...]

    @property
    def version(self) -> str:
        body = json.dumps([r.to_json_dict() for r in self.rules], sort_keys=True)
        return hashlib.sha256(f"{self.source_version}\n{body}".encode()).hexdigest()[:16]

    def to_json_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "source_version": self.source_version,
                "rules": [r.to_json_dict() for r in self.rules]}


EMPTY_RULES: Final = BreakoutRules(tenant_id="", source_version="none", rules=())


@dataclass(frozen=True, slots=True)
class BreakoutMatch:
    direct: bool
    rule: BreakoutRule | None             # None: nothing matched (the tunnel, by default)


TUNNEL: Final = BreakoutMatch(direct=False, rule=None)


# -- parsing and formatting ---------------------------------------------------------------------

def format_ports(ports: Sequence[tuple[int, int]]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports)


def parse_ports(text: object, where: str) -> tuple[tuple[int, int], ...]:
    """`"80,443"`, `"143, 587"`, `"3478-3481"` → inclusive ranges; `""` → no ports."""
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected ports like '80,443', got {text!r}")
    out: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo_text, _, hi_text = part.partition("-")
        if not lo_text.strip().isdigit() or (hi_text and not hi_text.strip().isdigit()):
            raise ConfigError(f"{where}: not a port or port range: {part!r}")
        lo, hi = int(lo_text), int(hi_text or lo_text)
        if not 1 <= lo <= hi <= 65535:
            raise ConfigError(f"{where}: port range out of 1-65535: {part!r}")
        out.append((lo, hi))
    return tuple(out)


def host_pattern_error(pattern: str) -> str | None:
    """Why `pattern` is not a host pattern (lower-case letters, digits, '-', '.', '*'), or None."""
    if not _HOST_PATTERN.match(pattern) or ".." in pattern or pattern.replace("*", "") == "":
        return f"not a host pattern: {pattern!r}"
    return None


def parse_breakout_rules(raw: object, where: str = "breakout") -> BreakoutRules:
    """Validate rules received from outside (the signed document, the agent's cache)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected an object")
    tenant, source_version = raw.get("tenant_id"), raw.get("source_version")
    if not isinstance(tenant, str) or not isinstance(source_version, str):
        raise ConfigError(f"{where}: tenant_id and source_version must be strings")
    items = raw.get("rules")
    if not isinstance(items, list) or len(items) > _MAX_RULES:
        raise ConfigError(f"{where}.rules: expected a list of at most {_MAX_RULES} rules")
    return BreakoutRules(tenant_id=tenant, source_version=source_version,
                         rules=tuple(_parse_rule(item, f"{where}.rules[{i}]")
                                     for i, item in enumerate(items)))


def _parse_rule(raw: object, where: str) -> BreakoutRule:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected an object")
    pattern, direct, set_id = raw.get("pattern"), raw.get("direct"), raw.get("set_id", 0)
    category = raw.get("category", "")
    try:
        source = RuleSource(raw.get("source"))
    except ValueError:
        raise ConfigError(f"{where}.source: expected one of "
                          f"{', '.join(s.value for s in RuleSource)}") from None
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{where}.pattern: expected a host pattern or a network")
    if not isinstance(direct, bool):
        raise ConfigError(f"{where}.direct: expected true or false")
    if isinstance(set_id, bool) or not isinstance(set_id, int) or set_id < 0:
        raise ConfigError(f"{where}.set_id: expected a non-negative integer")
    if category not in ("", *CATEGORIES):
        raise ConfigError(f"{where}.category: expected one of {', '.join(CATEGORIES)}")
    if "/" in pattern:
        try:
            pattern = str(ipaddress.ip_network(pattern, strict=False))
        except ValueError:
            raise ConfigError(f"{where}.pattern: not a network: {pattern!r}") from None
    elif (problem := host_pattern_error(pattern)) is not None:
        raise ConfigError(f"{where}.pattern: {problem}")
    return BreakoutRule(pattern=pattern, direct=direct, source=source, set_id=set_id,
                        category=str(category), ports=parse_ports(raw.get("ports", ""),
                                                                  f"{where}.ports"))


# -- the matcher --------------------------------------------------------------------------------

def specificity(pattern: str) -> int:
    """Exact hosts first, then wildcards by their number of literal characters."""
    return 10_000 + len(pattern) if "*" not in pattern else len(pattern.replace("*", ""))


def normalise_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _rank(rule: BreakoutRule) -> tuple[int, int]:
    if rule.is_network:
        return PRIORITY[rule.source], -ipaddress.ip_network(rule.pattern).prefixlen
    return PRIORITY[rule.source], -specificity(rule.pattern)


def ordered(rules: Sequence[BreakoutRule]) -> list[BreakoutRule]:
    """Rules in the order of precedence: the first that matches a host and port wins. The PAC
    file lists them in this same order, so the browser and the agent agree."""
    return sorted(rules, key=_rank)   # stable: equal ranks keep the broker's order


class BreakoutMatcher:
    """Precompiled indexes over one `BreakoutRules`: exact hosts and `*.suffix` patterns by
    dictionary, other wildcards by regular expression, networks by prefix length."""

    CACHE_SIZE: Final = 8192

    def __init__(self, rules: BreakoutRules) -> None:
        self.rules = rules
        self.version = rules.version
        # Each index holds (position in precedence order, rule): the smallest position that
        # matches wins, exactly as the first match in the PAC file's ordered list.
        self._exact: dict[str, list[tuple[int, BreakoutRule]]] = {}
        self._suffix: dict[str, list[tuple[int, BreakoutRule]]] = {}
        self._general: list[tuple[re.Pattern[str], int, BreakoutRule]] = []
        self._nets: dict[int, dict[tuple[int, int], list[tuple[int, BreakoutRule]]]] = {4: {}, 6: {}}
        self._prefixes: dict[int, list[int]] = {4: [], 6: []}
        self._cache: dict[tuple[str, int], BreakoutMatch] = {}
        for position, rule in enumerate(ordered(rules.rules)):
            entry = (position, rule)
            if rule.is_network:
                net = ipaddress.ip_network(rule.pattern)
                key = (net.prefixlen, int(net.network_address))
                self._nets[net.version].setdefault(key, []).append(entry)
            elif "*" not in rule.pattern:
                self._exact.setdefault(rule.pattern, []).append(entry)
            elif rule.pattern.startswith("*.") and "*" not in rule.pattern[1:]:
                self._suffix.setdefault(rule.pattern[1:], []).append(entry)
            else:
                body = ".*".join(re.escape(part) for part in rule.pattern.split("*"))
                self._general.append((re.compile(body + r"\Z"), position, rule))
        for version in (4, 6):
            self._prefixes[version] = sorted({p for p, _ in self._nets[version]}, reverse=True)

    def route(self, host: str, port: int) -> BreakoutMatch:
        key = (host, port)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._route(normalise_host(host), port)
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _route(self, host: str, port: int) -> BreakoutMatch:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return self._route_name(host, port)
        return self._route_address(address, port)

    def _route_name(self, host: str, port: int) -> BreakoutMatch:
        if not host or not host.isascii():
            return TUNNEL
        candidates: list[tuple[int, BreakoutRule]] = []
        candidates += self._exact.get(host, ())
        dot = host.find(".")
        while dot >= 0:
            candidates += self._suffix.get(host[dot:], ())
            dot = host.find(".", dot + 1)
        candidates += [(position, rule) for regex, position, rule in self._general
                       if regex.match(host)]
        return _best(candidates, port)

    def _route_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                       port: int) -> BreakoutMatch:
        bits = 32 if address.version == 4 else 128
        value = int(address)
        table = self._nets[address.version]
        candidates: list[tuple[int, BreakoutRule]] = []
        for prefix in self._prefixes[address.version]:
            masked = value >> (bits - prefix) << (bits - prefix) if prefix else 0
            candidates += table.get((prefix, masked), ())
        return _best(candidates, port)


def _best(candidates: list[tuple[int, BreakoutRule]], port: int) -> BreakoutMatch:
    best = min((c for c in candidates if c[1].covers(port)), key=lambda c: c[0], default=None)
    return TUNNEL if best is None else BreakoutMatch(best[1].direct, best[1])

