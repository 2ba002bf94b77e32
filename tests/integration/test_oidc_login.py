"""The OpenID Connect relying party (idp_bridge/runtime/oidc_client.py) against a real,
OpenID-certified provider (panva's oidc-provider, tests/peers/oidc_provider.py) on 127.0.0.1:
code + PKCE logins with every client kind and signing algorithm, MFA from amr and acr, and each
refusal on its own: state, nonce, code replay, PKCE verifier, mix-up between two providers (by
key and by RFC 9207 iss), open redirects, discovery naming another issuer, a provider that is
down or silent, the rate-limited JWKS refresh, and tokens that name their own key.

The login form is driven over HTTP (httpx); the redirect URI is never contacted: the test stops
at the provider's redirect to it and hands its query to `complete`. Skipped, with the reason,
only when Node.js or npm is missing.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from idp_bridge.oidc import OidcOutcome, PendingLogins
from tests.integration.oidc_harness import (
    GROUP_MAP,
    RecordingTransport,
    begin,
    login,
    oidc_a,
    oidc_b,
    relying_party,
    start,
)
from tests.peers import oidc_provider as peer
from ztcore.reasons import Reason

__all__ = ["oidc_a", "oidc_b"]   # fixtures, used by name

if (_why := peer.unavailable()) is not None:
    pytest.skip(_why, allow_module_level=True)


def token_of(provider: peer.OidcProvider, username: str, client_id: str = peer.CONFIDENTIAL_CLIENT) -> str:
    """A real ID token of `provider` for `username`, fetched with plain httpx (not our client)."""
    rp = relying_party(provider, client_id=client_id)
    pending, params = login(rp, username)
    meta = httpx.get(provider.discovery_url, timeout=5).json()
    answer = httpx.post(meta["token_endpoint"], auth=(client_id, peer.CLIENT_SECRET), timeout=5, data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": pending.redirect_uri,
        "code_verifier": pending.code_verifier}).json()
    return str(answer["id_token"])


# -- logins that succeed ---------------------------------------------------------------------------

def test_alice_logs_in_with_pkce_mfa_and_mapped_groups(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a)
    logins = PendingLogins()
    url, pending = begin(rp, "laptop-7", "/apps/tax?tab=2")
    logins.add(pending)
    assert "code_challenge_method=S256" in url and "code_challenge=" in url
    params = peer.headless_login(url, "alice", "alicepw", rp.config.redirect_uri)
    assert set(params) == {"code", "state", "iss"} and params["iss"] == oidc_a.issuer
    taken = logins.take(params["state"], "laptop-7", time.time())
    assert taken is pending
    outcome = rp.complete(taken, params)
    assert outcome.ok and outcome.reason is Reason.OIDC_LOGIN_OK, outcome.decision
    assert outcome.return_to == "/apps/tax?tab=2"
    p = outcome.principal
    assert p is not None
    assert (p.tenant, p.subject, p.username, p.display_name, p.email, p.idp) == (
        "test-city", "alice", "alice", "Alice Tanaka", "alice@city.example.lg.jp", "city-idp")
    assert p.groups == frozenset({GROUP_MAP["tax-clerks"], "tax-dept", "all-staff"})
    assert p.auth_methods == frozenset({"pwd", "otp"}) and p.mfa is True
    assert abs(p.auth_time - time.time()) < 30


def test_bob_logs_in_without_mfa(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a)
    outcome = rp.complete(*login(rp, "bob"))
    assert outcome.ok and outcome.principal is not None
    assert outcome.principal.mfa is False and outcome.principal.auth_methods == frozenset({"pwd"})
    assert outcome.principal.groups == frozenset({"tax-dept", "all-staff"})


def test_mfa_from_acr_alone(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a, mfa_amr=frozenset(), mfa_acr=frozenset({peer.MFA_ACR}))
    alice, bob = rp.complete(*login(rp, "alice")), rp.complete(*login(rp, "bob"))
    assert alice.principal is not None and alice.principal.mfa is True
    assert bob.principal is not None and bob.principal.mfa is False


def test_require_mfa_refuses_bob(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a, require_mfa=True)
    assert rp.complete(*login(rp, "alice")).ok
    outcome = rp.complete(*login(rp, "bob"))
    assert outcome.reason is Reason.MFA_REQUIRED and outcome.principal is None


@pytest.mark.parametrize("client_id", [peer.ES256_CLIENT, peer.EDDSA_CLIENT, peer.POST_CLIENT])
def test_other_algorithms_and_client_authentication(oidc_a: peer.OidcProvider, client_id: str) -> None:
    rp = relying_party(oidc_a, client_id=client_id)
    outcome = rp.complete(*login(rp, "alice"))
    assert outcome.ok, outcome.decision


def test_the_public_client_on_a_loopback_redirect(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a, client_id=peer.PUBLIC_CLIENT, redirect_uri=peer.AGENT_REDIRECT_URI)
    assert rp.config.token_endpoint_auth_method == "none"
    outcome = rp.complete(*login(rp, "bob"))
    assert outcome.ok and outcome.principal is not None and outcome.principal.username == "bob"


def test_carol_falls_back_to_email_and_has_no_groups(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a)
    outcome = rp.complete(*login(rp, "carol"))
    assert outcome.principal is not None
    assert outcome.principal.username == "carol@city.example.lg.jp"
    assert outcome.principal.groups == frozenset()


# -- refusals --------------------------------------------------------------------------------------

def test_a_wrong_password_never_comes_back(oidc_a: peer.OidcProvider) -> None:
    url, _ = begin(relying_party(oidc_a))
    with pytest.raises(peer.LoginFailed) as failed:
        peer.headless_login(url, "alice", "wrong", peer.GATEWAY_REDIRECT_URI)
    assert failed.value.status == 401


def test_a_cancelled_login_is_a_provider_error(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a)
    url, pending = begin(rp)
    params = peer.headless_login(url, "", "", rp.config.redirect_uri, abort=True)
    outcome = rp.complete(pending, params)
    assert outcome.reason is Reason.OIDC_PROVIDER_ERROR
    assert outcome.decision.detail.startswith("access_denied: the user cancelled")


def test_missing_state(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a)
    pending, params = login(rp, "alice")
    without = {k: v for k, v in params.items() if k != "state"}
    assert rp.complete(pending, without).reason is Reason.OIDC_STATE_INVALID
    assert PendingLogins().take("", "dev-1", time.time()) is None


def test_an_unknown_state_finds_no_pending_login(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a)
    logins = PendingLogins()
    url, pending = begin(rp)
    logins.add(pending)
    params = peer.headless_login(url, "alice", "alicepw", rp.config.redirect_uri)
    assert logins.take(params["state"] + "x", "dev-1", time.time()) is None
    assert logins.take(params["state"], "another-laptop", time.time()) is None


def test_a_mismatched_state_is_refused_and_does_not_spend_the_code(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a)
    pending, params = login(rp, "alice")
    _, other = begin(rp)
    assert rp.complete(pending, {**params, "state": other.state}).reason is Reason.OIDC_STATE_INVALID
    assert rp.complete(other, params).reason is Reason.OIDC_STATE_INVALID
    assert rp.complete(pending, params).ok        # refused before the token endpoint


def test_a_nonce_mismatch_is_refused(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a)
    pending, params = login(rp, "alice")
    outcome = rp.complete(replace(pending, nonce="another-login-" + "n" * 30), params)
    assert outcome.reason is Reason.OIDC_NONCE_MISMATCH and outcome.principal is None


def test_a_code_replay_is_refused(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a)
    pending, params = login(rp, "alice")
    assert rp.complete(pending, params).ok
    replay = rp.complete(pending, params)
    assert replay.reason is Reason.OIDC_CODE_REJECTED and "invalid_grant" in replay.decision.detail


def test_a_wrong_pkce_verifier_is_refused(oidc_a: peer.OidcProvider) -> None:
    rp = relying_party(oidc_a)
    pending, params = login(rp, "alice")
    outcome = rp.complete(replace(pending, code_verifier="w" * 64), params)
    assert outcome.reason is Reason.OIDC_CODE_REJECTED and "invalid_grant" in outcome.decision.detail


def test_mix_up_a_token_signed_by_provider_b_is_refused_by_a(oidc_a: peer.OidcProvider,
                                                             oidc_b: peer.OidcProvider) -> None:
    token_b = token_of(oidc_b, "alice")
    assert jwt.get_unverified_header(token_b)["kid"] == "rsa"       # a kid A has too
    rp_a, rp_b = relying_party(oidc_a), relying_party(oidc_b)
    assert isinstance(rp_b.verify_id_token(token_b), dict)            # B's own relying party accepts it
    refused = rp_a.verify_id_token(token_b)
    assert isinstance(refused, OidcOutcome) and refused.reason is Reason.OIDC_TOKEN_INVALID
    assert "no key of the provider verifies the signature" in refused.decision.detail


def test_mix_up_a_response_from_provider_b_is_refused_by_a(oidc_a: peer.OidcProvider,
                                                           oidc_b: peer.OidcProvider) -> None:
    recorder = RecordingTransport()
    rp_a = relying_party(oidc_a, recorder)
    _, pending_a = begin(rp_a)                    # the user began at A ...
    _, params_b = login(relying_party(oidc_b), "alice")   # ... and was answered by B
    outcome = rp_a.complete(pending_a, {**params_b, "state": pending_a.state})
    assert outcome.reason is Reason.OIDC_ISSUER_MISMATCH and oidc_b.issuer in outcome.decision.detail
    assert recorder.count("/token") == 0          # B's code was never sent to A


@pytest.mark.parametrize("return_to", ["https://evil.example/", "//evil.example", "/\\evil.example",
                                       "javascript:alert(1)", "http:/evil", "/%2F%2Fevil.example",
                                       "/\t/evil.example", "\\\\evil.example"])
def test_open_redirect_return_to_is_refused(oidc_a: peer.OidcProvider, return_to: str) -> None:
    recorder = RecordingTransport()
    outcome = relying_party(oidc_a, recorder).begin("dev-1", return_to)
    assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.RETURN_TO_INVALID
    assert recorder.urls == []


@pytest.mark.parametrize("configured", ["http://localhost:{port}", "http://127.0.0.1:{port}/"])
def test_discovery_naming_another_issuer_is_refused(oidc_a: peer.OidcProvider, configured: str) -> None:
    rp = relying_party(oidc_a, issuer=configured.format(port=oidc_a.port))
    outcome = rp.begin("dev-1", "/")
    assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.OIDC_ISSUER_MISMATCH
    assert oidc_a.issuer in outcome.decision.detail


# -- a provider that is down or silent -------------------------------------------------------------

def test_a_provider_that_refuses_connections_is_unavailable(oidc_a: peer.OidcProvider) -> None:
    closed = peer.free_port()
    rp = relying_party(oidc_a, issuer=f"http://127.0.0.1:{closed}", timeout_seconds=2)
    started = time.monotonic()
    outcome = rp.begin("dev-1", "/")
    assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.OIDC_PROVIDER_UNAVAILABLE
    assert time.monotonic() - started < 2


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_a_silent_provider_is_unavailable_within_the_timeout(oidc_a: peer.OidcProvider,
                                                             silent_port: int) -> None:
    rp = relying_party(oidc_a, issuer=f"http://127.0.0.1:{silent_port}", timeout_seconds=0.5)
    started = time.monotonic()
    outcome = rp.begin("dev-1", "/")
    elapsed = time.monotonic() - started
    assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.OIDC_PROVIDER_UNAVAILABLE
    assert "within 0.5 s" in outcome.decision.detail and 0.4 < elapsed < 1.5


def test_a_provider_that_goes_down_before_the_code_exchange(tmp_path_factory: pytest.TempPathFactory) -> None:
    provider = start(tmp_path_factory, "down")
    try:
        rp = relying_party(provider, timeout_seconds=2)
        pending, params = login(rp, "alice")
    finally:
        provider.stop()
    started = time.monotonic()
    outcome = rp.complete(pending, params)
    assert outcome.reason is Reason.OIDC_PROVIDER_UNAVAILABLE and time.monotonic() - started < 2
    assert outcome.return_to == "/apps"


# -- the JWKS and tokens that choose their key ---------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_the_jwks_refresh_on_an_unknown_kid_is_rate_limited(oidc_a: peer.OidcProvider) -> None:
    recorder, clock = RecordingTransport(), FakeClock()
    rp = relying_party(oidc_a, recorder, clock=clock, jwks_refresh_min_interval_seconds=60)
    assert rp.complete(*login(rp, "alice")).ok
    jwks_path = httpx.URL(httpx.get(oidc_a.discovery_url).json()["jwks_uri"]).path
    assert recorder.count(jwks_path) == 1
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = [jwt.encode({"sub": "alice", "iss": oidc_a.issuer}, stranger, algorithm="RS256",
                         headers={"kid": f"rotated-{i}"}) for i in range(10)]
    for token in forged:
        outcome = rp.verify_id_token(token)
        assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.OIDC_TOKEN_INVALID
    assert recorder.count(jwks_path) == 1        # within the interval: no fetch at all
    clock.now += 61
    for token in forged:
        rp.verify_id_token(token)
    assert recorder.count(jwks_path) == 2 == rp.jwks_fetches   # one fetch for ten unknown kids
    assert rp.complete(*login(rp, "bob")).ok and recorder.count(jwks_path) == 2


class CountingServer(http.server.ThreadingHTTPServer):
    hits: int = 0


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.server.hits += 1   # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"keys": []}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def key_server() -> Iterator[CountingServer]:
    server = CountingServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("kind", ["jku", "x5u", "jwk", "none", "HS256"])
def test_tokens_naming_their_own_key_are_refused_without_a_fetch(
        oidc_a: peer.OidcProvider, key_server: CountingServer, kind: str) -> None:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    url = f"http://127.0.0.1:{key_server.server_address[1]}/keys"
    claims = {"sub": "alice", "iss": oidc_a.issuer, "aud": peer.CONFIDENTIAL_CLIENT}
    if kind == "none":
        token = jwt.encode(claims, None, algorithm="none")   # type: ignore[arg-type]
    elif kind == "HS256":
        token = jwt.encode(claims, peer.CLIENT_SECRET * 3, algorithm="HS256", headers={"kid": "rsa"})
    else:
        value = (jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
                 if kind == "jwk" else url)
        token = jwt.encode(claims, attacker, algorithm="RS256", headers={"kid": "rsa", kind: value})
    recorder = RecordingTransport()
    outcome = relying_party(oidc_a, recorder).verify_id_token(token)
    assert isinstance(outcome, OidcOutcome) and outcome.reason is Reason.OIDC_TOKEN_INVALID
    assert key_server.hits == 0 and not any("/keys" in u for u in recorder.urls)
