"""The OpenID Connect relying party core (authorization code + PKCE), pure.

Owns every decision of an OIDC login: the pending logins between begin and complete (single
use, bounded, expiring, bound to the device that began them), whether the provider's metadata
is usable (exact issuer, PKCE S256, algorithms in common), whether an authorization response
belongs to our login (state, RFC 9207 `iss`, provider errors), whether a JOSE header may be
verified at all (no `none`, no HS*, no key or key URL carried in the token), which JWKS keys
may verify it, and whether the claims of a signature-verified ID token make a `Principal`
(issuer, audience, `azp`, times, nonce, groups, MFA). The configuration and the URL rules,
`safe_return_to` (the open-redirect guard) among them, are in `oidc_config`; re-exported here.

The shell (`runtime/oidc_client.py`) fetches discovery and the JWKS, exchanges the code and
checks the signature. Nothing here opens a socket, reads a clock or draws a random number:
`now`, `state`, `nonce` and the PKCE verifier are parameters.
"""

from __future__ import annotations

import hmac
import math
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from idp_bridge.oidc_config import (
    ASYMMETRIC_ALGORITHMS,
    OidcProviderConfig,
    parse_oidc_config,
    safe_return_to,
    url_problem,
)
from ztcore.decision import Decision, allow, deny
from ztcore.errors import LocalProtocolError
from ztcore.principal import Principal, PrincipalError
from ztcore.reasons import Reason
from ztcore.tenants import is_tenant_id

__all__ = [
    "OidcOutcome", "OidcProviderConfig", "PendingLogin", "PendingLogins", "ProviderMetadata",
    "check_callback", "check_id_token_header", "new_pending_login", "parse_oidc_config",
    "principal_from_id_token_claims", "provider_metadata", "safe_return_to", "verification_keys",
]

MAX_DETAIL_CHARS: Final = 200
MAX_GROUPS: Final = 2000
MAX_SUB_CHARS: Final = 255          # OIDC Core §2: `sub` is at most 255 ASCII characters
# Header members that carry a key or say where to fetch one. Honouring any of them lets the token
# choose the key that verifies it; keys come only from the configured issuer's JWKS.
KEY_CARRYING_HEADERS: Final = ("jku", "x5u", "jwk", "x5c")
NO_AMR_METHOD: Final = "oidc"       # the IdP did not say how the user authenticated (not RFC 8176)
# RFC 7518: the key type (and curve) each accepted algorithm needs.
_KEY_TYPE: Final[dict[str, tuple[str, frozenset[str] | None]]] = {
    **{alg: ("RSA", None) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})), "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})), "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"}))}
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_VERIFIER: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")   # RFC 7636 §4.1
_STATUS: Final = {
    Reason.OIDC_STATE_INVALID: 400, Reason.OIDC_ISSUER_MISMATCH: 400, Reason.RETURN_TO_INVALID: 400,
    Reason.OIDC_PROVIDER_ERROR: 401, Reason.OIDC_CODE_REJECTED: 401, Reason.OIDC_TOKEN_INVALID: 401,
    Reason.OIDC_NONCE_MISMATCH: 401, Reason.OIDC_PROVIDER_UNAVAILABLE: 503,
    Reason.INTERNAL_ERROR: 503, Reason.MFA_REQUIRED: 403, Reason.GROUPS_INCOMPLETE: 503,
}


def clip(text: object, limit: int = MAX_DETAIL_CHARS) -> str:
    """Text from outside, made safe for one audit-log line: controls replaced, length bounded."""
    cleaned = "".join("?" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch
                      for ch in str(text)[:limit])
    return cleaned + ("…" if len(str(text)) > limit else "")


