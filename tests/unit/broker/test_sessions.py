"""Session tokens (broker/sessions.py): issue, verify, rotate, refresh (forgeries: test_sessions_forgery.py).

Forged tokens are built by hand here (base64url + json + hmac), not with the code under test;
a token we issue is also checked with pyjwt's full decoder over our JWK Set, an API the core
does not use.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from broker import sessions
from broker.sessions import (
    KeyRing,
    SessionAuthority,
    SessionConfig,
    SessionError,
    thumbprint_of,
)
from tests.unit.broker.sessions_harness import (
    AUTHORITY,
    CONFIG,
    DEVICE,
    KEY_A,
    KEY_B,
    KEY_C,
    KID_A,
    LEEWAY,
    LIFETIME,
    NO_REVOCATIONS,
    NOW,
    OTHER_DEVICE,
    PRINCIPAL,
    TOKEN,
    assert_invalid,
    b64,
    parts,
    principal,
    unb64,
    verify,
)
from ztcore.errors import ConfigError
from ztcore.reasons import Reason

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


def test_a_cached_decision_holds_until_expiry_revocation_or_step_up() -> None:
    from broker.sessions import still_valid
    from tests.unit.broker.sessions_harness import AUTHORITY, DEVICE, NOW, TOKEN, principal, verify

    checked = verify(TOKEN)
    assert still_valid(checked, NOW + 1, frozenset(), None)
    assert not still_valid(checked, NOW + 600, frozenset(), None)              # expired
    assert not still_valid(checked, NOW + 1, frozenset({"jti-1"}), None)       # revoked token
    assert not still_valid(checked, NOW + 1, frozenset({checked.session.sid}), None)  # type: ignore[union-attr]
    assert still_valid(checked, NOW + 1, frozenset(), 120)                     # 61.5 s ago
    assert not still_valid(checked, NOW + 1, frozenset(), 30)                  # step-up
    assert not still_valid(verify(TOKEN, device="x" * 43), NOW, frozenset(), None)   # a deny
    no_mfa = AUTHORITY.issue(principal(mfa=False), DEVICE, NOW, 600, jti="jti-2")
    assert not still_valid(verify(no_mfa), NOW + 1, frozenset(), 3600)


def test_peer_keys_join_the_ring_without_replacing_its_own() -> None:
    from broker.sessions import KeyRing, PreviousKey, SessionAuthority
    from tests.unit.broker.sessions_harness import CONFIG, DEVICE, KEY_A, KEY_B, KEY_C, NOW, PRINCIPAL

    other = SessionAuthority(CONFIG, KeyRing(KEY_B))
    token = other.issue(PRINCIPAL, DEVICE, NOW, 600, jti="from-b")
    ours = SessionAuthority(CONFIG, KeyRing(KEY_A))
    assert not ours.verify(token, DEVICE, NOW, frozenset()).allowed
    peer_b = PreviousKey(other.ring.active_kid, KEY_B.public_key(), float("inf"))
    own_kid = ours.ring.active_kid
    ring = ours.ring.with_peer_keys([peer_b, peer_b,
                                     PreviousKey(own_kid, KEY_C.public_key(), float("inf"))])
    assert ring.active_kid == own_kid and len(ring.previous) == 1     # no duplicate, own kept
    assert SessionAuthority(CONFIG, ring).verify(token, DEVICE, NOW, frozenset()).allowed
