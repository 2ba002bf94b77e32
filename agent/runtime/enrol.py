"""Enrolment client: fetch and pin the broker CA, send a CSR with the one-time code.

The private key is generated here and written 0600; it never leaves the device. The broker's CA
is trusted only if it matches the pin the admin handed out with the code (or a CA file given
explicitly); the CSR then goes over TLS verified against that CA. Stdlib HTTP only: the agent
does not ship an HTTP client library.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from agent.config import CONFIG_FILE, AgentConfig
from agent.identity import csr_pem, key_pem, new_key
from ztcore.errors import ZTError
from ztcore.keys import spki_pin
from ztcore.runtime.files import write_private

TIMEOUT_SECONDS = 15


class EnrolmentError(ZTError):
    """Enrolment failed; the message says why (and the broker's reason when it gave one)."""


@dataclass(frozen=True)
class Enrolled:
    config: AgentConfig
    certificate: x509.Certificate


def _fetch_ca(api_url: str, ca_pin: str | None, ca_file: Path | None) -> bytes:
    if ca_file is not None:
        try:
            return ca_file.read_bytes()
        except OSError as exc:
            raise EnrolmentError(f"cannot read CA file {ca_file}: {exc}") from exc
    if not ca_pin:
        raise EnrolmentError("give --ca-pin (printed with the enrolment code) or --ca-file, "
                             "so the agent can recognise its broker")
    # Unverified on purpose: what we fetch is checked against the pin before it is trusted.
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{api_url}/v1/ca", context=insecure,
                                    timeout=TIMEOUT_SECONDS) as response:
            pem: bytes = response.read(64 * 1024)
    except (urllib.error.URLError, OSError) as exc:
        raise EnrolmentError(f"cannot reach broker at {api_url}: {exc}") from exc
    try:
        ca = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise EnrolmentError(f"broker sent no valid CA certificate: {exc}") from exc
    if spki_pin(ca).lower() != ca_pin.strip().lower():
        raise EnrolmentError(f"broker CA does not match the pin: got {spki_pin(ca)}, "
                             f"expected {ca_pin} — not enrolling")
    return pem


def enrol(api_url: str, code: str, data_dir: Path, *, ca_pin: str | None = None,
          ca_file: Path | None = None, hostname: str | None = None) -> Enrolled:
    api_url = api_url.rstrip("/")
    if urlsplit(api_url).scheme != "https":
        raise EnrolmentError(f"broker URL must start with https://, got {api_url!r}")
    ca_pem = _fetch_ca(api_url, ca_pin, ca_file)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_path = data_dir / "broker-ca.crt"
    ca_path.write_bytes(ca_pem)
    verified = ssl.create_default_context(cafile=str(ca_path))
    key = new_key()
    body = json.dumps({"code": code, "csr_pem": csr_pem(key, hostname or socket.gethostname()).decode(),
                       "hostname": hostname or socket.gethostname()}).encode()
    req = urllib.request.Request(f"{api_url}/v1/enrol", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=verified, timeout=TIMEOUT_SECONDS) as response:
            answer = json.loads(response.read(256 * 1024))
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read(64 * 1024))
            why = f"{err['reason']}: {err['message_ja']} / {err['message_en']}"
            if err.get("detail"):
                why += f" ({err['detail']})"
        except (ValueError, KeyError, TypeError):
            why = f"HTTP {exc.code}"
        raise EnrolmentError(f"broker refused enrolment: {why}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EnrolmentError(f"enrolment request failed: {exc}") from exc
    try:
        cert = x509.load_pem_x509_certificate(answer["certificate_pem"].encode())
        tunnel = answer["tunnel"]
        config = AgentConfig(data_dir=data_dir, tenant_id=answer["tenant_id"],
                             device_id=answer["device_id"], broker_host=tunnel["host"],
                             broker_port=int(tunnel["port"]), server_name=tunnel["server_name"],
                             api_url=api_url)
    except (KeyError, TypeError, ValueError) as exc:
        raise EnrolmentError(f"broker answer is incomplete: {exc}") from exc
    write_private(config.key_path, key_pem(key))
    write_private(config.cert_path, answer["certificate_pem"].encode())
    tmp = data_dir / (CONFIG_FILE + ".new")
    tmp.write_text(json.dumps(config.to_json_dict(), indent=2))
    os.replace(tmp, data_dir / CONFIG_FILE)
    return Enrolled(config, cert)
