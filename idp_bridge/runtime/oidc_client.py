"""The OpenID Connect relying party's shell: discovery, the JWKS, the code exchange, the ID
token's signature; everything it learns goes to the core (`idp_bridge.oidc`) for a decision.

`OidcRelyingParty.begin` checks `return_to`, draws state, nonce and the PKCE verifier from
`secrets`, reads the provider's discovery document (cached; its issuer must be the configured
one exactly) and builds the authorization URL (authlib's `prepare_grant_uri`, PKCE S256 only).
The broker keeps the returned `PendingLogin` (in `PendingLogins`) and hands it back to
`complete` with the redirect's query: the core checks state and RFC 9207 `iss`, authlib's
httpx `OAuth2Client` exchanges the code with the verifier and the exact redirect URI, the ID
token's signature is checked (PyJWT) with this issuer's JWKS only and only with an algorithm
both the config and the provider's metadata allow, then the core checks the claims and builds
the Principal.

A token never chooses its key: `jku`, `x5u`, `jwk` and `x5c` headers are refused before any
key is looked at, so nothing a token says causes a fetch. The JWKS is cached and fetched again
when older than `cache_ttl_seconds`, or for a `kid` it does not know, at most once every
`jwks_refresh_min_interval_seconds` (a stream of tokens with made-up kids costs one fetch).

Blocking: each call waits on the network, each request bounded by `timeout_seconds` (connect,
and each read and write). The broker runs `begin` and `complete` in a worker thread
(`asyncio.to_thread`); calls may run in parallel (the caches are locked). Library exceptions
(httpx, authlib, PyJWT) are translated here; nothing escapes `begin`, `complete` or
`verify_id_token`: an unexpected failure is a deny with `internal-error` (fail closed), logged.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final

import httpx
import jwt
from authlib.deprecate import AuthlibDeprecationWarning  # type: ignore[import-untyped]

from idp_bridge.oidc import (
    OidcOutcome,
    OidcProviderConfig,
    PendingLogin,
    ProviderMetadata,
    check_callback,
    check_id_token_header,
    clip,
    new_pending_login,
    principal_from_id_token_claims,
    provider_metadata,
    verification_keys,
)
from ztcore.errors import ConfigError
from ztcore.reasons import Reason
from ztcore.tenants import is_tenant_id

with warnings.catch_warnings():
    # Authlib 1.9 prefers the `httpx2` fork and warns when it falls back to httpx, which is the
    # HTTP client this project uses; the fallback is the documented, working path. (Importing
    # authlib.deprecate first, above: it installs an "always" filter that would win over this one.)
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.common.errors import AuthlibBaseError  # type: ignore[import-untyped]
    from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]
    from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]
    from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES: Final = 512 * 1024       # discovery and JWKS
MAX_JWKS_KEYS: Final = 100
_JSON_HEADERS: Final = {"accept": "application/json", "accept-encoding": "identity",
                        "user-agent": "sekimori-oidc-rp"}


class _Refused(Exception):
    """A deny found deep in a helper; carried out to the public method as its outcome."""

    def __init__(self, outcome: OidcOutcome) -> None:
        super().__init__(outcome.decision.detail)
        self.outcome = outcome


def _refuse(reason: Reason, detail: str) -> _Refused:
    return _Refused(OidcOutcome.refuse(reason, detail))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:   # two `sub`s or two `aud`s: which one the checks saw is ambiguous
            raise ValueError(f"duplicate member {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


# -- the ID token's signature (no I/O: the JWKS is a parameter) ------------------------------------

def id_token_header(id_token: object, algorithms: tuple[str, ...]) -> Mapping[str, Any] | OidcOutcome:
    """The JOSE header of a compact JWS, if it may be verified at all (see check_id_token_header)."""
    if not isinstance(id_token, str) or id_token.count(".") != 2 or len(id_token) > 64 * 1024:
        return OidcOutcome.refuse(Reason.OIDC_TOKEN_INVALID, "the ID token is not a compact JWS")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        return OidcOutcome.refuse(Reason.OIDC_TOKEN_INVALID, f"unreadable JOSE header: {exc}")
    problem = check_id_token_header(header, algorithms)
    if problem:
        return OidcOutcome.refuse(Reason.OIDC_TOKEN_INVALID, problem)
    return header


def verify_with_keys(id_token: str, header: Mapping[str, Any],
                     keys: tuple[Mapping[str, Any], ...]) -> dict[str, Any] | OidcOutcome:
    """The ID token's claims if one of `keys` (from verification_keys) verifies its signature
    with the header's `alg`; else a deny. No claim is checked here (the core does that)."""
    alg = str(header["alg"])
    failures = []
    for key in keys:
        try:
            verifier = jwt.PyJWK(dict(key), algorithm=alg)
            decoded = jwt.PyJWS().decode_complete(id_token, key=verifier, algorithms=[alg])
        except jwt.InvalidSignatureError:
            failures.append(f"{key.get('kid', '?')}: bad signature")
            continue
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            failures.append(f"{key.get('kid', '?')}: {type(exc).__name__}")
            continue
        try:
            return _json_object(decoded["payload"], "the ID token's payload")
        except ValueError as exc:
            return OidcOutcome.refuse(Reason.OIDC_TOKEN_INVALID, str(exc))
    return OidcOutcome.refuse(Reason.OIDC_TOKEN_INVALID,
                              f"no key of the provider verifies the signature ({'; '.join(failures)[:200]})")


