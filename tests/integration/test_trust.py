"""Who may use the tunnel: mutual TLS, the device registry, one-time enrolment codes, fail-closed."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509

from agent.identity import csr_pem, key_pem, new_key
from agent.runtime.enrol import EnrolmentError, enrol
from broker.demo import BrokerProcess, LocalOrigins, free_port
from broker.pki import DeviceIdentity, cert_pem, make_ca, sign_device
from tests.integration.conftest import make_agent, make_broker, require_curl


def tls_client(broker: BrokerProcess, cert: Path | None, key: Path | None) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(broker.config.ca_cert_path))
    ctx.set_alpn_protocols(["h2"])
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection(("127.0.0.1", broker.info["tunnel_port"]), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def refused(sock_factory: object) -> bool:
    """True when the broker ends the TLS session instead of serving HTTP/2 on it.

    In TLS 1.3 the client's handshake completes before the server has checked the client
    certificate; the refusal arrives as an alert (or a close) on the first read.
    """
    try:
        sock = sock_factory()  # type: ignore[operator]
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        data = sock.recv(1024)
        return data == b""
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        sock.close()


def test_client_without_certificate_is_refused(broker: BrokerProcess) -> None:
    assert refused(lambda: tls_client(broker, None, None))


def test_certificate_from_another_ca_is_refused(broker: BrokerProcess, tmp_path: Path) -> None:
    now = time.time()
    rogue_key = new_key()
    rogue_ca = make_ca(rogue_key, "rogue CA", now, 3600, x509.random_serial_number())
    device_key = new_key()
    csr = x509.load_pem_x509_csr(csr_pem(device_key, "rogue"))
    cert = sign_device(csr, rogue_ca, rogue_key, DeviceIdentity("test-city", "rogue-device"),
                       now, 3600, x509.random_serial_number())
    (tmp_path / "rogue.crt").write_bytes(cert_pem(cert))
    (tmp_path / "rogue.key").write_bytes(key_pem(device_key))
    assert refused(lambda: tls_client(broker, tmp_path / "rogue.crt", tmp_path / "rogue.key"))


def test_enrolment_code_works_once(broker: BrokerProcess, tmp_path: Path) -> None:
    code = broker.enrolment_code("test-city")
    enrol(broker.api_url, code, tmp_path / "first", ca_pin=broker.ca_pin)
    assert (tmp_path / "first" / "device.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(EnrolmentError, match="enrolment-code-used"):
        enrol(broker.api_url, code, tmp_path / "second", ca_pin=broker.ca_pin)
    events = [json.loads(line) for line in broker.config.audit_path.read_text().splitlines()]
    enrolments = [e for e in events if e["kind"] == "enrolment"]
    assert any(e["decision"] == "allow" and e["reason"] == "device-enrolled" for e in enrolments)
    assert any(e["decision"] == "deny" and e["reason"] == "enrolment-code-used"
               and e["message_ja"] for e in enrolments)


def test_enrolment_code_expires(broker: BrokerProcess, tmp_path: Path) -> None:
    code = broker.enrolment_code("test-city", ttl_seconds=1)
    time.sleep(1.2)
    with pytest.raises(EnrolmentError, match="enrolment-code-expired"):
        enrol(broker.api_url, code, tmp_path / "late", ca_pin=broker.ca_pin)


def test_enrolment_refuses_wrong_pin_and_bad_code(broker: BrokerProcess, tmp_path: Path) -> None:
    with pytest.raises(EnrolmentError, match="does not match the pin"):
        enrol(broker.api_url, broker.enrolment_code("test-city"), tmp_path / "a",
              ca_pin="sha256:" + "0" * 64)
    with pytest.raises(EnrolmentError, match="enrolment-code-invalid"):
        enrol(broker.api_url, "AAAA-BBBB-CCCC-DDDD", tmp_path / "b", ca_pin=broker.ca_pin)


def test_revoked_device_loses_streams_and_is_refused(
        broker: BrokerProcess, origins: LocalOrigins, tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "agent", broker, name="to-be-revoked")
    try:
        device_id = agent.status()["device"]  # type: ignore[index]
        # A slow download that is open when the device is revoked. A small receive buffer keeps
        # what the kernel already holds for us small, so the reset is seen promptly.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", agent.proxy_port))
        target = f"{origins.host}:{origins.http_port}"
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(f"GET /bytes/{1 << 30} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert sock.recv(16 * 1024)
        assert broker.store.revoke_device(device_id, "lost laptop", time.time())
        revoked_at = time.monotonic()
        ended_after = None
        while time.monotonic() - revoked_at < 8:
            try:
                if not sock.recv(16 * 1024):
                    ended_after = time.monotonic() - revoked_at
                    break
            except ConnectionResetError:
                ended_after = time.monotonic() - revoked_at
                break
            time.sleep(0.02)
        sock.close()
        assert ended_after is not None and ended_after < 2.0, \
            f"open stream not cut within the registry refresh (took {ended_after})"
        out = subprocess.run([require_curl(), "-sS", "-i", "-x", agent.proxy,
                              f"http://{origins.host}:{origins.http_port}/"],
                             capture_output=True, timeout=30)
        assert out.stdout.startswith(b"HTTP/1.1 403")
        assert b"sekimori-reason: device-revoked" in out.stdout
        assert b"lost laptop" in out.stdout
        events = [json.loads(line) for line in broker.config.audit_path.read_text().splitlines()]
        assert any(e["kind"] == "device-revoked" and e["device"] == device_id
                   and e.get("detail") == "lost laptop" for e in events)
    finally:
        agent.stop()


class CountingServer:
    """A TCP listener that counts connections: proves the agent never goes direct."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def test_broker_down_fails_closed_then_recovers(origins: LocalOrigins, tmp_path: Path) -> None:
    counter = CountingServer()
    broker = make_broker(tmp_path / "broker", origins, tunnel_port=free_port())
    agent = make_agent(tmp_path / "agent", broker)
    try:
        broker.stop()
        time.sleep(0.5)
        for url in (f"http://127.0.0.2:{counter.port}/", f"https://127.0.0.2:{counter.port}/"):
            out = subprocess.run([require_curl(), "-sS", "-i", "--max-time", "10", "-x", agent.proxy, url,
                                  "-w", "\n%{http_code} %{http_connect}"], capture_output=True, timeout=30)
            text = out.stdout.decode()
            assert "503" in text, text + out.stderr.decode()
            if url.startswith("http:"):
                assert "sekimori-reason: broker-unreachable" in text
        assert counter.accepted == 0, "the agent opened a direct connection"
        st = agent.status()
        assert st is not None and st["state"] != "connected"
        broker.start()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (agent.status() or {}).get("state") != "connected":
            time.sleep(0.2)
        assert (agent.status() or {}).get("state") == "connected"
        ok = subprocess.run([require_curl(), "-sS", "-x", agent.proxy,
                             f"http://{origins.host}:{origins.http_port}/"], capture_output=True, timeout=30)
        assert ok.returncode == 0
    finally:
        agent.stop()
        broker.close()
        counter.sock.close()


