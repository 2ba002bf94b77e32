"""broker/policy/yaml_io.py: the documented example, errors that start with the bad field's path,
the safety limits, time-window syntax and round-trips."""

from __future__ import annotations

import re

import pytest

from broker.policy.model import Action, ActionKind, Policy, PolicyError, SecurityModel, TimeWindow, Zone
from broker.policy.yaml_io import (
    MAX_TEXT_BYTES,
    dump_policy_yaml,
    format_time_window,
    load_policy_yaml,
    parse_time_window,
)
from tests.unit.broker.policy.fixtures import CITY, CITY_YAML, PREFECTURE, PREFECTURE_YAML

HEAD = "tenant: {id: city, name: 市}\n"
APP = "  - {id: tax, name: 税務, kind: private, zone: lgwan, hosts: [tax.city.lg.jp], private_kind: web}\n"
APPS = "apps:\n" + APP


def rules(*lines: str) -> str:
    return HEAD + APPS + "rules:\n" + "".join(f"  - {line}\n" for line in lines)


def test_the_documented_example() -> None:
    assert CITY.tenant.model is SecurityModel.BETA and CITY.tenant.parent == "sample-pref"
    assert CITY.app_groups == (("lgwan-business", ("tax-system", "vdi")),)
    assert CITY.rules[0].when.groups == ("税務課",) and CITY.rules[0].action == Action(ActionKind.ALLOW)
    assert CITY.rules[4].action == Action(ActionKind.REQUIRE_MFA, 15)
    assert CITY.rules[6].when.time_windows == (TimeWindow(tuple(range(7)), 22 * 60, 6 * 60),)
    assert CITY.rules[12].enabled is False
    assert PREFECTURE.specific_communications[0].address == "198.51.100.0/28"


@pytest.mark.parametrize("policy", [CITY, PREFECTURE], ids=["city", "prefecture"])
def test_round_trip(policy: Policy) -> None:
    text = dump_policy_yaml(policy)
    assert load_policy_yaml(text, PREFECTURE if policy is CITY else None) == policy
    assert dump_policy_yaml(load_policy_yaml(text)) == text