def verify_id_token(id_token: object, jwks: Mapping[str, Any],
                    algorithms: tuple[str, ...]) -> dict[str, Any] | OidcOutcome:
    """Header check, key choice and signature check against one JWKS, without any fetch."""
    header = id_token_header(id_token, algorithms)
    if isinstance(header, OidcOutcome):
        return header
    keys = verification_keys(jwks, header)
    if not keys:
        return OidcOutcome.refuse(Reason.OIDC_TOKEN_INVALID,
                                  f"no {header['alg']} key with kid {clip(header.get('kid'), 60)!r} "
                                  "in the provider's JWKS")
    return verify_with_keys(str(id_token), header, keys)


class _SharedTransport(httpx.BaseTransport):
    """Lends the relying party's pooled transport to a short-lived authlib client, whose close
    must not close the pool."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        pass


# -- the relying party -------------------------------------------------------------------------------

class OidcRelyingParty:
    """One configured provider for one tenant. `transport` replaces the network (tests:
    `httpx.MockTransport`, or a recording wrapper; the caller keeps and closes it); `proxy` is
    an outbound HTTP proxy URL (used only without `transport`). `close` ends the connections."""

    def __init__(self, config: OidcProviderConfig, tenant: str, *,
                 clock: Callable[[], float] = time.time, timeout_seconds: float = 5.0,
                 jwks_refresh_min_interval_seconds: float = 60.0, cache_ttl_seconds: float = 3600.0,
                 transport: httpx.BaseTransport | None = None, proxy: str | None = None) -> None:
        if not is_tenant_id(tenant):
            raise ConfigError(f"tenant: {tenant!r} is not a tenant id")
        for name, value in (("timeout_seconds", timeout_seconds),
                            ("jwks_refresh_min_interval_seconds", jwks_refresh_min_interval_seconds),
                            ("cache_ttl_seconds", cache_ttl_seconds)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and value >= 0) or (name == "timeout_seconds" and value == 0):
                raise ConfigError(f"{name}: expected seconds, got {value!r}")
        self.config = config
        self.tenant = tenant
        self._clock = clock
        self._timeout = float(timeout_seconds)
        self._refresh_interval = float(jwks_refresh_min_interval_seconds)
        self._cache_ttl = float(cache_ttl_seconds)
        self._owns_transport = transport is None
        if transport is None:
            verify: ssl.SSLContext | bool = True
            if config.ca_file:
                try:
                    verify = ssl.create_default_context(cafile=config.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(f"oidc.ca_file: cannot load {config.ca_file!r}: {exc}") from None
            transport = httpx.HTTPTransport(verify=verify, proxy=proxy, retries=0)
        self._transport = transport
        self._http = httpx.Client(transport=_SharedTransport(transport), timeout=self._timeout,
                                  trust_env=False, follow_redirects=False, headers=_JSON_HEADERS)
        self._meta_lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = -math.inf
        self._jwks_lock = threading.Lock()
        self._jwks: Mapping[str, Any] | None = None
        self._jwks_uri = ""
        self._jwks_at = -math.inf
        self._jwks_attempt_at = -math.inf
        self.jwks_fetches = 0   # attempts, for metrics and tests

    def close(self) -> None:
        self._http.close()
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> OidcRelyingParty:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- public ------------------------------------------------------------------------------------

    def begin(self, device_id: str, return_to: str | None) -> tuple[str, PendingLogin] | OidcOutcome:
        """The authorization URL to send the user to, and the PendingLogin to keep; or a deny."""
        try:
            pending = new_pending_login(
                self.config, device_id, return_to, state=secrets.token_urlsafe(32),
                nonce=secrets.token_urlsafe(32), code_verifier=secrets.token_urlsafe(64), now=self._clock())
            if isinstance(pending, OidcOutcome):
                return pending
            metadata = self._provider()
            return self._authorization_url(metadata, pending), pending
        except _Refused as refused:
            return refused.outcome
        except Exception as exc:
            log.exception("OIDC begin at %s failed", self.config.name)
            return OidcOutcome.refuse(Reason.INTERNAL_ERROR, f"begin: {type(exc).__name__}")

    def complete(self, pending: PendingLogin, params: Mapping[str, str]) -> OidcOutcome:
        """The login's outcome from the redirect's query (`code`, `state`, `iss` or `error`)."""
        try:
            metadata = self._provider()
            code = check_callback(pending, self.config, params, iss_required=metadata.iss_parameter_supported)
            if isinstance(code, OidcOutcome):
                return code
            tokens = self._exchange(metadata, pending, code)
            id_token = tokens.get("id_token")
            if not isinstance(id_token, str):
                raise _refuse(Reason.OIDC_TOKEN_INVALID, "the token response has no id_token")
            claims = self._verify(metadata, id_token)
            return principal_from_id_token_claims(self.config, self.tenant, claims, pending, self._clock())
        except _Refused as refused:
            outcome = refused.outcome
            return OidcOutcome.refuse(outcome.reason, outcome.decision.detail, pending.return_to)
        except Exception as exc:
            log.exception("OIDC complete at %s failed", self.config.name)
            return OidcOutcome.refuse(Reason.INTERNAL_ERROR, f"complete: {type(exc).__name__}",
                                      getattr(pending, "return_to", "/"))

    def verify_id_token(self, id_token: str) -> dict[str, Any] | OidcOutcome:
        """The claims of an ID token whose signature this issuer's JWKS verifies (claims not
        yet checked: that is `principal_from_id_token_claims`), or a deny."""
        try:
            return self._verify(self._provider(), id_token)
        except _Refused as refused:
            return refused.outcome
        except Exception as exc:
            log.exception("OIDC ID token check at %s failed", self.config.name)
            return OidcOutcome.refuse(Reason.INTERNAL_ERROR, f"verify: {type(exc).__name__}")

    # -- steps -------------------------------------------------------------------------------------

    def _authorization_url(self, metadata: ProviderMetadata, pending: PendingLogin) -> str:
        extra: dict[str, str] = {}
        if self.config.max_auth_age_seconds is not None:
            extra["max_age"] = str(int(self.config.max_auth_age_seconds))
        if self.config.acr_values:
            extra["acr_values"] = " ".join(self.config.acr_values)
        return str(prepare_grant_uri(
            metadata.authorization_endpoint, client_id=self.config.client_id, response_type="code",
            redirect_uri=pending.redirect_uri, scope=" ".join(self.config.scopes), state=pending.state,
            nonce=pending.nonce, code_challenge=create_s256_code_challenge(pending.code_verifier),
            code_challenge_method="S256", **extra))

    def _provider(self) -> ProviderMetadata:
        with self._meta_lock:
            now = self._clock()
            if self._metadata is not None and 0 <= now - self._metadata_at < self._cache_ttl:
                return self._metadata
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            result = provider_metadata(self.config, self._get_json(url, "discovery"))
            if isinstance(result, OidcOutcome):
                raise _Refused(result)
            self._metadata, self._metadata_at = result, now
            return result

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise _refuse(Reason.OIDC_PROVIDER_UNAVAILABLE,
                                  f"{what}: HTTP {response.status_code} from {url}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise _refuse(Reason.OIDC_PROVIDER_UNAVAILABLE,
                                      f"{what}: more than {MAX_DOCUMENT_BYTES} bytes from {url}")
        except httpx.TimeoutException:
            raise _refuse(Reason.OIDC_PROVIDER_UNAVAILABLE,
                          f"{what}: no answer from {url} within {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise _refuse(Reason.OIDC_PROVIDER_UNAVAILABLE,
                          f"{what}: {url}: {type(exc).__name__}: {clip(exc, 120)}") from None
        try:
            return _json_object(bytes(body), what)
        except ValueError as exc:
            raise _refuse(Reason.OIDC_PROVIDER_UNAVAILABLE, f"{exc} ({url})") from None

    def _exchange(self, metadata: ProviderMetadata, pending: PendingLogin, code: str) -> Mapping[str, Any]:
        config = self.config
        client = OAuth2Client(
            client_id=config.client_id, client_secret=config.client_secret,
            token_endpoint_auth_method=config.token_endpoint_auth_method,
            transport=_SharedTransport(self._transport), timeout=self._timeout, trust_env=False,
            follow_redirects=False)
        try:
            with client:
                token = client.fetch_token(
                    metadata.token_endpoint, grant_type="authorization_code", code=code,
                    redirect_uri=pending.redirect_uri, code_verifier=pending.code_verifier,
                    headers={"accept": "application/json",
                             "content-type": "application/x-www-form-urlencoded;charset=UTF-8"})
        except AuthlibBaseError as exc:   # an OAuth error response: invalid_grant, invalid_client...
            raise _refuse(Reason.OIDC_CODE_REJECTED,
                          f"token endpoint: {clip(exc.error, 64)}"
                          + (f": {clip(exc.description)}" if exc.description else "")) from None
        except httpx.TimeoutException:
            raise _refuse(Reason.OIDC_PROVIDER_UNAVAILABLE,
                          f"token endpoint: no answer within {self._timeout:g} s") from None
        except httpx.HTTPStatusError as exc:   # no JSON error body: a gateway page, a 5xx
            status = exc.response.status_code
            raise _refuse(Reason.OIDC_PROVIDER_UNAVAILABLE if status >= 500 else Reason.OIDC_CODE_REJECTED,
                          f"token endpoint: HTTP {status}") from None
        except httpx.HTTPError as exc:
            raise _refuse(Reason.OIDC_PROVIDER_UNAVAILABLE,
                          f"token endpoint: {type(exc).__name__}: {clip(exc, 120)}") from None
        if not isinstance(token, Mapping):
            raise _refuse(Reason.OIDC_CODE_REJECTED, "the token response is not a JSON object")
        return token

    def _verify(self, metadata: ProviderMetadata, id_token: str) -> dict[str, Any]:
        header = id_token_header(id_token, metadata.algorithms)
        if isinstance(header, OidcOutcome):
            raise _Refused(header)
        keys = self._keys(metadata, header)
        if not keys:
            raise _refuse(Reason.OIDC_TOKEN_INVALID,
                          f"no {header['alg']} key with kid {clip(header.get('kid'), 60)!r} in the "
                          f"provider's JWKS (fetched again at most every {self._refresh_interval:g} s)")
        claims = verify_with_keys(id_token, header, keys)
        if isinstance(claims, OidcOutcome):
            raise _Refused(claims)
        return claims

    def _keys(self, metadata: ProviderMetadata, header: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
        """The cached JWKS's keys for this header; the JWKS fetched when missing, stale, from
        another jwks_uri, or (rate-limited) when no key fits."""
        with self._jwks_lock:
            now = self._clock()
            fresh = (self._jwks is not None and self._jwks_uri == metadata.jwks_uri
                     and 0 <= now - self._jwks_at < self._cache_ttl)
            if not fresh:
                self._fetch_jwks(metadata, now)
            keys = verification_keys(self._jwks or {}, header)
            if not keys and fresh and not 0 <= now - self._jwks_attempt_at < self._refresh_interval:
                self._fetch_jwks(metadata, now)   # a new kid: the provider may have rotated keys
                keys = verification_keys(self._jwks or {}, header)
            return keys

    def _fetch_jwks(self, metadata: ProviderMetadata, now: float) -> None:
        self._jwks_attempt_at = now
        self.jwks_fetches += 1
        document = self._get_json(metadata.jwks_uri, "JWKS")
        keys = document.get("keys")
        if not isinstance(keys, list) or not 0 < len(keys) <= MAX_JWKS_KEYS:
            raise _refuse(Reason.OIDC_PROVIDER_UNAVAILABLE,
                          f"JWKS: expected 1 to {MAX_JWKS_KEYS} keys in 'keys'")
        self._jwks, self._jwks_uri, self._jwks_at = document, metadata.jwks_uri, now
