"""A tenant's routing document (broker/routing.py): parsing with field paths, inheritance, and
the compiled breakout rules; the agent-event validation of the routing service."""

from __future__ import annotations

import json

import pytest

from broker.m365 import parse_endpoint_data
from broker.pki import DeviceIdentity
from broker.routing import (
    DEFAULT_ROUTING,
    LOGIN_HOSTS,
    BreakoutPolicy,
    compile_breakout,
    effective_routing,
    load_routing,
)
from broker.runtime.routing_service import RoutingService
from ztcore.breakout import BreakoutMatcher, RuleSource
from ztcore.errors import ConfigError

SETS = parse_endpoint_data(json.dumps([
    {"id": 1, "serviceArea": "Exchange", "urls": ["outlook.office365.com"],
     "ips": ["52.96.0.0/14"], "tcpPorts": "80,443", "category": "Optimize", "required": True,
     "expressRoute": True},
    {"id": 11, "serviceArea": "Skype", "ips": ["52.112.0.0/14"], "udpPorts": "3478-3481",
     "category": "Optimize", "required": True, "expressRoute": True},
    {"id": 31, "serviceArea": "SharePoint", "urls": ["*.sharepoint.com"], "tcpPorts": "80,443",
     "category": "Optimize", "required": True, "expressRoute": True},
    {"id": 56, "serviceArea": "Common", "urls": list(LOGIN_HOSTS) + ["graph.microsoft.com"],
     "tcpPorts": "80,443", "category": "Allow", "required": True, "expressRoute": True},
    {"id": 125, "serviceArea": "Common", "urls": ["*.microsoft.com"], "tcpPorts": "80,443",
     "category": "Default", "required": False, "expressRoute": False},
]).encode()).sets


def route(policy: BreakoutPolicy, host: str, port: int = 443) -> bool:
    return BreakoutMatcher(compile_breakout("c", policy, SETS, "v")).route(host, port).direct


def test_defaults_break_out_optimize_and_allow() -> None:
    policy = DEFAULT_ROUTING.breakout
    assert route(policy, "outlook.office365.com") and route(policy, "x.sharepoint.com")
    assert route(policy, "graph.microsoft.com") and route(policy, "login.microsoftonline.com")
    assert not route(policy, "www.microsoft.com") and not route(policy, "example.com")
    assert route(policy, "52.96.0.1") and not route(policy, "52.112.0.1")   # UDP-only set 11


def test_tenant_choices() -> None:
    policy = load_routing("""
breakout:
  categories: [optimize]
  service_areas: [Exchange, SharePoint, Common]
  include: ["*.video.example.jp", "10.9.0.0/16"]
  exclude: ["*.sharepoint.com"]
  keep_login_on_tunnel: true
""").breakout
    assert route(policy, "outlook.office365.com") and not route(policy, "x.sharepoint.com")
    assert not route(policy, "graph.microsoft.com")              # Allow is not chosen
    assert not route(policy, "login.microsoftonline.com")
    assert route(policy, "a.video.example.jp", 8080) and route(policy, "10.9.3.4", 22)
    compiled = compile_breakout("c", policy, SETS, "v")
    assert {r.pattern for r in compiled.rules if r.source is RuleSource.LOGIN} == set(LOGIN_HOSTS)


def test_everything_defaults_and_inheritance() -> None:
    assert load_routing("") == DEFAULT_ROUTING
    pref = load_routing("captive_portal_minutes: 10\n")
    city = load_routing("captive_portal_minutes: 0\n")
    assert effective_routing(None, None) == DEFAULT_ROUTING
    assert effective_routing(None, pref).captive_portal_minutes == 10
    assert effective_routing(city, pref).captive_portal_minutes == 0


