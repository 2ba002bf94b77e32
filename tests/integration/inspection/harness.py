"""Helpers of the inspection tests (fixtures in conftest.py beside): names, My Numbers, curl
through the agent, the certificate a client is shown, the audit log, the CLI."""

from __future__ import annotations

import http.client
import json
import re
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography import x509

from broker.demo import AgentProcess, BrokerProcess
from swg.dlp.mynumber import mynumber_check_digit
from tests.integration.conftest import require_curl

DOMAIN = "inspect.test"
EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

ANCHORS = Path("/usr/local/share/ca-certificates")


def valid_mynumber(base: str = "12345678901") -> str:
    return base + str(mynumber_check_digit(base))


def invalid_mynumber(base: str = "12345678901") -> str:
    return base + str((mynumber_check_digit(base) + 1) % 10)


def host(case: str) -> str:
    return f"{case}.{DOMAIN}"


def remove_our_anchors() -> None:
    found = list(ANCHORS.glob("sekimori-inspection-*.crt")) if ANCHORS.is_dir() else []
    for path in found:
        path.unlink()
    if found:
        subprocess.run(["update-ca-certificates", "--fresh"], capture_output=True, timeout=120)


def inspection_ca(broker: BrokerProcess) -> Path:
    return broker.data_dir / "pki" / "inspection-ca.crt"


def curl(agent: AgentProcess, url: str, *args: str, ca: Path | None = None) -> tuple[int, str, str]:
    """(last status, headers + body, stderr) of curl through the agent."""
    cmd = [require_curl(), "-sS", "--max-time", "20", "-x", agent.proxy, "-D", "-", *args, url]
    if ca is not None:
        cmd[1:1] = ["--cacert", str(ca)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    status = re.findall(r"^HTTP/\S+ (\d{3})", out.stdout, re.M)
    return (int(status[-1]) if status else 0), out.stdout, out.stderr


def peer_certificate(agent: AgentProcess, target: str, port: int, ca: Path) -> x509.Certificate:
    """The certificate the client is shown for `target` through the agent (CONNECT + TLS)."""
    conn = http.client.HTTPConnection("127.0.0.1", agent.proxy_port, timeout=20)
    conn.set_tunnel(target, port)
    conn.connect()
    ctx = ssl.create_default_context(cafile=str(ca))
    assert conn.sock is not None
    tls = ctx.wrap_socket(conn.sock, server_hostname=target)
    try:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)
    finally:
        tls.close()


def audit(broker: BrokerProcess) -> list[dict[str, Any]]:
    path = broker.config.audit_path
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wait_audit(broker: BrokerProcess, predicate: Any, what: str) -> dict[str, Any]:
    import time
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for event in audit(broker):
            if predicate(event):
                return event
        time.sleep(0.1)
    raise AssertionError(f"no audit event: {what}")


def sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)


def sekimori(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "broker", *args, "--data-dir", str(broker.data_dir)],
                          capture_output=True, text=True, timeout=60)


def eventually_status(agent: AgentProcess, url: str, ca: Path, want: int) -> tuple[int, str]:
    import time
    deadline = time.monotonic() + 15
    while True:
        status, out, _ = curl(agent, url, ca=ca)
        if status == want or time.monotonic() > deadline:
            return status, out
        time.sleep(0.5)
