"""The access-policy model: tenants and their security model, apps and their zones, specific
communications, devices' segments, rules, and what a decision looks like.

Pure values only (frozen dataclasses); parsing lives in `yaml_io.py`, evaluation in `guard.py`
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
from typing import Final


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