ERRORS: list[tuple[str, str]] = [
    ("- just a list\n", "policy: expected a mapping"),
    ("", "policy: expected a mapping"),
    ("apps: []\n", "tenant: required"),
    ("tenant: {id: city}\n", "tenant.name: required"),
    (HEAD + "colour: red\n", "colour: unknown key"),
    ("tenant: {id: city, name: 市, model: gamma}\n", "tenant.model: expected one of alpha, beta, beta_prime"),
    ("tenant: {id: 12, name: 市}\n", "tenant.id: expected a non-empty string"),
    (HEAD + "apps: {tax: 1}\n", "apps: expected a list"),
    (HEAD + "apps:\n" + APP + "  - {id: x, name: x, kind: internet, zone: dmz}\n",
     "apps[1].zone: expected one of internet, lgwan, mynumber"),
    (HEAD + "apps:\n  - {id: x, name: x, kind: web, zone: lgwan}\n", "apps[0].kind: expected one of internet, saas, private"),
    (HEAD + "apps:\n  - {id: x, name: x, kind: internet, zone: internet, hosts: [Example.COM]}\n",
     "apps[0].hosts[0]: expected a lower-case host name"),
    (HEAD + "apps:\n  - {id: x, name: x, kind: internet, zone: internet, hosts: [\"a.*.example.com\"]}\n",
     "apps[0].hosts[0]: '*' is allowed only as the whole leftmost label"),
    (HEAD + "apps:\n  - {id: x, name: x, kind: internet, zone: internet, hosts: [\"*example.com\"]}\n",
     "apps[0].hosts[0]: '*' is allowed only"),
    (HEAD + "apps:\n  - {id: x, name: x, kind: internet, zone: internet, ports: [0]}\n",
     "apps[0].ports[0]: expected a port number 1-65535"),
    (HEAD + "apps:\n  - {id: x, name: x, kind: internet, zone: internet, ports: [\"443\"]}\n",
     "apps[0].ports[0]: expected an integer"),
    (HEAD + "apps:\n  - {id: x, name: x, kind: private, zone: lgwan}\n",
     "apps[0].private_kind: required for kind private"),
    (HEAD + "apps:\n" + APP + APP, "apps[1].id: duplicate id 'tax'"),
    (HEAD + "apps:\n  - {id: x, name: x, kind: internet, zone: internet, url: x}\n", "apps[0].url: unknown key"),
    (HEAD + APPS + "app_groups: {g: [tax, nope]}\n", "app_groups.g[1]: unknown app 'nope'"),
    (HEAD + "specific_communications:\n  - {id: e, name: e, host: e.example, address: 203.0.113.0/8, port: 443}\n",
     "specific_communications[0].address: expected an IP address or network"),
    (HEAD + "specific_communications:\n  - {id: e, name: e, host: \"*.e.example\", address: 192.0.2.1, port: 1}\n",
     "specific_communications[0].host: expected one host, not a pattern"),
    (rules("{id: r-1, when: {groups: 税務課}, action: allow}"), "rules[0].when.groups: expected a list of strings"),
    (rules("{id: r-1, action: allow}", "{id: r-2, when: {groups: [1]}, action: allow}"),
     "rules[1].when.groups: expected a list of strings"),
    (rules("{id: r-1, action: allow}", "{id: r-1, action: deny}"), "rules[1].id: duplicate id 'r-1'"),
    (rules("{id: r-1, when: {apps: [tax, payroll]}, action: allow}"), "rules[0].when.apps[1]: unknown app 'payroll'"),
    (rules("{id: r-1, when: {app_groups: [business]}, action: allow}"),
     "rules[0].when.app_groups[0]: unknown app group 'business'"),
    (rules("{id: r-1, when: {segments: [dmz]}, action: allow}"),
     "rules[0].when.segments[0]: expected one of internet, lgwan, mynumber"),
    (rules("{id: r-1, when: {source_networks: [10.0.0.1/8]}, action: allow}"),
     "rules[0].when.source_networks[0]: expected an IP address or network"),
    (rules("{id: r-1, when: {time_windows: [mon-fri 8:30-17:15]}, action: allow}"),
     "rules[0].when.time_windows[0]: expected a time HH:MM"),
    (rules("{id: r-1, when: {time_windows: [weekdays 08:30-17:15]}, action: allow}"),
     "rules[0].when.time_windows[0]: unknown day 'weekdays'"),
    (rules("{id: r-1, when: {time_windows: [mon 24:30-17:15]}, action: allow}"),
     "rules[0].when.time_windows[0]: no such time '24:30'"),
    (rules("{id: r-1, when: {time_windows: ['mon-fri,wed 08:00-09:00']}, action: allow}"),
     "rules[0].when.time_windows[0]: a day is listed twice"),
    (rules("{id: r-1, when: {weekday: [mon]}, action: allow}"), "rules[0].when.weekday: unknown key"),
    (rules("{id: r-1, action: permit}"), "rules[0].action: expected one of allow, deny, inspect, do-not-inspect"),
    (rules("{id: r-1, action: {require-mfa: 0}}"), "rules[0].action.require-mfa: expected a number of minutes >= 1"),
    (rules("{id: r-1, action: require-mfa}"), "rules[0].action: expected one of"),
    (rules("{id: r-1}"), "rules[0].action: required"),
    (rules("{id: r-1, action: allow, enabled: 'no'}"), "rules[0].enabled: expected true or false"),
    (rules("{id: r-1, action: allow, action: deny}"), "rules[0]: duplicate key 'action'"),
    (HEAD + "apps: &a [{id: x, name: x, kind: internet, zone: internet}]\nrules: *a\n",
     "rules: YAML aliases (*name) are not allowed"),
    ("tenant: {id: city, name: [unclosed\n", "policy: not valid YAML"),
]


