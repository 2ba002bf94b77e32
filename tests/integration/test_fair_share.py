"""Per-tenant fair share (issue 5): a municipality's concurrent streams at the broker are capped
by its quota, so one heavy user cannot starve the others; other tenants are not affected."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.demo import AgentProcess, BrokerProcess, LocalOrigins
from tests.integration.conftest import NO_LOGIN, make_agent, make_broker, require_curl
from tests.integration.login_harness import fetch, wait_for


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, origins: LocalOrigins) -> Iterator[BrokerProcess]:
    b = make_broker(tmp_path_factory.mktemp("broker"), origins,
                    identity_toml=NO_LOGIN + '\n[quotas.test-city]\nmax_streams = 2\nmax_mbps = 40\n')
    b.add_tenant("big-city", "大きな市")
    yield b
    b.close()


def hold(agent: AgentProcess, origins: LocalOrigins) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", agent.proxy_port), timeout=10)
    target = f"{origins.host}:{origins.http_port}"
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def test_a_tenant_at_its_quota_is_refused_and_others_are_not(
        broker: BrokerProcess, origins: LocalOrigins, tmp_path: Path) -> None:
    small = make_agent(tmp_path / "small", broker, "small-pc")
    other = AgentProcess(tmp_path / "other")
    other.enrol(broker, broker.enrolment_code("big-city"), hostname="big-pc")
    other.start()
    try:
        held = [hold(small, origins), hold(small, origins)]
        status, body = fetch(small, f"http://{origins.host}:{origins.http_port}/")
        assert status == 503 and "tenant-quota-exceeded" in body
        assert fetch(other, f"http://{origins.host}:{origins.http_port}/")[0] == 200
        held.pop().close()
        wait_for(lambda: fetch(small, f"http://{origins.host}:{origins.http_port}/")[0] == 200, 5,
                 "a freed share to be usable again")
        for sock in held:
            sock.close()
    finally:
        small.stop()
        other.stop()


def test_a_tenants_downloads_are_held_to_its_bandwidth_share(
        broker: BrokerProcess, origins: LocalOrigins, tmp_path: Path) -> None:
    """40 Mbit/s = 5 MB/s for test-city: 30 MB take about 6 s (less the 1 s burst), while
    big-city (no limit) is not slowed."""
    small = make_agent(tmp_path / "small", broker, "small-pc")
    try:
        started = time.monotonic()
        out = subprocess.run([require_curl(), "-sS", "-x", small.proxy, "-o", "/dev/null", "-w",
                              "%{size_download}", f"http://{origins.host}:{origins.http_port}/bytes/"
                              f"{30 * 1000 * 1000}"], capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - started
        assert out.returncode == 0 and int(out.stdout) == 30 * 1000 * 1000, out.stderr
        rate = 30 / elapsed
        assert 3.5 <= rate <= 6.5, f"{rate:.1f} MB/s for a 5 MB/s share ({elapsed:.1f} s)"
    finally:
        small.stop()
