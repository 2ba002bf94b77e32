"""The same broker code on PostgreSQL: enrolment, a flow through the tunnel, revocation."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.demo import DEMO_BODY, LocalOrigins
from tests.integration.conftest import make_agent, make_broker, pg_schema_url, require_curl

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_schema_url() as url:
        yield url


def test_broker_on_postgresql(pg_url: str, origins: LocalOrigins, tmp_path: Path) -> None:
    broker = make_broker(tmp_path / "broker", origins, database=pg_url)
    agent = make_agent(tmp_path / "agent", broker)
    try:
        assert "postgresql" in broker.config.database_url
        out = subprocess.run([require_curl(), "-sS", "-x", agent.proxy,
                              f"http://{origins.host}:{origins.http_port}/"],
                             capture_output=True, timeout=30)
        assert out.returncode == 0 and out.stdout == DEMO_BODY
        device = broker.store.list_devices("test-city")[0]
        assert device.status == "active"
        broker.store.revoke_device(device.id, "test", time.time())
        deadline = time.monotonic() + 5
        refused = b""
        while time.monotonic() < deadline:
            refused = subprocess.run([require_curl(), "-sS", "-i", "-x", agent.proxy,
                                      f"http://{origins.host}:{origins.http_port}/"],
                                     capture_output=True, timeout=30).stdout
            if b"device-revoked" in refused:
                break
            time.sleep(0.2)
        assert b"sekimori-reason: device-revoked" in refused
    finally:
        agent.stop()
        broker.close()
