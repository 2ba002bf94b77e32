"""The foundation path with real peers: curl → agent proxy → mTLS HTTP/2 tunnel → broker → origin."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from broker.demo import DEMO_BODY, AgentProcess, BrokerProcess, LocalOrigins
from tests.integration.conftest import require_curl


def curl(agent: AgentProcess, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([require_curl(), "-sS", "--max-time", "20", "-x", agent.proxy, *args],
                         capture_output=True, timeout=timeout)
    # decode by hand: text=True would turn the CRLFs of a response head into LFs
    return subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(),
                                       out.stderr.decode())


def curl_headers(agent: AgentProcess, url: str) -> tuple[int, dict[str, str], str]:
    """GET url (absolute-form through the proxy); returns status, headers, body."""
    out = curl(agent, "-i", url)
    head, _, body = out.stdout.partition("\r\n\r\n")
    lines = head.split("\r\n")
    assert lines and lines[0].startswith("HTTP/1.1 "), f"no HTTP response: {out.stdout!r} {out.stderr!r}"
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), fields, body


def test_http_through_tunnel(agent: AgentProcess, origins: LocalOrigins) -> None:
    out = curl(agent, f"http://{origins.host}:{origins.http_port}/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.encode() == DEMO_BODY


def test_https_through_tunnel(agent: AgentProcess, origins: LocalOrigins) -> None:
    out = curl(agent, "--cacert", str(origins.ca_path), f"https://{origins.host}:{origins.https_port}/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.encode() == DEMO_BODY


def test_upload_and_large_download(agent: AgentProcess, origins: LocalOrigins) -> None:
    size = 48 * 1024 * 1024  # several stream windows' worth of flow control
    out = subprocess.run([require_curl(), "-sS", "-p", "-x", agent.proxy, "-o", "/dev/null",
                          "-w", "%{size_download}",
                          f"http://{origins.host}:{origins.http_port}/bytes/{size}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == size
    body = b"x" * (3 * 1024 * 1024)
    up = subprocess.run([require_curl(), "-sS", "-x", agent.proxy, "--data-binary", "@-",
                         "--cacert", str(origins.ca_path),
                         f"https://{origins.host}:{origins.https_port}/upload"],
                        input=body, capture_output=True, timeout=60)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout) == {"received_bytes": len(body)}


@pytest.mark.parametrize(("url", "reason"), [
    ("http://169.254.169.254/latest/meta-data/", "address-metadata"),
    ("http://10.0.0.1/", "address-private"),
    ("http://[::ffff:127.0.0.1]/", "address-ipv4-mapped"),
    ("http://2130706433/", "address-loopback"),
    ("http://localhost/", "address-loopback"),          # a name that resolves to loopback
    ("http://intranet.city.test/", "address-private"),  # a name that resolves to a private address
    ("http://mixed.city.test/", "address-private"),     # public + private answer: refused whole
    ("http://192.168.1.1/", "address-private"),
    ("http://100.64.0.1/", "address-cgnat"),
    ("http://198.51.100.7:25/", "port-not-allowed"),
])
def test_denied_destinations_carry_reasons(agent: AgentProcess, url: str, reason: str) -> None:
    status, fields, body = curl_headers(agent, url)
    assert status == 403
    assert fields["sekimori-reason"] == reason
    assert fields["sekimori-message-en"]
    assert unquote(fields["sekimori-message-ja"]).isprintable()
    assert reason in body


def test_connect_denial_reported_to_curl(agent: AgentProcess) -> None:
    out = curl(agent, "-o", "/dev/null", "-w", "%{http_connect}", "https://10.0.0.1/")
    assert out.stdout == "403"
    st = agent.status()
    assert st is not None and st["last_denial"]["reason"] == "address-private"


def test_malformed_authority_is_refused_with_reason(agent: AgentProcess) -> None:
    with socket.create_connection(("127.0.0.1", agent.proxy_port), timeout=10) as sock:
        sock.sendall(b"CONNECT bad..name:443 HTTP/1.1\r\nHost: bad..name:443\r\n\r\n")
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 400")
    assert "sekimori-reason: authority-invalid" in answer


def test_pac_and_status(agent: AgentProcess) -> None:
    pac = curl(agent, "--noproxy", "*", f"http://127.0.0.1:{agent.proxy_port}/proxy.pac")
    assert f"PROXY 127.0.0.1:{agent.proxy_port}" in pac.stdout
    assert "DIRECT" in pac.stdout and "; DIRECT" not in pac.stdout  # no direct fallback
    status = subprocess.run([str(Path(sys.executable).parent / "sekimori-agent"), "status", "--data-dir", str(agent.data_dir)],
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "connected" in status.stdout


def test_device_list_shows_last_seen(agent: AgentProcess, broker: BrokerProcess) -> None:
    device = (agent.status() or {})["device"]
    deadline = time.monotonic() + 5  # recorded off the loop, in a worker thread
    while broker.store.get_device(device).last_seen_at is None:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "last-seen time never recorded"
        time.sleep(0.05)
    out = subprocess.run([str(Path(sys.executable).parent / "sekimori"), "device", "list",
                          "--data-dir", str(broker.data_dir)], capture_output=True, text=True,
                         timeout=30, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert device[:8] in out.stdout and "active" in out.stdout


def test_audit_event_per_stream(agent: AgentProcess, broker: BrokerProcess, origins: LocalOrigins) -> None:
    url = f"http://{origins.host}:{origins.http_port}/audit-probe"
    assert curl(agent, url).returncode == 0
    events = [json.loads(line) for line in broker.config.audit_path.read_text().splitlines()]
    mine = [e for e in events if e.get("destination") == f"{origins.host}:{origins.http_port}"
            and e["decision"] == "allow"]
    assert mine, events[-3:]
    last = mine[-1]
    assert last["tenant"] == "test-city" and last["device"]
    assert last["bytes_up"] > 0 and last["bytes_down"] >= len(DEMO_BODY)
    assert last["duration_seconds"] >= 0 and last["time_iso"].endswith("+00:00")
    denied = [e for e in events if e["decision"] == "deny"]
    for event in denied:
        assert event["reason"] and event["message_ja"] and event["message_en"]
