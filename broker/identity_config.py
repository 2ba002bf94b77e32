"""The `[identity]` section of the broker configuration: who may log in, how, and for how long.

```toml
[identity]
require_login = true            # every stream needs a session token (login-required otherwise)
require_mfa = true              # MIC β / β': a login without a second factor is refused
token_lifetime_seconds = 900    # one session token; the agent refreshes it before then
max_session_seconds = 43200     # from the interactive login, across refreshes: a working day
issuer = "urn:sekimori:sessions" # the same on every broker sharing a store: tokens work at all

[[identity.directory]]          # Active Directory or another LDAP directory, per tenant
tenant = "demo-city"
name = "ad"
servers = ["ldaps://dc1.city.example.lg.jp"]
base_dn = "DC=city,DC=example,DC=lg,DC=jp"
bind_dn = "svc-sekimori@city.example.lg.jp"
bind_password = "..."
ca_file = "/etc/sekimori/ad-ca.crt"

[[identity.oidc]]               # OpenID Connect providers (Entra ID, Keycloak, ...), per tenant
tenant = "demo-city"
name = "entra"
issuer = "https://login.microsoftonline.com/<tenant-id>/v2.0"
client_id = "..."
redirect_uri = "http://127.0.0.1:53682/callback"

[[identity.step_up]]            # apps that need a recent multi-factor authentication
hosts = ["tax.city.example.lg.jp", "*.mynumber.example.lg.jp"]
max_mfa_age_seconds = 900
```

Parsing is pure and names the bad field (`identity.directory[0].servers: ...`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from idp_bridge.directory import DirectoryConfig, parse_directory_config
from idp_bridge.oidc_config import OidcProviderConfig, parse_oidc_config
from ztcore.errors import ConfigError
from ztcore.tenants import TENANT_ID_RULE, is_tenant_id

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class StepUpRule:
    """Hosts (`name` exactly, or `*.suffix` for names under it) that need a recent MFA."""

    hosts: tuple[str, ...]
    max_mfa_age_seconds: int

    def matches(self, host: str) -> bool:
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    return True
            elif host == pattern:
                return True
        return False


@dataclass(frozen=True, slots=True)
class DirectorySource:
    tenant: str
    name: str
    config: DirectoryConfig


@dataclass(frozen=True, slots=True)
class OidcSource:
    tenant: str
    name: str
    config: OidcProviderConfig


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    require_login: bool = True
    require_mfa: bool = True
    token_lifetime_seconds: int = 900
    max_session_seconds: int = 12 * 3600
    issuer: str = "urn:sekimori:sessions"
    directories: tuple[DirectorySource, ...] = ()
    oidc: tuple[OidcSource, ...] = ()
    step_up: tuple[StepUpRule, ...] = ()

    def directories_for(self, tenant: str) -> tuple[DirectorySource, ...]:
        return tuple(d for d in self.directories if d.tenant == tenant)

    def oidc_for(self, tenant: str) -> tuple[OidcSource, ...]:
        return tuple(o for o in self.oidc if o.tenant == tenant)

    def max_mfa_age_for(self, host: str) -> int | None:
        """The strictest step-up limit that applies to `host` (lower-case, no dot at the end)."""
        limits = [rule.max_mfa_age_seconds for rule in self.step_up if rule.matches(host)]
        return min(limits) if limits else None


def _bool(section: Mapping[str, Any], key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"identity.{key}: expected true or false, got {value!r}")
    return value


def _seconds(section: Mapping[str, Any], key: str, path: str, default: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}.{key}: expected a whole number of seconds >= 1, got {value!r}")
    return value


def _entries(section: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = section.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"identity.{key}: expected an array of tables ([[identity.{key}]])")
    return value


def _source_head(entry: Mapping[str, Any], path: str,
                 keep_name: bool) -> tuple[str, str, dict[str, Any]]:
    rest = dict(entry)
    tenant = rest.pop("tenant", None)
    if not isinstance(tenant, str) or not is_tenant_id(tenant):
        raise ConfigError(f"{path}.tenant: expected a tenant id ({TENANT_ID_RULE}), got {tenant!r}")
    name = rest.get("name") if keep_name else rest.pop("name", None)
    if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS or len(name) > 63:
        raise ConfigError(f"{path}.name: expected a short lower-case name (a-z, 0-9, - and _), "
                          f"got {name!r}")
    return tenant, name, rest


def _unique(names: Sequence[tuple[str, str]], what: str) -> None:
    seen: set[tuple[str, str]] = set()
    for tenant, name in names:
        if (tenant, name) in seen:
            raise ConfigError(f"identity: two login methods named {name!r} for tenant {tenant!r} "
                              f"({what})")
        seen.add((tenant, name))


def _host_pattern(value: object, path: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 253 or " " in value:
        raise ConfigError(f"{path}: expected a host name or *.suffix, got {value!r}")
    text = value.lower().rstrip(".")
    if "*" in text and (not text.startswith("*.") or "*" in text[2:] or len(text) < 4):
        raise ConfigError(f"{path}: a wildcard is only allowed as a leading '*.', got {value!r}")
    return text


def parse_identity_config(raw: Mapping[str, Any]) -> IdentityConfig:
    """The `[identity]` table (absent: defaults, with no login method configured)."""
    if not isinstance(raw, Mapping):
        raise ConfigError("identity: expected a table")
    known = {"require_login", "require_mfa", "token_lifetime_seconds", "max_session_seconds",
             "issuer", "directory", "oidc", "step_up"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"identity.{unknown[0]}: unknown setting")
    lifetime = _seconds(raw, "token_lifetime_seconds", "identity", 900)
    session = _seconds(raw, "max_session_seconds", "identity", 12 * 3600)
    if lifetime > session:
        raise ConfigError("identity.token_lifetime_seconds: must be at most "
                          "identity.max_session_seconds")
    issuer = raw.get("issuer", "urn:sekimori:sessions")
    if not isinstance(issuer, str) or not issuer.strip() or len(issuer) > 200:
        raise ConfigError(f"identity.issuer: expected a name (a URN or URL), got {issuer!r}")
    directories = []
    for i, entry in enumerate(_entries(raw, "directory")):
        path = f"identity.directory[{i}]"
        tenant, name, rest = _source_head(entry, path, keep_name=False)
        directories.append(DirectorySource(tenant, name, parse_directory_config(rest, path)))
    providers = []
    for i, entry in enumerate(_entries(raw, "oidc")):
        path = f"identity.oidc[{i}]"
        tenant, name, rest = _source_head(entry, path, keep_name=True)
        providers.append(OidcSource(tenant, name, parse_oidc_config(rest, path)))
    _unique([(d.tenant, d.name) for d in directories] + [(o.tenant, o.name) for o in providers],
            "directory and oidc names share one namespace per tenant")
    rules = []
    for i, entry in enumerate(_entries(raw, "step_up")):
        path = f"identity.step_up[{i}]"
        hosts = entry.get("hosts")
        if not isinstance(hosts, list) or not hosts:
            raise ConfigError(f"{path}.hosts: expected a non-empty list of host names")
        extra = sorted(set(entry) - {"hosts", "max_mfa_age_seconds"})
        if extra:
            raise ConfigError(f"{path}.{extra[0]}: unknown setting")
        rules.append(StepUpRule(
            tuple(_host_pattern(h, f"{path}.hosts[{j}]") for j, h in enumerate(hosts)),
            _seconds(entry, "max_mfa_age_seconds", path, 900)))
    return IdentityConfig(
        require_login=_bool(raw, "require_login", True),
        require_mfa=_bool(raw, "require_mfa", True),
        token_lifetime_seconds=lifetime, max_session_seconds=session, issuer=issuer,
        directories=tuple(directories), oidc=tuple(providers), step_up=tuple(rules))
