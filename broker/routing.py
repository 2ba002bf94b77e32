"""A tenant's routing document: Microsoft 365 breakout, split DNS for private names, and the
fail-closed escape hatches (captive-portal window, override codes). Pure: parse, validate,
compile into the rules that the agent receives.

The document, as an admin writes it (YAML or JSON; every key optional):

    breakout:
      categories: [optimize, allow]     # Microsoft's categories that go direct (the default)
      service_areas: [Exchange, SharePoint, Skype, Common]   # default: all four
      include: ["*.example-video.jp"]   # the admin's own direct host patterns or networks
      exclude: ["*.sharepoint.com"]     # never direct, whatever Microsoft says
      keep_login_on_tunnel: false       # true: Microsoft's login hosts stay on the tunnel, where
                                        # tenant restrictions can be applied to them
    dns:
      zones: [city.example.lg.jp]       # private zones: answered by the agent, never leaked
      records: [{name: tax.city.example.lg.jp, addresses: [10.20.0.5]}]
      ttl_seconds: 60
    captive_portal_minutes: 5           # 0 disables the hotel Wi-Fi window
    override_max_minutes: 240           # the longest override code an admin may issue

A municipality without a document of its own takes its prefecture's; with neither, the
defaults above apply (Optimize and Allow direct, no private zones, a 5-minute window).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml  # type: ignore[import-untyped]

from broker.m365 import EndpointSet
from ztcore.breakout import (
    CATEGORIES,
    BreakoutRule,
    BreakoutRules,
    RuleSource,
    host_pattern_error,
)
from ztcore.errors import ConfigError
from ztcore.split_dns import SplitDnsConfig, parse_split_dns

SERVICE_AREAS: Final = ("Exchange", "SharePoint", "Skype", "Common")
# Where Microsoft Entra ID signs users in: the hosts on which tenant restrictions are applied.
LOGIN_HOSTS: Final = ("login.microsoftonline.com", "login.microsoft.com", "login.windows.net")
MAX_DOCUMENT_BYTES: Final = 256 * 1024
MAX_PATTERNS: Final = 500
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class BreakoutPolicy:
    categories: frozenset[str] = frozenset({"optimize", "allow"})
    service_areas: frozenset[str] = frozenset(SERVICE_AREAS)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    keep_login_on_tunnel: bool = False


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    breakout: BreakoutPolicy = field(default_factory=BreakoutPolicy)
    dns: SplitDnsConfig = field(default_factory=SplitDnsConfig)
    captive_portal_minutes: int = 5
    override_max_minutes: int = 240

    def to_json_dict(self) -> dict[str, Any]:
        b = self.breakout
        return {"breakout": {"categories": sorted(b.categories),
                             "service_areas": sorted(b.service_areas),
                             "include": list(b.include), "exclude": list(b.exclude),
                             "keep_login_on_tunnel": b.keep_login_on_tunnel},
                "dns": self.dns.to_json_dict(),
                "captive_portal_minutes": self.captive_portal_minutes,
                "override_max_minutes": self.override_max_minutes}


DEFAULT_ROUTING: Final = RoutingPolicy()


def load_routing(text: str) -> RoutingPolicy:
    """Parse a routing document (YAML, of which JSON is a subset); ConfigError names the field."""
    if len(text.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"routing: the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(f"routing: not valid YAML: {exc}") from None
    return parse_routing(raw if raw is not None else {})


def parse_routing(raw: object) -> RoutingPolicy:
    mapping = _mapping(raw, "routing", {"breakout", "dns", "captive_portal_minutes",
                                        "override_max_minutes"})
    return RoutingPolicy(
        breakout=_parse_breakout(mapping.get("breakout", {})),
        dns=parse_split_dns(mapping.get("dns", {}), "dns"),
        captive_portal_minutes=_minutes(mapping.get("captive_portal_minutes", 5),
                                        "captive_portal_minutes", 0, 30),
        override_max_minutes=_minutes(mapping.get("override_max_minutes", 240),
                                      "override_max_minutes", 0, 1440))


def _parse_breakout(raw: object) -> BreakoutPolicy:
    where = "breakout"
    m = _mapping(raw, where, {"categories", "service_areas", "include", "exclude",
                              "keep_login_on_tunnel"})
    categories = _strings(m.get("categories", ["optimize", "allow"]), f"{where}.categories")
    for i, c in enumerate(categories):
        if c.lower() not in CATEGORIES:
            raise ConfigError(f"{where}.categories[{i}]: expected one of "
                              f"{', '.join(CATEGORIES)}, got {c!r}")
    areas = _strings(m.get("service_areas", list(SERVICE_AREAS)), f"{where}.service_areas")
    for i, a in enumerate(areas):
        if a not in SERVICE_AREAS:
            raise ConfigError(f"{where}.service_areas[{i}]: expected one of "
                              f"{', '.join(SERVICE_AREAS)}, got {a!r}")
    keep = m.get("keep_login_on_tunnel", False)
    if not isinstance(keep, bool):
        raise ConfigError(f"{where}.keep_login_on_tunnel: expected true or false, got {keep!r}")
    return BreakoutPolicy(categories=frozenset(c.lower() for c in categories),
                          service_areas=frozenset(areas),
                          include=_patterns(m.get("include", []), f"{where}.include"),
                          exclude=_patterns(m.get("exclude", []), f"{where}.exclude"),
                          keep_login_on_tunnel=keep)


def _patterns(raw: object, where: str) -> tuple[str, ...]:
    items = _strings(raw, where)
    if len(items) > MAX_PATTERNS:
        raise ConfigError(f"{where}: at most {MAX_PATTERNS} patterns")
    out = []
    for i, item in enumerate(items):
        value = item.strip().lower().rstrip(".")
        if "/" in value:
            try:
                value = str(ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise ConfigError(f"{where}[{i}]: not a network: {item!r}") from None
        elif (problem := host_pattern_error(value)) is not None:
            raise ConfigError(f"{where}[{i}]: {problem}")
        out.append(value)
    return tuple(out)


def _mapping(raw: object, where: str, known: set[str]) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(known))})")
    return raw


def _strings(raw: object, where: str) -> list[str]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list, got {type(raw).__name__}")
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{where}[{i}]: expected a non-empty string, got {item!r}")
    return list(raw)


def _minutes(raw: object, where: str, lo: int, hi: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise ConfigError(f"{where}: expected minutes from {lo} to {hi}, got {raw!r}")
    return raw


def effective_routing(own: RoutingPolicy | None, parent: RoutingPolicy | None) -> RoutingPolicy:
    """A municipality's own document, else its prefecture's, else the defaults."""
    return own if own is not None else parent if parent is not None else DEFAULT_ROUTING


def compile_breakout(tenant_id: str, policy: BreakoutPolicy, sets: Iterable[EndpointSet],
                     source_version: str) -> BreakoutRules:
    """The agent's rules: every URL and network of Microsoft's sets in the tenant's service
    areas (direct when its category is chosen, tunnel otherwise, so a more specific Default
    entry keeps its host on the tunnel), plus the admin's inclusions and exclusions."""
    rules: list[BreakoutRule] = []
    for pattern in policy.exclude:
        rules.append(BreakoutRule(pattern, direct=False, source=RuleSource.EXCLUDE))
    if policy.keep_login_on_tunnel:
        rules += [BreakoutRule(h, direct=False, source=RuleSource.LOGIN) for h in LOGIN_HOSTS]
    for pattern in policy.include:
        rules.append(BreakoutRule(pattern, direct=True, source=RuleSource.INCLUDE))
    for s in sorted(sets, key=lambda s: s.id):
        if s.service_area not in policy.service_areas or not s.tcp_ports:
            continue
        category = s.category.lower()
        direct = category in policy.categories
        for pattern in (*s.urls, *s.ips):
            rules.append(BreakoutRule(pattern, direct=direct, source=RuleSource.M365,
                                      set_id=s.id, category=category, ports=s.tcp_ports))
    return BreakoutRules(tenant_id=tenant_id, source_version=source_version, rules=tuple(rules))


def routing_json(policy: RoutingPolicy) -> str:
    return json.dumps(policy.to_json_dict(), ensure_ascii=False, sort_keys=True)

