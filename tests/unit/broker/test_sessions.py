"""Session tokens (broker/sessions.py): issue, verify, rotate, refresh, and every forgery refused.

Forged tokens are built by hand here (base64url + json + hmac), not with the code under test;
a token we issue is also checked with pyjwt's full decoder over our JWK Set, an API the core
does not use.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import socket
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import sessions
from broker.sessions import (
    KeyRing,
    SessionAuthority,
    SessionConfig,
    SessionDecision,
    SessionError,
    thumbprint_of,
)
from ztcore.decision import Action
from ztcore.errors import ConfigError
from ztcore.principal import Principal
from ztcore.reasons import Reason

NOW = 1_750_000_000.0
KEY_A = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY_B = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
KEY_C = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
CONFIG = SessionConfig(issuer="https://broker.pref.example.lg.jp", audience="sekimori:tunnel")
AUTHORITY = SessionAuthority(CONFIG, KeyRing(KEY_A))
DEVICE = thumbprint_of(b"DER of the device certificate of laptop-17")
OTHER_DEVICE = thumbprint_of(b"DER of the device certificate of laptop-18")
LIFETIME = 600
LEEWAY = CONFIG.leeway_seconds
NO_REVOCATIONS: frozenset[str] = frozenset()


def principal(**changes: Any) -> Principal:
    fields: dict[str, Any] = dict(
        tenant="kita-city", subject="S-1-5-21-1004336348-1177238915-682003330-1105",
        username="tanaka", display_name="田中　花子", email="tanaka@city.kita.lg.jp",
        groups=frozenset({"CN=住民課,OU=Groups,DC=kita,DC=local", "telework"}),
        auth_methods=frozenset({"pwd", "otp"}), auth_time=NOW - 60.5, mfa=True,
        idp="ad:kita-dc")
    fields.update(changes)
    return Principal(**fields)


PRINCIPAL = principal()
TOKEN = AUTHORITY.issue(PRINCIPAL, DEVICE, NOW, LIFETIME, jti="jti-1")


def verify(token: str | bytes, now: float = NOW, device: str = DEVICE,
           revoked: frozenset[str] = NO_REVOCATIONS, max_mfa_age: int | None = None,
           authority: SessionAuthority = AUTHORITY) -> SessionDecision:
    return authority.verify(token, device, now, revoked, max_mfa_age)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload))


def forge(header: dict[str, Any], claims: dict[str, Any],
          sign: Callable[[bytes], bytes] | None) -> str:
    signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()))
    return signing_input + "." + (b64(sign(signing_input.encode())) if sign else "")


def ed25519(key: Ed25519PrivateKey) -> Callable[[bytes], bytes]:
    return key.sign


CLAIMS = parts(TOKEN)[1]
KID_A = AUTHORITY.ring.active_kid


def assert_invalid(decision: SessionDecision) -> None:
    assert decision.decision.action is Action.DENY
    assert decision.reasons == (Reason.SESSION_INVALID,)
    assert decision.principal is None and decision.decision.status == 401


# -- thumbprints ---------------------------------------------------------------------------------

def test_jwk_thumbprint_matches_rfc8037_appendix_a3() -> None:
    key = Ed25519PrivateKey.from_private_bytes(unb64("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"))
    assert b64(key.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)) \
        == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    expected = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert sessions.jwk_thumbprint(key.public_key()) == expected
    assert KeyRing(key).active_kid == expected


def test_certificate_thumbprint_is_rfc8705_x5t_s256() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "laptop-17")])
    t = dt.datetime.fromtimestamp(NOW, tz=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(t)
            .not_valid_after(t + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    assert thumbprint_of(der) == b64(cert.fingerprint(hashes.SHA256()))
    assert len(thumbprint_of(der)) == 43 and "=" not in thumbprint_of(der)


# -- a valid token -------------------------------------------------------------------------------

def test_a_valid_token_gives_back_the_principal() -> None:
    decision = verify(TOKEN)
    assert decision.allowed and decision.reason is Reason.SESSION_VALID
    assert decision.principal == PRINCIPAL
    assert decision.session is not None
    assert (decision.session.jti, decision.session.sid) == ("jti-1", "jti-1")
    assert decision.session.expires_at == NOW + LIFETIME


def test_the_token_carries_the_claims_the_design_names() -> None:
    header, claims = parts(TOKEN)
    assert header == {"alg": "EdDSA", "kid": KID_A, "typ": "JWT"}
    assert claims["iss"] == CONFIG.issuer and claims["aud"] == CONFIG.audience
    assert claims["sub"] == PRINCIPAL.subject and claims["tid"] == "kita-city"
    assert claims["iat"] == claims["nbf"] == NOW and claims["exp"] == NOW + LIFETIME
    assert claims["jti"] == "jti-1" and claims["auth_time"] == NOW - 60.5
    assert claims["amr"] == ["otp", "pwd"] and claims["mfa"] is True
    assert claims["groups"] == sorted(PRINCIPAL.groups)
    assert claims["cnf"] == {"x5t#S256": DEVICE}


def test_pyjwt_verifies_our_token_with_our_jwk_set() -> None:
    jwks = jwt.PyJWKSet.from_dict(AUTHORITY.ring.jwks(NOW))
    key = next(k for k in jwks.keys if k.key_id == KID_A)
    claims = jwt.decode(TOKEN, key, algorithms=["EdDSA"], audience=CONFIG.audience,
                        issuer=CONFIG.issuer, options={"verify_exp": False, "verify_iat": False,
                                                       "verify_nbf": False})
    assert claims["sub"] == PRINCIPAL.subject


# -- time ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("now, reasons", [
    (NOW, (Reason.SESSION_VALID,)),
    (NOW + LIFETIME - 1, (Reason.SESSION_VALID,)),
    (NOW + LIFETIME + LEEWAY - 0.001, (Reason.SESSION_VALID,)),   # within the leeway
    (NOW + LIFETIME + LEEWAY, (Reason.SESSION_EXPIRED,)),
    (NOW + 86400, (Reason.SESSION_EXPIRED,)),
    (NOW - LEEWAY, (Reason.SESSION_VALID,)),                      # a broker slightly behind
    (NOW - LEEWAY - 0.001, (Reason.SESSION_INVALID,)),            # not yet valid
    (NOW - 3600, (Reason.SESSION_INVALID,)),
])
def test_validity_window(now: float, reasons: tuple[Reason, ...]) -> None:
    assert verify(TOKEN, now=now).reasons == reasons


def test_an_expired_token_still_names_its_user_for_the_audit_log() -> None:
    decision = verify(TOKEN, now=NOW + 3600)
    assert not decision.allowed and decision.principal == PRINCIPAL


# -- device binding, revocation, MFA age --------------------------------------------------------

@pytest.mark.parametrize("device", [OTHER_DEVICE, "", DEVICE.lower(), DEVICE + "A",
                                    "ｘ" * 43])
def test_a_token_is_useless_over_another_device_certificate(device: str) -> None:
    decision = verify(TOKEN, device=device)
    assert decision.reasons == (Reason.SESSION_DEVICE_MISMATCH,) and not decision.allowed


@pytest.mark.parametrize("revoked, allowed", [(frozenset({"jti-1"}), False),
                                              (frozenset({"jti-2", "other"}), True),
                                              (frozenset(), True)])
def test_revoked_jti(revoked: frozenset[str], allowed: bool) -> None:
    decision = verify(TOKEN, revoked=revoked)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reasons == (Reason.SESSION_REVOKED,)


@pytest.mark.parametrize("auth_age, mfa, max_age, expected", [
    (60, True, None, Reason.SESSION_VALID),
    (60, True, 300, Reason.SESSION_VALID),
    (300, True, 300, Reason.SESSION_VALID),
    (301, True, 300, Reason.MFA_TOO_OLD),
    (3000, True, 900, Reason.MFA_TOO_OLD),
    (60, False, None, Reason.SESSION_VALID),
    (60, False, 3600, Reason.MFA_REQUIRED),
])
def test_mfa_age_per_app(auth_age: float, mfa: bool, max_age: int | None,
                         expected: Reason) -> None:
    p = principal(auth_time=NOW - auth_age, mfa=mfa,
                  auth_methods=frozenset({"pwd", "otp"} if mfa else {"pwd"}))
    token = AUTHORITY.issue(p, DEVICE, NOW, LIFETIME, jti="j")
    assert verify(token, max_mfa_age=max_age).reasons == (expected,)


class BrokenRevocationStore:
    def __contains__(self, item: object) -> bool:
        raise ConnectionError("redis went away")


def test_a_failing_revocation_lookup_fails_closed() -> None:
    decision = AUTHORITY.verify(TOKEN, DEVICE, NOW, BrokenRevocationStore(), None)
    assert decision.reasons == (Reason.INTERNAL_ERROR,) and decision.decision.status == 500
    assert "ConnectionError" in decision.decision.detail


def test_all_reasons_are_given_most_important_first() -> None:
    decision = verify(TOKEN, now=NOW + 3600, device=OTHER_DEVICE,
                      revoked=frozenset({"jti-1"}), max_mfa_age=60)
    assert decision.reasons == (Reason.SESSION_REVOKED, Reason.SESSION_DEVICE_MISMATCH,
                                Reason.SESSION_EXPIRED, Reason.MFA_TOO_OLD)


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


# -- rotation ------------------------------------------------------------------------------------

def test_previous_key_is_accepted_during_its_grace_and_refused_after() -> None:
    rotated = SessionAuthority(CONFIG, AUTHORITY.ring.rotate(KEY_B, NOW + 10, grace_seconds=60))
    assert rotated.ring.active_kid == sessions.jwk_thumbprint(KEY_B.public_key())
    assert verify(TOKEN, now=NOW + 69, authority=rotated).allowed
    late = verify(TOKEN, now=NOW + 70, authority=rotated)   # not expired, but its key retired
    assert_invalid(late)
    assert "retired" in late.decision.detail
    fresh = rotated.issue(PRINCIPAL, DEVICE, NOW + 20, LIFETIME, jti="after-rotation")
    assert parts(fresh)[0]["kid"] == rotated.ring.active_kid
    assert verify(fresh, now=NOW + 100, authority=rotated).allowed
    assert_invalid(verify(fresh, now=NOW + 100))            # the old ring never knew key B


def test_rotation_drops_keys_past_their_grace_and_publishes_the_rest() -> None:
    once = AUTHORITY.ring.rotate(KEY_B, NOW, grace_seconds=60)
    twice = once.rotate(KEY_C, NOW + 30, grace_seconds=900)
    assert [k.kid for k in twice.previous] == [once.active_kid, KID_A]
    assert {k["kid"] for k in twice.jwks(NOW + 59)["keys"]} == {twice.active_kid,
                                                               once.active_kid, KID_A}
    assert {k["kid"] for k in twice.jwks(NOW + 60)["keys"]} == {twice.active_kid,
                                                               once.active_kid}
    thrice = twice.rotate(KEY_A, NOW + 100, grace_seconds=900)   # A returns as the active key
    assert [k.kid for k in thrice.previous] == [twice.active_kid, once.active_kid]


def test_a_key_cannot_be_in_the_ring_twice() -> None:
    ring = AUTHORITY.ring.rotate(KEY_B, NOW, grace_seconds=60)
    with pytest.raises(ConfigError):
        ring.rotate(KEY_A, NOW + 1, grace_seconds=60)
    with pytest.raises(ConfigError):
        ring.rotate(KEY_C, NOW, grace_seconds=float("nan"))


# -- refresh -------------------------------------------------------------------------------------

def test_refresh_keeps_the_session_and_renews_the_token() -> None:
    result = AUTHORITY.refresh(TOKEN, DEVICE, NOW + 400, NO_REVOCATIONS, LIFETIME, jti="jti-2")
    assert result.decision.allowed and result.token is not None
    new = verify(result.token, now=NOW + 900)
    assert new.allowed and new.principal == PRINCIPAL
    assert new.session is not None and (new.session.jti, new.session.sid) == ("jti-2", "jti-1")
    assert new.session.expires_at == NOW + 400 + LIFETIME
    assert parts(result.token)[1]["auth_time"] == PRINCIPAL.auth_time   # no silent step-up
    # Revoking the session id ends the whole chain, refreshed tokens included.
    assert verify(result.token, now=NOW + 900, revoked=frozenset({"jti-1"})).reasons \
        == (Reason.SESSION_REVOKED,)


@pytest.mark.parametrize("now, device, revoked, reason", [
    (NOW + LIFETIME + LEEWAY, DEVICE, NO_REVOCATIONS, Reason.SESSION_EXPIRED),
    (NOW + 10, OTHER_DEVICE, NO_REVOCATIONS, Reason.SESSION_DEVICE_MISMATCH),
    (NOW + 10, DEVICE, frozenset({"jti-1"}), Reason.SESSION_REVOKED),
])
def test_refresh_needs_a_still_valid_token_on_the_same_device(
        now: float, device: str, revoked: frozenset[str], reason: Reason) -> None:
    result = AUTHORITY.refresh(TOKEN, device, now, revoked, LIFETIME, jti="jti-2")
    assert result.token is None and result.decision.reason is reason


def test_refresh_never_outlives_the_maximum_session_age() -> None:
    session_end = NOW + 100
    p = principal(auth_time=session_end - CONFIG.max_session_seconds)
    token = AUTHORITY.issue(p, DEVICE, NOW, LIFETIME, jti="old")
    assert parts(token)[1]["exp"] == session_end                 # capped at issue too
    result = AUTHORITY.refresh(token, DEVICE, NOW + 50, NO_REVOCATIONS, LIFETIME, jti="new")
    assert result.token is not None and parts(result.token)[1]["exp"] == session_end
    last = AUTHORITY.refresh(result.token, DEVICE, session_end - 0.5, NO_REVOCATIONS,
                             LIFETIME, jti="newer")
    assert last.token is not None and parts(last.token)[1]["exp"] == session_end
    # At the end the token still verifies (leeway), but it can no longer be refreshed.
    assert verify(last.token, now=session_end).allowed
    ended = AUTHORITY.refresh(last.token, DEVICE, session_end, NO_REVOCATIONS, LIFETIME,
                              jti="newest")
    assert ended.token is None and ended.decision.reason is Reason.SESSION_EXPIRED
    assert ended.decision.decision.detail == "the session reached its maximum age"


def test_refresh_of_garbage_is_session_invalid() -> None:
    result = AUTHORITY.refresh("not.a.token", DEVICE, NOW, NO_REVOCATIONS, LIFETIME, jti="x")
    assert result.token is None and result.decision.reasons == (Reason.SESSION_INVALID,)


# -- issuing refuses bad input --------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"lifetime_seconds": 0}, {"lifetime_seconds": CONFIG.max_lifetime_seconds + 1},
    {"lifetime_seconds": 1.5}, {"device_thumbprint": "abc"}, {"device_thumbprint": ""},
    {"jti": ""}, {"jti": "a b"}, {"jti": "x" * 129}, {"now": float("nan")},
    {"principal": principal(auth_time=NOW - CONFIG.max_session_seconds)},
    {"principal": principal(auth_time=NOW + 3600)},
    {"principal": principal(groups=frozenset(f"group-{i:05d}-{'x' * 40}" for i in range(400)))},
])
def test_issue_refuses_what_cannot_make_a_valid_token(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = dict(principal=PRINCIPAL, device_thumbprint=DEVICE, now=NOW,
                                lifetime_seconds=LIFETIME, jti="j")
    with pytest.raises(SessionError):
        AUTHORITY.issue(**{**args, **kwargs})


@pytest.mark.parametrize("kwargs", [
    {"issuer": ""}, {"audience": " "}, {"max_lifetime_seconds": 0},
    {"max_lifetime_seconds": 100_000}, {"leeway_seconds": -1}, {"leeway_seconds": 600},
    {"max_session_seconds": True},
])
def test_session_config_is_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SessionConfig(**{"issuer": "https://b", "audience": "t", **kwargs})


def test_shell_randomness_helpers() -> None:
    assert sessions.new_jti() != sessions.new_jti() and len(sessions.new_jti()) >= 22
    key = sessions.new_session_key()
    token = SessionAuthority(CONFIG, KeyRing(key)).issue(PRINCIPAL, DEVICE, NOW, LIFETIME,
                                                         sessions.new_jti())
    assert SessionAuthority(CONFIG, KeyRing(key)).verify(token, DEVICE, NOW, NO_REVOCATIONS).allowed
