"""The OpenID Connect relying party's shell (idp_bridge/runtime/oidc_client.py): its signature
check and its whole begin/complete path against a provider simulated by `httpx.MockTransport`
(no socket): tokens with alg none, HS256 or a key URL are refused without any fetch, and the
JWKS refresh on an unknown kid is rate limited. The real provider: tests/integration.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import httpx
import jwt
import jwt.algorithms
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from idp_bridge.oidc import (
    OidcOutcome,
    OidcProviderConfig,
    PendingLogin,
)
from idp_bridge.runtime.oidc_client import OidcRelyingParty, verify_id_token
from tests.unit.idp_bridge.oidc_fixtures import NOW, PENDING, claims, metadata_doc
from ztcore.errors import ConfigError
from ztcore.reasons import Reason

# -- the shell's signature check and its flow, against a simulated provider (no socket) ------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.okp = ed25519.Ed25519PrivateKey.generate()
        self.other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        sig = {"use": "sig"}
        return {"keys": [
            {**jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True), "kid": "r1", **sig},
            {**jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True), "kid": "e1", **sig},
            {**jwt.algorithms.OKPAlgorithm.to_jwk(self.okp.public_key(), as_dict=True), "kid": "o1", **sig},
        ]}


KEYS = Keys()
SIM_ISSUER = "https://idp.example.test"
SIM = OidcProviderConfig(name="sim", issuer=SIM_ISSUER, client_id="gateway", client_secret="gateway-secret",
                         redirect_uri="https://gw.example.test/oidc/callback",
                         group_map={"g-tax": "tax-dept"})


def sign(payload: Mapping[str, Any], *, alg: str = "RS256", kid: str | None = "r1", key: Any = None,
         headers: Mapping[str, Any] | None = None) -> str:
    key = key if key is not None else {"RS256": KEYS.rsa, "PS256": KEYS.rsa, "ES256": KEYS.ec,
                                       "EdDSA": KEYS.okp}[alg]
    extra = {**({"kid": kid} if kid else {}), **(headers or {})}
    return jwt.encode(dict(payload), key, algorithm=alg, headers=extra)


def unsigned(payload: Mapping[str, Any], header: Mapping[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."


def sim_claims(nonce: str, **changes: Any) -> dict[str, Any]:
    return claims(iss=SIM_ISSUER, nonce=nonce, exp=NOW + 300, iat=NOW - 5, **changes)


@pytest.mark.parametrize(("alg", "kid"), [("RS256", "r1"), ("ES256", "e1"), ("EdDSA", "o1"), ("PS256", "r1"),
                                          ("RS256", None)])
def test_verify_id_token_accepts_the_providers_signature(alg: str, kid: str | None) -> None:
    token = sign({"sub": "x"}, alg=alg, kid=kid)
    assert verify_id_token(token, KEYS.jwks(), ("RS256", "ES256", "EdDSA", "PS256")) == {"sub": "x"}


@pytest.mark.parametrize(("make", "detail"), [
    (lambda: unsigned({"sub": "x"}, {"alg": "none"}), "unsigned or signed with a shared secret"),
    (lambda: unsigned({"sub": "x"}, {"alg": "none", "kid": "r1"}), "unsigned or signed with a shared secret"),
    # signed with the client secret: the classic RS256 → HS256 confusion, with the secret as the key
    (lambda: jwt.encode({"sub": "x"}, "gateway-secret" * 3, algorithm="HS256", headers={"kid": "r1"}),
     "unsigned or signed with a shared secret"),
    (lambda: sign({"sub": "x"}, headers={"jku": "https://evil.example.test/jwks"}), "header jku refused"),
    (lambda: sign({"sub": "x"}, headers={"x5u": "https://evil.example.test/cert.pem"}), "header x5u refused"),
    (lambda: sign({"sub": "x"}, key=KEYS.other_rsa, headers={"jwk": jwt.algorithms.RSAAlgorithm.to_jwk(
        KEYS.other_rsa.public_key(), as_dict=True)}), "header jwk refused"),
    (lambda: sign({"sub": "x"}, headers={"x5c": ["MIIBIjAN"]}), "header x5c refused"),
    (lambda: sign({"sub": "x"}, key=KEYS.other_rsa), "no key of the provider verifies the signature"),
    (lambda: sign({"sub": "x"}, kid="unknown"), "no RS256 key with kid 'unknown'"),
    (lambda: sign({"sub": "x"}, alg="ES256", kid="r1"), "no ES256 key with kid 'r1'"),
    (lambda: sign({"sub": "x"}, alg="PS256"), "not accepted from this provider"),
    (lambda: "a.b.c.d.e", "not a compact JWS"),
    (lambda: "garbage", "not a compact JWS"),
    (lambda: "e30.e30.", "unsigned or signed with a shared secret"),
    (lambda: "!!!.e30.sig", "unreadable JOSE header"),
    (lambda: sign({"sub": "x"})[:-4] + "AAAA", "no key of the provider verifies the signature"),
])
def test_verify_id_token_refuses(make: Callable[[], str], detail: str) -> None:
    outcome = verify_id_token(make(), KEYS.jwks(), ("RS256", "ES256", "EdDSA"))
    assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.OIDC_TOKEN_INVALID
    assert detail in outcome.decision.detail, outcome.decision.detail


def test_a_payload_with_duplicate_claims_is_refused() -> None:
    header = _b64(json.dumps({"alg": "RS256", "kid": "r1"}).encode())
    payload = _b64(b'{"sub": "alice", "sub": "admin"}')
    signature = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).sign(
        f"{header}.{payload}".encode(), KEYS.rsa)
    outcome = verify_id_token(f"{header}.{payload}.{_b64(signature)}", KEYS.jwks(), ("RS256",))
    assert isinstance(outcome, OidcOutcome) and "duplicate member 'sub'" in outcome.decision.detail


class SimulatedProvider:
    """Discovery, JWKS and token endpoint of a provider, as an httpx transport; every request
    is recorded, so a test can tell that nothing else was fetched."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.metadata = metadata_doc(
            issuer=SIM_ISSUER, authorization_endpoint=f"{SIM_ISSUER}/authorize",
            token_endpoint=f"{SIM_ISSUER}/token", jwks_uri=f"{SIM_ISSUER}/jwks",
            id_token_signing_alg_values_supported=["RS256", "ES256", "EdDSA", "HS256"])
        self.jwks = KEYS.jwks()
        self.token: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(400, json={
            "error": "invalid_grant"})
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.host != "idp.example.test":
            raise AssertionError(f"fetched {request.url}")
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.metadata)
        if request.url.path == "/jwks":
            return httpx.Response(200, json=self.jwks)
        if request.url.path == "/token":
            return self.token(request)
        return httpx.Response(404)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def relying_party(sim: SimulatedProvider, clock: Clock | None = None, config: OidcProviderConfig = SIM,
                  ) -> OidcRelyingParty:
    return OidcRelyingParty(config, "test-city", clock=clock or Clock(), transport=httpx.MockTransport(sim))


