"""Session tokens (broker/sessions.py): every forgery refused.

Forged tokens are built by hand (base64url + json + hmac), not with the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import urllib.request
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import sessions
from broker.sessions import (
    SessionAuthority,
    SessionConfig,
)
from tests.unit.broker.sessions_harness import (
    AUTHORITY,
    CLAIMS,
    DEVICE,
    KEY_A,
    KEY_B,
    KID_A,
    LIFETIME,
    NOW,
    PRINCIPAL,
    TOKEN,
    assert_invalid,
    b64,
    ed25519,
    forge,
    unb64,
    verify,
)

# -- forgeries -----------------------------------------------------------------------------------

def test_a_tampered_payload_is_refused() -> None:
    header, payload, signature = TOKEN.split(".")
    claims = dict(CLAIMS, groups=[*CLAIMS["groups"], "Domain Admins"])
    assert_invalid(verify(f"{header}.{b64(json.dumps(claims).encode())}.{signature}"))


def test_a_signature_from_another_key_is_refused() -> None:
    assert_invalid(verify(forge({"alg": "EdDSA", "kid": KID_A, "typ": "JWT"}, CLAIMS,
                                ed25519(KEY_B))))


def test_a_correct_signature_is_still_accepted_when_forged_by_hand_with_our_key() -> None:
    # The control for the forgeries: the same hand-made token, signed with the right key, passes.
    assert verify(forge({"alg": "EdDSA", "kid": KID_A, "typ": "JWT"}, CLAIMS,
                        ed25519(KEY_A))).allowed


@pytest.mark.parametrize("signature", ["", "AAAA"])
def test_alg_none_is_refused(signature: str) -> None:
    for alg in ("none", "None", "NONE"):
        token = forge({"alg": alg, "kid": KID_A, "typ": "JWT"}, CLAIMS, None) + signature
        assert_invalid(verify(token))


PUBLIC_PEM = KEY_A.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
PUBLIC_RAW = KEY_A.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)


@pytest.mark.parametrize("alg, secret, digest", [
    ("HS256", PUBLIC_PEM, hashlib.sha256), ("HS256", PUBLIC_RAW, hashlib.sha256),
    ("HS256", KID_A.encode(), hashlib.sha256), ("HS512", PUBLIC_PEM, hashlib.sha512),
])
def test_hmac_with_our_public_key_as_the_secret_is_refused(alg: str, secret: bytes,
                                                           digest: Any) -> None:
    token = forge({"alg": alg, "kid": KID_A, "typ": "JWT"}, CLAIMS,
                  lambda data: hmac.new(secret, data, digest).digest())
    assert_invalid(verify(token))


def test_other_asymmetric_algorithms_are_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(CLAIMS, ec_key, algorithm="ES256", headers={"kid": KID_A})
    assert_invalid(verify(token))


@pytest.mark.parametrize("kid", [None, "", "unknown", 42, ["x"], "../../../../dev/null",
                                 "' OR '1'='1", sessions.jwk_thumbprint(KEY_B.public_key())])
def test_unknown_or_injected_kid_is_refused(kid: object) -> None:
    header: dict[str, Any] = {"alg": "EdDSA", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    assert_invalid(verify(forge(header, CLAIMS, ed25519(KEY_B))))
    assert_invalid(verify(forge(header, CLAIMS, ed25519(KEY_A))))


def _jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}


@pytest.mark.parametrize("extra", [
    {"jwk": _jwk(KEY_B)},
    {"jku": "http://127.0.0.1:9/jwks.json"},
    {"x5u": "http://127.0.0.1:9/cert.pem"},
    {"x5c": ["MIIB"]},
    {"crit": ["exp"]},
    {"b64": False, "crit": ["b64"]},
    {"typ": "at+jwt"},
    {"cty": "JWT"},
])
def test_key_carrying_and_unknown_headers_are_refused_without_fetching(
        extra: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the session check tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    for key in (KEY_A, KEY_B):
        header = {"alg": "EdDSA", "kid": sessions.jwk_thumbprint(key.public_key()), **extra}
        assert_invalid(verify(forge(header, CLAIMS, ed25519(key))))


@pytest.mark.parametrize("change", [
    {"iss": "https://evil.example"}, {"aud": "sekimori:admin"},
    {"aud": ["sekimori:tunnel", "other"]}, {"iss": None},
    {"exp": "1750000600"}, {"exp": True}, {"iat": None}, {"nbf": 1e400},
    {"exp": NOW - 10},                                   # expires before it was issued
    {"cnf": {}}, {"cnf": {"x5t#S256": "short"}}, {"cnf": DEVICE},
    {"jti": ""}, {"jti": 7}, {"sid": "a b"},
    {"tid": "Kita City"}, {"mfa": "true"}, {"groups": "telework"}, {"amr": []},
    {"auth_time": NOW + 3600},
])
def test_well_signed_but_wrong_claims_are_refused(change: dict[str, Any]) -> None:
    claims = {**CLAIMS, **change}
    token = forge({"alg": "EdDSA", "kid": KID_A, "typ": "JWT"}, claims, ed25519(KEY_A))
    assert_invalid(verify(token))


@pytest.mark.parametrize("missing", ["iss", "aud", "sub", "tid", "iat", "nbf", "exp", "jti",
                                     "sid", "auth_time", "amr", "mfa", "groups", "cnf",
                                     "preferred_username", "name", "email", "idp"])
def test_every_claim_is_required(missing: str) -> None:
    claims = {k: v for k, v in CLAIMS.items() if k != missing}
    token = forge({"alg": "EdDSA", "kid": KID_A, "typ": "JWT"}, claims, ed25519(KEY_A))
    assert_invalid(verify(token))


def test_a_token_from_another_issuer_with_our_key_is_refused() -> None:
    config = SessionConfig(issuer="https://other-broker", audience="sekimori:tunnel")
    other = SessionAuthority(config, AUTHORITY.ring)
    assert_invalid(verify(other.issue(PRINCIPAL, DEVICE, NOW, LIFETIME, jti="x")))


def test_oversized_and_non_canonical_tokens_are_refused() -> None:
    header, payload, signature = TOKEN.split(".")
    assert_invalid(verify(f"{header}.{payload}{'A' * sessions.MAX_TOKEN_BYTES}.{signature}"))
    # "A" + spare bits: the same bytes after decoding, but a second spelling of the token.
    last = signature[-1]
    respelled = next(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                     if c != last and unb64(signature[:-1] + c) == unb64(signature))
    assert_invalid(verify(f"{header}.{payload}.{signature[:-1]}{respelled}"))
    assert verify(TOKEN.encode()).allowed      # bytes are fine when they are the same token


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_random_bytes_are_session_invalid_and_never_raise(data: bytes) -> None:
    assert_invalid(verify(data))


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.",
               max_size=400))
def test_random_jws_shaped_text_is_session_invalid(text: str) -> None:
    assert_invalid(verify(text))


@settings(max_examples=300)
@given(st.data())
def test_any_one_character_change_to_a_valid_token_is_refused(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(TOKEN) - 1))
    char = data.draw(st.sampled_from(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ").filter(
            lambda c: c != TOKEN[index]))
    assert_invalid(verify(TOKEN[:index] + char + TOKEN[index + 1:]))
