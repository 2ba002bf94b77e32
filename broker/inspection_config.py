"""`[inspection]` in sekimori.toml: whether the broker decrypts where policy says inspect, what
it never decrypts, and how the content pipeline behaves. Pure: parsed from the TOML mapping;
a bad field raises ConfigError with its path and the old configuration stays.

```toml
[inspection]
enabled = true                    # off by default: staff need the inspection CA first
upstream_ca_file = ""             # extra trust anchors for upstream validation
plain_http_ports = [80]           # CONNECT streams to these ports carry plain HTTP
do_not_decrypt = ["*.example-bank.co.jp"]   # added to the built-in list below
do_not_decrypt_categories = ["bank", "financial", "health", "medical"]   # the default
builtin_do_not_decrypt = true
whole_scan_bytes = 4194304
max_buffer_bytes = 67108864
sanitise_downloads = false        # the guard's SANITISE obligation sanitises regardless
block_file_kinds = ["pe"]         # swg.filetypes kinds
clamd = "unix:/run/clamav/clamd.ctl"        # or tcp:127.0.0.1:3310; empty: built-in signatures only
http_signatures = "/srv/et-open/rules"        # Suricata rules (HTTP subset); none ship with Sekimori
signature_mode = "alert-only"                 # alert-only (IDS), block-drop, block-all (IPS)
leaf_validity_hours = 24
[inspection.dlp]                  # block when at least N found; 0 reports without blocking
enabled = true                    # false: no DLP (the malware scan and the rest stay)
mynumber = 1
corporate_number = 0
credit_card = 1
[inspection.tenant_restrictions]  # Microsoft 365 tenant restrictions (v1) on inspected sign-ins
allowed_tenants = ["city.example.lg.jp"]
context_tenant_id = "00000000-0000-0000-0000-000000000000"
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ztcore.breakout import host_pattern_error
from ztcore.errors import ConfigError

# Never decrypted, whatever the policy says: Intune and device-health endpoints (device
# compliance must reach Microsoft unaltered), Apple/Google push and update services that pin
# their certificates, and Windows Update / certificate revocation.
BUILTIN_DO_NOT_DECRYPT: tuple[str, ...] = (
    "*.manage.microsoft.com", "manage.microsoft.com", "enterpriseregistration.windows.net",
    "*.dm.microsoft.com", "enrollment.manage.microsoft.com", "*.microsoftaik.azure.net",
    "*.update.microsoft.com", "*.windowsupdate.com", "*.delivery.mp.microsoft.com",
    "ctldl.windowsupdate.com", "*.ocsp.digicert.com", "ocsp.digicert.com",
    "*.push.apple.com", "*.apple-cloudkit.com", "mtalk.google.com", "android.googleapis.com",
)
# URL categories (UT1 names) that are passed through: banking and health, where staff's own
# affairs are none of the gateway's business and the sites often pin certificates.
DO_NOT_DECRYPT_CATEGORIES: tuple[str, ...] = ("bank", "financial", "health", "medical")
KINDS = re.compile(r"^[a-z0-9]{1,16}$")
CLAMD = re.compile(r"^(unix:/\S+|tcp:[A-Za-z0-9.\-\[\]:]+:\d{1,5})$")


@dataclass(frozen=True, slots=True)
class DlpThresholds:
    mynumber: int = 1
    corporate_number: int = 0
    credit_card: int = 1
    enabled: bool = True      # false: no DLP at all (malware scanning and the rest stay)


@dataclass(frozen=True, slots=True)
class TenantRestrictionConfig:
    allowed_tenants: tuple[str, ...]
    context_tenant_id: str


@dataclass(frozen=True, slots=True)
class InspectionConfig:
    enabled: bool = False
    upstream_ca_file: str = ""
    plain_http_ports: frozenset[int] = frozenset({80})
    do_not_decrypt: tuple[str, ...] = ()
    builtin_do_not_decrypt: bool = True
    whole_scan_bytes: int = 4 * 1024 * 1024
    max_buffer_bytes: int = 64 * 1024 * 1024
    sanitise_downloads: bool = False
    block_file_kinds: frozenset[str] = frozenset()
    clamd: str = ""
    leaf_validity_hours: int = 24
    dlp: DlpThresholds = field(default_factory=DlpThresholds)
    tenant_restrictions: TenantRestrictionConfig | None = None
    do_not_decrypt_categories: tuple[str, ...] = DO_NOT_DECRYPT_CATEGORIES
    http_signatures: str = ""             # Suricata rules: a file, directory or archive
    signature_mode: str = "alert-only"    # alert-only (IDS) | block-drop | block-all (IPS)

    def bypass_patterns(self) -> tuple[str, ...]:
        return (BUILTIN_DO_NOT_DECRYPT if self.builtin_do_not_decrypt else ()) + self.do_not_decrypt


_KEYS = {"enabled", "upstream_ca_file", "plain_http_ports", "do_not_decrypt", "builtin_do_not_decrypt",
         "whole_scan_bytes", "max_buffer_bytes", "sanitise_downloads", "block_file_kinds", "clamd",
         "leaf_validity_hours", "dlp", "tenant_restrictions", "http_signatures", "signature_mode",
         "do_not_decrypt_categories"}
SIGNATURE_MODES = ("alert-only", "block-drop", "block-all")


def _bool(table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"inspection.{key}: expected true or false, got {value!r}")
    return value


def _int(table: Mapping[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}: expected a whole number from {low} to {high}, got {value!r}")
    return value


def _list(table: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{where}.{key}: expected a list, got {value!r}")
    return value


def parse_inspection(table: Mapping[str, Any]) -> InspectionConfig:
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"inspection.{sorted(unknown)[0]}: unknown key")
    ca_file = table.get("upstream_ca_file", "")
    if not isinstance(ca_file, str):
        raise ConfigError(f"inspection.upstream_ca_file: expected a file path, got {ca_file!r}")
    ports = _list(table, "plain_http_ports", "inspection") if "plain_http_ports" in table else [80]
    for i, port in enumerate(ports):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"inspection.plain_http_ports[{i}]: expected a port, got {port!r}")
    patterns = [p.lower() if isinstance(p, str) else p for p in _list(table, "do_not_decrypt", "inspection")]
    for i, pattern in enumerate(patterns):
        problem = host_pattern_error(pattern) if isinstance(pattern, str) else "expected a host pattern"
        if problem:
            raise ConfigError(f"inspection.do_not_decrypt[{i}]: {problem}")
    kinds = _list(table, "block_file_kinds", "inspection")
    for i, kind in enumerate(kinds):
        if not isinstance(kind, str) or not KINDS.match(kind):
            raise ConfigError(f"inspection.block_file_kinds[{i}]: expected a file kind such as 'pe', "
                              f"got {kind!r}")
    clamd = table.get("clamd", "")
    if not isinstance(clamd, str) or (clamd and not CLAMD.match(clamd)):
        raise ConfigError(f"inspection.clamd: expected unix:/path or tcp:host:port, got {clamd!r}")
    categories = _list(table, "do_not_decrypt_categories", "inspection") \
        if "do_not_decrypt_categories" in table else list(DO_NOT_DECRYPT_CATEGORIES)
    for i, name in enumerate(categories):
        if not isinstance(name, str) or not KINDS.match(name.replace("-", "").replace("_", "")):
            raise ConfigError(f"inspection.do_not_decrypt_categories[{i}]: {name!r} is not a category name")
    signatures = table.get("http_signatures", "")
    if not isinstance(signatures, str):
        raise ConfigError(f"inspection.http_signatures: expected a path, got {signatures!r}")
    mode = table.get("signature_mode", "alert-only")
    if mode not in SIGNATURE_MODES:
        raise ConfigError(f"inspection.signature_mode: expected one of {', '.join(SIGNATURE_MODES)}, "
                          f"got {mode!r}")
    whole = _int(table, "whole_scan_bytes", 4 * 1024 * 1024, 65536, 1 << 30, "inspection")
    largest = _int(table, "max_buffer_bytes", 64 * 1024 * 1024, 65536, 1 << 31, "inspection")
    if largest < whole:
        raise ConfigError("inspection.max_buffer_bytes: must be at least whole_scan_bytes")
    return InspectionConfig(
        enabled=_bool(table, "enabled", False), upstream_ca_file=ca_file,
        plain_http_ports=frozenset(ports), do_not_decrypt=tuple(patterns),
        builtin_do_not_decrypt=_bool(table, "builtin_do_not_decrypt", True),
        whole_scan_bytes=whole, max_buffer_bytes=largest,
        sanitise_downloads=_bool(table, "sanitise_downloads", False),
        block_file_kinds=frozenset(kinds), clamd=clamd,
        leaf_validity_hours=_int(table, "leaf_validity_hours", 24, 1, 24 * 30, "inspection"),
        dlp=_dlp(table.get("dlp", {})), tenant_restrictions=_restrictions(table.get("tenant_restrictions")),
        http_signatures=signatures, signature_mode=mode, do_not_decrypt_categories=tuple(categories))


def _dlp(table: object) -> DlpThresholds:
    if not isinstance(table, Mapping):
        raise ConfigError(f"inspection.dlp: expected a table, got {table!r}")
    unknown = set(table) - {"mynumber", "corporate_number", "credit_card", "enabled"}
    if unknown:
        raise ConfigError(f"inspection.dlp.{sorted(unknown)[0]}: unknown detector")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"inspection.dlp.enabled: expected true or false, got {enabled!r}")
    return DlpThresholds(mynumber=_int(table, "mynumber", 1, 0, 1_000_000, "inspection.dlp"),
                         corporate_number=_int(table, "corporate_number", 0, 0, 1_000_000, "inspection.dlp"),
                         credit_card=_int(table, "credit_card", 1, 0, 1_000_000, "inspection.dlp"),
                         enabled=enabled)


def _restrictions(table: object) -> TenantRestrictionConfig | None:
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigError(f"inspection.tenant_restrictions: expected a table, got {table!r}")
    tenants = _list(table, "allowed_tenants", "inspection.tenant_restrictions")
    context = table.get("context_tenant_id", "")
    if not tenants or not all(isinstance(t, str) and t for t in tenants):
        raise ConfigError("inspection.tenant_restrictions.allowed_tenants: expected tenant domains")
    if not isinstance(context, str) or not context:
        raise ConfigError("inspection.tenant_restrictions.context_tenant_id: expected a directory id")
    return TenantRestrictionConfig(tuple(tenants), context)