@dataclass(frozen=True, slots=True)
class OidcOutcome:
    """The result of a login step: an allow with the Principal, or a deny with its reason and a
    detail for the audit log. `return_to` is the checked local path to send the user to."""

    decision: Decision
    principal: Principal | None = None
    return_to: str = "/"

    def __post_init__(self) -> None:
        if self.decision.allowed != (self.principal is not None):
            raise LocalProtocolError("an OidcOutcome has a principal exactly when it allows")

    @classmethod
    def refuse(cls, reason: Reason, detail: str = "", return_to: str = "/") -> OidcOutcome:
        return cls(deny(reason, status=_STATUS.get(reason, 403), detail=clip(detail, 400)),
                   return_to=return_to)

    @property
    def ok(self) -> bool:
        return self.decision.allowed

    @property
    def reason(self) -> Reason:
        return self.decision.reason


# -- pending logins ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PendingLogin:
    """What the broker remembers between begin and complete (never sent to the browser except
    `state`). `idp` is the provider's configured name; `created_at` the begin's `now`."""

    idp: str
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    return_to: str
    device_id: str
    created_at: float


def new_pending_login(config: OidcProviderConfig, device_id: str, return_to: str | None, *,
                      state: str, nonce: str, code_verifier: str, now: float) -> PendingLogin | OidcOutcome:
    """A PendingLogin for a login the device begins, or a deny (RETURN_TO_INVALID). The random
    values come from the caller (`secrets`); weak or malformed ones are a bug (raised)."""
    if len(state) < 22 or len(nonce) < 22 or not _VERIFIER.fullmatch(code_verifier):
        raise LocalProtocolError("state and nonce need 128 bits; the verifier 43-128 unreserved chars")
    if not isinstance(device_id, str) or not device_id or len(device_id) > 256:
        return OidcOutcome.refuse(Reason.INTERNAL_ERROR, "no device id for the pending login")
    target = safe_return_to(return_to)
    if target is None:
        return OidcOutcome.refuse(Reason.RETURN_TO_INVALID, f"return_to {clip(return_to, 100)!r} "
                                                            "is not a local path")
    return PendingLogin(idp=config.name, state=state, nonce=nonce, code_verifier=code_verifier,
                        redirect_uri=config.redirect_uri, return_to=target, device_id=device_id,
                        created_at=now)


class PendingLogins:
    """The logins begun and not yet completed, keyed by `state`: sans-IO, single-threaded.

    Single use: `take` removes the entry whatever it answers, so a state seen twice, or from
    another device (a leaked state is a failed login, not a second chance), never completes.
    Expired after `ttl_seconds`. Bounded: `add` drops expired entries from the old end, and
    when still full, the oldest (a flood of begins costs old pending logins, never memory or a
    scan; rate-limit begins per device). `prune` scans everything, for a periodic sweep.
    """

    def __init__(self, *, max_entries: int = 10_000, ttl_seconds: float = 600.0) -> None:
        if max_entries < 1 or not ttl_seconds > 0:
            raise LocalProtocolError("PendingLogins needs max_entries >= 1 and ttl_seconds > 0")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._entries: OrderedDict[str, PendingLogin] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, pending: PendingLogin) -> None:
        if pending.state in self._entries:
            raise LocalProtocolError("a pending login with this state exists (state must be random)")
        while self._entries:   # insertion order is begin order: the oldest are first
            oldest = next(iter(self._entries.values()))
            if (len(self._entries) < self.max_entries
                    and pending.created_at - oldest.created_at <= self.ttl_seconds):
                break
            self._entries.popitem(last=False)
        self._entries[pending.state] = pending

    def take(self, state: str, device_id: str, now: float) -> PendingLogin | None:
        """The pending login for `state` begun by `device_id`, removed; None if unknown,
        expired, or begun by another device."""
        pending = self._entries.pop(state, None) if isinstance(state, str) else None
        if pending is None or self._expired(pending, now):
            return None
        if not hmac.compare_digest(pending.device_id.encode(), str(device_id).encode()):
            return None
        return pending

    def prune(self, now: float) -> int:
        """Drop expired entries; returns how many."""
        expired = [s for s, p in self._entries.items() if self._expired(p, now)]
        for state in expired:
            del self._entries[state]
        return len(expired)

    def _expired(self, pending: PendingLogin, now: float) -> bool:
        return not (pending.created_at <= now + 1.0 and now - pending.created_at <= self.ttl_seconds)


