"""Policy as code: one tenant's policy as YAML, loaded into the frozen model and dumped back.

Owns the file format and its error messages; every error is a `PolicyError` whose message
starts with the path of the bad field (`rules[3].when.groups: expected a list of strings`).
The meaning of a policy (what is allowed) is `engine.py`'s; the value checks shared with
policies built in code (host syntax, ports, CIDRs, ids, references) are `model.check_policy`.
`load_policy_yaml(dump_policy_yaml(p)) == p` for every valid policy whose time windows list
their days without repeats.

Schema (unknown keys are errors; `?` marks an optional key, its default after `=`):

    tenant: {id, name, parent?: prefecture id = null, model?: alpha|beta|beta_prime = beta}
    apps:                                   # at most 50,000
      - {id, name, kind: internet|saas|private, zone: internet|lgwan|mynumber,
         hosts?: ["tax.city.lg.jp", "*.city.lg.jp", "192.0.2.10"], ports?: [443] = any,
         categories?: [news] (match by URL category when the app has no hosts),
         private_kind?: web|tcp|vdi (required for kind private, only for it)}
    app_groups?: {group-id: [app ids]}
    specific_communications?:
      - {id, name, host, address: "203.0.113.10" or a CIDR, port}
    rules:                                  # at most 10,000; first match wins
      - id: r-001
        description?: 税務課は税務システムを利用できる
        when?: {users, groups, posture_profiles, segments, apps, app_groups, categories,
                time_windows, source_networks}      # each a list; absent = any
        action: allow | deny | inspect | do-not-inspect | {require-mfa: minutes}
        enabled?: true

Host patterns are lower-case ASCII (`xn--` for Japanese names); `*.` only as the leftmost
label, meaning any host below the domain. A YAML plain scalar may not start with `*`: quote
patterns ("*.city.lg.jp").

Time windows are strings `<days> <HH:MM>-<HH:MM>` in the tenant's local time: days are
`daily` or a comma list of `mon`..`sun` and ranges (`mon-fri`, `sat,sun`, `fri-mon` wraps
through the week); the end is exclusive and may be `24:00`; an end before the start wraps past
midnight and belongs to the start day (`mon-fri 22:00-06:00` includes Saturday 05:00).
In a flow list (`[...]`) quote a window whose days hold a comma: `['sat,sun 09:00-12:00']`.

Safety: safe loading only (`CSafeLoader`, else `SafeLoader`: plain data, never Python objects);
text at most 2 MB; aliases (`*name`) are refused outright, so no billion-laughs expansion can
occur; duplicate mapping keys are refused; at most 1,000,000 nodes nested at most 32 deep.
These are checked on the parser's event stream (iterative) before anything is composed:
composing recurses once per nesting level.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

import yaml  # type: ignore[import-untyped]

from broker.policy.model import (
    MINUTES_PER_DAY,
    Action,
    ActionKind,
    App,
    AppKind,
    Conditions,
    Policy,
    PolicyError,
    PrivateKind,
    Rule,
    SecurityModel,
    SpecificCommunication,
    Tenant,
    TimeWindow,
    Zone,
    check_policy,
)

MAX_TEXT_BYTES = 2 * 1024 * 1024
MAX_RULES = 10_000
MAX_APPS = 50_000
MAX_NODES = 1_000_000
MAX_DEPTH = 32
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"([0-9]{2}):([0-9]{2})\Z")
_SIMPLE_ACTIONS = {k.value: k for k in ActionKind if k is not ActionKind.REQUIRE_MFA}
_REQUIRE_MFA = ActionKind.REQUIRE_MFA.value
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

__all__ = ["PolicyError", "dump_policy_yaml", "format_time_window", "load_policy_yaml",
           "parse_time_window", "MAX_TEXT_BYTES", "MAX_RULES", "MAX_APPS", "MAX_NODES", "MAX_DEPTH"]

E = TypeVar("E", bound=Enum)
T = TypeVar("T")


def load_policy_yaml(text: str, baseline: Policy | None = None) -> Policy:
    """Parse and validate; `baseline` (the prefecture's policy) makes its apps and app groups
    known to this policy's rules and checks `tenant.parent`. Without a baseline, a tenant with
    a parent may name apps and app groups this file does not define (they may be the
    prefecture's): `compile_policy` checks them against the baseline; a tenant without a
    parent must define everything it names."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise PolicyError(f"policy: larger than {MAX_TEXT_BYTES} bytes")
    data = _parse(text)
    top = _mapping(data, "policy", {"tenant", "apps", "app_groups", "specific_communications", "rules"},
                   {"tenant"})
    apps = _list(top.get("apps", []), "apps", MAX_APPS)
    rules = _list(top.get("rules", []), "rules", MAX_RULES)
    groups = _mapping(top.get("app_groups", {}), "app_groups", None, set())
    policy = Policy(
        tenant=_tenant(top["tenant"]),
        apps=tuple(_app(item, f"apps[{i}]") for i, item in enumerate(apps)),
        app_groups=tuple((_group_id(k), _strings(v, f"app_groups.{k}")) for k, v in groups.items()),
        specific_communications=tuple(
            _specific(item, f"specific_communications[{i}]")
            for i, item in enumerate(_list(top.get("specific_communications", []),
                                           "specific_communications", MAX_APPS))),
        rules=tuple(_rule(item, f"rules[{i}]") for i, item in enumerate(rules)))
    check_policy(policy, baseline, references=baseline is not None or policy.tenant.parent is None)
    return policy


def _parse(text: str) -> object:
    _scan(text)
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy: not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


class _Frame:
    __slots__ = ("path", "mapping", "index", "key", "keys")

    def __init__(self, path: str, mapping: bool) -> None:
        self.path = path
        self.mapping = mapping
        self.index = 0
        self.key: str | None = None      # mapping: the key whose value comes next, None for a key
        self.keys: set[str] = set()

    def child(self) -> tuple[str, bool]:
        """The path of the next node and whether that node is a mapping key."""
        if not self.mapping:
            self.index += 1
            return f"{self.path}[{self.index - 1}]", False
        if self.key is None:
            return self.path, True
        path, self.key = _join(self.path, self.key), None
        return path, False


def _scan(text: str) -> None:
    """Walk the event stream once before building anything: libyaml's parser is iterative, so
    this is safe on any input, whereas composing recurses once per nesting level (in C, where
    a deep document would overflow the stack). Refuses aliases, duplicate keys, depth, size."""
    stack: list[_Frame] = []
    nodes = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                stack.pop()
                continue
            if not isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.SequenceStartEvent,
                                      yaml.MappingStartEvent)):
                continue
            nodes += 1
            if nodes > MAX_NODES:
                raise PolicyError(f"policy: more than {MAX_NODES} YAML nodes")
            path, is_key = stack[-1].child() if stack else ("policy", False)
            if isinstance(event, yaml.AliasEvent):
                raise PolicyError(f"{path}: YAML aliases (*name) are not allowed in a policy")
            if is_key:
                name = event.value if isinstance(event, yaml.ScalarEvent) else "?"
                if name in stack[-1].keys:
                    raise PolicyError(f"{path}: duplicate key {name!r}")
                stack[-1].keys.add(name)
                stack[-1].key = name
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise PolicyError(f"{path}: nested deeper than {MAX_DEPTH} levels")
                stack.append(_Frame(path, isinstance(event, yaml.MappingStartEvent)))
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy: not valid YAML: {' '.join(str(exc).split())}") from None


