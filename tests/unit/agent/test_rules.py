"""Signed agent rules (broker/agent_rules.py → agent/rules.py): what the agent accepts and what
it refuses, each refusal with its reason; the rules in force never go back in time."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from agent.rules import RulesError, newer, verify_rules
from broker.agent_rules import sign_rules
from broker.pki import DeviceIdentity, make_ca, make_server_cert, sign_device
from ztcore.agent_rules import AgentRules, parse_agent_rules
from ztcore.breakout import BreakoutRule, BreakoutRules, RuleSource
from ztcore.keys import new_key
from ztcore.split_dns import DnsRecord, SplitDnsConfig

NOW = 1_795_000_000.0
CA_KEY = new_key()
CA = make_ca(CA_KEY, "test CA", NOW - 3600, 10 * 86400, 1)
SERVER_KEY = new_key()
SERVER = make_server_cert(CA, CA_KEY, SERVER_KEY, ["broker.test"], NOW - 3600, 86400, 2)
RULES = AgentRules(
    tenant_id="city", device_id="dev-1", issued_at=NOW,
    breakout=BreakoutRules("city", "2024041700", (
        BreakoutRule("*.sharepoint.com", True, RuleSource.M365, 31, "optimize", ((443, 443),)),)),
    dns=SplitDnsConfig(zones=("city.lg.jp",),
                       records=(DnsRecord("tax.city.lg.jp", ("10.0.0.5",)),)),
    captive_portal_minutes=5)


def signed(rules: AgentRules = RULES, key=SERVER_KEY, chain=(SERVER, CA)) -> str:  # type: ignore[no-untyped-def]
    return sign_rules(rules, key, list(chain))


def test_round_trip() -> None:
    got = verify_rules(signed(), CA, "city", "dev-1", NOW)
    assert got == RULES and got.version == RULES.version
    assert parse_agent_rules(json.loads(json.dumps(RULES.to_json_dict()))) == RULES


@pytest.mark.parametrize(("tenant", "device", "message"), [
    ("other", "dev-1", "tenant"), ("city", "dev-2", "device")])
def test_for_another_device_or_tenant(tenant: str, device: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        verify_rules(signed(), CA, tenant, device, NOW)


def test_another_ca_is_refused() -> None:
    other_key = new_key()
    other_ca = make_ca(other_key, "other", NOW - 3600, 86400, 3)
    with pytest.raises(RulesError, match="not signed by this broker's CA"):
        verify_rules(signed(), other_ca, "city", "dev-1", NOW)


def test_a_device_certificate_cannot_sign_rules() -> None:
    device_key = new_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
           .sign(device_key, hashes.SHA256()))
    device_cert = sign_device(csr, CA, CA_KEY, DeviceIdentity("city", "dev-1"), NOW - 60, 86400, 4)
    with pytest.raises(RulesError, match="not a broker's"):
        verify_rules(signed(key=device_key, chain=(device_cert,)), CA, "city", "dev-1", NOW)


def test_tampered_body_is_refused() -> None:
    header, body, signature = signed().split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["rules"]["breakout"]["rules"][0]["pattern"] = "*.example.com"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(RulesError, match="signature"):
        verify_rules(f"{header}.{forged}.{signature}", CA, "city", "dev-1", NOW)


def test_key_not_matching_certificate_is_refused() -> None:
    with pytest.raises(RulesError, match="signature"):
        verify_rules(signed(key=new_key()), CA, "city", "dev-1", NOW)


def test_expired_broker_certificate_only_matters_on_arrival() -> None:
    token = signed()
    with pytest.raises(RulesError, match="not valid now"):
        verify_rules(token, CA, "city", "dev-1", NOW + 2 * 86400)
    assert verify_rules(token, CA, "city", "dev-1", None) == RULES   # the cached copy


@pytest.mark.parametrize("token", ["", "a.b", "x.y.z", jwt.encode({"a": 1}, "k" * 32, algorithm="HS256")])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(RulesError):
        verify_rules(token, CA, "city", "dev-1", NOW)


def test_invalid_rules_inside_a_valid_signature_are_refused() -> None:
    bad = AgentRules("city", "dev-1", NOW, BreakoutRules("city", "v", (
        BreakoutRule("a b", True, RuleSource.INCLUDE),)), SplitDnsConfig(), 0)
    with pytest.raises(RulesError, match="invalid rules"):
        verify_rules(signed(bad), CA, "city", "dev-1", NOW)


def test_rules_never_go_back_in_time() -> None:
    older = AgentRules("city", "dev-1", NOW - 10, RULES.breakout, RULES.dns, 5)
    assert newer(RULES, None) and newer(RULES, older) and not newer(older, RULES)
