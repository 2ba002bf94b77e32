"""Staff log in with their Active Directory account (a real Samba AD DC, tests/peers/samba_ad.py)
through the agent: no IdP in between, nested groups through LDAP_MATCHING_RULE_IN_CHAIN, and
AD's own refusal (a disabled account, bind sub-code 533) shown to the user with its reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.demo import DEMO_BODY, AgentProcess, BrokerProcess, LocalOrigins
from tests.integration.conftest import make_broker
from tests.integration.login_harness import TENANT, fast_agent, fetch, next_code
from tests.peers import samba_ad as peer
from tests.peers.samba_ad import samba_dc  # noqa: F401  (the session's DC, shared with other modules)

pytestmark = pytest.mark.samba


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, origins: LocalOrigins,
           samba_dc: peer.SambaDC) -> Iterator[BrokerProcess]:  # noqa: F811
    identity = f"""[identity]
require_login = true
require_mfa = true

[[identity.directory]]
tenant = "{TENANT}"
name = "city-ad"
kind = "ad"
servers = ["{samba_dc.ldaps_url}"]
base_dn = "{samba_dc.base_dn}"
bind_dn = "{samba_dc.service_upn}"
bind_password = "{samba_dc.service_password}"
ca_file = "{samba_dc.ca_file}"
"""
    b = make_broker(tmp_path_factory.mktemp("broker"), origins, identity_toml=identity)
    yield b
    b.close()


@pytest.fixture
def agent(tmp_path: Path, broker: BrokerProcess) -> Iterator[AgentProcess]:
    a = fast_agent(tmp_path / "agent", broker, "ad-laptop")
    yield a
    a.stop()


def test_an_ad_user_logs_in_with_password_and_totp(agent: AgentProcess, broker: BrokerProcess,
                                                   origins: LocalOrigins) -> None:
    secret = broker.enrol_totp(TENANT, "alice")
    out = agent.login("alice", peer.PASSWORDS["alice"], next_code(secret))
    assert out.returncode == 0, out.stdout + out.stderr
    session = json.loads((agent.data_dir / "session.json").read_text())
    assert session["display_name"] == "田中 アリス" and session["idp"] == "city-ad"
    assert {"tax-clerks", "tax-dept", "all-staff"} <= set(session["groups"])   # nested, in-chain
    status, body = fetch(agent, f"http://{origins.host}:{origins.http_port}/")
    assert status == 200 and body.encode() == DEMO_BODY


def test_a_disabled_ad_account_is_refused_with_its_reason(agent: AgentProcess) -> None:
    out = agent.login("dora", peer.PASSWORDS["dora"], "000000")
    assert out.returncode == 3 and "account-disabled" in out.stdout, out.stdout
    assert "無効" in out.stdout or "disabled" in out.stdout


def test_a_wrong_ad_password_is_refused(agent: AgentProcess) -> None:
    out = agent.login("henry", "Wr0ng!Passw0rd", "000000")   # one bad bind: far from lockout
    assert out.returncode == 3 and "credentials-invalid" in out.stdout
