"""The broker's data directory: `sekimori init` creates it, every command loads it.

Layout: `sekimori.toml` (configuration), `pki/ca.key` + `pki/ca.crt` (the broker CA; keys are
0600), `pki/server.key` + `pki/server.crt` (the TLS certificate of the tunnel and the API),
`sekimori.db` (SQLite store, unless a PostgreSQL URL is configured), `audit/events.jsonl`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.config import BrokerConfig, parse_config, render_config
from broker.pki import PrivateKey, cert_pem, key_pem, make_ca, make_server_cert, new_key
from ztcore.errors import ConfigError
from ztcore.runtime.files import write_private

CONFIG_FILE = "sekimori.toml"
CA_VALIDITY_SECONDS = 10 * 365 * 24 * 3600
SERVER_VALIDITY_SECONDS = 365 * 24 * 3600


def init_data_dir(data_dir: Path, now: float, *, server_names: list[str],
                  tunnel_listen: str, api_listen: str, database: str | None = None,
                  allowed_ports: list[int | str] | None = None,
                  allowed_networks: list[str] | None = None,
                  device_cert_validity_seconds: int = 7 * 24 * 3600) -> BrokerConfig:
    """Create the directory, the CA and the server certificate; refuses to overwrite a CA."""
    if (data_dir / "pki" / "ca.key").exists():
        raise ConfigError(f"{data_dir} already holds a broker CA; refusing to replace it")
    (data_dir / "pki").mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir / "pki", 0o700)
    (data_dir / CONFIG_FILE).write_text(render_config(
        name=server_names[0], server_names=server_names, tunnel_listen=tunnel_listen,
        api_listen=api_listen, database=database or f"sqlite:///{data_dir.resolve() / 'sekimori.db'}",
        allowed_ports=allowed_ports or [80, 443], allowed_networks=allowed_networks or [],
        device_cert_validity_seconds=device_cert_validity_seconds))
    config = load_config(data_dir)
    ca_key = new_key()
    ca = make_ca(ca_key, f"Sekimori broker CA ({server_names[0]})", now, CA_VALIDITY_SECONDS,
                 x509.random_serial_number())
    server_key = new_key()
    server = make_server_cert(ca, ca_key, server_key, server_names, now, SERVER_VALIDITY_SECONDS,
                              x509.random_serial_number())
    write_private(config.ca_key_path, key_pem(ca_key))
    config.ca_cert_path.write_bytes(cert_pem(ca))
    write_private(config.server_key_path, key_pem(server_key))
    config.server_cert_path.write_bytes(cert_pem(server) + cert_pem(ca))
    return config


def load_config(data_dir: Path) -> BrokerConfig:
    path = data_dir / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run `sekimori init --data-dir {data_dir}` first") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_config(raw, data_dir.resolve())


def load_ca(config: BrokerConfig) -> tuple[x509.Certificate, PrivateKey]:
    cert = x509.load_pem_x509_certificate(config.ca_cert_path.read_bytes())
    key = serialization.load_pem_private_key(config.ca_key_path.read_bytes(), password=None)
    return cert, key  # type: ignore[return-value]
