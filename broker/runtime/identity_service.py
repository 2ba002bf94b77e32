"""The broker's login service: the control requests agents send over their mTLS tunnel.

`POST /v1/login/methods`, `/v1/login/password`, `/v1/login/oidc/begin`,
`/v1/login/oidc/complete`, `/v1/session/refresh` and `/v1/logout` arrive on the tunnel
connection, so every one of them is already tied to an enrolled device certificate: the
session token issued is bound to that certificate's thumbprint (RFC 8705 `cnf`), an OIDC login
begun on one device cannot be completed on another, and a stolen token is useless elsewhere.

This is a shell: it calls the directory (python-ldap), the OIDC provider (authlib/httpx) and
the store, all blocking, so the tunnel runs `handle` in a worker thread. The rules are in
`broker.login`, `broker.sessions`, `idp_bridge.totp` and `idp_bridge.oidc`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from broker.identity_config import DirectorySource, IdentityConfig, OidcSource
from broker.login import (
    LoginThrottle,
    PasswordLogin,
    directory_principal,
    mfa_gate,
    parse_body,
    parse_password_login,
    session_summary,
    text_field,
    throttled,
    totp_account,
)
from broker.pki import DeviceIdentity
from broker.runtime.identity_store import LoginSessionRecord
from broker.sessions import SessionAuthority, SessionDecision, new_jti
from idp_bridge.directory import AuthOutcome, DirectoryConfig
from idp_bridge.oidc import (
    OidcOutcome,
    OidcProviderConfig,
    PendingLogin,
    PendingLogins,
)
from idp_bridge.totp import TotpOutcome, TotpState, open_secret, verify_code
from ztcore.decision import Decision, allow, deny
from ztcore.principal import Principal
from ztcore.reasons import Reason

log = logging.getLogger("sekimori.identity")

PATH_METHODS: Final = "/v1/login/methods"
PATH_PASSWORD: Final = "/v1/login/password"
PATH_OIDC_BEGIN: Final = "/v1/login/oidc/begin"
PATH_OIDC_COMPLETE: Final = "/v1/login/oidc/complete"
PATH_REFRESH: Final = "/v1/session/refresh"
PATH_LOGOUT: Final = "/v1/logout"
CONTROL_KINDS: Final = {
    PATH_METHODS: "login-methods", PATH_PASSWORD: "login", PATH_OIDC_BEGIN: "login-begin",
    PATH_OIDC_COMPLETE: "login", PATH_REFRESH: "session-refresh", PATH_LOGOUT: "logout",
}


class Directory(Protocol):
    def authenticate(self, username: str, password: str) -> AuthOutcome: ...


class RelyingParty(Protocol):
    def begin(self, device_id: str,
              return_to: str | None) -> tuple[str, PendingLogin] | OidcOutcome: ...

    def complete(self, pending: PendingLogin, params: Mapping[str, str]) -> OidcOutcome: ...


class IdentityRecordsStore(Protocol):
    def totp_attempt(self, tenant_id: str, username: str,
                     check: Callable[[bytes, TotpState], tuple[TotpOutcome, TotpState]]
                     ) -> TotpOutcome | None: ...

    def add_login_session(self, record: LoginSessionRecord) -> None: ...

    def revoke_login_sessions(self, tenant_id: str, now: float, reason: str, *,
                              username: str | None = None, sid: str | None = None,
                              device_id: str | None = None) -> int: ...


@dataclass(frozen=True, slots=True)
class ControlReply:
    """The answer to one control request. `decision` goes to the agent; `audit` (default: the
    same) goes to the audit log, which may know more (user-not-found behind a
    credentials-invalid)."""

    decision: Decision
    payload: dict[str, Any] | None = None
    user: str | None = None
    audit: Decision | None = None


@dataclass
class IdentityService:
    config: IdentityConfig
    sessions: SessionAuthority
    store: IdentityRecordsStore
    seal_key: bytes = field(repr=False)
    directory_factory: Callable[[DirectoryConfig], Directory] | None = None
    party_factory: Callable[[OidcProviderConfig, str], RelyingParty] | None = None
    clock: Callable[[], float] = time.time
    revoked: frozenset[str] = frozenset()
    directories: dict[tuple[str, str], Directory] = field(default_factory=dict)
    parties: dict[tuple[str, str], RelyingParty] = field(default_factory=dict)
    pending: PendingLogins = field(default_factory=PendingLogins)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.directory_factory is None:
            from idp_bridge.runtime.ldap_directory import LdapDirectory
            self.directory_factory = LdapDirectory
        if self.party_factory is None and self.config.oidc:
            from idp_bridge.runtime.oidc_client import OidcRelyingParty
            self.party_factory = OidcRelyingParty
        for d in self.config.directories:
            self.directories[(d.tenant, d.name)] = self.directory_factory(d.config)
        for o in self.config.oidc:
            assert self.party_factory is not None
            self.parties[(o.tenant, o.name)] = self.party_factory(o.config, o.tenant)

    # -- the stream gate (on the event loop: pure CPU, no I/O) ----------------------------------

    def check_token(self, token: bytes, thumbprint: str, host: str, now: float) -> SessionDecision:
        return self.sessions.verify(token, thumbprint, now, self.revoked,
                                    self.config.max_mfa_age_for(host))

    # -- control requests (in a worker thread) ---------------------------------------------------

    def handle(self, path: str, device: DeviceIdentity, thumbprint: str, body: bytes) -> ControlReply:
        """Answer one control request; never raises (a failure of ours is internal-error)."""
        try:
            if path == PATH_METHODS:
                return ControlReply(allow(Reason.LOGIN_OK), {"methods": self.methods(device.tenant_id),
                                                             "require_mfa": self.config.require_mfa})
            if path == PATH_PASSWORD:
                return self._password(device, thumbprint, body)
            if path == PATH_OIDC_BEGIN:
                return self._oidc_begin(device, body)
            if path == PATH_OIDC_COMPLETE:
                return self._oidc_complete(device, thumbprint, body)
            if path == PATH_REFRESH:
                return self._refresh(thumbprint, body)
            if path == PATH_LOGOUT:
                return self._logout(device, thumbprint, body)
            return ControlReply(deny(Reason.REQUEST_INVALID, status=404, detail=f"no such path {path}"))
        except Exception as exc:  # fail closed, and say so
            log.exception("login request %s failed", path)
            return ControlReply(deny(Reason.INTERNAL_ERROR, status=500,
                                     detail=f"{type(exc).__name__} while handling {path}"))

    def methods(self, tenant: str) -> list[dict[str, str]]:
        return ([{"name": d.name, "kind": "password"} for d in self.config.directories_for(tenant)]
                + [{"name": o.name, "kind": "oidc"} for o in self.config.oidc_for(tenant)])

    def _password(self, device: DeviceIdentity, thumbprint: str, body: bytes) -> ControlReply:
        request = parse_password_login(body)
        if isinstance(request, Decision):
            return ControlReply(request)
        source = _pick(self.config.directories_for(device.tenant_id), request.method)
        if source is None:
            return ControlReply(_unknown_method(request.method, "password"), user=request.username)
        with self._lock:
            wait = self.throttle.retry_after(device.device_id, self.clock())
        if wait > 0:
            return ControlReply(throttled(wait), user=request.username)
        reply = self._directory_login(device, thumbprint, source, request)
        with self._lock:
            if reply.decision.allowed:
                self.throttle.succeeded(device.device_id)
            elif reply.decision.reason in _GUESSES:
                self.throttle.failed(device.device_id, self.clock())
        return reply

    def _directory_login(self, device: DeviceIdentity, thumbprint: str, source: DirectorySource,
                         request: PasswordLogin) -> ControlReply:
        outcome = self.directories[(source.tenant, source.name)].authenticate(
            request.username, request.password)
        if outcome.user is None:
            full = outcome.decision()
            shown = full if outcome.client_reason is outcome.reason else deny(
                outcome.client_reason, status=full.status)
            return ControlReply(shown, user=request.username, audit=full)
        user = outcome.user
        account = totp_account(user.username)
        now = self.clock()

        def check(sealed: bytes, state: TotpState) -> tuple[TotpOutcome, TotpState]:
            secret = open_secret(sealed, self.seal_key, device.tenant_id, account)
            return verify_code(secret, request.totp, now, state)

        totp = self.store.totp_attempt(device.tenant_id, account, check)
        principal = directory_principal(device.tenant_id, source.name, user, totp,
                                        self.config.require_mfa, now)
        if isinstance(principal, Decision):
            return ControlReply(principal, user=user.username)
        return self._issue(principal, device, thumbprint, now, Reason.LOGIN_OK)

    def _oidc_begin(self, device: DeviceIdentity, body: bytes) -> ControlReply:
        data = parse_body(body)
        if isinstance(data, Decision):
            return ControlReply(data)
        method = text_field(data, "method", 63, required=False)
        return_to = text_field(data, "return_to", 2048, required=False)
        if isinstance(method, Decision):
            return ControlReply(method)
        if isinstance(return_to, Decision):
            return ControlReply(return_to)
        source = _pick(self.config.oidc_for(device.tenant_id), method)
        if source is None:
            return ControlReply(_unknown_method(method, "oidc"))
        begun = self.parties[(source.tenant, source.name)].begin(device.device_id, return_to or None)
        if isinstance(begun, OidcOutcome):
            return ControlReply(begun.decision)
        url, pending = begun
        with self._lock:
            self.pending.add(pending)
        return ControlReply(allow(Reason.LOGIN_OK), {
            "authorization_url": url, "redirect_uri": pending.redirect_uri, "method": source.name})

    def _oidc_complete(self, device: DeviceIdentity, thumbprint: str, body: bytes) -> ControlReply:
        data = parse_body(body)
        if isinstance(data, Decision):
            return ControlReply(data)
        params = data.get("params")
        if not isinstance(params, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and len(v) <= 8192 for k, v in params.items()):
            return ControlReply(deny(Reason.REQUEST_INVALID, status=400,
                                     detail="params: expected the callback's query as strings"))
        now = self.clock()
        with self._lock:
            pending = self.pending.take(params.get("state", ""), device.device_id, now)
        if pending is None:
            return ControlReply(deny(Reason.OIDC_STATE_INVALID, status=400,
                                     detail="no login with this state was begun on this device, "
                                            "or it expired or was already completed"))
        party = self.parties.get((device.tenant_id, pending.idp))
        if party is None:
            return ControlReply(_unknown_method(pending.idp, "oidc"))
        outcome = party.complete(pending, params)
        if outcome.principal is None or not outcome.decision.allowed:
            return ControlReply(outcome.decision)
        refused = mfa_gate(outcome.principal, self.config.require_mfa)
        if refused is not None:
            return ControlReply(refused, user=outcome.principal.username)
        reply = self._issue(outcome.principal, device, thumbprint, now, Reason.LOGIN_OK)
        if reply.payload is not None:
            reply.payload["return_to"] = outcome.return_to
        return reply

    def _issue(self, principal: Principal, device: DeviceIdentity, thumbprint: str, now: float,
               reason: Reason) -> ControlReply:
        sid = new_jti()
        token, session = self.sessions.issue_session(
            principal, thumbprint, now, self.config.token_lifetime_seconds, new_jti(), sid)
        session_end = principal.auth_time + self.sessions.config.max_session_seconds
        self.store.add_login_session(LoginSessionRecord(
            sid=sid, tenant_id=principal.tenant, device_id=device.device_id,
            subject=principal.subject, username=principal.username, idp=principal.idp,
            methods=tuple(sorted(principal.auth_methods)), auth_time=principal.auth_time,
            created_at=now, expires_at=session_end))
        return ControlReply(allow(reason), {
            "token": token, "session": session_summary(principal, sid, session.expires_at, session_end)},
            user=principal.username)

    def _token(self, body: bytes) -> str | Decision:
        data = parse_body(body)
        if isinstance(data, Decision):
            return data
        return text_field(data, "token", 16 * 1024)

    def _refresh(self, thumbprint: str, body: bytes) -> ControlReply:
        token = self._token(body)
        if isinstance(token, Decision):
            return ControlReply(token)
        now = self.clock()
        refreshed = self.sessions.refresh(token, thumbprint, now, self.revoked,
                                          self.config.token_lifetime_seconds, new_jti())
        checked = refreshed.decision
        user = checked.principal.username if checked.principal else None
        if refreshed.token is None or checked.principal is None or checked.session is None:
            return ControlReply(checked.decision, user=user)
        session_end = checked.principal.auth_time + self.sessions.config.max_session_seconds
        return ControlReply(allow(Reason.SESSION_VALID), {
            "token": refreshed.token,
            "session": session_summary(checked.principal, checked.session.sid,
                                       checked.session.expires_at, session_end)}, user=user)

    def _logout(self, device: DeviceIdentity, thumbprint: str, body: bytes) -> ControlReply:
        token = self._token(body)
        if isinstance(token, Decision):
            return ControlReply(token)
        checked: SessionDecision = self.sessions.verify(token, thumbprint, self.clock(), ())
        session = checked.session
        if session is None or checked.principal is None \
                or Reason.SESSION_DEVICE_MISMATCH in checked.reasons:
            return ControlReply(checked.decision)
        self.store.revoke_login_sessions(checked.principal.tenant, self.clock(), "logged out",
                                         sid=session.sid, device_id=device.device_id)
        return ControlReply(allow(Reason.LOGGED_OUT), {"sid": session.sid},
                            user=checked.principal.username)


# Refusals that mean "a wrong secret was tried" (not a directory outage or a disabled account).
_GUESSES: Final = frozenset({Reason.CREDENTIALS_INVALID, Reason.USER_NOT_FOUND, Reason.TOTP_INVALID,
                             Reason.TOTP_REPLAYED, Reason.USERNAME_INVALID})


def _pick(sources: Sequence[DirectorySource] | Sequence[OidcSource],
          name: str) -> Any:
    if not sources:
        return None
    if not name:
        return sources[0]
    return next((s for s in sources if s.name == name), None)


def _unknown_method(name: str, kind: str) -> Decision:
    return deny(Reason.LOGIN_METHOD_UNKNOWN, status=404,
                detail=f"no {kind} login method {name!r} for this tenant" if name
                else f"no {kind} login method is configured for this tenant")