def test_independent_http2_client_renews_over_mutual_tls(broker: BrokerProcess, tmp_path: Path) -> None:
    """curl (nghttp2) as the HTTP/2 client: ALPN h2, client certificate, a renewal request."""
    device_dir = tmp_path / "device"
    enrol(broker.api_url, broker.enrolment_code("test-city"), device_dir, ca_pin=broker.ca_pin)
    key = new_key()
    (tmp_path / "renew.csr").write_bytes(csr_pem(key, "curl-device"))
    base = [require_curl(), "-sS", "--cacert", str(broker.config.ca_cert_path),
            "--cert", str(device_dir / "device.crt"), "--key", str(device_dir / "device.key"),
            f"https://127.0.0.1:{broker.info['tunnel_port']}/v1/renew"]
    out = subprocess.run([*base, "--http2", "-X", "POST", "--data-binary",
                          f"@{tmp_path / 'renew.csr'}", "-w", "\n%{http_version} %{http_code}"],
                         capture_output=True, timeout=30)
    body, _, status = out.stdout.rpartition(b"\n")
    assert status == b"2 200", out.stdout + out.stderr
    renewed = x509.load_pem_x509_certificate(body)
    assert renewed.public_key().public_numbers() == key.public_key().public_numbers()
    # TLS 1.2 is refused: the tunnel is TLS 1.3 only
    old = subprocess.run([*base, "--http2", "--tls-max", "1.2", "-o", "/dev/null"],
                         capture_output=True, timeout=30)
    assert old.returncode != 0
