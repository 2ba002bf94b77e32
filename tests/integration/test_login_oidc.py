"""Single sign-on through the agent (issue 3): `sekimori-agent login` against a real OpenID
Certified provider (npm oidc-provider, tests/peers/oidc_provider.py), the broker as relying
party, the agent's loopback redirect (RFC 8252). Once headless, once in real Chromium, which then
browses through the agent: refused with login-required before, the page after."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.demo import DEMO_BODY, AgentProcess, BrokerProcess, LocalOrigins, free_port
from tests.integration.conftest import make_broker
from tests.integration.login_harness import TENANT, audit_events, fast_agent, fetch
from tests.peers import oidc_provider as op

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-quic", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def callback_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, callback_port: int) -> Iterator[op.OidcProvider]:
    why = op.unavailable()
    if why:
        pytest.skip(why)
    server = op.start_provider(tmp_path_factory.mktemp("op"),
                               redirect_uris=[f"http://127.0.0.1:{callback_port}/callback"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, origins: LocalOrigins,
           provider: op.OidcProvider, callback_port: int) -> Iterator[BrokerProcess]:
    identity = f"""[identity]
require_login = true
require_mfa = true

[[identity.oidc]]
tenant = "{TENANT}"
name = "city-sso"
issuer = "{provider.issuer}"
client_id = "{op.CONFIDENTIAL_CLIENT}"
client_secret = "{op.CLIENT_SECRET}"
redirect_uri = "http://127.0.0.1:{callback_port}/callback"
scopes = ["openid", "email", "profile", "groups"]
"""
    b = make_broker(tmp_path_factory.mktemp("broker"), origins, identity_toml=identity)
    yield b
    b.close()


@pytest.fixture
def agent(tmp_path: Path, broker: BrokerProcess) -> Iterator[AgentProcess]:
    a = fast_agent(tmp_path / "agent", broker, "sso-laptop")
    yield a
    a.stop()


def start_login(agent: AgentProcess) -> tuple[subprocess.Popen[str], str]:
    """`sekimori-agent login --no-browser`; returns the process and the URL it printed."""
    proc = subprocess.Popen([sys.executable, "-P", "-m", "agent", "login", "--data-dir",
                             str(agent.data_dir), "--no-browser", "--timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("http"):
            return proc, line.strip()
    proc.kill()
    pytest.fail(f"the agent printed no login URL: {proc.stdout.read()}")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def test_sso_login_headless_then_traffic_flows(agent: AgentProcess, broker: BrokerProcess,
                                               origins: LocalOrigins, callback_port: int) -> None:
    assert fetch(agent, f"http://{origins.host}:{origins.http_port}/")[0] == 403
    proc, url = start_login(agent)
    redirect = f"http://127.0.0.1:{callback_port}/callback"
    query = op.headless_login(url, "alice", "alicepw", redirect)
    assert "code" in query and "state" in query
    # the browser's last step: the redirect lands on the agent's loopback listener
    page = httpx.get(redirect, params=query, timeout=30, trust_env=False)
    assert page.status_code == 200 and "ログインしました" in page.text
    code, out = finish(proc)
    assert code == 0 and "alice" in out, out
    status, body = fetch(agent, f"http://{origins.host}:{origins.http_port}/")
    assert status == 200 and body.encode() == DEMO_BODY
    session = (agent.status() or {})["session"]
    assert session["idp"] == "city-sso" and session["mfa"] and "otp" in session["methods"]
    assert any(e["kind"] == "login" and e.get("user") == "alice" and e["decision"] == "allow"
               for e in audit_events(broker))


def test_sso_without_a_second_factor_is_refused(agent: AgentProcess, callback_port: int) -> None:
    proc, url = start_login(agent)
    redirect = f"http://127.0.0.1:{callback_port}/callback"
    query = op.headless_login(url, "bob", "bobpw", redirect)
    page = httpx.get(redirect, params=query, timeout=30, trust_env=False)
    assert page.status_code == 403 and "mfa-required" in page.text
    code, out = finish(proc)
    assert code == 3 and "mfa-required" in out
    assert not (agent.data_dir / "session.json").exists()


def test_a_forged_callback_state_is_refused(agent: AgentProcess, callback_port: int) -> None:
    proc, url = start_login(agent)
    redirect = f"http://127.0.0.1:{callback_port}/callback"
    query = op.headless_login(url, "alice", "alicepw", redirect)
    page = httpx.get(redirect, params={**query, "state": "forged"}, timeout=30, trust_env=False)
    assert page.status_code == 403 and "oidc-state-invalid" in page.text
    code, out = finish(proc)
    assert code == 3 and "oidc-state-invalid" in out


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed (/usr/bin/chromium; "
                    "scripts/setup.sh installs it with SEKIMORI_TEST_PEERS=1)")
def test_chromium_logs_in_and_browses_through_the_agent(agent: AgentProcess,
                                                         origins: LocalOrigins) -> None:
    from playwright.sync_api import sync_playwright

    target = f"http://{origins.host}:{origins.http_port}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            proxied = browser.new_context(proxy={"server": agent.proxy})
            page = proxied.new_page()
            response = page.goto(target)
            assert response is not None and response.status == 403
            assert "login-required" in page.content() and "ログインが必要です" in page.content()
            proc, url = start_login(agent)
            login_page = browser.new_context().new_page()   # the IdP and loopback: no proxy
            login_page.goto(url)
            login_page.fill("input[name=login]", "alice")
            login_page.fill("input[name=password]", "alicepw")
            login_page.click("button[type=submit]")
            login_page.wait_for_selector("text=ログインしました", timeout=30_000)
            code, out = finish(proc)
            assert code == 0, out
            response = page.goto(target)
            assert response is not None and response.status == 200
            assert DEMO_BODY.decode().strip() in page.content()
        finally:
            browser.close()
