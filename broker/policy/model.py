"""The access-policy model: tenants and their security model, apps and their zones, specific
communications, devices' segments, rules, and what a decision looks like.

Pure values (frozen dataclasses) and `check_policy`, the one validation of a whole policy that
both the YAML loader and the compiler run, so that a policy built in code is held to the same
rules as one imported from a file. Parsing lives in `yaml_io.py`, evaluation in `guard.py`
and `engine.py`, analysis in `lint.py`. Vocabulary (MIC 地方公共団体における情報セキュリティポリシー
に関するガイドライン):

- zones / segments: `mynumber` (マイナンバー利用事務系), `lgwan` (LGWAN接続系), `internet`
  (インターネット接続系). An app lives in a zone; a device sits in a segment.
- security model of a municipality: `alpha` (α: work on the LGWAN side, internet by screen
  transfer), `beta` (β) and `beta_prime` (β': work on the internet side).
- specific communications (特定通信): fixed endpoints a mynumber-segment device may reach
  (eLTAX, the 中間サーバー, ...), by name, address and port.

Evaluation order (engine.py): the three-layer guard → the prefecture's baseline rules → the
municipality's rules → defaults (private apps: deny; internet: allow, through the SWG). First
match wins within a layer; a baseline deny cannot be overridden by the municipality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from ipaddress import ip_network
from typing import Final

from broker.policy.hosts import host_pattern_problem
from ztcore.errors import ZTError


class PolicyError(ZTError):
    """A policy is invalid; the message starts with the path of the bad field
    (`rules[3].when.groups: expected a list of strings`). The policy in force stays."""


class Zone(str, Enum):
    INTERNET = "internet"
    LGWAN = "lgwan"
    MYNUMBER = "mynumber"


class SecurityModel(str, Enum):
    ALPHA = "alpha"
    BETA = "beta"
    BETA_PRIME = "beta_prime"


class AppKind(str, Enum):
    INTERNET = "internet"     # internet destinations (host patterns and/or URL categories)
    SAAS = "saas"             # a named cloud service (host patterns)
    PRIVATE = "private"       # an internal application behind the broker


class PrivateKind(str, Enum):
    WEB = "web"
    TCP = "tcp"
    VDI = "vdi"               # screen transfer (画面転送): the only lgwan path in alpha


# How far a zone is from the internet: the guard judges a host by the strictest app naming it.
ZONE_STRICTNESS: Final = {Zone.INTERNET: 0, Zone.LGWAN: 1, Zone.MYNUMBER: 2}


class ActionKind(str, Enum):
    ALLOW = "allow"
    DENY = "deny"
    INSPECT = "inspect"               # allow, with TLS inspection by the SWG
    DO_NOT_INSPECT = "do-not-inspect" # allow, TLS passed through (banking, health, ...)
    REQUIRE_MFA = "require-mfa"       # allow only with an MFA no older than `mfa_within_minutes`


ALLOWING: Final = frozenset({ActionKind.ALLOW, ActionKind.INSPECT, ActionKind.DO_NOT_INSPECT,
                             ActionKind.REQUIRE_MFA})


class Obligation(str, Enum):
    """What the data path must do with an allowed flow."""
    INSPECT = "inspect"
    DO_NOT_INSPECT = "do-not-inspect"
    SANITISE = "sanitise"     # files from the internet towards lgwan: 無害化 before delivery


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    parent: str | None = None              # the prefecture operating this municipality
    model: SecurityModel = SecurityModel.BETA


@dataclass(frozen=True, slots=True)
class App:
    id: str
    name: str
    kind: AppKind
    zone: Zone
    hosts: tuple[str, ...] = ()            # "example.com" exact, "*.example.com" below it
    ports: tuple[int, ...] = ()            # () = any port
    categories: tuple[str, ...] = ()       # URL categories that make up an internet app
    private_kind: PrivateKind | None = None  # for kind private


@dataclass(frozen=True, slots=True)
class SpecificCommunication:
    id: str
    name: str                              # e.g. "eLTAX"
    host: str
    address: str                           # the fixed IP address or network (CIDR)
    port: int


@dataclass(frozen=True, slots=True)
class TimeWindow:
    days: tuple[int, ...]                  # 0 = Monday ... 6 = Sunday
    start_minute: int                      # minutes after local midnight, inclusive
    end_minute: int                        # exclusive; start > end wraps past midnight

    def contains(self, weekday: int, minute_of_day: int) -> bool:
        """A wrapping window belongs to the day it starts on: `fri 22:00-06:00` holds Friday
        night and Saturday before 06:00, not Friday before 06:00."""
        if self.start_minute < self.end_minute:
            return weekday in self.days and self.start_minute <= minute_of_day < self.end_minute
        if self.start_minute == self.end_minute:
            return False
        if minute_of_day >= self.start_minute:
            return weekday in self.days
        return minute_of_day < self.end_minute and (weekday - 1) % 7 in self.days


@dataclass(frozen=True, slots=True)
class Conditions:
    """All given conditions must hold (AND); within one list any value matches (OR).
    An empty tuple means "any"."""
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    posture_profiles: tuple[str, ...] = ()   # the device's compliant posture profile name
    segments: tuple[Zone, ...] = ()
    apps: tuple[str, ...] = ()               # app ids
    app_groups: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()         # URL categories of the destination
    time_windows: tuple[TimeWindow, ...] = ()
    source_networks: tuple[str, ...] = ()    # CIDRs of the device's address as the broker sees it


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    mfa_within_minutes: int | None = None    # for require-mfa


@dataclass(frozen=True, slots=True)
class Rule:
    id: str                                  # stable, shown in every decision ("r-012")
    description: str
    when: Conditions
    action: Action
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Policy:
    """One tenant's whole policy (what policy-as-code imports and exports)."""
    tenant: Tenant
    apps: tuple[App, ...] = ()
    app_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()     # (group id, app ids)
    specific_communications: tuple[SpecificCommunication, ...] = ()
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """Everything a decision may look at, gathered by the broker before asking."""
    tenant: str
    user: str | None                        # None: no login (require_login off)
    groups: frozenset[str]
    mfa: bool
    mfa_age_seconds: float | None           # since the last interactive MFA
    device_id: str
    segment: Zone
    posture_compliant: bool
    posture_profile: str | None
    host: str                               # lower-case, no trailing dot
    port: int
    address: str | None                     # the destination address, when known
    url_category: str | None
    source_address: str | None
    weekday: int                            # local time of the tenant, 0 = Monday
    minute_of_day: int


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    allowed: bool
    layer: str                               # "guard", "baseline", "municipality", "default"
    rule_id: str                             # "guard:internet-to-mynumber", "r-012", "default:private"
    reasons: tuple[str, ...]                 # Reason values, most important first
    detail: str = ""
    app: str | None = None                   # the app id the destination matched
    obligations: frozenset[Obligation] = field(default_factory=frozenset)
    mfa_within_minutes: int | None = None


