"""Session tokens: short-lived, device-bound JWTs, issued at login and checked on every stream.

This module owns the token format and the rules for accepting one; it is a pure core around
pyjwt's JWS layer. `now`, the key ring, the revocation set and the device certificate's
thumbprint are passed in; key generation and jti randomness are the two shell functions marked
below. It must not store sessions, read the clock or look at the network (no `jku`/`x5u`
fetch: such headers are refused before any key is chosen).

Format (compact JWS, RFC 7515/7519):

- header `{"alg": "EdDSA", "kid": <RFC 7638 thumbprint of the Ed25519 key>, "typ": "JWT"}` and
  nothing else. The algorithm is pinned: `none`, HS*, RS*, ES* and any extra header member
  (`jwk`, `jku`, `x5u`, `x5c`, `crit`, `b64`) make the token `session-invalid`.
- claims `iss`, `aud`, `sub`, `tid` (tenant), `iat`, `nbf`, `exp`, `jti`, `sid`, `auth_time`,
  `amr`, `mfa`, `groups`, `preferred_username`, `name`, `email`, `idp`, and
  `cnf: {"x5t#S256": <base64url SHA-256 of the device certificate's DER>}` (RFC 8705 §3.1):
  the token is valid only over a tunnel whose client certificate has that thumbprint.

Refresh: there is no separate refresh token. The agent presents its still-valid session token,
over the same device certificate, before it expires; `refresh` issues a new one with a new
`jti`, the same `sid` and the same `auth_time`. No token, however refreshed, outlives
`auth_time + max_session_seconds`: then the user logs in again. Revoking a `sid` ends the
whole refresh chain; revoking a `jti` ends one token.

Time checks (all against the `now` passed in, with `leeway_seconds` for clock skew between
brokers): expired when `now >= exp + leeway`; not yet valid when `nbf > now + leeway` or
`iat > now + leeway`. pyjwt's own claim checks are not used: they read the system clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt

from broker.session_keys import (  # noqa: F401  (re-exported: the session API in one place)
    ALGORITHM,
    KeyRing,
    PreviousKey,
    jwk_thumbprint,
    new_session_key,
)
from broker.session_keys import (
    b64url as _b64url,
)
from ztcore.decision import Action, Decision
from ztcore.errors import ConfigError, ZTError
from ztcore.principal import Principal, PrincipalError
from ztcore.reasons import Reason

CNF_THUMBPRINT: Final = "x5t#S256"
MAX_TOKEN_BYTES: Final = 16 * 1024   # fits an HTTP/2 header list; groups are the bulk
MAX_JTI_LENGTH: Final = 128
DENY_STATUS: Final = 401
_HEADER_KEYS: Final = frozenset({"alg", "kid", "typ"})
# Compact serialisation only: three base64url segments. Anything else never reaches pyjwt.
_COMPACT: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_THUMBPRINT: Final = re.compile(r"[A-Za-z0-9_-]{43}")   # 32 bytes, base64url, no padding
_ID: Final = re.compile(r"[\x21-\x7e]+")                # jti / sid: visible ASCII
_JWS: Final = jwt.PyJWS()


class SessionError(ZTError):
    """A session token cannot be issued from these inputs (a bug or stale login on our side)."""


def thumbprint_of(cert_der: bytes) -> str:
    """RFC 8705 §3.1 `x5t#S256`: base64url (no padding) SHA-256 of the certificate's DER."""
    return _b64url(hashlib.sha256(cert_der).digest())


# -- the shell function: OS randomness (new_session_key: broker.session_keys) -------------------

def new_jti() -> str:
    """SHELL: a fresh token id, 128 random bits, base64url."""
    return secrets.token_urlsafe(16)


