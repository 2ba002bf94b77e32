"""Broker configuration: parsed once from `sekimori.toml` into a frozen value.

A bad field raises ConfigError naming its path (`destinations.allowed_ports[2]: ...`); the
caller keeps its old configuration. This module reads no file: `parse_config` takes the
decoded TOML mapping and the data directory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

from broker.fair_share import Quota, parse_quotas
from broker.identity_config import IdentityConfig, parse_identity_config
from broker.inspection_config import InspectionConfig, parse_inspection
from broker.lists_config import ListsConfig, parse_lists
from broker.posture_profile import PostureConfig, parse_posture_config
from ztcore.destinations import DestinationPolicy
from ztcore.errors import ConfigError

DEFAULT_TUNNEL_PORT = 8443
DEFAULT_API_PORT = 8444


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class M365Source:
    """`[m365]`: where `sekimori m365 update` gets Microsoft's endpoint data. `service_url` is
    Microsoft's web service (or a mirror of it), asked for its version first; `url`, if set,
    is a plain JSON file to fetch instead (no version check)."""
    service_url: str = "https://endpoints.office.com"
    instance: str = "Worldwide"
    url: str = ""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    data_dir: Path
    name: str
    server_names: tuple[str, ...]
    tunnel_listen: Listen
    api_listen: Listen
    database_url: str
    device_cert_validity_seconds: int
    destinations: DestinationPolicy
    static_hosts: dict[str, tuple[IPv4Address | IPv6Address, ...]]
    connect_timeout_seconds: float
    idle_timeout_seconds: float
    shutdown_grace_seconds: float
    audit_path: Path
    identity: IdentityConfig = IdentityConfig()
    posture: PostureConfig = PostureConfig()
    default_quota: Quota = Quota(5000, 0.0)          # fair share per tenant (broker/fair_share.py)
    quotas: dict[str, Quota] | None = None            # [quotas.<tenant>] overrides
    m365: M365Source = M365Source()
    inspection: InspectionConfig = InspectionConfig()
    lists: ListsConfig = ListsConfig()

    def quota(self, tenant: str) -> Quota:
        if self.quotas and tenant in self.quotas:
            return self.quotas[tenant]
        return self.default_quota

    @property
    def ca_cert_path(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.data_dir / "pki" / "ca.key"

    @property
    def server_cert_path(self) -> Path:
        return self.data_dir / "pki" / "server.crt"

    @property
    def server_key_path(self) -> Path:
        return self.data_dir / "pki" / "server.key"

    @property
    def state_path(self) -> Path:
        """Written by a running broker: the ports it actually bound (port 0 → chosen)."""
        return self.data_dir / "run" / "broker.json"


def _listen(value: Any, path: str, default_port: int) -> Listen:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: expected 'host:port', got {value!r}")
    if value.startswith("["):                       # [v6]:port or [v6]
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else (rest or str(default_port))
    elif value.count(":") > 1:                      # a bare IPv6 address
        host, port_text = value, str(default_port)
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            host, port_text = value, str(default_port)
    if not port_text.isascii() or not port_text.isdigit():
        raise ConfigError(f"{path}: port {port_text!r} is not a number")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{path}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{path}: port {port} out of range 0-65535")
    return Listen(host or "127.0.0.1", port)


def _number(section: Mapping[str, Any], key: str, path: str, default: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise ConfigError(f"{path}.{key}: expected a positive number, got {value!r}")
    return float(value)


def _whole_seconds(section: Mapping[str, Any], key: str, path: str, default: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}.{key}: expected a whole number of seconds >= 1, got {value!r}")
    return value


def _table(raw: Mapping[str, Any], key: str, path: str = "") -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}{key}: expected a table, got {type(value).__name__}")
    return value


def _strings(section: Mapping[str, Any], key: str, path: str, default: list[Any]) -> list[Any]:
    value = section.get(key, default)
    if not isinstance(value, list):
        raise ConfigError(f"{path}.{key}: expected a list, got {type(value).__name__}")
    return value


def _static_hosts(table: Mapping[str, Any]) -> dict[str, tuple[IPv4Address | IPv6Address, ...]]:
    """`[destinations.hosts]`: names the broker resolves itself, like its own /etc/hosts
    (internal names of a municipality, or a test's). The addresses are still checked."""
    out: dict[str, tuple[IPv4Address | IPv6Address, ...]] = {}
    for name, value in table.items():
        path = f"destinations.hosts.{name}"
        if not isinstance(name, str) or not name or len(name) > 253:
            raise ConfigError(f"{path}: not a host name")
        items = value if isinstance(value, list) else [value]
        addresses = []
        for i, item in enumerate(items):
            try:
                addresses.append(ip_address(item))
            except (TypeError, ValueError):
                raise ConfigError(f"{path}[{i}]: {item!r} is not an IP address") from None
        if not addresses:
            raise ConfigError(f"{path}: no address")
        out[name.lower().rstrip(".")] = tuple(addresses)
    return out


def parse_config(raw: Mapping[str, Any], data_dir: Path) -> BrokerConfig:
    broker = _table(raw, "broker")
    dest = _table(raw, "destinations")
    audit = _table(raw, "audit")
    names = _strings(broker, "server_names", "broker", ["localhost", "127.0.0.1", "::1"])
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError("broker.server_names: expected a non-empty list of names")
    ports = _strings(dest, "allowed_ports", "destinations", [80, 443])
    networks = _strings(dest, "allowed_networks", "destinations", [])
    try:
        destinations = DestinationPolicy.from_config(ports, networks)
    except ConfigError as exc:
        raise ConfigError(f"destinations.{exc}") from None
    static_hosts = _static_hosts(_table(dest, "hosts", "destinations."))
    database = broker.get("database", f"sqlite:///{data_dir / 'sekimori.db'}")
    if not isinstance(database, str) or "://" not in database:
        raise ConfigError(f"broker.database: expected a database URL, got {database!r}")
    audit_text = audit.get("path", str(data_dir / "audit" / "events.jsonl"))
    if not isinstance(audit_text, str) or not audit_text:
        raise ConfigError(f"audit.path: expected a file path, got {audit_text!r}")
    audit_path = Path(audit_text)
    default_quota, quotas = parse_quotas(broker, _table(raw, "quotas"))
    return BrokerConfig(
        data_dir=data_dir,
        name=str(broker.get("name", names[0])),
        server_names=tuple(names),
        tunnel_listen=_listen(broker.get("tunnel_listen", f"127.0.0.1:{DEFAULT_TUNNEL_PORT}"),
                              "broker.tunnel_listen", DEFAULT_TUNNEL_PORT),
        api_listen=_listen(broker.get("api_listen", f"127.0.0.1:{DEFAULT_API_PORT}"),
                           "broker.api_listen", DEFAULT_API_PORT),
        database_url=database,
        device_cert_validity_seconds=_whole_seconds(broker, "device_cert_validity_seconds",
                                                    "broker", 7 * 24 * 3600),
        destinations=destinations,
        static_hosts=static_hosts,
        connect_timeout_seconds=_number(broker, "connect_timeout_seconds", "broker", 10),
        idle_timeout_seconds=_number(broker, "idle_timeout_seconds", "broker", 90),
        shutdown_grace_seconds=_number(broker, "shutdown_grace_seconds", "broker", 10),
        audit_path=audit_path if audit_path.is_absolute() else data_dir / audit_path,
        identity=parse_identity_config(_table(raw, "identity")),
        posture=parse_posture_config(_table(raw, "posture")),
        default_quota=default_quota, quotas=quotas,
        m365=_m365(_table(raw, "m365")),
        inspection=parse_inspection(_table(raw, "inspection")),
        lists=parse_lists(_table(raw, "lists")),
    )


def _m365(table: Mapping[str, Any]) -> M365Source:
    values = {}
    for key, default in (("service_url", "https://endpoints.office.com"), ("instance", "Worldwide"),
                         ("url", "")):
        value = table.get(key, default)
        if not isinstance(value, str) or (value and key != "instance"
                                          and not value.startswith(("https://", "http://"))):
            raise ConfigError(f"m365.{key}: expected an http(s) URL, got {value!r}")
        values[key] = value
    if values["instance"] not in ("Worldwide", "USGovDoD", "USGovGCCHigh", "China"):
        raise ConfigError(f"m365.instance: expected Worldwide, USGovDoD, USGovGCCHigh or China, "
                          f"got {values['instance']!r}")
    unknown = set(table) - {"service_url", "instance", "url"}
    if unknown:
        raise ConfigError(f"m365.{sorted(unknown)[0]}: unknown key")
    return M365Source(**values)


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's string escapes are a subset TOML accepts."""
    return json.dumps(text, ensure_ascii=False)


def render_config(*, name: str, server_names: list[str], tunnel_listen: str, api_listen: str,
                  database: str, allowed_ports: list[int | str], allowed_networks: list[str],
                  device_cert_validity_seconds: int = 7 * 24 * 3600) -> str:
    """The TOML text `sekimori init` writes (TOML has no writer in the stdlib)."""
    def toml_list(items: list[Any]) -> str:
        return "[" + ", ".join(q(i) if isinstance(i, str) else str(int(i)) for i in items) + "]"
    q = toml_string
    return (
        "# Sekimori broker configuration. Edit, then restart `sekimori serve`.\n"
        "[broker]\n"
        f"name = {q(name)}\n"
        f"server_names = {toml_list(server_names)}\n"
        f"tunnel_listen = {q(tunnel_listen)}\n"
        f"api_listen = {q(api_listen)}\n"
        f"database = {q(database)}\n"
        f"device_cert_validity_seconds = {device_cert_validity_seconds}\n"
        "connect_timeout_seconds = 10\n"
        "idle_timeout_seconds = 90\n\n"
        "[destinations]\n"
        "# Ports the broker connects to; ranges like \"8000-8999\" are accepted.\n"
        f"allowed_ports = {toml_list(allowed_ports)}\n"
        "# Explicit exceptions to the private/loopback/link-local/metadata address refusal.\n"
        f"allowed_networks = {toml_list(allowed_networks)}\n\n"
        "[audit]\n"
        'path = "audit/events.jsonl"\n\n'
        "[identity]\n"
        "# Every connection needs a logged-in user (`sekimori-agent login`), with a second factor.\n"
        "require_login = true\n"
        "require_mfa = true\n"
        "token_lifetime_seconds = 900\n"
        "max_session_seconds = 43200\n"
        "# Add [[identity.directory]] (Active Directory / LDAP) and [[identity.oidc]] tables;\n"
        "# see broker/identity_config.py for every setting.\n"
    )
