"""Broker configuration (broker/config.py): what `sekimori init` writes parses back, and every
bad field is a ConfigError naming its path."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.config import (
    DEFAULT_API_PORT,
    DEFAULT_TUNNEL_PORT,
    BrokerConfig,
    Listen,
    parse_config,
    render_config,
)
from ztcore.errors import ConfigError

DATA = Path("/srv/sekimori")
DEFAULT_NAMES = ["localhost", "127.0.0.1", "::1"]


def rendered(**overrides: Any) -> str:
    """render_config with the arguments `init_data_dir` passes by default."""
    args: dict[str, Any] = dict(
        name="localhost", server_names=DEFAULT_NAMES, tunnel_listen="127.0.0.1:8443",
        api_listen="127.0.0.1:8444", database=f"sqlite:///{DATA / 'sekimori.db'}",
        allowed_ports=[80, 443], allowed_networks=[])
    args.update(overrides)
    return render_config(**args)


def parse_text(text: str) -> BrokerConfig:
    return parse_config(tomllib.loads(text), DATA)


# -- what init writes ------------------------------------------------------------------------------

def test_rendered_default_config_parses_back() -> None:
    config = parse_text(rendered())
    assert config.name == "localhost"
    assert config.server_names == tuple(DEFAULT_NAMES)
    assert config.tunnel_listen == Listen("127.0.0.1", 8443)
    assert config.api_listen == Listen("127.0.0.1", 8444)
    assert config.database_url == "sqlite:////srv/sekimori/sekimori.db"
    assert config.device_cert_validity_seconds == 7 * 24 * 3600
    assert config.connect_timeout_seconds == 10.0
    assert config.idle_timeout_seconds == 90.0
    assert config.shutdown_grace_seconds == 10.0
    assert config.destinations.allowed_ports == ((80, 80), (443, 443))
    assert config.destinations.allowed_networks == ()
    assert config.audit_path == DATA / "audit" / "events.jsonl"
    assert config.data_dir == DATA


def test_rendered_custom_config_parses_back() -> None:
    config = parse_text(rendered(
        name="北区役所 broker", server_names=["broker.kita.example.jp", "192.0.2.10"],
        tunnel_listen="[::]:9443", api_listen="0.0.0.0:9444",
        database="postgresql://sekimori:pw@db.internal:5432/sekimori",
        allowed_ports=[22, "8000-8999", "8443"], allowed_networks=["10.20.0.0/16", "fd00::1"],
        device_cert_validity_seconds=3600))
    assert config.name == "北区役所 broker"
    assert config.server_names == ("broker.kita.example.jp", "192.0.2.10")
    assert config.tunnel_listen == Listen("::", 9443)
    assert str(config.tunnel_listen) == "[::]:9443"
    assert config.api_listen == Listen("0.0.0.0", 9444)
    assert config.database_url == "postgresql://sekimori:pw@db.internal:5432/sekimori"
    assert config.device_cert_validity_seconds == 3600
    assert config.destinations.allowed_ports == ((22, 22), (80, 80), (443, 443), (8000, 8999))
    assert [str(n) for n in config.destinations.allowed_networks] == ["10.20.0.0/16", "fd00::1/128"]


@given(name=st.text(st.characters(categories=["L", "N", "Zs"], exclude_characters="\x85"),
                    min_size=1, max_size=30),
       ports=st.lists(st.integers(1, 65535), max_size=5))
def test_rendered_names_and_ports_parse_back(name: str, ports: list[int]) -> None:
    config = parse_text(rendered(name=name, allowed_ports=ports))
    assert config.name == name
    assert all(config.destinations.port_allowed(p) for p in ports + [80, 443])


def test_config_file_says_what_it_is() -> None:
    text = rendered()
    assert text.startswith("# Sekimori broker configuration")
    assert set(tomllib.loads(text)) == {"broker", "destinations", "audit", "identity"}


@pytest.mark.parametrize("field, value", [
    ("name", 'Kita "North" City'),
    ("database", "postgresql://sekimori:p\\w@db/sekimori"),
    ("database", 'sqlite:////srv/data "2"/sekimori.db'),
])
def test_rendered_strings_are_escaped(field: str, value: str) -> None:
    config = parse_text(rendered(**{field: value}))
    assert getattr(config, "database_url" if field == "database" else field) == value


# -- defaults and listen addresses -------------------------------------------------------------

def test_empty_config_takes_the_defaults() -> None:
    config = parse_config({}, DATA)
    assert config.server_names == tuple(DEFAULT_NAMES)
    assert config.name == "localhost"
    assert config.tunnel_listen == Listen("127.0.0.1", DEFAULT_TUNNEL_PORT)
    assert config.api_listen == Listen("127.0.0.1", DEFAULT_API_PORT)
    assert config.database_url == f"sqlite:///{DATA / 'sekimori.db'}"


@pytest.mark.parametrize("text, listen", [
    ("127.0.0.1:8443", Listen("127.0.0.1", 8443)),
    ("0.0.0.0:0", Listen("0.0.0.0", 0)),  # port 0: the OS picks (tests, demo)
    ("broker.example.jp:443", Listen("broker.example.jp", 443)),
    ("[::1]:8443", Listen("::1", 8443)),
    ("[2001:db8::5]:65535", Listen("2001:db8::5", 65535)),
    ("localhost", Listen("localhost", DEFAULT_TUNNEL_PORT)),  # port left out
    (":9000", Listen("127.0.0.1", 9000)),  # host left out
])
def test_listen_addresses(text: str, listen: Listen) -> None:
    config = parse_config({"broker": {"tunnel_listen": text}}, DATA)
    assert config.tunnel_listen == listen


@pytest.mark.parametrize("listen, text", [
    (Listen("127.0.0.1", 8443), "127.0.0.1:8443"),
    (Listen("::1", 8443), "[::1]:8443"),
])
def test_listen_str(listen: Listen, text: str) -> None:
    assert str(listen) == text


@pytest.mark.parametrize("path, expected", [
    ("audit/events.jsonl", DATA / "audit" / "events.jsonl"),
    ("/var/log/sekimori/audit.jsonl", Path("/var/log/sekimori/audit.jsonl")),
])
def test_audit_path_is_relative_to_the_data_dir(path: str, expected: Path) -> None:
    assert parse_config({"audit": {"path": path}}, DATA).audit_path == expected


# -- bad fields --------------------------------------------------------------------------------

# (raw config, the path the message must start with)
BAD: list[tuple[dict[str, Any], str]] = [
    ({"broker": "localhost"}, "broker:"),
    ({"destinations": ["443"]}, "destinations:"),
    ({"audit": 5}, "audit:"),
    ({"broker": {"tunnel_listen": ""}}, "broker.tunnel_listen:"),
    ({"broker": {"tunnel_listen": 8443}}, "broker.tunnel_listen:"),
    ({"broker": {"tunnel_listen": "127.0.0.1:http"}}, "broker.tunnel_listen:"),
    ({"broker": {"tunnel_listen": "127.0.0.1:"}}, "broker.tunnel_listen:"),
    ({"broker": {"tunnel_listen": "127.0.0.1:65536"}}, "broker.tunnel_listen:"),
    ({"broker": {"tunnel_listen": "127.0.0.1:-1"}}, "broker.tunnel_listen:"),
    ({"broker": {"api_listen": "[::1]:x"}}, "broker.api_listen:"),
    ({"broker": {"api_listen": None}}, "broker.api_listen:"),
    ({"broker": {"database": "sekimori.db"}}, "broker.database:"),
    ({"broker": {"database": 5}}, "broker.database:"),
    ({"broker": {"server_names": []}}, "broker.server_names:"),
    ({"broker": {"server_names": "localhost"}}, "broker.server_names:"),
    ({"broker": {"server_names": ["localhost", ""]}}, "broker.server_names:"),
    ({"broker": {"server_names": ["localhost", 5]}}, "broker.server_names:"),
    ({"broker": {"device_cert_validity_seconds": 0}}, "broker.device_cert_validity_seconds:"),
    ({"broker": {"device_cert_validity_seconds": -60}}, "broker.device_cert_validity_seconds:"),
    ({"broker": {"device_cert_validity_seconds": "7d"}}, "broker.device_cert_validity_seconds:"),
    ({"broker": {"device_cert_validity_seconds": True}}, "broker.device_cert_validity_seconds:"),
    ({"broker": {"connect_timeout_seconds": 0}}, "broker.connect_timeout_seconds:"),
    ({"broker": {"idle_timeout_seconds": -1.5}}, "broker.idle_timeout_seconds:"),
    ({"broker": {"shutdown_grace_seconds": "10"}}, "broker.shutdown_grace_seconds:"),
    ({"destinations": {"allowed_ports": [443, 70000]}}, "destinations.allowed_ports[1]:"),
    ({"destinations": {"allowed_ports": ["9000-8000"]}}, "destinations.allowed_ports[0]:"),
    ({"destinations": {"allowed_ports": [0]}}, "destinations.allowed_ports[0]:"),
    ({"destinations": {"allowed_ports": [True]}}, "destinations.allowed_ports[0]:"),
    ({"destinations": {"allowed_ports": [80, "ssh"]}}, "destinations.allowed_ports[1]:"),
    ({"destinations": {"allowed_networks": ["10.0.0.1/8"]}}, "destinations.allowed_networks[0]:"),
    ({"destinations": {"allowed_networks": ["fe80::1%eth0"]}},
     "destinations.allowed_networks[0]:"),
    ({"destinations": {"allowed_networks": ["intranet"]}}, "destinations.allowed_networks[0]:"),
    ({"destinations": {"allowed_networks": [10]}}, "destinations.allowed_networks[0]:"),
]


@pytest.mark.parametrize("raw, path", [b for b in BAD], ids=[b[1] for b in BAD])
def test_bad_field_names_its_path(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, DATA)
    assert str(info.value).startswith(path), str(info.value)


def test_bad_field_in_a_file_names_its_path() -> None:
    text = rendered().replace('tunnel_listen = "127.0.0.1:8443"',
                              'tunnel_listen = "127.0.0.1:84433"')
    with pytest.raises(ConfigError, match=r"^broker\.tunnel_listen: port 84433"):
        parse_text(text)


@pytest.mark.parametrize("raw, path", [
    ({"destinations": {"allowed_ports": "443"}}, "destinations.allowed_ports:"),
    ({"destinations": {"allowed_networks": "10.0.0.0/8"}}, "destinations.allowed_networks:"),
], ids=["allowed_ports", "allowed_networks"])
def test_a_string_instead_of_a_list_names_its_path_once(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, DATA)
    assert str(info.value).startswith(path), str(info.value)


# TOML has `nan` and `inf`; a path is a string. Each of these is a bad field too.
BAD_BUT_ACCEPTED: list[tuple[dict[str, Any], str]] = [
    ({"broker": {"device_cert_validity_seconds": float("nan")}},
     "broker.device_cert_validity_seconds:"),
    ({"broker": {"device_cert_validity_seconds": float("inf")}},
     "broker.device_cert_validity_seconds:"),
    ({"broker": {"device_cert_validity_seconds": 0.5}},  # truncated to a 0-second certificate
     "broker.device_cert_validity_seconds:"),
    ({"broker": {"connect_timeout_seconds": float("nan")}}, "broker.connect_timeout_seconds:"),
    ({"broker": {"idle_timeout_seconds": float("nan")}}, "broker.idle_timeout_seconds:"),
    ({"audit": {"path": 5}}, "audit.path:"),
]


@pytest.mark.parametrize("text, host, port", [
    ("::1", "::1", 8443),             # a bare IPv6 address is a host on the default port
    ("[::1]:9443", "::1", 9443),
    ("[::1]", "::1", 8443),
    ("0.0.0.0:8443", "0.0.0.0", 8443),
])
def test_ipv6_listen_addresses(text: str, host: str, port: int) -> None:
    listen = parse_config({"broker": {"tunnel_listen": text}}, DATA).tunnel_listen
    assert (listen.host, listen.port) == (host, port)


@pytest.mark.parametrize("raw, path", BAD_BUT_ACCEPTED, ids=[str(b[0]) for b in BAD_BUT_ACCEPTED])
def test_non_finite_and_mistyped_values_are_config_errors(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, DATA)
    assert str(info.value).startswith(path), str(info.value)
