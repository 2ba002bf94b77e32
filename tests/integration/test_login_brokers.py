"""Several brokers sharing one PostgreSQL store (a prefecture's deployment): each signs session
tokens with its own key and publishes the public half, so a user who logged in at one broker
keeps working when the agent reconnects to another; a revocation made at one ends the session
at all of them."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from broker.demo import AgentProcess, BrokerProcess, LocalOrigins
from tests.integration.conftest import make_broker, pg_schema_url
from tests.integration.login_harness import (
    TENANT,
    fast_agent,
    fetch,
    identity_toml,
    next_code,
    wait_for,
)
from tests.peers import slapd as peer

pytestmark = pytest.mark.postgres
SHARED_PKI = ("ca.crt", "ca.key", "server.crt", "server.key", "totp-seal.key")


def test_a_session_from_one_broker_works_at_another_and_revocation_reaches_both(
        tmp_path: Path, origins: LocalOrigins, directory: peer.Slapd) -> None:
    with pg_schema_url() as url:
        first = make_broker(tmp_path / "a", origins, database=url,
                            identity_toml=identity_toml(directory))
        second = BrokerProcess(tmp_path / "b", database=url, identity_toml=identity_toml(directory),
                               allowed_ports=[origins.http_port], allowed_networks=[f"{origins.host}/32"])
        agent: AgentProcess | None = None
        try:
            # one CA and one TOTP seal key for the deployment; each broker its own signing key
            for name in SHARED_PKI:
                shutil.copy(first.data_dir / "pki" / name, second.data_dir / "pki" / name)
            assert (first.data_dir / "pki" / "session-signing.key").read_bytes() != \
                (second.data_dir / "pki" / "session-signing.key").read_bytes()
            second.start()
            agent = fast_agent(tmp_path / "agent", first, "roaming-laptop")
            secret = first.enrol_totp(TENANT, "alice")
            out = agent.login("alice", peer.PASSWORDS["alice"], next_code(secret))
            assert out.returncode == 0, out.stdout
            target = f"http://{origins.host}:{origins.http_port}/"
            assert fetch(agent, target)[0] == 200
            # the agent moves to the other broker (a failover, or the next DNS answer)
            agent.stop()
            config = agent.data_dir / "agent.json"
            raw = json.loads(config.read_text())
            raw["broker_port"] = second.info["tunnel_port"]
            config.write_text(json.dumps(raw))
            agent.start()
            status, body = fetch(agent, target)
            assert status == 200, body
            first.store.revoke_login_sessions(TENANT, time.time(), "test", username="alice")
            wait_for(lambda: "session-revoked" in fetch(agent, target)[1], 5,
                     "the revocation made through the first broker to reach the second")
        finally:
            if agent is not None:
                agent.stop()
            second.close()
            first.close()
