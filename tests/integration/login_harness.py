"""A broker whose tenant logs in against a real slapd (tests/peers/slapd.py), an enrolled agent,
and helpers for the login tests. Tokens live 6 s and the agent's keepalive runs every 0.5 s, so
every test also exercises the token refresh."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest

from broker.demo import AgentProcess, BrokerProcess, LocalOrigins
from tests.integration.conftest import make_broker, require_curl
from tests.peers import slapd as peer

TENANT = "test-city"
TOKEN_LIFETIME_SECONDS = 6
STEP_UP_HOST = "tax.city.test"
STEP_UP_SECONDS = 3


def identity_toml(server: peer.Slapd, extra: str = "") -> str:
    return f"""[identity]
require_login = true
require_mfa = true
token_lifetime_seconds = {TOKEN_LIFETIME_SECONDS}
max_session_seconds = 3600

[[identity.directory]]
tenant = "{TENANT}"
name = "city-ldap"
kind = "generic"
servers = ["{server.ldaps_url}"]
base_dn = "{peer.SUFFIX}"
bind_dn = "{peer.SERVICE_DN}"
bind_password = "{peer.SERVICE_PASSWORD}"
ca_file = "{server.ca_file}"

[[identity.step_up]]
hosts = ["{STEP_UP_HOST}"]
max_mfa_age_seconds = {STEP_UP_SECONDS}
{extra}"""


def login_broker(root: Path, origins: LocalOrigins, server: peer.Slapd, extra: str = "") -> BrokerProcess:
    return make_broker(root, origins, identity_toml=identity_toml(server, extra),
                       static_hosts={STEP_UP_HOST: [origins.host]})


def fast_agent(root: Path, broker: BrokerProcess, name: str) -> AgentProcess:
    agent = AgentProcess(root)
    agent.enrol(broker, broker.enrolment_code(TENANT), hostname=name)
    config = root / "agent.json"
    raw = json.loads(config.read_text())
    raw["keepalive_seconds"] = 0.5
    config.write_text(json.dumps(raw))
    agent.start()
    return agent


def fetch(agent: AgentProcess, url: str, *args: str) -> tuple[int, str]:
    """Status code and body of a GET through the agent (`-w` puts the code on the last line)."""
    out = subprocess.run([require_curl(), "-sS", "--max-time", "20", "-x", agent.proxy,
                          "-w", "\n%{http_code}", *args, url], capture_output=True, timeout=30)
    body, _, code = out.stdout.decode().rpartition("\n")
    return int(code or 0), body


def next_code(secret: str) -> str:
    """A code for a time-step no code was accepted for yet (TOTP refuses replays)."""
    totp = pyotp.TOTP(secret)
    now = time.time()
    step = int(now) // 30
    # wait into a fresh step when we are late in this one, so drift does not matter
    if now % 30 > 25:
        time.sleep(30 - now % 30 + 0.2)
        step += 1
    return totp.at(step * 30)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def audit_events(broker: BrokerProcess) -> list[dict[str, object]]:
    path = broker.config.audit_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