def _join(path: str, key: str) -> str:
    return key if path == "policy" else f"{path}.{key}"


# -- shapes -------------------------------------------------------------------------------

def _mapping(value: object, path: str, allowed: set[str] | None, required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{path}: expected a mapping")
    for key in value:
        if not isinstance(key, str):
            raise PolicyError(f"{path}: keys must be strings, got {key!r}")
        if allowed is not None and key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise PolicyError(f"{_join(path, key)}: unknown key (expected one of {expected})")
    for key in sorted(required):
        if key not in value:
            raise PolicyError(f"{_join(path, key)}: required")
    return value


def _list(value: object, path: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise PolicyError(f"{path}: expected a list")
    if len(value) > limit:
        raise PolicyError(f"{path}: more than {limit} entries")
    return value


def _str(value: object, path: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty):
        raise PolicyError(f"{path}: expected a {'' if empty else 'non-empty '}string")
    return value


def _strings(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{path}: expected a list of strings")
    return tuple(value)


def _each(value: object, path: str, convert: Callable[[str, str], T]) -> tuple[T, ...]:
    return tuple(convert(v, f"{path}[{i}]") for i, v in enumerate(_strings(value, path)))


def _enum(value: object, path: str, enum: type[E]) -> E:
    for member in enum:
        if value == member.value:
            return member
    raise PolicyError(f"{path}: expected one of {', '.join(str(m.value) for m in enum)}")


def _int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{path}: expected an integer")
    return value


def _group_id(key: str) -> str:
    if not key:
        raise PolicyError("app_groups: expected non-empty group ids")
    return key


# -- sections -----------------------------------------------------------------------------

def _tenant(value: object) -> Tenant:
    m = _mapping(value, "tenant", {"id", "name", "parent", "model"}, {"id", "name"})
    parent = m.get("parent")
    return Tenant(id=_str(m["id"], "tenant.id"), name=_str(m["name"], "tenant.name"),
                  parent=None if parent is None else _str(parent, "tenant.parent"),
                  model=_enum(m.get("model", "beta"), "tenant.model", SecurityModel))


def _app(value: object, path: str) -> App:
    m = _mapping(value, path, {"id", "name", "kind", "zone", "hosts", "ports", "categories", "private_kind"},
                 {"id", "name", "kind", "zone"})
    ports = _list(m.get("ports", []), f"{path}.ports", 65535)
    private_kind = m.get("private_kind")
    return App(id=_str(m["id"], f"{path}.id"), name=_str(m["name"], f"{path}.name"),
               kind=_enum(m["kind"], f"{path}.kind", AppKind),
               zone=_enum(m["zone"], f"{path}.zone", Zone),
               hosts=_strings(m.get("hosts", []), f"{path}.hosts"),
               ports=tuple(_int(p, f"{path}.ports[{i}]") for i, p in enumerate(ports)),
               categories=_strings(m.get("categories", []), f"{path}.categories"),
               private_kind=None if private_kind is None
               else _enum(private_kind, f"{path}.private_kind", PrivateKind))


def _specific(value: object, path: str) -> SpecificCommunication:
    m = _mapping(value, path, {"id", "name", "host", "address", "port"},
                 {"id", "name", "host", "address", "port"})
    return SpecificCommunication(id=_str(m["id"], f"{path}.id"), name=_str(m["name"], f"{path}.name"),
                                 host=_str(m["host"], f"{path}.host"),
                                 address=_str(m["address"], f"{path}.address"),
                                 port=_int(m["port"], f"{path}.port"))


_CONDITIONS = {"users", "groups", "posture_profiles", "segments", "apps", "app_groups", "categories",
               "time_windows", "source_networks"}


def _rule(value: object, path: str) -> Rule:
    m = _mapping(value, path, {"id", "description", "when", "action", "enabled"}, {"id", "action"})
    w = _mapping(m.get("when", {}), f"{path}.when", _CONDITIONS, set())

    def strings(key: str) -> tuple[str, ...]:
        return _strings(w.get(key, []), f"{path}.when.{key}")

    enabled = m.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PolicyError(f"{path}.enabled: expected true or false")
    when = Conditions(
        users=strings("users"), groups=strings("groups"), posture_profiles=strings("posture_profiles"),
        segments=_each(w.get("segments", []), f"{path}.when.segments", lambda v, p: _enum(v, p, Zone)),
        apps=strings("apps"), app_groups=strings("app_groups"), categories=strings("categories"),
        time_windows=_each(w.get("time_windows", []), f"{path}.when.time_windows", parse_time_window),
        source_networks=strings("source_networks"))
    return Rule(id=_str(m["id"], f"{path}.id"),
                description=_str(m.get("description", ""), f"{path}.description", empty=True),
                when=when, action=_action(m["action"], f"{path}.action"), enabled=enabled)


def _action(value: object, path: str) -> Action:
    if isinstance(value, str) and value in _SIMPLE_ACTIONS:
        return Action(_SIMPLE_ACTIONS[value])
    if isinstance(value, dict) and list(value) == [_REQUIRE_MFA]:
        minutes = value[_REQUIRE_MFA]
        if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 1:
            raise PolicyError(f"{path}.{_REQUIRE_MFA}: expected a number of minutes >= 1")
        return Action(ActionKind.REQUIRE_MFA, minutes)
    raise PolicyError(f"{path}: expected one of {', '.join(_SIMPLE_ACTIONS)} or {{{_REQUIRE_MFA}: minutes}}")


def parse_time_window(text: str, path: str = "time_window") -> TimeWindow:
    """`mon-fri 08:30-17:15`, `sat,sun 00:00-24:00`, `daily 22:00-06:00` (see the module doc)."""
    parts = text.split()
    if len(parts) != 2 or parts[1].count("-") != 1:
        raise PolicyError(f"{path}: expected '<days> HH:MM-HH:MM', e.g. 'mon-fri 08:30-17:15'")
    days: list[int] = []
    for item in (DAYS if parts[0].lower() == "daily" else parts[0].lower().split(",")):
        first, _, last = item.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise PolicyError(f"{path}: unknown day {item!r} "
                              "(expected daily or mon..sun, ranges like mon-fri)")
        day = DAYS.index(first)
        days.append(day)
        while last and day != DAYS.index(last):
            day = (day + 1) % 7
            days.append(day)
    if len(set(days)) != len(days):
        raise PolicyError(f"{path}: a day is listed twice")
    start_text, end_text = parts[1].split("-")
    start, end = _minute(start_text, path), _minute(end_text, path)
    if start == MINUTES_PER_DAY or start == end:
        raise PolicyError(f"{path}: expected a start before 24:00 and an end different from it")
    return TimeWindow(tuple(days), start, end)


def _minute(text: str, path: str) -> int:
    match = _TIME.match(text)
    if match is None:
        raise PolicyError(f"{path}: expected a time HH:MM, got {text!r}")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise PolicyError(f"{path}: no such time {text!r}")
    return hours * 60 + minutes


def format_time_window(window: TimeWindow) -> str:
    days = window.days
    if days == tuple(range(7)):
        day_text = "daily"
    else:
        runs: list[list[int]] = []
        for day in days:
            if runs and day == (runs[-1][-1] + 1) % 7 and day != runs[-1][0]:
                runs[-1].append(day)
            else:
                runs.append([day])
        day_text = ",".join(DAYS[r[0]] if len(r) == 1 else f"{DAYS[r[0]]}-{DAYS[r[-1]]}" for r in runs)
    return f"{day_text} {_hhmm(window.start_minute)}-{_hhmm(window.end_minute)}"


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


# -- dumping ------------------------------------------------------------------------------

def dump_policy_yaml(policy: Policy) -> str:
    """The policy in the schema above, optional keys left out when they hold their default."""
    tenant: dict[str, object] = {"id": policy.tenant.id, "name": policy.tenant.name}
    if policy.tenant.parent is not None:
        tenant["parent"] = policy.tenant.parent
    tenant["model"] = policy.tenant.model.value
    doc: dict[str, object] = {"tenant": tenant, "apps": [_app_doc(a) for a in policy.apps]}
    if policy.app_groups:
        doc["app_groups"] = {g: list(members) for g, members in policy.app_groups}
    if policy.specific_communications:
        doc["specific_communications"] = [
            {"id": c.id, "name": c.name, "host": c.host, "address": c.address, "port": c.port}
            for c in policy.specific_communications]
    doc["rules"] = [_rule_doc(r) for r in policy.rules]
    text: str = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120,
                                default_flow_style=None)
    return text


def _app_doc(app: App) -> dict[str, object]:
    out: dict[str, object] = {"id": app.id, "name": app.name, "kind": app.kind.value, "zone": app.zone.value}
    for key, values in (("hosts", app.hosts), ("ports", app.ports), ("categories", app.categories)):
        if values:
            out[key] = list(values)
    if app.private_kind is not None:
        out["private_kind"] = app.private_kind.value
    return out


def _rule_doc(rule: Rule) -> dict[str, object]:
    out: dict[str, object] = {"id": rule.id, "description": rule.description}
    w = rule.when
    when: dict[str, list[str]] = {}
    for key in ("users", "groups", "posture_profiles", "apps", "app_groups", "categories",
                "source_networks"):
        values: tuple[str, ...] = getattr(w, key)
        if values:
            when[key] = list(values)
    if w.segments:
        when["segments"] = [z.value for z in w.segments]
    if w.time_windows:
        when["time_windows"] = [format_time_window(t) for t in w.time_windows]
    if when:
        out["when"] = when
    action = rule.action
    out["action"] = ({_REQUIRE_MFA: action.mfa_within_minutes} if action.kind is ActionKind.REQUIRE_MFA
                     else action.kind.value)
    if not rule.enabled:
        out["enabled"] = False
    return out
