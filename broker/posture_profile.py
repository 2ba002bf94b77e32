"""The `[posture]` section of the broker configuration: what a device must be to connect.

```toml
[posture]
report_interval_seconds = 60        # how often agents send a report (the broker tells them)
quarantine_allow = ["update.microsoft.com:443", "*.windowsupdate.com:443"]

[[posture.profile]]
tenant = "demo-city"                # one profile per tenant (a tenant without one: not checked)
name = "standard"
min_os_version = { windows = "10.0.19045", macos = "14.0", linux = "12" }
allow_other_os = false              # an OS family not in min_os_version: refused unless true
require_disk_encryption = true
require_firewall = true
require_edr = ["Microsoft Defender", "CrowdStrike Falcon"]   # any one running; [] = not required
max_screen_lock_seconds = 600       # screen lock on and timeout <= this; absent = not checked
max_report_age_seconds = 180        # a report older than this is stale (default 3 x interval)
max_security_update_age_days = 45   # absent = not checked
require_domain_joined = false
```

Parsing is pure and names the bad field (`posture.profile[0].min_os_version.windows: ...`);
the evaluation of facts against a profile lives in broker/posture.py. This module reads no
file and no clock.

`quarantine_allow` patterns are `host`, `host:port`, `*.suffix` or `*.suffix:port`; `*.` matches
names strictly below the suffix (not the suffix itself), like `[[identity.step_up]]` hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address
from typing import Any, Final

from ztcore.errors import ConfigError
from ztcore.posture import MAX_TEXT, parse_version
from ztcore.tenants import TENANT_ID_RULE, is_tenant_id

OS_FAMILIES_CHECKED: Final = ("windows", "macos", "linux")
DEFAULT_REPORT_INTERVAL_SECONDS: Final = 60
MAX_REPORT_INTERVAL_SECONDS: Final = 86400
MAX_REPORT_AGE_SECONDS: Final = 7 * 86400
MAX_SCREEN_LOCK_SECONDS: Final = 86400
MAX_SECURITY_UPDATE_AGE_DAYS: Final = 3650
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_LABEL_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_SECTION_KEYS: Final = frozenset({"report_interval_seconds", "quarantine_allow", "profile"})
_PROFILE_KEYS: Final = frozenset({
    "tenant", "name", "min_os_version", "allow_other_os", "require_disk_encryption",
    "require_firewall", "require_edr", "max_screen_lock_seconds", "max_report_age_seconds",
    "max_security_update_age_days", "require_domain_joined"})


@dataclass(frozen=True, slots=True)
class PostureProfile:
    tenant: str
    name: str
    # (family, minimum version) for each accepted OS family, in windows/macos/linux order
    min_os_version: tuple[tuple[str, tuple[int, ...]], ...] = ()
    allow_other_os: bool = False
    require_disk_encryption: bool = True
    require_firewall: bool = True
    require_edr: tuple[str, ...] = ()
    max_screen_lock_seconds: int | None = None
    max_report_age_seconds: int = 3 * DEFAULT_REPORT_INTERVAL_SECONDS
    max_security_update_age_days: int | None = None
    require_domain_joined: bool = False

    def min_version_for(self, os_family: str) -> tuple[int, ...] | None:
        """The minimum version for `os_family`, or None when the family is not listed."""
        for family, version in self.min_os_version:
            if family == os_family:
                return version
        return None

    def allowed_families(self) -> tuple[str, ...]:
        return tuple(family for family, _ in self.min_os_version)


@dataclass(frozen=True, slots=True)
class HostPattern:
    host: str            # normalised: lower case, no trailing dot; "*.suffix" for a wildcard
    port: int | None     # None: any port

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host


@dataclass(frozen=True, slots=True)
class PostureConfig:
    report_interval_seconds: int = DEFAULT_REPORT_INTERVAL_SECONDS
    quarantine_allow: tuple[HostPattern, ...] = ()
    profiles: tuple[PostureProfile, ...] = ()

    def profile_for(self, tenant: str) -> PostureProfile | None:
        """The tenant's profile; None means posture is not checked for that tenant."""
        for profile in self.profiles:
            if profile.tenant == tenant:
                return profile
        return None

    def quarantine_allows(self, host: str, port: int) -> bool:
        """Whether a quarantined device may still reach `host:port` (e.g. to fetch updates)."""
        name = normalise_host(host)
        return name is not None and any(p.matches(name, port) for p in self.quarantine_allow)