@pytest.mark.parametrize("text,message", ERRORS, ids=[m for _, m in ERRORS])
def test_errors_start_with_the_path(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy_yaml(text)
    assert str(caught.value).startswith(message), str(caught.value)


def test_size_limits() -> None:
    with pytest.raises(PolicyError, match=r"^policy: larger than"):
        load_policy_yaml(HEAD + "#" * MAX_TEXT_BYTES)
    with pytest.raises(PolicyError, match=r"^rules: more than 10000 entries"):
        load_policy_yaml(HEAD + "rules: [" + "{id: r, action: allow}," * 10_001 + "]\n")
    with pytest.raises(PolicyError, match=r"^apps(\[0\])+: nested deeper than 32 levels"):
        load_policy_yaml(HEAD + "apps: " + "[" * 500_000 + "]" * 500_000 + "\n")
    with pytest.raises(PolicyError, match=r"^policy: more than 1000000 YAML nodes"):
        load_policy_yaml(HEAD + "apps: [" + "1," * 1_000_001 + "]\n")


def test_billion_laughs_is_refused_before_expansion() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(PolicyError, match=re.escape("YAML aliases (*name) are not allowed")):
        load_policy_yaml("\n".join(lines) + "\n" + HEAD)


def test_municipality_file_naming_prefecture_apps() -> None:
    # read alone (the broker stores each tenant's document), prefecture names are left to compile
    assert load_policy_yaml(CITY_YAML) == CITY
    orphan = CITY_YAML.replace("parent: sample-pref, ", "")
    with pytest.raises(PolicyError, match=r"^rules\[8\].when.apps\[0\]: unknown app 'bank'"):
        load_policy_yaml(orphan)
    with pytest.raises(PolicyError, match=r"^tenant.parent: the baseline belongs to 'sample-city'"):
        load_policy_yaml(PREFECTURE_YAML.replace("sample-pref", "x", 0), load_policy_yaml(CITY_YAML))


@pytest.mark.parametrize("text,window,canonical", [
    ("mon-fri 08:30-17:15", TimeWindow((0, 1, 2, 3, 4), 510, 1035), None),
    ("daily 00:00-24:00", TimeWindow(tuple(range(7)), 0, 1440), None),
    ("sat,sun 22:00-06:00", TimeWindow((5, 6), 1320, 360), "sat-sun 22:00-06:00"),
    ("fri-mon 09:00-10:00", TimeWindow((4, 5, 6, 0), 540, 600), None),
    ("wed,mon 09:00-10:00", TimeWindow((2, 0), 540, 600), None),
    ("Mon,WED-thu 09:00-10:00", TimeWindow((0, 2, 3), 540, 600), "mon,wed-thu 09:00-10:00"),
    ("sun-sat 09:00-10:00", TimeWindow((6, 0, 1, 2, 3, 4, 5), 540, 600), None),
])
def test_time_windows(text: str, window: TimeWindow, canonical: str | None) -> None:
    assert parse_time_window(text) == window
    assert format_time_window(window) == (canonical or text)
    assert parse_time_window(format_time_window(window)) == window


@pytest.mark.parametrize("text", ["mon 09:00-09:00", "mon 24:00-01:00", "mon 09:00", "mon 9:00-10:00",
                                  "mon-fri  ", "mon 09:00-10:00-11:00", "mon 09:60-10:00"])
def test_bad_time_windows(text: str) -> None:
    with pytest.raises(PolicyError, match=r"^w: "):
        parse_time_window(text, "w")


def test_segments_and_action_dump_as_documented() -> None:
    text = dump_policy_yaml(load_policy_yaml(rules(
        "{id: r-1, when: {segments: [internet, lgwan]}, action: {require-mfa: 5}}")))
    assert "segments: [internet, lgwan]" in text and "require-mfa: 5" in text
    assert load_policy_yaml(text).rules[0].when.segments == (Zone.INTERNET, Zone.LGWAN)