@pytest.mark.parametrize(("text", "where"), [
    ("breakout: [1]", "breakout: expected a mapping"),
    ("breakout: {categories: [optimise]}", "breakout.categories[0]"),
    ("breakout: {service_areas: [Teams]}", "breakout.service_areas[0]"),
    ("breakout: {include: ['a b']}", "breakout.include[0]"),
    ("breakout: {exclude: ['10.0.0.0/33']}", "breakout.exclude[0]"),
    ("breakout: {keep_login_on_tunnel: 'yes'}", "breakout.keep_login_on_tunnel"),
    ("breakout: {magic: 1}", "breakout.magic: unknown key"),
    ("captive_portal_minutes: 31", "captive_portal_minutes"),
    ("override_max_minutes: -1", "override_max_minutes"),
    ("dns: {zones: [city.lg.jp], records: [{name: tax.other.jp, addresses: [10.0.0.1]}]}", "dns.records[0]"),
    ("a: [", "routing: not valid YAML"),
    ("[1, 2]", "routing: expected a mapping"),
])
def test_bad_documents_name_the_field(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_routing(text)
    assert str(exc.value).startswith(where), str(exc.value)


def test_too_large_document() -> None:
    with pytest.raises(ConfigError, match="larger than"):
        load_routing("#" * 300_000)


# -- agent events (routing_service.events_from) -----------------------------------------------------

IDENTITY = DeviceIdentity("city", "dev-1")
NOW = 1_795_000_000.0


def events(body: object) -> tuple[int, list[object], str]:
    service = RoutingService.__new__(RoutingService)   # only events_from: no store, no keys
    reply, out = service.events_from(IDENTITY, json.dumps(body).encode(), NOW)
    return reply.decision.status, list(out), reply.decision.detail or ""


def test_events_are_recorded_with_the_connection_identity() -> None:
    status, out, _ = events({"events": [
        {"kind": "breakout", "time": NOW - 5, "destination": "x.sharepoint.com:443",
         "rule": "m365:31:optimize", "user": "tanaka", "bytes_up": 10, "bytes_down": 2000,
         "duration_seconds": 0.5, "device": "someone-else"},
        {"kind": "override-applied", "time": NOW, "code_id": "abcdef012345", "detail": "{}"}]})
    assert status == 200 and len(out) == 2
    first = out[0]
    assert first.device == "dev-1" and first.tenant == "city"           # type: ignore[attr-defined]
    assert first.reason == "breakout-direct" and first.extra["rule"] == "m365:31:optimize"  # type: ignore[attr-defined]
    assert out[1].extra["code_id"] == "abcdef012345"                     # type: ignore[attr-defined]


@pytest.mark.parametrize(("body", "detail"), [
    ({"events": [{"kind": "stream", "time": NOW}]}, "events[0].kind"),
    ({"events": [{"kind": "breakout", "time": NOW + 2 * 86400}]}, "events[0].time"),
    ({"events": [{"kind": "breakout", "time": NOW, "bytes_up": -1}]}, "events[0].bytes_up"),
    ({"events": [{"kind": "breakout", "time": NOW, "destination": "x" * 400}]}, "events[0].destination"),
    ({"events": [{"kind": "breakout", "time": True}]}, "events[0].time"),
    ({"events": [None]}, "events[0]"),
    ({"events": [{"kind": "breakout", "time": NOW}] * 501}, "at most 500"),
    ([1, 2], "expected"),
])
def test_bad_events_are_refused_whole(body: object, detail: str) -> None:
    status, out, why = events(body)
    assert status == 400 and out == [] and detail in why


def test_a_clock_somewhat_ahead_is_flagged_not_refused() -> None:
    status, out, _ = events({"events": [{"kind": "breakout", "time": NOW + 3600}]})
    assert status == 200 and out[0].extra["agent_clock_ahead_seconds"] == "3600"  # type: ignore[attr-defined]


def test_not_json() -> None:
    service = RoutingService.__new__(RoutingService)
    reply, out = service.events_from(IDENTITY, b"\xff{", NOW)
    assert reply.decision.status == 400 and out == []
