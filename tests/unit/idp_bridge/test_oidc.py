"""The OpenID Connect relying party core (idp_bridge/oidc.py, oidc_config.py): configuration
(every bad field named), the open-redirect guard, pending logins, provider metadata, the
authorization response, JOSE headers and key choice, and the ID token's claims, with a fixed
`now`. The shell's side is in test_oidc_client.py.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idp_bridge.oidc import (
    OidcOutcome,
    OidcProviderConfig,
    PendingLogin,
    PendingLogins,
    ProviderMetadata,
    check_callback,
    check_id_token_header,
    new_pending_login,
    parse_oidc_config,
    principal_from_id_token_claims,
    provider_metadata,
    safe_return_to,
    verification_keys,
)
from tests.unit.idp_bridge.oidc_fixtures import (
    CONFIG,
    DROP,
    ISSUER,
    NOW,
    PENDING,
    RAW,
    claims,
    metadata_doc,
)
from ztcore.decision import Action
from ztcore.errors import ConfigError, LocalProtocolError
from ztcore.reasons import Reason

# -- configuration -------------------------------------------------------------------------------

def test_a_minimal_config_gets_the_defaults() -> None:
    c = parse_oidc_config(RAW)
    assert c.scopes == ("openid", "email", "profile") and c.username_claim == "preferred_username"
    assert c.token_endpoint_auth_method == "client_secret_basic"
    assert c.algorithms == ("RS256", "ES256", "PS256", "EdDSA") and c.leeway_seconds == 60
    assert "otp" in c.mfa_amr and "pwd" not in c.mfa_amr
    assert "gateway-secret" not in repr(c)
    public = parse_oidc_config({**RAW, "client_secret": None})
    assert public.token_endpoint_auth_method == "none"
    assert parse_oidc_config({k: v for k, v in RAW.items() if k != "client_secret"}).client_secret is None


def test_lists_become_tuples_and_sets_and_the_group_map_is_read_only() -> None:
    c = parse_oidc_config({**RAW, "scopes": ["openid", "groups", "openid"], "mfa_amr": ["hwk"],
                           "group_map": {"a": "b"}, "algorithms": ["ES256"]})
    assert c.scopes == ("openid", "groups") and c.mfa_amr == frozenset({"hwk"})
    assert c.algorithms == ("ES256",)
    with pytest.raises(TypeError):
        c.group_map["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(("changes", "message"), [
    ({"issuer": "http://login.example.test/"},
     "identity.oidc[1].issuer: must be https:// (http only for 127.0.0.1/localhost)"),
    ({"issuer": "ftp://login.example.test"}, "identity.oidc[1].issuer: must be https://"),
    ({"issuer": "https://login.example.test/?tenant=1"}, "identity.oidc[1].issuer: must not have a ?query"),
    ({"issuer": "https://login.example.test/#x"}, "identity.oidc[1].issuer: must not have a #fragment"),
    ({"issuer": "https://user:pw@login.example.test"}, "identity.oidc[1].issuer: must not carry a user"),
    ({"issuer": "https://login.example.test/a b"}, "identity.oidc[1].issuer: contains a space"),
    ({"issuer": "https://:443/"}, "identity.oidc[1].issuer: expected scheme://host"),
    ({"issuer": 42}, "identity.oidc[1].issuer: expected a URL"),
    ({"name": "Entra ID"}, "identity.oidc[1].name: expected 1 to 63 characters"),
    ({"client_id": ""}, "identity.oidc[1].client_id:"),
    ({"client_secret": ""}, "identity.oidc[1].client_secret: expected a non-empty secret"),
    ({"redirect_uri": "https://gw.example/cb#frag"},
     "identity.oidc[1].redirect_uri: must not have a #fragment"),
    ({"redirect_uri": "http://gw.example/cb"}, "identity.oidc[1].redirect_uri: must be https://"),
    ({"redirect_uri": "/callback"}, "identity.oidc[1].redirect_uri: must be https://"),
    ({"scopes": ["email"]}, "identity.oidc[1].scopes: must include 'openid'"),
    ({"scopes": "openid email"}, "identity.oidc[1].scopes: expected a list of strings"),
    ({"scopes": ["openid", 'a"b']}, "identity.oidc[1].scopes[1]: 'a\"b' is not a scope token"),
    ({"algorithms": ["HS256"]}, "identity.oidc[1].algorithms[0]: 'HS256' is refused"),
    ({"algorithms": ["RS256", "none"]}, "identity.oidc[1].algorithms[1]: 'none' is refused"),
    ({"algorithms": ["RS1"]}, "identity.oidc[1].algorithms[0]: unknown algorithm 'RS1'"),
    ({"algorithms": []}, "identity.oidc[1].algorithms: expected at least one"),
    ({"leeway_seconds": -1}, "identity.oidc[1].leeway_seconds: expected whole seconds"),
    ({"leeway_seconds": True}, "identity.oidc[1].leeway_seconds:"),
    ({"max_auth_age_seconds": 0}, "identity.oidc[1].max_auth_age_seconds:"),
    ({"token_endpoint_auth_method": "none"}, "identity.oidc[1].token_endpoint_auth_method: 'none' is for"),
    ({"client_secret": None, "token_endpoint_auth_method": "client_secret_post"},
     "identity.oidc[1].token_endpoint_auth_method: 'client_secret_post' needs a client_secret"),
    ({"token_endpoint_auth_method": "private_key_jwt"},
     "identity.oidc[1].token_endpoint_auth_method: expected"),
    ({"group_map": {"g": ""}}, "identity.oidc[1].group_map['g']: expected a non-empty group name"),
    ({"group_map": ["g"]}, "identity.oidc[1].group_map: expected a table"),
    ({"mfa_amr": "otp"}, "identity.oidc[1].mfa_amr: expected a list of strings"),
    ({"require_mfa": True, "mfa_amr": [], "mfa_acr": []}, "identity.oidc[1].require_mfa: needs"),
    ({"map_groups_only": "yes"}, "identity.oidc[1].map_groups_only: expected true or false"),
    ({"username_claim": "a b"}, "identity.oidc[1].username_claim: expected a claim name"),
    ({"clientid": "x"}, "identity.oidc[1].clientid: unknown setting"),
])
def test_bad_settings_are_named_by_path(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_oidc_config({**RAW, **changes}, path="identity.oidc[1]")
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("missing", ["name", "issuer", "client_id", "redirect_uri"])
def test_required_settings(missing: str) -> None:
    with pytest.raises(ConfigError, match=rf"^oidc\.{missing}: missing$"):
        parse_oidc_config({k: v for k, v in RAW.items() if k != missing})


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:39000", "http://localhost:8080/realms/x",
                                    "http://[::1]:9000", "https://login.microsoftonline.com/t/v2.0"])
def test_loopback_http_and_paths_are_fine_for_an_issuer(issuer: str) -> None:
    assert parse_oidc_config({**RAW, "issuer": issuer}).issuer == issuer


# -- the open-redirect guard ---------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (None, "/"), ("", "/"), ("/", "/"), ("/apps", "/apps"),
    ("/apps/tax?tab=2&x=/y#top", "/apps/tax?tab=2&x=/y#top"),
    ("/%E7%A8%8E/list", "/%E7%A8%8E/list"), ("/a%2Fb", "/a%2Fb"),
    ("/search?q=https://x.example", "/search?q=https://x.example"),
    ("https://evil.example/", None), ("//evil.example", None), ("/\\evil.example", None),
    ("\\\\evil.example", None), ("javascript:alert(1)", None), ("http:/evil", None),
    ("/%2F%2Fevil.example", None), ("/%2f/evil.example", None),
    ("/%5Cevil.example", None), ("/\t/evil.example", None), ("/\n/evil.example", None), ("/ /x", None),
    ("/%09/evil.example", None), ("/a//b", None), ("/./x", None), ("/a/../b", None), ("/%2e%2e/x", None),
    ("apps", None), ("./apps", None), ("/\u30a2\u30d7\u30ea", None), ("/\uff0f/evil.example", None),
    ("/%E2%80%AEevil", None), ("/%EF%BC%8F%EF%BC%8Fevil.example", None), ("/%E2%80%A4%E2%80%A4/x", None),
    ("/" + "a" * 2047, "/" + "a" * 2047), ("/" + "a" * 2048, None),
])
def test_return_to(value: str | None, expected: str | None) -> None:
    assert safe_return_to(value) == expected


@settings(max_examples=400)
@given(st.one_of(st.text(max_size=40), st.text(alphabet="/\\:%2Ff.e?#@ \t", max_size=16)))
def test_an_accepted_return_to_stays_on_this_site_even_decoded(value: str) -> None:
    result = safe_return_to(value)
    if result is None or value == "":
        return
    assert result == value
    for candidate in (value, urllib.parse.unquote(value)):
        joined = urllib.parse.urlsplit(urllib.parse.urljoin("https://gw.example.test/base/", candidate))
        assert joined.scheme == "https" and joined.netloc == "gw.example.test", candidate


# -- pending logins ------------------------------------------------------------------------------

def pending(state: str = "S" * 43, device: str = "dev-1", at: float = NOW) -> PendingLogin:
    return replace(PENDING, state=state, device_id=device, created_at=at)


def test_a_pending_login_is_taken_once() -> None:
    store = PendingLogins()
    store.add(pending())
    assert store.take("S" * 43, "dev-1", NOW + 5) == pending()
    assert store.take("S" * 43, "dev-1", NOW + 6) is None
    assert len(store) == 0


def test_an_unknown_state_is_none() -> None:
    store = PendingLogins()
    store.add(pending())
    assert store.take("T" * 43, "dev-1", NOW) is None
    assert len(store) == 1


def test_another_device_cannot_complete_and_burns_the_state() -> None:
    store = PendingLogins()
    store.add(pending())
    assert store.take("S" * 43, "dev-2", NOW) is None
    assert store.take("S" * 43, "dev-1", NOW) is None   # a leaked state is a failed login


def test_pending_logins_expire() -> None:
    store = PendingLogins(ttl_seconds=600)
    store.add(pending(state="a" * 43))
    store.add(pending(state="b" * 43))
    assert store.take("a" * 43, "dev-1", NOW + 600) is not None
    assert store.take("b" * 43, "dev-1", NOW + 600.5) is None
    store.add(pending(state="c" * 43, at=NOW + 100))
    assert store.take("c" * 43, "dev-1", NOW) is None        # begun "in the future": a clock jump


def test_pending_logins_are_bounded_expired_first_then_oldest() -> None:
    store = PendingLogins(max_entries=3, ttl_seconds=600)
    store.add(pending(state="old" * 8, at=NOW - 1000))
    store.add(pending(state="one" * 8))
    store.add(pending(state="two" * 8))
    store.add(pending(state="three" * 5))              # drops the expired one
    assert len(store) == 3 and store.take("one" * 8, "dev-1", NOW) is not None
    store.add(pending(state="four" * 6))
    store.add(pending(state="five" * 6))               # full of live ones: drops the oldest ("two")
    assert len(store) == 3
    assert store.take("two" * 8, "dev-1", NOW) is None
    assert store.take("five" * 6, "dev-1", NOW) is not None


def test_prune_sweeps_every_expired_entry() -> None:
    store = PendingLogins(ttl_seconds=600)
    store.add(pending(state="a" * 43, at=NOW))
    store.add(pending(state="b" * 43, at=NOW - 700))   # out of order: add keeps it, prune finds it
    store.add(pending(state="c" * 43, at=NOW + 200))
    assert store.prune(NOW + 650) == 2 and len(store) == 1
    assert store.take("c" * 43, "dev-1", NOW + 650) is not None


def test_a_repeated_state_is_a_bug() -> None:
    store = PendingLogins()
    store.add(pending())
    with pytest.raises(LocalProtocolError):
        store.add(pending())


@given(st.lists(st.tuples(st.sampled_from(["add", "take", "take-other", "wait"]),
                          st.integers(0, 5)), max_size=60))
def test_pending_logins_match_a_model(ops: list[tuple[str, int]]) -> None:
    store = PendingLogins(max_entries=4, ttl_seconds=100)
    model: dict[str, float] = {}   # state -> created_at, in insertion order
    now = NOW
    for op, n in ops:
        state = f"state-{n}".ljust(22, "x")
        if op == "wait":
            now += 40
        elif op == "add" and state not in model:
            while model and (len(model) >= 4 or now - next(iter(model.values())) > 100):
                del model[next(iter(model))]
            store.add(pending(state=state, at=now))
            model[state] = now
        elif op.startswith("take"):
            device = "dev-1" if op == "take" else "dev-2"
            got = store.take(state, device, now)
            created = model.pop(state, None)
            live = created is not None and now - created <= 100
            assert (got is not None) == (live and device == "dev-1")
        assert len(store) == len(model)


def test_new_pending_login_checks_return_to_and_randomness() -> None:
    made = new_pending_login(CONFIG, "dev-1", "/apps", state="s" * 43, nonce="n" * 43,
                             code_verifier="v" * 86, now=NOW)
    assert isinstance(made, PendingLogin) and made.idp == "entra" and made.created_at == NOW
    assert made.redirect_uri == CONFIG.redirect_uri and made.return_to == "/apps"
    refused = new_pending_login(CONFIG, "dev-1", "//evil.example", state="s" * 43, nonce="n" * 43,
                                code_verifier="v" * 86, now=NOW)
    assert isinstance(refused, OidcOutcome) and refused.reason is Reason.RETURN_TO_INVALID
    assert refused.decision.status == 400
    with pytest.raises(LocalProtocolError):
        new_pending_login(CONFIG, "dev-1", "/", state="short", nonce="n" * 43, code_verifier="v" * 86,
                          now=NOW)
    with pytest.raises(LocalProtocolError):
        new_pending_login(CONFIG, "dev-1", "/", state="s" * 43, nonce="n" * 43, code_verifier="v+" * 30,
                          now=NOW)


# -- provider metadata ---------------------------------------------------------------------------

def test_metadata_is_usable() -> None:
    meta = provider_metadata(CONFIG, metadata_doc())
    assert isinstance(meta, ProviderMetadata)
    assert meta.algorithms == ("RS256", "ES256")          # config order; HS256 never
    assert meta.iss_parameter_supported and meta.jwks_uri == "https://keys.example.test/jwks"
    plain = provider_metadata(CONFIG, metadata_doc(authorization_response_iss_parameter_supported=None,
                                                   id_token_signing_alg_values_supported=None))
    assert isinstance(plain, ProviderMetadata) and not plain.iss_parameter_supported
    assert plain.algorithms == ("RS256",)                  # Discovery §3: RS256 is the default


@pytest.mark.parametrize(("changes", "reason", "detail"), [
    ({"issuer": ISSUER + "/"}, Reason.OIDC_ISSUER_MISMATCH, "discovery names issuer"),
    ({"issuer": ISSUER.upper()}, Reason.OIDC_ISSUER_MISMATCH, ""),
    ({"issuer": None}, Reason.OIDC_ISSUER_MISMATCH, ""),
    ({"token_endpoint": "http://login.example.test/token"}, Reason.OIDC_PROVIDER_UNAVAILABLE,
     "token_endpoint must be https"),
    ({"jwks_uri": None}, Reason.OIDC_PROVIDER_UNAVAILABLE, "jwks_uri"),
    ({"code_challenge_methods_supported": ["plain"]}, Reason.OIDC_PROVIDER_UNAVAILABLE, "'S256'"),
    ({"response_types_supported": ["id_token"]}, Reason.OIDC_PROVIDER_UNAVAILABLE, "'code'"),
    ({"token_endpoint_auth_methods_supported": ["private_key_jwt"]}, Reason.OIDC_PROVIDER_UNAVAILABLE,
     "'client_secret_basic'"),
    ({"id_token_signing_alg_values_supported": ["HS256", "RS512"]}, Reason.OIDC_PROVIDER_UNAVAILABLE,
     "no ID-token algorithm in common"),
])
def test_metadata_refused(changes: dict[str, Any], reason: Reason, detail: str) -> None:
    outcome = provider_metadata(CONFIG, metadata_doc(**changes))
    assert isinstance(outcome, OidcOutcome) and outcome.reason is reason
    assert detail in outcome.decision.detail


# -- the authorization response ------------------------------------------------------------------

GOOD_RESPONSE = {"code": "the-code", "state": "S" * 43, "iss": ISSUER}


@pytest.mark.parametrize(("params", "iss_required", "expected"), [
    (GOOD_RESPONSE, True, "the-code"),
    ({"code": "the-code", "state": "S" * 43}, False, "the-code"),
    ({"code": "the-code", "state": "S" * 43}, True, Reason.OIDC_ISSUER_MISMATCH),
    ({"code": "the-code", "iss": ISSUER}, False, Reason.OIDC_STATE_INVALID),
    ({**GOOD_RESPONSE, "state": ""}, False, Reason.OIDC_STATE_INVALID),
    ({**GOOD_RESPONSE, "state": "S" * 42 + "T"}, False, Reason.OIDC_STATE_INVALID),
    ({**GOOD_RESPONSE, "iss": "https://evil.example.test"}, False, Reason.OIDC_ISSUER_MISMATCH),
    ({**GOOD_RESPONSE, "iss": ISSUER + "/"}, False, Reason.OIDC_ISSUER_MISMATCH),
    ({"state": "S" * 43, "iss": ISSUER, "error": "access_denied", "error_description": "no"}, True,
     Reason.OIDC_PROVIDER_ERROR),
    ({"state": "S" * 43, "iss": "https://evil.example.test", "error": "access_denied"}, False,
     Reason.OIDC_ISSUER_MISMATCH),
    ({"state": "T" * 43, "error": "access_denied"}, False, Reason.OIDC_STATE_INVALID),
    ({"state": "S" * 43, "iss": ISSUER}, True, Reason.OIDC_PROVIDER_ERROR),
    ({**GOOD_RESPONSE, "code": ""}, True, Reason.OIDC_PROVIDER_ERROR),
])
def test_check_callback(params: dict[str, str], iss_required: bool, expected: str | Reason) -> None:
    result = check_callback(PENDING, CONFIG, params, iss_required=iss_required)
    if isinstance(expected, Reason):   # (a Reason is a str too: test it first)
        assert isinstance(result, OidcOutcome) and result.reason is expected
        assert result.return_to == "/apps" and result.decision.action is Action.DENY
    else:
        assert result == expected


def test_provider_error_detail_is_clipped_and_cleaned() -> None:
    result = check_callback(PENDING, CONFIG, {"state": "S" * 43, "error": "access_denied",
                                              "error_description": "line1\nline2\x1b[31m" + "x" * 500})
    assert isinstance(result, OidcOutcome)
    detail = result.decision.detail
    assert detail.startswith("access_denied: line1?line2?[31m") and "\n" not in detail and len(detail) < 300


def test_a_login_begun_at_another_provider_is_refused() -> None:
    result = check_callback(replace(PENDING, idp="google"), CONFIG, GOOD_RESPONSE)
    assert isinstance(result, OidcOutcome) and result.reason is Reason.OIDC_STATE_INVALID


# -- JOSE header and keys ------------------------------------------------------------------------

ALGS = ("RS256", "ES256", "EdDSA")


@pytest.mark.parametrize(("header", "problem"), [
    ({"alg": "RS256", "kid": "k1"}, None),
    ({"alg": "EdDSA"}, None),
    ({"alg": "none"}, "unsigned or signed with a shared secret"),
    ({"alg": "None"}, "unsigned or signed with a shared secret"),
    ({"alg": "HS256", "kid": "k1"}, "unsigned or signed with a shared secret"),
    ({"alg": "hs512"}, "unsigned or signed with a shared secret"),
    ({}, "unsigned or signed with a shared secret"),
    ({"alg": "PS256"}, "not accepted from this provider"),
    ({"alg": "RSA-OAEP", "enc": "A256GCM"}, "not accepted from this provider"),
    ({"alg": "RS256", "jku": "https://evil.example/jwks"}, "header jku refused"),
    ({"alg": "RS256", "x5u": "https://evil.example/cert"}, "header x5u refused"),
    ({"alg": "RS256", "jwk": {"kty": "RSA"}}, "header jwk refused"),
    ({"alg": "RS256", "x5c": ["MII..."]}, "header x5c refused"),
    ({"alg": "RS256", "crit": ["b64"], "b64": False}, "header crit refused"),
    ({"alg": "RS256", "kid": 7}, "kid is not a short string"),
    ([], "not a JSON object"),
])
def test_check_id_token_header(header: Any, problem: str | None) -> None:
    result = check_id_token_header(header, ALGS)
    assert result == problem if problem is None else problem in (result or "")


RSA_PUB = {"kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB"}
EC_PUB = {"kty": "EC", "kid": "e1", "crv": "P-256", "x": "x", "y": "y"}
OKP_PUB = {"kty": "OKP", "kid": "o1", "crv": "Ed25519", "x": "x"}


@pytest.mark.parametrize(("keys", "header", "expected_kids"), [
    ([RSA_PUB, EC_PUB, OKP_PUB], {"alg": "RS256", "kid": "r1"}, ["r1"]),
    ([RSA_PUB, EC_PUB, OKP_PUB], {"alg": "RS256"}, ["r1"]),
    ([RSA_PUB, EC_PUB, OKP_PUB], {"alg": "ES256", "kid": "r1"}, []),         # kid of a key of another type
    ([RSA_PUB, {**RSA_PUB, "kid": "r2"}], {"alg": "PS256"}, ["r1", "r2"]),
    ([{**EC_PUB, "crv": "P-384"}], {"alg": "ES256"}, []),
    ([OKP_PUB, {**OKP_PUB, "crv": "X25519", "kid": "x"}], {"alg": "EdDSA"}, ["o1"]),
    ([{**RSA_PUB, "use": "enc"}], {"alg": "RS256"}, []),
    ([{**RSA_PUB, "alg": "RS512"}], {"alg": "RS256"}, []),
    ([{**RSA_PUB, "key_ops": ["encrypt"]}], {"alg": "RS256"}, []),
    ([{**RSA_PUB, "key_ops": ["verify"]}], {"alg": "RS256"}, ["r1"]),
    ([{**RSA_PUB, "d": "private"}], {"alg": "RS256"}, []),
    ([{"kty": "oct", "kid": "r1", "k": "c2VjcmV0"}], {"alg": "RS256", "kid": "r1"}, []),
    ([RSA_PUB], {"alg": "RS256", "kid": "unknown"}, []),
])
def test_verification_keys(keys: list[dict[str, Any]], header: dict[str, Any],
                           expected_kids: list[str]) -> None:
    assert [k["kid"] for k in verification_keys({"keys": keys}, header)] == expected_kids


def test_verification_keys_of_a_broken_jwks() -> None:
    assert verification_keys({"keys": "nope"}, {"alg": "RS256"}) == ()
    assert verification_keys([], {"alg": "RS256"}) == ()


# -- the ID token's claims -----------------------------------------------------------------------



def login(c: dict[str, Any], config: OidcProviderConfig = CONFIG, tenant: str = "test-city") -> OidcOutcome:
    return principal_from_id_token_claims(config, tenant, c, PENDING, NOW)


def test_good_claims_make_a_principal() -> None:
    outcome = login(claims())
    assert outcome.ok and outcome.reason is Reason.OIDC_LOGIN_OK and outcome.return_to == "/apps"
    p = outcome.principal
    assert p is not None
    assert (p.tenant, p.subject, p.username, p.display_name, p.email, p.idp) == (
        "test-city", "00u-alice", "alice", "Alice Tanaka", "alice@city.example.lg.jp", "entra")
    assert p.groups == frozenset({"tax-dept", "all-staff"})
    assert p.auth_methods == frozenset({"pwd", "otp"}) and p.mfa is True and p.auth_time == NOW - 20


@pytest.mark.parametrize(("changes", "config", "check"), [
    ({"amr": ["pwd"]}, CONFIG, lambda p: p.mfa is False),
    ({"amr": ["pwd"], "acr": "urn:sekimori:mfa"}, CONFIG, lambda p: p.mfa is True),
    ({"amr": ["mfa"]}, CONFIG, lambda p: p.mfa is True),
    ({"amr": "otp"}, CONFIG, lambda p: p.mfa is True and p.auth_methods == frozenset({"otp"})),
    ({"amr": ["pwd"], "acr": "urn:other"}, CONFIG, lambda p: p.mfa is False),
    ({"amr": DROP}, CONFIG, lambda p: p.auth_methods == frozenset({"oidc"}) and not p.mfa),
    ({"preferred_username": DROP}, CONFIG, lambda p: p.username == "alice@city.example.lg.jp"),
    ({"preferred_username": " "}, CONFIG, lambda p: p.username == "alice@city.example.lg.jp"),
    ({"preferred_username": DROP, "email_verified": False}, CONFIG,
     lambda p: p.username == "00u-alice" and p.email == ""),
    ({"preferred_username": DROP, "email": DROP}, CONFIG, lambda p: p.username == "00u-alice"),
    ({"upn": "alice@city"}, replace(CONFIG, username_claim="upn"), lambda p: p.username == "alice@city"),
    ({"auth_time": DROP}, CONFIG, lambda p: p.auth_time == NOW - 10),
    ({"groups": DROP}, CONFIG, lambda p: p.groups == frozenset()),
    ({"groups": "g-tax"}, CONFIG, lambda p: p.groups == frozenset({"tax-dept"})),
    ({}, replace(CONFIG, map_groups_only=True), lambda p: p.groups == frozenset({"tax-dept"})),
    ({"roles": ["admin"]}, replace(CONFIG, groups_claim="roles"), lambda p: p.groups == frozenset({"admin"})),
    ({"aud": ["gateway"]}, CONFIG, lambda p: True),
    ({"aud": ["gateway", "api"], "azp": "gateway"}, replace(CONFIG, trusted_audiences=frozenset({"api"})),
     lambda p: True),
    ({"azp": "gateway"}, CONFIG, lambda p: True),
    ({"exp": NOW - 59}, CONFIG, lambda p: True),                       # within the leeway
    ({"iat": NOW + 59}, CONFIG, lambda p: True),
    ({"name": DROP}, CONFIG, lambda p: p.display_name == ""),
    ({}, replace(CONFIG, require_mfa=True), lambda p: p.mfa),
    ({}, replace(CONFIG, max_auth_age_seconds=300), lambda p: True),
])
def test_claims_accepted(changes: dict[str, Any], config: OidcProviderConfig,
                         check: Callable[[Any], bool]) -> None:
    outcome = login(claims(**changes), config)
    assert outcome.ok, outcome.decision
    assert check(outcome.principal)


@pytest.mark.parametrize(("changes", "config", "reason", "detail"), [
    ({"iss": "https://evil.example.test"}, CONFIG, Reason.OIDC_ISSUER_MISMATCH, "iss"),
    ({"iss": ISSUER + "/"}, CONFIG, Reason.OIDC_ISSUER_MISMATCH, "iss"),
    ({"iss": DROP}, CONFIG, Reason.OIDC_ISSUER_MISMATCH, "iss"),
    ({"aud": "other"}, CONFIG, Reason.OIDC_TOKEN_INVALID, "does not name this client"),
    ({"aud": DROP}, CONFIG, Reason.OIDC_TOKEN_INVALID, "does not name this client"),
    ({"aud": ["gateway", 7]}, CONFIG, Reason.OIDC_TOKEN_INVALID, "does not name this client"),
    ({"aud": ["gateway", "api"], "azp": "gateway"}, CONFIG, Reason.OIDC_TOKEN_INVALID, "does not trust"),
    ({"aud": ["gateway", "api"]}, replace(CONFIG, trusted_audiences=frozenset({"api"})),
     Reason.OIDC_TOKEN_INVALID, "azp"),
    ({"azp": "api"}, CONFIG, Reason.OIDC_TOKEN_INVALID, "azp"),
    ({"exp": NOW - 60}, CONFIG, Reason.OIDC_TOKEN_INVALID, "expired"),
    ({"exp": DROP}, CONFIG, Reason.OIDC_TOKEN_INVALID, "exp and iat"),
    ({"exp": "1900000000"}, CONFIG, Reason.OIDC_TOKEN_INVALID, "exp and iat"),
    ({"exp": True}, CONFIG, Reason.OIDC_TOKEN_INVALID, "exp and iat"),
    ({"iat": DROP}, CONFIG, Reason.OIDC_TOKEN_INVALID, "exp and iat"),
    ({"iat": NOW + 61}, CONFIG, Reason.OIDC_TOKEN_INVALID, "in the future"),
    ({"nbf": NOW + 61}, CONFIG, Reason.OIDC_TOKEN_INVALID, "nbf"),
    ({"nonce": "M" * 43}, CONFIG, Reason.OIDC_NONCE_MISMATCH, "nonce"),
    ({"nonce": DROP}, CONFIG, Reason.OIDC_NONCE_MISMATCH, "nonce"),
    ({"nonce": ["N" * 43]}, CONFIG, Reason.OIDC_NONCE_MISMATCH, "nonce"),
    ({"sub": DROP}, CONFIG, Reason.OIDC_TOKEN_INVALID, "sub"),
    ({"sub": ""}, CONFIG, Reason.OIDC_TOKEN_INVALID, "sub"),
    ({"sub": "x" * 256}, CONFIG, Reason.OIDC_TOKEN_INVALID, "sub"),
    ({"auth_time": NOW + 61}, CONFIG, Reason.OIDC_TOKEN_INVALID, "auth_time"),
    ({"auth_time": "yesterday"}, CONFIG, Reason.OIDC_TOKEN_INVALID, "auth_time"),
    ({"auth_time": NOW - 400}, replace(CONFIG, max_auth_age_seconds=300), Reason.OIDC_TOKEN_INVALID,
     "max_age"),
    ({"auth_time": DROP}, replace(CONFIG, max_auth_age_seconds=300), Reason.OIDC_TOKEN_INVALID, "auth_time"),
    ({"amr": [1]}, CONFIG, Reason.OIDC_TOKEN_INVALID, "amr"),
    ({"acr": 2}, CONFIG, Reason.OIDC_TOKEN_INVALID, "acr"),
    ({"amr": ["pwd"]}, replace(CONFIG, require_mfa=True), Reason.MFA_REQUIRED, "not MFA"),
    ({"groups": [1, 2]}, CONFIG, Reason.OIDC_TOKEN_INVALID, "groups"),
    ({"groups": ["g"] * 2001}, CONFIG, Reason.OIDC_TOKEN_INVALID, "groups"),
    ({"groups": DROP, "_claim_names": {"groups": "src1"},
      "_claim_sources": {"src1": {"endpoint": "https://graph.example/x"}}}, CONFIG,
     Reason.GROUPS_INCOMPLETE, "by reference"),
    ({"groups": DROP, "hasgroups": True}, CONFIG, Reason.GROUPS_INCOMPLETE, "by reference"),
    ({"name": "Alice\u202eecilA"}, CONFIG, Reason.OIDC_TOKEN_INVALID, "display_name"),
    ({"preferred_username": "alice\nroot"}, CONFIG, Reason.OIDC_TOKEN_INVALID, "username"),
    ({"email": "not-an-address"}, CONFIG, Reason.OIDC_TOKEN_INVALID, "email"),
])
def test_claims_refused(changes: dict[str, Any], config: OidcProviderConfig, reason: Reason,
                        detail: str) -> None:
    outcome = login(claims(**changes), config)
    assert not outcome.ok and outcome.principal is None
    assert outcome.reason is reason, outcome.decision
    assert detail in outcome.decision.detail
    assert outcome.return_to == "/apps"


def test_a_bad_tenant_is_our_bug_not_the_token() -> None:
    outcome = login(claims(), tenant="Not A Tenant")
    assert outcome.reason is Reason.INTERNAL_ERROR and outcome.decision.status == 503


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["iss", "aud", "sub", "exp", "iat", "nonce", "amr", "acr", "azp",
                                        "groups", "auth_time", "email", "name", "preferred_username",
                                        "_claim_names", "nbf", "hasgroups"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
                                 st.lists(st.text(max_size=3), max_size=3),
                                 st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2)),
                       max_size=8))
def test_any_claims_give_an_outcome_never_an_exception(changes: dict[str, Any]) -> None:
    outcome = login(claims(**changes))
    assert isinstance(outcome, OidcOutcome)
    assert outcome.ok == (outcome.principal is not None)


def test_an_outcome_has_a_principal_exactly_when_it_allows() -> None:
    good = login(claims())
    with pytest.raises(LocalProtocolError):
        OidcOutcome(good.decision)
    with pytest.raises(LocalProtocolError):
        OidcOutcome(OidcOutcome.refuse(Reason.OIDC_TOKEN_INVALID).decision, good.principal)
