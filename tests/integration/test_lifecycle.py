"""Certificate renewal over the tunnel, and a graceful broker shutdown (GOAWAY)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from cryptography import x509

from broker.demo import AgentProcess, LocalOrigins, free_port
from tests.integration.conftest import make_broker, require_curl


def set_agent_option(agent: AgentProcess, key: str, value: object) -> None:
    cfg = agent.data_dir / "agent.json"
    raw = json.loads(cfg.read_text())
    raw[key] = value
    cfg.write_text(json.dumps(raw))


def test_device_certificate_renewed_over_the_tunnel(origins: LocalOrigins, tmp_path: Path) -> None:
    broker = make_broker(tmp_path / "broker", origins, device_cert_validity_seconds=9)
    agent = AgentProcess(tmp_path / "agent")
    try:
        agent.enrol(broker, broker.enrolment_code("test-city"))
        set_agent_option(agent, "keepalive_seconds", 0.5)
        first = x509.load_pem_x509_certificate((agent.data_dir / "device.crt").read_bytes())
        agent.start()
        deadline = time.monotonic() + 20
        renewed = first
        while time.monotonic() < deadline:
            renewed = x509.load_pem_x509_certificate((agent.data_dir / "device.crt").read_bytes())
            if renewed.serial_number != first.serial_number:
                break
            time.sleep(0.2)
        assert renewed.serial_number != first.serial_number, "certificate was not renewed"
        assert renewed.not_valid_after_utc > first.not_valid_after_utc
        assert (agent.data_dir / "device.key").stat().st_mode & 0o777 == 0o600
        device = broker.store.list_devices("test-city")[0]
        assert device.cert_serial == format(renewed.serial_number, "x")
        time.sleep(1.0)  # the agent reconnects with the new certificate
        out = subprocess.run([require_curl(), "-sS", "-x", agent.proxy, "-o", "/dev/null", "-w",
                              "%{http_code}", f"http://{origins.host}:{origins.http_port}/"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout == "200", out.stderr
    finally:
        agent.stop()
        broker.close()


def test_broker_shutdown_lets_open_streams_finish(origins: LocalOrigins, tmp_path: Path) -> None:
    broker = make_broker(tmp_path / "broker", origins, tunnel_port=free_port())
    agent = AgentProcess(tmp_path / "agent")
    try:
        agent.enrol(broker, broker.enrolment_code("test-city"))
        agent.start()
        size = 20 * 1024 * 1024
        download = subprocess.Popen(
            [require_curl(), "-sS", "-p", "-x", agent.proxy, "--limit-rate", "10M", "-o", "/dev/null",
             "-w", "%{size_download}", f"http://{origins.host}:{origins.http_port}/bytes/{size}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGTERM)   # GOAWAY: no new streams, open ones may finish
        out, err = download.communicate(timeout=30)
        assert download.returncode == 0, err
        assert int(out) == size
        assert broker.proc.wait(timeout=15) == 0
        refused = subprocess.run([require_curl(), "-sS", "-i", "-x", agent.proxy,
                                  f"http://{origins.host}:{origins.http_port}/"],
                                 capture_output=True, timeout=30).stdout
        assert refused.startswith(b"HTTP/1.1 503")
    finally:
        agent.stop()
        broker.close()


def test_expired_device_certificate_is_named(origins: LocalOrigins, tmp_path: Path) -> None:
    """A laptop that stayed offline past its certificate's validity is told to enrol again."""
    broker = make_broker(tmp_path / "broker", origins, device_cert_validity_seconds=2)
    agent = AgentProcess(tmp_path / "agent")
    try:
        agent.enrol(broker, broker.enrolment_code("test-city"))
        set_agent_option(agent, "keepalive_seconds", 3600)  # no renewal: the laptop was away
        time.sleep(2.5)
        agent.start(wait_connected=False)
        time.sleep(1.0)
        out = subprocess.run([require_curl(), "-sS", "-i", "-x", agent.proxy,
                              f"http://{origins.host}:{origins.http_port}/"],
                             capture_output=True, timeout=30).stdout
        assert out.startswith(b"HTTP/1.1 503")
        assert b"sekimori-reason: device-certificate-expired" in out
    finally:
        agent.stop()
        broker.close()