# -- provider metadata (OIDC Discovery 1.0) ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of a discovery document we use. `algorithms` is config ∩ advertised."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    iss_parameter_supported: bool = False


def provider_metadata(config: OidcProviderConfig,
                      document: Mapping[str, Any]) -> ProviderMetadata | OidcOutcome:
    """Check a discovery document against the config: the issuer must be `config.issuer`
    exactly (OIDC Discovery §4.3, else OIDC_ISSUER_MISMATCH); the endpoints https (loopback
    http for tests); PKCE S256, `code` and our client authentication supported when listed;
    an ID-token algorithm in common (else OIDC_PROVIDER_UNAVAILABLE: unusable)."""
    if not isinstance(document, Mapping):
        return OidcOutcome.refuse(Reason.OIDC_PROVIDER_UNAVAILABLE, "discovery: not a JSON object")
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or issuer != config.issuer:
        return OidcOutcome.refuse(Reason.OIDC_ISSUER_MISMATCH,
                                  f"discovery names issuer {clip(issuer, 120)!r}, "
                                  f"configured {config.issuer!r}")

    def unusable(detail: str) -> OidcOutcome:
        return OidcOutcome.refuse(Reason.OIDC_PROVIDER_UNAVAILABLE, f"discovery: {detail}")

    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        problem = url_problem(document.get(name))
        if problem:
            return unusable(f"{name} {problem}")
    for name, needed in (("code_challenge_methods_supported", "S256"),
                         ("response_types_supported", "code"),
                         ("token_endpoint_auth_methods_supported", config.token_endpoint_auth_method)):
        listed = document.get(name)
        if listed is not None and (not isinstance(listed, list) or needed not in listed):
            return unusable(f"{name} does not include {needed!r}")
    advertised = document.get("id_token_signing_alg_values_supported", ["RS256"])
    if not isinstance(advertised, list):
        return unusable("id_token_signing_alg_values_supported is not a list")
    algorithms = tuple(a for a in config.algorithms if a in advertised)
    if not algorithms:
        return unusable(f"no ID-token algorithm in common (provider {clip(advertised, 100)}, "
                        f"configured {list(config.algorithms)})")
    return ProviderMetadata(
        issuer=issuer, authorization_endpoint=str(document["authorization_endpoint"]),
        token_endpoint=str(document["token_endpoint"]), jwks_uri=str(document["jwks_uri"]),
        algorithms=algorithms,
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported") is True)


# -- the authorization response ----------------------------------------------------------------------

def check_callback(pending: PendingLogin, config: OidcProviderConfig, params: Mapping[str, str], *,
                   iss_required: bool = False) -> str | OidcOutcome:
    """The authorization code from the redirect's query, or a deny.

    Order: the state binds the response to this login; then RFC 9207's `iss` (a response from
    another provider, the mix-up attack; missing counts only when the provider advertises
    `authorization_response_iss_parameter_supported`, passed as `iss_required`); then a
    provider `error`; then the code itself.
    """
    back = pending.return_to
    if pending.idp != config.name:
        return OidcOutcome.refuse(Reason.OIDC_STATE_INVALID,
                                  f"the login was begun at {pending.idp!r}, not {config.name!r}", back)
    state = params.get("state")
    if not isinstance(state, str) or not state:
        return OidcOutcome.refuse(Reason.OIDC_STATE_INVALID, "no state in the authorization response", back)
    if not hmac.compare_digest(state.encode(), pending.state.encode()):
        return OidcOutcome.refuse(Reason.OIDC_STATE_INVALID, "the state is not this login's", back)
    iss = params.get("iss")
    if iss is None and iss_required:
        return OidcOutcome.refuse(Reason.OIDC_ISSUER_MISMATCH, "no iss in the authorization response "
                                  "(RFC 9207; the provider sends one)", back)
    if iss is not None and iss != config.issuer:
        return OidcOutcome.refuse(Reason.OIDC_ISSUER_MISMATCH,
                                  f"the response comes from {clip(iss, 120)!r}, not {config.issuer!r}", back)
    error = params.get("error")
    if error is not None:
        description = params.get("error_description")
        return OidcOutcome.refuse(Reason.OIDC_PROVIDER_ERROR, clip(error, 64)
                                  + (f": {clip(description)}" if description else ""), back)
    code = params.get("code")
    if not isinstance(code, str) or not code or len(code) > 4096:
        return OidcOutcome.refuse(Reason.OIDC_PROVIDER_ERROR, "no usable code in the authorization response",
                                  back)
    return code


# -- the ID token's header and keys ------------------------------------------------------------------

def check_id_token_header(header: object, algorithms: tuple[str, ...]) -> str | None:
    """Why an ID token with this JOSE header must not be verified at all, or None."""
    if not isinstance(header, Mapping):
        return "the JOSE header is not a JSON object"
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none" or alg.upper().startswith("HS"):
        return f"alg {clip(alg, 20)!r} refused: unsigned or signed with a shared secret"
    if alg not in algorithms or alg not in ASYMMETRIC_ALGORITHMS:
        return f"alg {clip(alg, 20)!r} is not accepted from this provider ({', '.join(algorithms)})"
    carried = [name for name in KEY_CARRYING_HEADERS if name in header]
    if carried:
        return (f"header {', '.join(carried)} refused: the token may not name its own key; "
                "keys come only from the provider's JWKS")
    if "crit" in header:
        return "header crit refused: no JWS extension is understood here"
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > 256):
        return "kid is not a short string"
    return None


