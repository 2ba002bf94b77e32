"""The agent's configuration and the paths of its files, as one frozen value.

Written by `sekimori-agent enroll`, read by `run` and `status`. Parsing is pure: the caller
reads the JSON file and passes the mapping in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from ztcore.errors import ConfigError

DEFAULT_PROXY_PORT = 8877


@dataclass(frozen=True, slots=True)
class AgentConfig:
    data_dir: Path
    tenant_id: str
    device_id: str
    broker_host: str
    broker_port: int
    server_name: str
    api_url: str
    proxy_host: str = "127.0.0.1"
    proxy_port: int = DEFAULT_PROXY_PORT
    keepalive_seconds: float = 15.0  # PING interval; also how often renewal is considered
    posture_facts_file: str | None = None   # labs and tests only: facts from this JSON file
    dns_port: int = 0                       # the split-DNS stub on proxy_host (0: not started)
    rules_refresh_seconds: float = 60.0     # how often the agent asks for new rules
    # Labs and tests only: names the agent resolves itself for direct connections, like
    # /etc/hosts (a breakout host played by a local server).
    static_hosts: dict[str, str] = field(default_factory=dict)
    # Put the broker's inspection CA (sent with the signed rules) in the OS trust store.
    install_inspection_ca: bool = True

    @property
    def key_path(self) -> Path:
        return self.data_dir / "device.key"

    @property
    def cert_path(self) -> Path:
        return self.data_dir / "device.crt"

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "broker-ca.crt"

    @property
    def broker(self) -> str:
        host = f"[{self.broker_host}]" if ":" in self.broker_host else self.broker_host
        return f"{host}:{self.broker_port}"

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["data_dir"]
        return data


CONFIG_FILE = "agent.json"


def parse_agent_config(raw: Mapping[str, Any], data_dir: Path) -> AgentConfig:
    def text(key: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{CONFIG_FILE}: {key}: expected a non-empty string, got {value!r}")
        return value

    def port(key: str, default: int | None = None) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise ConfigError(f"{CONFIG_FILE}: {key}: expected a port number, got {value!r}")
        return value

    return AgentConfig(
        data_dir=data_dir, tenant_id=text("tenant_id"), device_id=text("device_id"),
        broker_host=text("broker_host"), broker_port=port("broker_port"),
        server_name=text("server_name"), api_url=text("api_url"),
        proxy_host=str(raw.get("proxy_host", "127.0.0.1")),
        proxy_port=port("proxy_port", DEFAULT_PROXY_PORT),
        keepalive_seconds=_seconds(raw.get("keepalive_seconds", 15.0), "keepalive_seconds"),
        posture_facts_file=_optional_path(raw.get("posture_facts_file")),
        dns_port=port("dns_port", 0),
        rules_refresh_seconds=_seconds(raw.get("rules_refresh_seconds", 60.0), "rules_refresh_seconds"),
        static_hosts=_static_hosts(raw.get("static_hosts", {})),
        install_inspection_ca=_flag(raw.get("install_inspection_ca", True), "install_inspection_ca"))


def _flag(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{CONFIG_FILE}: {key}: expected true or false, got {value!r}")
    return value


def _static_hosts(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{CONFIG_FILE}: static_hosts: expected an object of name: address")
    out: dict[str, str] = {}
    for name, address in value.items():
        try:
            out[str(name).lower().rstrip(".")] = str(ip_address(address))
        except (ValueError, TypeError):
            raise ConfigError(f"{CONFIG_FILE}: static_hosts.{name}: not an IP address: "
                              f"{address!r}") from None
    return out


def _optional_path(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{CONFIG_FILE}: posture_facts_file: expected a file path, got {value!r}")
    return value


def _seconds(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 3600:
        raise ConfigError(f"{CONFIG_FILE}: {key}: expected 0.1-3600, got {value!r}")
    return float(value)
