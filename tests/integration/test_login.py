"""Logging in over the tunnel (issue 3): Active Directory-style directory login (a real slapd
over LDAPS) plus TOTP, session tokens on every stream, refresh, logout, revocation within 2 s,
device binding and step-up, driven through `sekimori-agent login` and curl."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.demo import DEMO_BODY, AgentProcess, BrokerProcess, LocalOrigins
from tests.integration.login_harness import (
    STEP_UP_HOST,
    STEP_UP_SECONDS,
    TENANT,
    TOKEN_LIFETIME_SECONDS,
    audit_events,
    fast_agent,
    fetch,
    login_broker,
    next_code,
    wait_for,
)
from tests.peers import slapd as peer

PW = peer.PASSWORDS


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, origins: LocalOrigins,
           directory: peer.Slapd) -> Iterator[BrokerProcess]:
    b = login_broker(tmp_path_factory.mktemp("broker"), origins, directory)
    yield b
    b.close()


@pytest.fixture(scope="module")
def secrets(broker: BrokerProcess) -> dict[str, str]:
    """TOTP secrets enrolled with the admin command (henry has none)."""
    return {user: broker.enrol_totp(TENANT, user)
            for user in ("alice", "bob", "carol", "dave", "hanako")}


@pytest.fixture
def new_agent(tmp_path: Path, broker: BrokerProcess) -> Iterator[AgentProcess]:
    agent = fast_agent(tmp_path / "agent", broker, f"laptop-{tmp_path.name[-12:]}")
    yield agent
    agent.stop()


def origin(origins: LocalOrigins) -> str:
    return f"http://{origins.host}:{origins.http_port}/"


def login(agent: AgentProcess, user: str, secrets: dict[str, str], code: str | None = None,
          password: str | None = None) -> subprocess.CompletedProcess[str]:
    return agent.login(user, PW[user] if password is None else password,
                       next_code(secrets[user]) if code is None else code)


def test_streams_are_refused_until_the_user_logs_in(new_agent: AgentProcess, origins: LocalOrigins,
                                                    secrets: dict[str, str]) -> None:
    status, body = fetch(new_agent, origin(origins))
    assert status == 403 and "login-required" in body and "sekimori-agent login" in body
    info = new_agent.status() or {}
    assert info["session"] is None and info["last_denial"]["reason"] == "login-required"
    https = fetch(new_agent, f"https://{origins.host}:{origins.https_port}/", "--cacert",
                  str(origins.ca_path))
    assert https[0] != 200


def test_password_and_totp_login_then_traffic_flows_and_the_token_is_refreshed(
        new_agent: AgentProcess, broker: BrokerProcess, origins: LocalOrigins,
        secrets: dict[str, str]) -> None:
    out = login(new_agent, "alice", secrets)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "alice" in out.stdout and "otp, pwd" in out.stdout
    status, body = fetch(new_agent, origin(origins))
    assert status == 200 and body.encode() == DEMO_BODY
    session = (new_agent.status() or {})["session"]
    assert session["user"] == "alice" and session["methods"] == ["otp", "pwd"] and session["mfa"]
    assert (new_agent.data_dir / "session.json").stat().st_mode & 0o777 == 0o600
    first = json.loads((new_agent.data_dir / "session.json").read_text())["token"]
    # past the token's lifetime: the agent has refreshed it over the tunnel meanwhile
    time.sleep(TOKEN_LIFETIME_SECONDS + 1.5)
    assert fetch(new_agent, origin(origins))[0] == 200
    assert json.loads((new_agent.data_dir / "session.json").read_text())["token"] != first
    events = audit_events(broker)
    logins = [e for e in events if e["kind"] == "login" and e.get("user") == "alice"]
    assert logins and logins[-1]["decision"] == "allow"
    streams = [e for e in events if e["kind"] == "stream" and e.get("user") == "alice"]
    assert streams and streams[-1]["decision"] == "allow"
    assert any(e["kind"] == "session-refresh" and e.get("user") == "alice" for e in events)


@pytest.mark.parametrize(("user", "password", "reason"), [
    ("bob", "wrong-password", "credentials-invalid"),
    ("bob", "", "password-empty"),
    ("bob", "   ", "password-empty"),
    ("*", PW["bob"], "credentials-invalid"),
    ("*)(uid=*", PW["bob"], "credentials-invalid"),
    ("admin)(|(a=*", PW["bob"], "credentials-invalid"),
    ("nobody", PW["bob"], "credentials-invalid"),      # an unknown user looks like a bad password
])
def test_bad_credentials_and_injection_usernames_are_refused(
        new_agent: AgentProcess, origins: LocalOrigins, secrets: dict[str, str], user: str,
        password: str, reason: str) -> None:
    out = new_agent.login(user, password, "000000")
    assert out.returncode == 3 and reason in out.stdout, out.stdout + out.stderr
    assert not (new_agent.data_dir / "session.json").exists()
    assert fetch(new_agent, origin(origins))[0] == 403


def test_a_totp_code_is_accepted_once(new_agent: AgentProcess, secrets: dict[str, str]) -> None:
    code = next_code(secrets["bob"])
    first = login(new_agent, "bob", secrets, code)
    assert first.returncode == 0, first.stdout
    again = login(new_agent, "bob", secrets, code)
    assert again.returncode == 3 and "totp-replayed" in again.stdout
    wrong = login(new_agent, "bob", secrets, "123456" if code != "123456" else "654321")
    assert wrong.returncode == 3 and ("totp-invalid" in wrong.stdout or "totp-replayed" in wrong.stdout)


def test_a_user_without_totp_cannot_log_in_when_mfa_is_required(
        new_agent: AgentProcess, secrets: dict[str, str]) -> None:
    out = new_agent.login("henry", PW["henry"], "")
    assert out.returncode == 3 and "totp-not-enrolled" in out.stdout


def _open_tunnel(agent: AgentProcess, host: str, port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", agent.proxy_port), timeout=10)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def test_revoking_a_users_sessions_ends_open_streams_within_two_seconds(
        new_agent: AgentProcess, broker: BrokerProcess, origins: LocalOrigins,
        secrets: dict[str, str]) -> None:
    assert login(new_agent, "carol", secrets).returncode == 0
    held = _open_tunnel(new_agent, origins.host, origins.https_port)   # an idle TLS stream
    revoked = subprocess.run([sys.executable, "-P", "-m", "broker", "session", "revoke", "--tenant",
                              TENANT, "--user", "carol", "--data-dir", str(broker.data_dir)],
                             capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0 and "1 session(s) revoked" in revoked.stdout, revoked.stdout
    started = time.monotonic()
    held.settimeout(5)
    try:
        data = held.recv(4096)
    except (ConnectionResetError, TimeoutError, OSError):
        data = b""
    elapsed = time.monotonic() - started
    assert data == b"" and elapsed <= 2.0, f"stream still open after {elapsed:.2f} s"
    status, body = fetch(new_agent, origin(origins))
    assert status == 403 and "session-revoked" in body
    assert any(e["kind"] == "stream" and e.get("user") == "carol" and e["reason"] == "session-revoked"
               for e in audit_events(broker))


def test_a_session_copied_to_another_device_is_refused(
        new_agent: AgentProcess, tmp_path: Path, broker: BrokerProcess, origins: LocalOrigins,
        secrets: dict[str, str]) -> None:
    assert login(new_agent, "dave", secrets).returncode == 0
    thief = fast_agent(tmp_path / "thief", broker, "thief-laptop")
    try:
        shutil.copy(new_agent.data_dir / "session.json", thief.data_dir / "session.json")
        status, body = fetch(thief, origin(origins))
        assert status == 403 and "session-device-mismatch" in body
        assert fetch(new_agent, origin(origins))[0] == 200
    finally:
        thief.stop()


def test_step_up_asks_for_a_fresh_login_on_sensitive_apps_and_logout_revokes(
        new_agent: AgentProcess, broker: BrokerProcess, origins: LocalOrigins,
        secrets: dict[str, str]) -> None:
    assert login(new_agent, "hanako", secrets).returncode == 0
    sensitive = f"http://{STEP_UP_HOST}:{origins.http_port}/"
    assert fetch(new_agent, sensitive)[0] == 200
    time.sleep(STEP_UP_SECONDS + 1)
    status, body = fetch(new_agent, sensitive)
    assert status == 403 and "mfa-too-old" in body
    assert (new_agent.status() or {})["last_denial"]["reason"] == "mfa-too-old"
    assert fetch(new_agent, origin(origins))[0] == 200     # other apps are not affected
    # logout ends the session at the broker: the old token no longer works anywhere
    saved = (new_agent.data_dir / "session.json").read_bytes()
    out = new_agent.logout()
    assert out.returncode == 0 and "logged out" in out.stdout
    assert fetch(new_agent, origin(origins))[0] == 403
    (new_agent.data_dir / "session.json").write_bytes(saved)
    wait_for(lambda: "session-revoked" in fetch(new_agent, origin(origins))[1], 5,
             "the logged-out token to be refused")