def verification_keys(jwks: object, header: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The JWKS keys that may verify a token with this (already checked) header: same `kid`
    when the header names one, a key type and curve that fit `alg`, meant for signatures
    (`use`, `key_ops`, `alg` when present), public only. Empty: unknown key."""
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        return ()
    alg = str(header.get("alg"))
    if alg not in _KEY_TYPE:
        return ()
    kty, curves = _KEY_TYPE[alg]
    kid = header.get("kid")
    keys = []
    for key in jwks["keys"]:
        if not isinstance(key, Mapping) or key.get("kty") != kty or _PRIVATE_MEMBERS & key.keys():
            continue
        if curves is not None and key.get("crv") not in curves:
            continue
        if kid is not None and key.get("kid") != kid:
            continue
        if key.get("use", "sig") != "sig" or key.get("alg", alg) != alg:
            continue
        ops = key.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        keys.append(key)
    return tuple(keys)


# -- the ID token's claims (OIDC Core §3.1.3.7) ------------------------------------------------------

def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _strings(value: object) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def principal_from_id_token_claims(config: OidcProviderConfig, tenant: str, claims: Mapping[str, Any],
                                   pending: PendingLogin, now: float) -> OidcOutcome:
    """The Principal from the claims of an ID token whose signature the shell verified with
    this issuer's JWKS, or a deny: OIDC_ISSUER_MISMATCH for another `iss`, OIDC_NONCE_MISMATCH
    for another login's token, GROUPS_INCOMPLETE when the groups were sent by reference (Entra's
    overage), MFA_REQUIRED under `require_mfa`, OIDC_TOKEN_INVALID for any other bad claim."""
    back = pending.return_to

    def invalid(detail: str, reason: Reason = Reason.OIDC_TOKEN_INVALID) -> OidcOutcome:
        return OidcOutcome.refuse(reason, detail, back)

    if not is_tenant_id(tenant):
        return invalid(f"tenant {clip(tenant, 70)!r} is not a tenant id", Reason.INTERNAL_ERROR)
    if not isinstance(claims, Mapping):
        return invalid("the ID token's payload is not a JSON object")
    if claims.get("iss") != config.issuer:
        return invalid(f"iss {clip(claims.get('iss'), 120)!r} is not {config.issuer!r}",
                       Reason.OIDC_ISSUER_MISMATCH)
    audiences = _strings(claims.get("aud"))
    if not audiences or config.client_id not in audiences:
        return invalid(f"aud {clip(claims.get('aud'), 120)} does not name this client")
    others = set(audiences) - {config.client_id} - config.trusted_audiences
    if others:
        return invalid(f"aud also names {clip(sorted(others), 120)}, which this client does not trust")
    azp = claims.get("azp")
    if (azp is not None or len(audiences) > 1) and azp != config.client_id:
        return invalid(f"azp {clip(azp, 120)!r} is not this client")
    leeway = config.leeway_seconds
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    if exp is None or iat is None:
        return invalid("exp and iat must be numbers")
    if now >= exp + leeway:
        return invalid(f"expired {now - exp:.0f} s ago")
    if iat > now + leeway:
        return invalid(f"issued {iat - now:.0f} s in the future")
    nbf = claims.get("nbf")
    if nbf is not None and (_number(nbf) is None or float(nbf) > now + leeway):
        return invalid("not valid yet (nbf)")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), pending.nonce.encode()):
        return invalid("the nonce is not this login's", Reason.OIDC_NONCE_MISMATCH)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_CHARS:
        return invalid("sub is missing or not a string of at most 255 characters")
    auth_time = iat
    if "auth_time" in claims:
        value = _number(claims["auth_time"])
        if value is None or value < 0 or value > now + leeway:
            return invalid("auth_time is not a past time")
        auth_time = value
    if config.max_auth_age_seconds is not None:
        if "auth_time" not in claims:
            return invalid("no auth_time, though max_age was requested (OIDC Core §3.1.2.1)")
        if now - auth_time > config.max_auth_age_seconds + leeway:
            return invalid(f"authenticated {now - auth_time:.0f} s ago, more than max_age")
    amr = _strings(claims.get("amr", []))
    acr = claims.get("acr")
    if amr is None or (acr is not None and not isinstance(acr, str)):
        return invalid("amr must be a list of strings and acr a string")
    mfa = bool(config.mfa_amr & set(amr)) or (acr is not None and acr in config.mfa_acr)
    if config.require_mfa and not mfa:
        return invalid(f"amr {clip(amr, 80)} / acr {clip(acr, 80)!r} is not MFA", Reason.MFA_REQUIRED)
    groups = _groups(config, claims)
    if isinstance(groups, OidcOutcome):
        return OidcOutcome.refuse(groups.reason, groups.decision.detail, back)
    email = claims.get("email")
    verified = claims.get("email_verified") is not False
    email = email if isinstance(email, str) and verified else ""
    username = claims.get(config.username_claim)
    if not isinstance(username, str) or not username.strip():
        username = email or sub
    name = claims.get("name")
    try:
        principal = Principal(
            tenant=tenant, subject=sub, username=username,
            display_name=name if isinstance(name, str) else "", email=email, groups=groups,
            auth_methods=frozenset(amr) or frozenset({NO_AMR_METHOD}), auth_time=auth_time,
            mfa=mfa, idp=config.name)
    except PrincipalError as exc:
        return invalid(f"claims do not make a user: {exc}")
    return OidcOutcome(allow(Reason.OIDC_LOGIN_OK), principal, back)


def _groups(config: OidcProviderConfig, claims: Mapping[str, Any]) -> frozenset[str] | OidcOutcome:
    """Groups from `groups_claim`, renamed by `group_map`. Fail closed when the provider sent
    them by reference instead (OIDC Core §5.6.2 `_claim_names`; Entra ID does this past 200
    groups, and `hasgroups`): a deny rule may name a group we would not see."""
    name = config.groups_claim
    names = claims.get("_claim_names")
    if (isinstance(names, Mapping) and name in names) or claims.get("hasgroups") is True:
        return OidcOutcome.refuse(Reason.GROUPS_INCOMPLETE,
                                  f"the provider sent {name!r} by reference (too many groups)")
    values = _strings(claims.get(name, []))
    if values is None:
        return OidcOutcome.refuse(Reason.OIDC_TOKEN_INVALID, f"{name} is not a list of strings")
    if len(values) > MAX_GROUPS:
        return OidcOutcome.refuse(Reason.OIDC_TOKEN_INVALID, f"more than {MAX_GROUPS} groups")
    mapped = set()
    for value in values:
        if value in config.group_map:
            mapped.add(config.group_map[value])
        elif not config.map_groups_only:
            mapped.add(value)
    return frozenset(mapped)
