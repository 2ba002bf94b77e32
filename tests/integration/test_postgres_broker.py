"""The same broker code on PostgreSQL: enrolment, a flow through the tunnel, revocation."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.demo import DEMO_BODY, LocalOrigins
from tests.integration.conftest import (_PG_DATABASE, _PG_HOST, _PG_PORT, _pg_admin, _pg_user,
                                        make_agent, make_broker, require_curl)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    user, why = _pg_user()
    if user is None:
        pytest.skip(why)
    schema = f"sk_{secrets.token_hex(6)}"
    _pg_admin(user, f"CREATE SCHEMA {schema}")
    try:
        yield (f"postgresql://{user}@{_PG_HOST}:{_PG_PORT}/{_PG_DATABASE}"
               f"?options=-csearch_path%3D{schema}")
    finally:
        _pg_admin(user, f"DROP SCHEMA {schema} CASCADE")


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