MAX_PORT = 65535
MINUTES_PER_DAY = 1440


def check_policy(policy: Policy, baseline: Policy | None = None, *, prefix: str = "",
                 references: bool = True) -> None:
    """Raise `PolicyError` (message starting with the field's path) at the first problem.

    `baseline` is the prefecture's policy: its apps, app groups and specific communications
    are visible to this policy's rules, its ids may not be reused here, and it must be this
    tenant's parent. `references=False` skips checking that rules and app groups name known
    apps and groups (for a municipality's file read without its prefecture's baseline; the
    compiler always checks them)."""
    tenant = policy.tenant
    if not tenant.id:
        raise PolicyError(f"{prefix}tenant.id: expected a non-empty string")
    if baseline is not None and tenant.parent != baseline.tenant.id:
        raise PolicyError(f"{prefix}tenant.parent: the baseline belongs to {baseline.tenant.id!r}, "
                          f"not to this tenant's parent {tenant.parent!r}")
    inherited_apps = {a.id for a in baseline.apps} if baseline else set()
    inherited_groups = {g for g, _ in baseline.app_groups} if baseline else set()
    inherited_specific = {c.id for c in baseline.specific_communications} if baseline else set()
    inherited_rules = {r.id for r in baseline.rules} if baseline else set()

    apps = _check_ids(prefix + "apps", [a.id for a in policy.apps], inherited_apps)
    for i, app in enumerate(policy.apps):
        path = f"{prefix}apps[{i}]"
        if not app.name:
            raise PolicyError(f"{path}.name: expected a non-empty string")
        for j, host in enumerate(app.hosts):
            problem = host_pattern_problem(host)
            if problem:
                raise PolicyError(f"{path}.hosts[{j}]: {problem}")
        for j, port in enumerate(app.ports):
            _check_port(f"{path}.ports[{j}]", port)
        if (app.kind is AppKind.PRIVATE) != (app.private_kind is not None):
            raise PolicyError(f"{path}.private_kind: required for kind private and only for it")
    visible_apps = apps | inherited_apps

    groups = _check_ids(prefix + "app_groups", [g for g, _ in policy.app_groups], inherited_groups)
    for group_id, members in policy.app_groups:
        for j, member in enumerate(members):
            if references and member not in visible_apps:
                raise PolicyError(f"{prefix}app_groups.{group_id}[{j}]: unknown app {member!r}")
    visible_groups = groups | inherited_groups

    _check_ids(prefix + "specific_communications",
               [c.id for c in policy.specific_communications], inherited_specific)
    for i, comm in enumerate(policy.specific_communications):
        path = f"{prefix}specific_communications[{i}]"
        problem = host_pattern_problem(comm.host)
        if problem or comm.host.startswith("*."):
            raise PolicyError(f"{path}.host: {problem or 'expected one host, not a pattern'}")
        _check_network(f"{path}.address", comm.address)
        _check_port(f"{path}.port", comm.port)

    _check_ids(prefix + "rules", [r.id for r in policy.rules], inherited_rules)
    for i, rule in enumerate(policy.rules):
        path = f"{prefix}rules[{i}]"
        when = rule.when
        for j, app_id in enumerate(when.apps):
            if references and app_id not in visible_apps:
                raise PolicyError(f"{path}.when.apps[{j}]: unknown app {app_id!r}")
        for j, group_id in enumerate(when.app_groups):
            if references and group_id not in visible_groups:
                raise PolicyError(f"{path}.when.app_groups[{j}]: unknown app group {group_id!r}")
        for j, network in enumerate(when.source_networks):
            _check_network(f"{path}.when.source_networks[{j}]", network)
        for j, window in enumerate(when.time_windows):
            _check_window(f"{path}.when.time_windows[{j}]", window)
        action = rule.action
        if action.kind is ActionKind.REQUIRE_MFA:
            if action.mfa_within_minutes is None or action.mfa_within_minutes < 1:
                raise PolicyError(f"{path}.action.require-mfa: expected a number of minutes >= 1")
        elif action.mfa_within_minutes is not None:
            raise PolicyError(f"{path}.action: minutes are only for require-mfa")


