"""agent/posture_report.py signs, broker/posture_report.py checks: a report is good only from
this device's key, naming this device, recent, with well-formed facts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from agent.posture_report import same_facts, sign_report
from broker.posture_report import PostureReport, verify_report
from ztcore.decision import Decision
from ztcore.posture import PostureFacts
from ztcore.reasons import Reason

NOW = 1_800_000_000.0
KEY = ec.derive_private_key(1234567, ec.SECP256R1())
OTHER = ec.derive_private_key(7654321, ec.SECP256R1())
FACTS = PostureFacts("linux", "Debian GNU/Linux 12 (bookworm)", "12.7", NOW - 86400, True, "LUKS",
                     False, None, None, ("ClamAV",), False, "", "0.1.0", "machine-1", NOW - 1,
                     ("screen-lock: no desktop session",))


def check(token: bytes, key: ec.EllipticCurvePrivateKey = KEY, device: str = "dev-1",
          now: float = NOW) -> PostureReport | Decision:
    return verify_report(token, key.public_key(), device, "city-a", now, max_age_seconds=180)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_signed_report_verifies_with_its_facts() -> None:
    report = check(sign_report(KEY, "dev-1", "city-a", 7, NOW - 5, FACTS))
    assert isinstance(report, PostureReport)
    assert report.seq == 7 and report.facts == FACTS and report.issued_at == NOW - 5


def _reason(result: PostureReport | Decision) -> Reason:
    assert isinstance(result, Decision), result
    return result.reason


def test_refused_reports() -> None:
    good = sign_report(KEY, "dev-1", "city-a", 1, NOW, FACTS)
    head, payload, sig = good.split(b".")
    claims = json.loads(base64.urlsafe_b64decode(payload + b"=="))
    claims["facts"]["firewall_on"] = True
    tampered = head + b"." + b64(json.dumps(claims).encode()).encode() + b"." + sig
    assert _reason(check(tampered)) is Reason.POSTURE_REPORT_INVALID
    assert _reason(check(sign_report(OTHER, "dev-1", "city-a", 1, NOW, FACTS))) \
        is Reason.POSTURE_REPORT_INVALID                                       # another device's key
    assert _reason(check(sign_report(KEY, "dev-2", "city-a", 1, NOW, FACTS))) \
        is Reason.POSTURE_REPORT_INVALID                                       # names another device
    assert _reason(check(sign_report(KEY, "dev-1", "city-a", 1, NOW - 181, FACTS))) \
        is Reason.POSTURE_REPORT_TOO_OLD
    future = check(sign_report(KEY, "dev-1", "city-a", 1, NOW + 600, FACTS))
    assert _reason(future) is Reason.POSTURE_REPORT_INVALID and "future" in future.detail  # type: ignore[union-attr]


@pytest.mark.parametrize("header", [
    {"alg": "none", "typ": "sekimori-posture+jwt"},
    {"alg": "HS256", "typ": "sekimori-posture+jwt"},
    {"alg": "ES256", "typ": "JWT"},
    {"alg": "ES256", "typ": "sekimori-posture+jwt", "jwk": {"kty": "EC"}},
    {"alg": "ES256", "typ": "sekimori-posture+jwt", "jku": "https://evil.example/jwks"},
])
def test_headers_other_than_es256_and_our_type_are_refused(header: dict[str, object]) -> None:
    payload = b64(json.dumps({"dev": "dev-1", "tid": "city-a", "seq": 1, "iat": NOW,
                              "facts": FACTS.to_json_dict()}).encode())
    token = f"{b64(json.dumps(header).encode())}.{payload}.{b64(b'x' * 64)}".encode()
    assert _reason(check(token)) is Reason.POSTURE_REPORT_INVALID


def test_hs256_signed_with_the_public_key_is_refused() -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    public_pem = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    body = json.dumps({"dev": "dev-1", "tid": "city-a", "seq": 1, "iat": NOW,
                       "facts": FACTS.to_json_dict()}).encode()
    # by hand: pyjwt itself refuses to use a PEM public key as an HMAC secret
    signing_input = (b64(json.dumps({"alg": "HS256", "typ": "sekimori-posture+jwt"}).encode())
                     + "." + b64(body)).encode()
    mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    forged = signing_input + b"." + b64(mac).encode()
    assert _reason(check(forged)) is Reason.POSTURE_REPORT_INVALID


@pytest.mark.parametrize("change", [{"firewall_on": "yes"}, {"os_family": "beos"},
                                    {"surprise": 1}, {"edr_running": "ClamAV"}])
def test_malformed_facts_are_refused_naming_the_fact(change: dict[str, object]) -> None:
    facts = {**FACTS.to_json_dict(), **change}
    body = json.dumps({"dev": "dev-1", "tid": "city-a", "seq": 1, "iat": NOW, "facts": facts}).encode()
    token = jwt.PyJWS().encode(body, KEY, algorithm="ES256",
                               headers={"typ": "sekimori-posture+jwt"}).encode()
    refused = check(token)
    assert _reason(refused) is Reason.POSTURE_REPORT_INVALID
    assert refused.detail.startswith("facts.")   # type: ignore[union-attr]


@given(st.binary(max_size=400))
def test_any_bytes_are_refused_without_an_exception(data: bytes) -> None:
    assert isinstance(check(data), Decision)


def test_a_change_is_a_change_but_the_collection_time_is_not() -> None:
    later = PostureFacts(**{**FACTS.to_json_dict(), "collected_at": NOW + 60,
                            "edr_running": FACTS.edr_running, "errors": FACTS.errors})
    assert same_facts(FACTS, later)
    changed = PostureFacts(**{**FACTS.to_json_dict(), "firewall_on": True,
                              "edr_running": FACTS.edr_running, "errors": FACTS.errors})
    assert not same_facts(FACTS, changed) and not same_facts(None, FACTS)