def answer_with(sim: SimulatedProvider, id_token: Callable[[PendingLogin], str],
                pending: PendingLogin) -> None:
    sim.token = lambda request: httpx.Response(200, json={
        "access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token(pending)})


def test_begin_builds_a_pkce_s256_authorization_url() -> None:
    sim = SimulatedProvider()
    with relying_party(sim, config=replace(SIM, max_auth_age_seconds=600, acr_values=("urn:mfa",))) as rp:
        begun = rp.begin("dev-1", "/apps")
    assert not isinstance(begun, OidcOutcome)
    url, pending = begun
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    challenge = _b64(hashlib.sha256(pending.code_verifier.encode()).digest())
    assert url.startswith(f"{SIM_ISSUER}/authorize?")
    assert query == {"response_type": "code", "client_id": "gateway", "redirect_uri": SIM.redirect_uri,
                     "scope": "openid email profile", "state": pending.state, "nonce": pending.nonce,
                     "code_challenge": challenge, "code_challenge_method": "S256", "max_age": "600",
                     "acr_values": "urn:mfa"}
    assert len(pending.state) >= 43 and len(pending.nonce) >= 43 and 43 <= len(pending.code_verifier) <= 128
    assert pending.device_id == "dev-1" and pending.return_to == "/apps" and pending.created_at == NOW
    assert sim.paths() == ["/.well-known/openid-configuration"]


def test_begin_refuses_an_open_redirect_before_any_fetch() -> None:
    sim = SimulatedProvider()
    outcome = relying_party(sim).begin("dev-1", "https://evil.example/")
    assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.RETURN_TO_INVALID
    assert sim.requests == []


def test_complete_sends_the_verifier_and_redirect_uri_and_logs_in() -> None:
    sim = SimulatedProvider()
    rp = relying_party(sim)
    begun = rp.begin("dev-1", None)
    assert not isinstance(begun, OidcOutcome)
    _, pending = begun
    answer_with(sim, lambda p: sign(sim_claims(p.nonce)), pending)
    outcome = rp.complete(pending, {"code": "c0de", "state": pending.state, "iss": SIM_ISSUER})
    assert outcome.ok and outcome.principal is not None and outcome.return_to == "/"
    assert outcome.principal.groups == frozenset({"tax-dept", "all-staff"}) and outcome.principal.mfa
    token_request = next(r for r in sim.requests if r.url.path == "/token")
    form = dict(urllib.parse.parse_qsl(token_request.content.decode()))
    assert form == {"grant_type": "authorization_code", "code": "c0de", "redirect_uri": SIM.redirect_uri,
                    "code_verifier": pending.code_verifier}
    basic = base64.b64encode(b"gateway:gateway-secret").decode()
    assert token_request.headers["authorization"] == f"Basic {basic}"
    assert sim.paths() == ["/.well-known/openid-configuration", "/token", "/jwks"]


@pytest.mark.parametrize("header", [{"jku": "https://evil.example.test/jwks"},
                                    {"x5u": "https://evil.example.test/c"},
                                    {"alg": "none"}, {"alg": "HS256"}])
def test_complete_refuses_a_token_that_names_its_own_key_without_fetching_it(header: dict[str, str]) -> None:
    sim = SimulatedProvider()
    rp = relying_party(sim)
    begun = rp.begin("dev-1", "/")
    assert not isinstance(begun, OidcOutcome)
    _, pending = begun

    def token(p: PendingLogin) -> str:
        payload = sim_claims(p.nonce)
        if header.get("alg") == "none":
            return unsigned(payload, {"alg": "none", "kid": "r1"})
        if header.get("alg") == "HS256":
            return jwt.encode(payload, "gateway-secret" * 3, algorithm="HS256", headers={"kid": "r1"})
        return sign(payload, headers=header)

    answer_with(sim, token, pending)
    outcome = rp.complete(pending, {"code": "c", "state": pending.state, "iss": SIM_ISSUER})
    assert outcome.reason is Reason.OIDC_TOKEN_INVALID
    assert all(r.url.host == "idp.example.test" for r in sim.requests)
    assert "/jwks" not in sim.paths()            # refused on the header, before any key lookup


def test_jwks_refresh_on_an_unknown_kid_is_rate_limited() -> None:
    sim = SimulatedProvider()
    clock = Clock()
    rp = OidcRelyingParty(SIM, "test-city", clock=clock, transport=httpx.MockTransport(sim),
                          jwks_refresh_min_interval_seconds=60)
    assert rp.verify_id_token(sign({"sub": "x"})) == {"sub": "x"}
    assert rp.jwks_fetches == 1
    for _ in range(5):
        outcome = rp.verify_id_token(sign({"sub": "x"}, kid="made-up"))
        assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.OIDC_TOKEN_INVALID
    assert rp.jwks_fetches == 1 and sim.paths().count("/jwks") == 1
    clock.now += 61
    for _ in range(5):
        rp.verify_id_token(sign({"sub": "x"}, kid="made-up"))
    assert rp.jwks_fetches == 2
    # a rotated key appears: found on the next allowed refetch
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sim.jwks = {"keys": [*sim.jwks["keys"], {**jwt.algorithms.RSAAlgorithm.to_jwk(
        new_key.public_key(), as_dict=True), "kid": "r2"}]}
    rotated = sign({"sub": "y"}, kid="r2", key=new_key)
    assert isinstance(rp.verify_id_token(rotated), OidcOutcome)   # within the interval: not refetched
    clock.now += 61
    assert rp.verify_id_token(rotated) == {"sub": "y"} and rp.jwks_fetches == 3
    clock.now += 3600                                            # the cache's age: refetched once
    assert rp.verify_id_token(rotated) == {"sub": "y"} and rp.jwks_fetches == 4


def test_discovery_naming_another_issuer_is_refused() -> None:
    sim = SimulatedProvider()
    sim.metadata["issuer"] = "https://evil.example.test"
    outcome = relying_party(sim).begin("dev-1", "/")
    assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.OIDC_ISSUER_MISMATCH


@pytest.mark.parametrize(("response", "reason"), [
    (lambda r: httpx.Response(400, json={"error": "invalid_grant", "error_description": "used"}),
     Reason.OIDC_CODE_REJECTED),
    (lambda r: httpx.Response(401, json={"error": "invalid_client"}), Reason.OIDC_CODE_REJECTED),
    (lambda r: httpx.Response(403, text="<html>denied</html>"), Reason.OIDC_CODE_REJECTED),
    (lambda r: httpx.Response(502, text="bad gateway"), Reason.OIDC_PROVIDER_UNAVAILABLE),
    (lambda r: httpx.Response(200, json={"access_token": "at", "token_type": "Bearer"}),
     Reason.OIDC_TOKEN_INVALID),
    (lambda r: httpx.Response(200, json={"id_token": 5}), Reason.OIDC_TOKEN_INVALID),
])
def test_token_endpoint_answers(response: Callable[[httpx.Request], httpx.Response], reason: Reason) -> None:
    sim = SimulatedProvider()
    rp = relying_party(sim)
    begun = rp.begin("dev-1", "/apps")
    assert not isinstance(begun, OidcOutcome)
    sim.token = response
    outcome = rp.complete(begun[1], {"code": "c", "state": begun[1].state, "iss": SIM_ISSUER})
    assert outcome.reason is reason and outcome.return_to == "/apps"


def test_provider_down_is_unavailable() -> None:
    sim = SimulatedProvider()
    sim.down = True
    outcome = relying_party(sim).begin("dev-1", "/")
    assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.OIDC_PROVIDER_UNAVAILABLE
    assert outcome.decision.status == 503


@pytest.mark.parametrize(("path", "response"), [
    ("/.well-known/openid-configuration", httpx.Response(200, text="<html>")),
    ("/.well-known/openid-configuration", httpx.Response(200, json=["a"])),
    ("/.well-known/openid-configuration", httpx.Response(301, headers={"location": "https://evil.example"})),
    ("/.well-known/openid-configuration", httpx.Response(200, content=b"{" + b" " * 600_000 + b"}")),
    ("/jwks", httpx.Response(200, json={"keys": []})),
    ("/jwks", httpx.Response(500)),
])
def test_broken_documents_make_the_provider_unavailable(path: str, response: httpx.Response) -> None:
    sim = SimulatedProvider()

    def handler(request: httpx.Request) -> httpx.Response:
        return response if request.url.path == path else sim(request)

    rp = OidcRelyingParty(SIM, "test-city", clock=Clock(), transport=httpx.MockTransport(handler))
    outcome = rp.verify_id_token(sign({"sub": "x"}))
    assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.OIDC_PROVIDER_UNAVAILABLE


def test_an_unexpected_failure_is_a_deny_never_an_exception() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug somewhere below")

    rp = OidcRelyingParty(SIM, "test-city", clock=Clock(), transport=httpx.MockTransport(handler))
    began = rp.begin("dev-1", "/")
    assert isinstance(began, OidcOutcome) and began.reason is Reason.INTERNAL_ERROR
    done = rp.complete(PENDING, {"code": "c", "state": PENDING.state})
    assert done.reason is Reason.INTERNAL_ERROR and done.decision.status == 503
    assert rp.verify_id_token("x.y.z") == OidcOutcome.refuse(Reason.INTERNAL_ERROR, "verify: RuntimeError")


def test_the_relying_party_needs_a_tenant_and_sane_timeouts() -> None:
    with pytest.raises(ConfigError, match="tenant"):
        OidcRelyingParty(SIM, "Bad Tenant")
    with pytest.raises(ConfigError, match="timeout_seconds"):
        OidcRelyingParty(SIM, "test-city", timeout_seconds=0)
    with pytest.raises(ConfigError, match="ca_file"):
        OidcRelyingParty(replace(SIM, ca_file="/nonexistent/ca.pem"), "test-city")