def normalise_host(host: str) -> str | None:
    """Lower case, no trailing dot, IPv6 without brackets and compressed; None if empty."""
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.rstrip(".")
    if ":" in text:
        try:
            return ip_address(text).compressed
        except ValueError:
            return None
    return text or None


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def _int(section: Mapping[str, Any], key: str, path: str, *, default: int,
         low: int, high: int, unit: str) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{path}.{key}: expected a whole number of {unit} from {low} to {high}, "
                          f"got {value!r}")
    return value


def _optional_int(section: Mapping[str, Any], key: str, path: str, *, low: int, high: int,
                  unit: str) -> int | None:
    """Absent: None (not checked). Present, it is validated like any number (a null too)."""
    if key not in section:
        return None
    return _int(section, key, path, default=0, low=low, high=high, unit=unit)


def _bool(section: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{key}: expected true or false, got {value!r}")
    return value


def _unknown(section: Mapping[str, Any], known: frozenset[str], path: str) -> None:
    extra = sorted(str(key) for key in set(section) - known)
    if extra:
        raise ConfigError(f"{path}.{extra[0]}: unknown setting")


def _host_pattern(value: object, path: str) -> HostPattern:
    if not isinstance(value, str) or not value.strip() or len(value) > 260:
        raise ConfigError(f"{path}: expected host, host:port, *.suffix or *.suffix:port, "
                          f"got {value!r}")
    text = value.strip().lower()
    port: int | None = None
    if text.startswith("["):                          # [IPv6] or [IPv6]:port
        end = text.find("]")
        host_text, rest = text[1:end], text[end + 1:]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ConfigError(f"{path}: expected [IPv6 address] or [IPv6 address]:port, "
                              f"got {value!r}")
        port_text = rest[1:] if rest else None
        try:
            host = IPv6Address(host_text).compressed
        except ValueError:
            raise ConfigError(f"{path}: {host_text!r} is not an IPv6 address") from None
    else:
        if text.count(":") > 1:
            raise ConfigError(f"{path}: write an IPv6 address in brackets ([2001:db8::1]:443), "
                              f"got {value!r}")
        host, _, port_text_or_empty = text.partition(":")
        port_text = port_text_or_empty if ":" in text else None
        host = host.rstrip(".")
        labels = host[2:].split(".") if host.startswith("*.") else host.split(".")
        if "*" in host[2:] or ("*" in host and not host.startswith("*.")):
            raise ConfigError(f"{path}: a wildcard is only allowed as a leading '*.', got {value!r}")
        if not host or len(host) > 253 or not all(
                label and len(label) <= 63 and set(label) <= _LABEL_CHARS for label in labels):
            raise ConfigError(f"{path}: {host!r} is not a host name")
        if host.startswith("*.") and len(labels) < 2:
            raise ConfigError(f"{path}: {value!r} is too broad: a wildcard needs a suffix of at "
                              f"least two labels (*.example.com)")
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(f"{path}: port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return HostPattern(host, port)


def _min_os_version(raw: object, path: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a table like {{ windows = \"10.0.19045\" }}")
    for family in raw:
        if family not in OS_FAMILIES_CHECKED:
            raise ConfigError(f"{path}.{family}: unknown OS family (expected one of "
                              f"{', '.join(OS_FAMILIES_CHECKED)})")
    out = []
    for family in OS_FAMILIES_CHECKED:                 # a fixed order: stable texts and JSON
        if family not in raw:
            continue
        text = raw[family]
        version = parse_version(text) if isinstance(text, str) else None
        if version is None:
            raise ConfigError(f"{path}.{family}: expected a dotted version in quotes "
                              f"(\"10.0.19045\", \"14.0\", \"12\"), got {text!r}")
        out.append((family, version))
    return tuple(out)


def _edr(raw: object, path: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: expected a list of product names ([] = not required)")
    names: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_TEXT \
                or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in item):
            raise ConfigError(f"{path}[{i}]: expected a product name, got {item!r}")
        key = item.strip().casefold()
        if key in seen:
            raise ConfigError(f"{path}[{i}]: {item!r} is listed twice")
        seen.add(key)
        names.append(item.strip())
    return tuple(names)


def _profile(entry: Mapping[str, Any], path: str, interval: int) -> PostureProfile:
    _unknown(entry, _PROFILE_KEYS, path)
    tenant = entry.get("tenant")
    if not isinstance(tenant, str) or not is_tenant_id(tenant):
        raise ConfigError(f"{path}.tenant: expected a tenant id ({TENANT_ID_RULE}), got {tenant!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS or len(name) > 63:
        raise ConfigError(f"{path}.name: expected a short lower-case name (a-z, 0-9, - and _), "
                          f"got {name!r}")
    min_os = _min_os_version(entry.get("min_os_version", {}), f"{path}.min_os_version")
    allow_other = _bool(entry, "allow_other_os", path, False)
    if not min_os and not allow_other:
        raise ConfigError(f"{path}.min_os_version: list at least one OS family, or set "
                          f"allow_other_os = true (as written, every device would be refused)")
    age = _int(entry, "max_report_age_seconds", path, default=3 * interval, low=1,
               high=MAX_REPORT_AGE_SECONDS, unit="seconds")
    if age < 2 * interval:
        # An agent reports every `interval` seconds; with less than two intervals of slack one
        # late or lost report would mark a healthy device stale, and every device would flap.
        raise ConfigError(f"{path}.max_report_age_seconds: must be at least twice "
                          f"posture.report_interval_seconds ({2 * interval}), got {age}")
    return PostureProfile(
        tenant=tenant, name=name, min_os_version=min_os, allow_other_os=allow_other,
        require_disk_encryption=_bool(entry, "require_disk_encryption", path, True),
        require_firewall=_bool(entry, "require_firewall", path, True),
        require_edr=_edr(entry.get("require_edr", []), f"{path}.require_edr"),
        max_screen_lock_seconds=_optional_int(entry, "max_screen_lock_seconds", path, low=1,
                                              high=MAX_SCREEN_LOCK_SECONDS, unit="seconds"),
        max_report_age_seconds=age,
        max_security_update_age_days=_optional_int(entry, "max_security_update_age_days", path,
                                                   low=1, high=MAX_SECURITY_UPDATE_AGE_DAYS,
                                                   unit="days"),
        require_domain_joined=_bool(entry, "require_domain_joined", path, False))


def parse_posture_config(raw: Mapping[str, Any]) -> PostureConfig:
    """The `[posture]` table (absent or empty: no profile, so posture is checked for no one)."""
    if not isinstance(raw, Mapping):
        raise ConfigError("posture: expected a table")
    _unknown(raw, _SECTION_KEYS, "posture")
    interval = _int(raw, "report_interval_seconds", "posture",
                    default=DEFAULT_REPORT_INTERVAL_SECONDS, low=1,
                    high=MAX_REPORT_INTERVAL_SECONDS, unit="seconds")
    allow = raw.get("quarantine_allow", [])
    if not isinstance(allow, list):
        raise ConfigError("posture.quarantine_allow: expected a list of host[:port] patterns")
    patterns = tuple(_host_pattern(item, f"posture.quarantine_allow[{i}]")
                     for i, item in enumerate(allow))
    entries = raw.get("profile", [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError("posture.profile: expected an array of tables ([[posture.profile]])")
    profiles: list[PostureProfile] = []
    first_for: dict[str, int] = {}
    for i, entry in enumerate(entries):
        path = f"posture.profile[{i}]"
        profile = _profile(entry, path, interval)
        if profile.tenant in first_for:
            raise ConfigError(f"{path}.tenant: a second profile for tenant {profile.tenant!r} "
                              f"(one per tenant; the first is posture.profile"
                              f"[{first_for[profile.tenant]}])")
        first_for[profile.tenant] = i
        profiles.append(profile)
    return PostureConfig(report_interval_seconds=interval, quarantine_allow=patterns,
                         profiles=tuple(profiles))
