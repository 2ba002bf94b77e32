"""The broker's data directory: `sekimori init` creates it, every command loads it.

Layout: `sekimori.toml` (configuration), `pki/ca.key` + `pki/ca.crt` (the broker CA; keys are
0600), `pki/server.key` + `pki/server.crt` (the TLS certificate of the tunnel and the API),
`pki/session-signing.key` (Ed25519, signs session tokens; `.previous.*` after a rotation),
`pki/totp-seal.key` (AES-256, seals TOTP secrets), `sekimori.db` (SQLite store, unless a
PostgreSQL URL is configured), `audit/events.jsonl`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.config import BrokerConfig, parse_config, render_config
from broker.pki import PrivateKey, cert_pem, key_pem, make_ca, make_server_cert, new_key
from broker.sessions import KeyRing, PreviousKey, jwk_thumbprint, new_session_key
from idp_bridge.totp import SEAL_KEY_BYTES
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
    load_session_keys(config)
    load_seal_key(config)
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


# -- identity keys: the session-token signing key (and the one before it) and the TOTP seal key --

def _session_key_paths(config: BrokerConfig) -> tuple[Path, Path, Path]:
    pki = config.data_dir / "pki"
    return (pki / "session-signing.key", pki / "session-signing.previous.key",
            pki / "session-signing.previous.until")


def _load_ed25519(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key")
    return key


def _ed25519_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_session_keys(config: BrokerConfig) -> KeyRing:
    """The signing key ring, creating the first key when there is none (an older data dir)."""
    active_path, previous_path, until_path = _session_key_paths(config)
    if not active_path.exists():
        write_private(active_path, _ed25519_pem(new_session_key()))
    previous: tuple[PreviousKey, ...] = ()
    if previous_path.exists() and until_path.exists():
        old = _load_ed25519(previous_path).public_key()
        try:
            until = float(until_path.read_text().strip())
        except ValueError:
            raise ConfigError(f"{until_path}: expected epoch seconds") from None
        previous = (PreviousKey(jwk_thumbprint(old), old, until),)
    return KeyRing(_load_ed25519(active_path), previous)


def rotate_session_key(config: BrokerConfig, now: float, grace_seconds: float) -> KeyRing:
    """A new signing key; tokens signed by the old one stay valid for `grace_seconds` (set it to
    at least the token lifetime). Brokers pick the new ring up when they restart."""
    active_path, previous_path, until_path = _session_key_paths(config)
    ring = load_session_keys(config)
    write_private(previous_path, _ed25519_pem(ring.active))
    write_private(until_path, str(now + grace_seconds).encode())
    write_private(active_path, _ed25519_pem(new_session_key()))
    return load_session_keys(config)


def load_seal_key(config: BrokerConfig) -> bytes:
    """The AES-256 key that seals TOTP secrets in the store, created on first use. Losing it
    means re-enrolling every user's TOTP; back it up with the CA key."""
    path = config.data_dir / "pki" / "totp-seal.key"
    if not path.exists():
        write_private(path, os.urandom(SEAL_KEY_BYTES))
    key = path.read_bytes()
    if len(key) != SEAL_KEY_BYTES:
        raise ConfigError(f"{path}: expected {SEAL_KEY_BYTES} bytes, found {len(key)}")
    return key


# -- the inspection CA: signs the leaves the gateway shows clients of inspected sites --------

def load_inspection_ca(config: BrokerConfig, now: float) -> tuple[x509.Certificate, PrivateKey]:
    """`pki/inspection-ca.crt` + `.key`, created on first use. A CA of its own, apart from the
    broker CA: laptops trust it for web sites, never for the tunnel or device certificates."""
    cert_path = config.data_dir / "pki" / "inspection-ca.crt"
    key_path = config.data_dir / "pki" / "inspection-ca.key"
    if not key_path.exists():
        key = new_key()
        ca = make_ca(key, f"Sekimori inspection CA ({config.name})", now, CA_VALIDITY_SECONDS,
                     x509.random_serial_number())
        write_private(key_path, key_pem(key))
        cert_path.write_bytes(cert_pem(ca))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    return cert, loaded  # type: ignore[return-value]