# -- decisions -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SessionConfig:
    issuer: str                            # e.g. "https://broker.pref.example.lg.jp"
    audience: str                          # e.g. "sekimori:tunnel"
    max_lifetime_seconds: int = 900        # one token: 15 minutes, then refresh
    max_session_seconds: int = 12 * 3600   # from auth_time, across refreshes: a working day
    leeway_seconds: int = 5                # clock skew between brokers

    def __post_init__(self) -> None:
        for name in ("issuer", "audience"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"sessions.{name}: must be a non-empty string")
        for name in ("max_lifetime_seconds", "max_session_seconds", "leeway_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"sessions.{name}: must be a non-negative whole number")
        if not 0 < self.max_lifetime_seconds <= self.max_session_seconds:
            raise ConfigError("sessions.max_lifetime_seconds: must be positive and at most "
                              "sessions.max_session_seconds")
        if self.leeway_seconds > 60:
            raise ConfigError("sessions.leeway_seconds: at most 60 (keep clocks in sync)")


@dataclass(frozen=True, slots=True)
class Session:
    """The session facts of an authentic token (for the audit log, revocation and expiry)."""

    jti: str
    sid: str
    kid: str
    issued_at: float
    expires_at: float
    device_thumbprint: str


@dataclass(frozen=True, slots=True)
class SessionDecision:
    """Allow with the Principal, or deny with reasons (most important first).

    On a deny, `principal` and `session` are set when the token itself was authentic (expired,
    revoked, wrong device, MFA too old) so the audit log can say whose it was; they must never
    be used to grant anything. They are None when the token could not be trusted at all.
    """

    decision: Decision
    principal: Principal | None = None
    session: Session | None = None

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def reason(self) -> Reason:
        return self.decision.reason

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return self.decision.reasons


@dataclass(frozen=True, slots=True)
class SessionRefresh:
    decision: SessionDecision    # describes the new token when allowed
    token: str | None = None


def _invalid(detail: str) -> SessionDecision:
    return SessionDecision(Decision(Action.DENY, (Reason.SESSION_INVALID,), status=DENY_STATUS,
                                    detail=detail))


class _Invalid(Exception):
    """Internal: the token is not one of ours; the message is the deny's detail."""


# -- claim parsing (only ever on signature-verified payloads) -------------------------------------

def _reject_constant(name: str) -> None:
    raise _Invalid(f"non-finite number {name} in the claims")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Invalid("duplicate member in the claims")
    return result


def _str(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        raise _Invalid(f"claim {name} missing or not a string")
    return value


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid(f"claim {name} missing or not a number")
    return value


def _strings(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    value = claims.get(name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Invalid(f"claim {name} missing or not a list of strings")
    return frozenset(value)


def _principal_of(claims: Mapping[str, Any]) -> Principal:
    mfa = claims.get("mfa")
    if not isinstance(mfa, bool):
        raise _Invalid("claim mfa missing or not a boolean")
    try:
        return Principal(tenant=_str(claims, "tid"), subject=_str(claims, "sub"),
                         username=_str(claims, "preferred_username"),
                         display_name=_str(claims, "name"), email=_str(claims, "email"),
                         groups=_strings(claims, "groups"), auth_methods=_strings(claims, "amr"),
                         auth_time=_number(claims, "auth_time"), mfa=mfa, idp=_str(claims, "idp"))
    except PrincipalError as error:
        raise _Invalid(f"claims do not make a principal: {error}") from None


def _session_of(claims: Mapping[str, Any], kid: str) -> Session:
    cnf = claims.get("cnf")
    thumbprint = cnf.get(CNF_THUMBPRINT) if isinstance(cnf, dict) else None
    if not isinstance(thumbprint, str) or _THUMBPRINT.fullmatch(thumbprint) is None:
        raise _Invalid("claim cnf has no x5t#S256 thumbprint")
    jti, sid = _str(claims, "jti"), _str(claims, "sid")
    for name, value in (("jti", jti), ("sid", sid)):
        if len(value) > MAX_JTI_LENGTH or _ID.fullmatch(value) is None:
            raise _Invalid(f"claim {name} is not a token id")
    return Session(jti=jti, sid=sid, kid=kid, issued_at=_number(claims, "iat"),
                   expires_at=_number(claims, "exp"), device_thumbprint=thumbprint)


# -- the authority ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionAuthority:
    """Issues and checks session tokens with one config and one key ring.

    A rotation or a config reload builds a new SessionAuthority and swaps one reference.
    """

    config: SessionConfig
    ring: KeyRing

    def issue(self, principal: Principal, device_thumbprint: str, now: float,
              lifetime_seconds: int, jti: str, *, sid: str | None = None) -> str:
        """A signed token for `principal` on the device whose certificate has this thumbprint.

        `jti` comes from `new_jti()`; `sid` names the refresh chain (default: this `jti`). The
        token expires after `lifetime_seconds` or at `auth_time + max_session_seconds`,
        whichever is first. SessionError if the inputs cannot make a valid token.
        """
        return self._issue(principal, device_thumbprint, now, lifetime_seconds, jti,
                           jti if sid is None else sid)[0]

    def issue_session(self, principal: Principal, device_thumbprint: str, now: float,
                      lifetime_seconds: int, jti: str, sid: str) -> tuple[str, Session]:
        """As `issue`, also returning the Session facts (expiry) for the store and the agent."""
        return self._issue(principal, device_thumbprint, now, lifetime_seconds, jti, sid)

    def _issue(self, principal: Principal, device_thumbprint: str, now: float,
               lifetime_seconds: int, jti: str, sid: str) -> tuple[str, Session]:
        config = self.config
        if not isinstance(principal, Principal):
            raise SessionError("principal: expected a Principal")
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise SessionError("now: expected a finite time")
        if (isinstance(lifetime_seconds, bool) or not isinstance(lifetime_seconds, int)
                or not 0 < lifetime_seconds <= config.max_lifetime_seconds):
            raise SessionError(f"lifetime_seconds: must be 1 to {config.max_lifetime_seconds}")
        if not isinstance(device_thumbprint, str) or not _THUMBPRINT.fullmatch(device_thumbprint):
            raise SessionError("device_thumbprint: expected an RFC 8705 x5t#S256 thumbprint")
        for name, value in (("jti", jti), ("sid", sid)):
            if (not isinstance(value, str) or len(value) > MAX_JTI_LENGTH
                    or _ID.fullmatch(value) is None):
                raise SessionError(f"{name}: expected 1 to {MAX_JTI_LENGTH} visible "
                                   "ASCII characters")
        if principal.auth_time > now + config.leeway_seconds:
            raise SessionError("principal.auth_time is in the future")
        issued_at = math.floor(now)
        expires_at = math.floor(min(now + lifetime_seconds,
                                    principal.auth_time + config.max_session_seconds))
        if expires_at <= now:
            raise SessionError("the authentication is older than the maximum session age: "
                               "the user must log in again")
        claims = {
            "iss": config.issuer, "aud": config.audience,
            "sub": principal.subject, "tid": principal.tenant,
            "iat": issued_at, "nbf": issued_at, "exp": expires_at,
            "jti": jti, "sid": sid,
            "auth_time": principal.auth_time, "amr": sorted(principal.auth_methods),
            "mfa": principal.mfa, "groups": sorted(principal.groups),
            "preferred_username": principal.username, "name": principal.display_name,
            "email": principal.email, "idp": principal.idp,
            "cnf": {CNF_THUMBPRINT: device_thumbprint},
        }
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        token = _JWS.encode(payload, self.ring.active, algorithm=ALGORITHM,
                            headers={"kid": self.ring.active_kid, "typ": "JWT"})
        if len(token) > MAX_TOKEN_BYTES:
            raise SessionError(f"the token would be {len(token)} bytes, over {MAX_TOKEN_BYTES}: "
                               "too many groups")
        return token, Session(jti=jti, sid=sid, kid=self.ring.active_kid, issued_at=issued_at,
                              expires_at=expires_at, device_thumbprint=device_thumbprint)

    def verify(self, token: str | bytes, expected_thumbprint: str, now: float,
               revoked_jtis: Container[str],
               max_mfa_age_seconds: int | None = None) -> SessionDecision:
        """Check `token` presented over a tunnel whose client certificate has `expected_thumbprint`.

        Never raises: bad input is `session-invalid`; a failure of our own is `internal-error`.
        `revoked_jtis` holds revoked `jti` and `sid` values. `max_mfa_age_seconds` is the app's
        step-up limit (None: no limit).
        """
        try:
            return self._verify(token, expected_thumbprint, now, revoked_jtis, max_mfa_age_seconds)
        except _Invalid as error:
            return _invalid(str(error))
        except Exception as error:  # fail closed (STYLE.md §4): a bug here must not allow
            return SessionDecision(Decision(Action.DENY, (Reason.INTERNAL_ERROR,), status=500,
                                            detail=f"session check failed: {type(error).__name__}"))

    def _authentic_claims(self, token: str | bytes, now: float) -> tuple[dict[str, Any], str]:
        if isinstance(token, bytes):
            if len(token) > MAX_TOKEN_BYTES or not token.isascii():
                raise _Invalid("token is oversized or not ASCII")
            token = token.decode("ascii")
        if not isinstance(token, str):
            raise _Invalid("token is not a string")
        if len(token) > MAX_TOKEN_BYTES:
            raise _Invalid(f"token is longer than {MAX_TOKEN_BYTES} bytes")
        if _COMPACT.fullmatch(token) is None:
            raise _Invalid("token is not a compact JWS")
        # One spelling per token: base64url leaves spare bits in a segment's last character, and
        # a decoder ignores them, so without this check one token would have several spellings.
        for segment in token.split("."):
            try:
                canonical = _b64url(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
            except ValueError:
                raise _Invalid("token segment is not base64url") from None
            if canonical != segment:
                raise _Invalid("token segment is not canonical base64url")
        try:
            header = _JWS.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise _Invalid("token header is not readable") from None
        if not set(header) <= _HEADER_KEYS:
            raise _Invalid(f"token header has members {sorted(set(header) - _HEADER_KEYS)}")
        if header.get("alg") != ALGORITHM:
            raise _Invalid(f"token algorithm {header.get('alg')!r} is not {ALGORITHM}")
        if header.get("typ", "JWT") != "JWT":
            raise _Invalid("token type is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _Invalid("token has no key id")
        key = self.ring.verification_key(kid, now)
        if key is None:
            raise _Invalid("token key id is unknown or retired")
        try:
            payload = _JWS.decode_complete(token, key, algorithms=[ALGORITHM])["payload"]
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _Invalid("token signature does not verify") from None
        try:
            claims = json.loads(payload, parse_constant=_reject_constant,
                                object_pairs_hook=_unique_object)
        except (ValueError, RecursionError):
            raise _Invalid("token claims are not JSON") from None
        if not isinstance(claims, dict):
            raise _Invalid("token claims are not a JSON object")
        return claims, kid

    def _verify(self, token: str | bytes, expected_thumbprint: str, now: float,
                revoked_jtis: Container[str],
                max_mfa_age_seconds: int | None) -> SessionDecision:
        config = self.config
        claims, kid = self._authentic_claims(token, now)
        if claims.get("iss") != config.issuer:
            raise _Invalid("token issuer is not this broker")
        if claims.get("aud") != config.audience:
            raise _Invalid("token audience is not the tunnel")
        session = _session_of(claims, kid)
        principal = _principal_of(claims)
        leeway = config.leeway_seconds
        if _number(claims, "nbf") > now + leeway or session.issued_at > now + leeway:
            raise _Invalid("token is not yet valid")
        if session.expires_at <= session.issued_at:
            raise _Invalid("token expires before it is issued")
        if principal.auth_time > now + leeway:
            raise _Invalid("token authentication time is in the future")

        reasons: list[Reason] = []
        details: list[str] = []
        if session.jti in revoked_jtis or session.sid in revoked_jtis:
            reasons.append(Reason.SESSION_REVOKED)
        presented = (expected_thumbprint.encode("utf-8")
                     if isinstance(expected_thumbprint, str) else b"")
        if not hmac.compare_digest(session.device_thumbprint.encode("ascii"), presented):
            reasons.append(Reason.SESSION_DEVICE_MISMATCH)
        if now >= session.expires_at + leeway:
            reasons.append(Reason.SESSION_EXPIRED)
        if max_mfa_age_seconds is not None:
            if not principal.mfa:
                reasons.append(Reason.MFA_REQUIRED)
            elif principal.auth_age_seconds(now) > max_mfa_age_seconds:
                reasons.append(Reason.MFA_TOO_OLD)
                details.append(f"authenticated {int(principal.auth_age_seconds(now))} s ago, "
                               f"this app allows {max_mfa_age_seconds} s")
        if reasons:
            return SessionDecision(Decision(Action.DENY, tuple(reasons), status=DENY_STATUS,
                                            detail="; ".join(details)), principal, session)
        return SessionDecision(Decision(Action.ALLOW, (Reason.SESSION_VALID,)), principal, session)

    def refresh(self, token: str | bytes, expected_thumbprint: str, now: float,
                revoked_jtis: Container[str], lifetime_seconds: int, jti: str) -> SessionRefresh:
        """A new token for a still-valid one on the same device (see the module docstring).

        Same principal, `sid` and `auth_time`; a new `jti` (from `new_jti()`) and expiry. A
        session past `auth_time + max_session_seconds` is `session-expired`: log in again.
        """
        checked = self.verify(token, expected_thumbprint, now, revoked_jtis)
        if not checked.allowed or checked.principal is None or checked.session is None:
            return SessionRefresh(checked)
        principal, old = checked.principal, checked.session
        # The same floor as `_issue`: a session ending within this second cannot get a token.
        if math.floor(principal.auth_time + self.config.max_session_seconds) <= now:
            return SessionRefresh(SessionDecision(
                Decision(Action.DENY, (Reason.SESSION_EXPIRED,), status=DENY_STATUS,
                         detail="the session reached its maximum age"), principal, old))
        try:
            new_token, session = self._issue(principal, old.device_thumbprint, now,
                                             lifetime_seconds, jti, old.sid)
        except SessionError as error:
            return SessionRefresh(SessionDecision(
                Decision(Action.DENY, (Reason.INTERNAL_ERROR,), status=500, detail=str(error)),
                principal, old))
        return SessionRefresh(SessionDecision(checked.decision, principal, session), new_token)


def still_valid(checked: SessionDecision, now: float, revoked_jtis: Container[str],
                max_mfa_age_seconds: int | None) -> bool:
    """Whether an allowed decision for a token, made earlier, still holds at `now`.

    The tunnel keeps the last allowed decision per connection and asks this on each new stream
    instead of verifying the signature again. It re-checks every fact that changes with time or
    place: expiry, revocation and the destination's step-up limit; False means "verify again"
    (which then gives the deny with its reason).
    """
    session, principal = checked.session, checked.principal
    if not checked.allowed or session is None or principal is None:
        return False
    if now >= session.expires_at or session.jti in revoked_jtis or session.sid in revoked_jtis:
        return False
    if max_mfa_age_seconds is not None:
        return principal.mfa and principal.auth_age_seconds(now) <= max_mfa_age_seconds
    return True