def _check_ids(path: str, ids: list[str], inherited: set[str]) -> set[str]:
    seen: set[str] = set()
    for i, item in enumerate(ids):
        if not item:
            raise PolicyError(f"{path}[{i}].id: expected a non-empty string")
        if item in seen:
            raise PolicyError(f"{path}[{i}].id: duplicate id {item!r}")
        if item in inherited:
            raise PolicyError(f"{path}[{i}].id: {item!r} is already defined by the prefecture's baseline")
        seen.add(item)
    return seen


def _check_port(path: str, port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= MAX_PORT:
        raise PolicyError(f"{path}: expected a port number 1-{MAX_PORT}")


def _check_network(path: str, text: str) -> None:
    try:
        ip_network(text, strict=True)
    except ValueError as exc:
        raise PolicyError(f"{path}: expected an IP address or network (CIDR): {exc}") from None


def _check_window(path: str, window: TimeWindow) -> None:
    if not window.days or len(set(window.days)) != len(window.days) \
            or not all(0 <= d <= 6 for d in window.days):
        raise PolicyError(f"{path}: expected distinct days 0-6 (0 = Monday)")
    if not 0 <= window.start_minute < MINUTES_PER_DAY or not 0 < window.end_minute <= MINUTES_PER_DAY \
            or window.start_minute == window.end_minute:
        raise PolicyError(f"{path}: expected a start 00:00-23:59 and a different end 00:01-24:00")
