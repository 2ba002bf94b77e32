"""The login flow's rules: what a login request must contain, and who a login makes.

Pure: the request bodies arrive as bytes from the tunnel, the directory's answer and the TOTP
outcome as values; out come a Principal or a deny Decision. The shell
(`broker.runtime.identity_service`) talks to the directory, the store and the OIDC provider.

A password login is the directory's bind plus, when the user has a TOTP factor, a current
code (RFC 8176 `amr` ["pwd", "otp"], MFA satisfied). A user without a TOTP factor is refused
with `totp-not-enrolled` when the broker requires MFA (the MIC β model's condition) and gets a
password-only session otherwise. An OIDC login counts as MFA when the provider's `amr`/`acr`
say so (`idp_bridge.oidc`); the same `require_mfa` applies.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from idp_bridge.directory import DirectoryUser
from idp_bridge.totp import TotpOutcome
from ztcore.decision import Decision, deny
from ztcore.principal import Principal, PrincipalError
from ztcore.reasons import Reason

MAX_BODY_BYTES: Final = 16 * 1024
MAX_USERNAME_LENGTH: Final = 256
MAX_PASSWORD_LENGTH: Final = 1024
MAX_TOTP_LENGTH: Final = 16
MAX_PARAM_LENGTH: Final = 4096


def _bad(detail: str) -> Decision:
    return deny(Reason.REQUEST_INVALID, status=400, detail=detail)


def parse_body(body: bytes) -> dict[str, Any] | Decision:
    """A JSON object of at most MAX_BODY_BYTES, or a deny naming what is wrong."""
    if len(body) > MAX_BODY_BYTES:
        return _bad(f"the request body is over {MAX_BODY_BYTES} bytes")
    if not body.strip():
        return {}
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return _bad(f"the request body is not JSON: {exc}")
    if not isinstance(value, dict):
        return _bad("the request body must be a JSON object")
    return value


def text_field(data: dict[str, Any], name: str, max_length: int, *,
               required: bool = True) -> str | Decision:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        return _bad(f"{name}: expected a string")
    if len(value) > max_length:
        return _bad(f"{name}: longer than {max_length} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return _bad(f"{name}: contains control characters")
    return value


@dataclass(frozen=True, slots=True)
class PasswordLogin:
    method: str
    username: str
    password: str = ""
    totp: str = ""

    def __repr__(self) -> str:  # never log the password or the code
        return f"PasswordLogin(method={self.method!r}, username={self.username!r})"


def parse_password_login(body: bytes) -> PasswordLogin | Decision:
    data = parse_body(body)
    if isinstance(data, Decision):
        return data
    unknown = sorted(set(data) - {"method", "username", "password", "totp"})
    if unknown:
        return _bad(f"{unknown[0]}: unknown field")
    method = text_field(data, "method", 63, required=False)
    username = text_field(data, "username", MAX_USERNAME_LENGTH)
    # The password may hold any printable character, spaces included: only its length and
    # type are checked here; an empty one is refused by the directory core, never sent.
    password = data.get("password", "")
    totp = text_field(data, "totp", MAX_TOTP_LENGTH, required=False)
    for value in (method, username, totp):
        if isinstance(value, Decision):
            return value
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        return _bad(f"password: expected a string of at most {MAX_PASSWORD_LENGTH} characters")
    assert isinstance(method, str) and isinstance(username, str) and isinstance(totp, str)
    return PasswordLogin(method, username, password, totp)


def totp_account(username: str) -> str:
    """The key of a user's TOTP factor: the directory's spelling, case-folded (AD's
    sAMAccountName is case-insensitive, and `ALICE` and `alice` are one person)."""
    return username.strip().casefold()


def directory_principal(tenant: str, method: str, user: DirectoryUser,
                        totp: TotpOutcome | None, require_mfa: bool,
                        now: float) -> Principal | Decision:
    """Who a successful directory bind plus the TOTP step makes, or why not.

    `totp` is None when the user has no TOTP factor enrolled.
    """
    if totp is None:
        if require_mfa:
            return deny(Reason.TOTP_NOT_ENROLLED, status=403,
                        detail=f"no TOTP factor for {user.username!r}")
        methods, mfa = frozenset({"pwd"}), False
    elif not totp.accepted:
        return totp.decision
    else:
        methods, mfa = frozenset({"pwd", "otp"}), True
    try:
        return Principal(tenant=tenant, subject=user.dn, username=user.username,
                         display_name=user.display_name, email=user.email or "",
                         groups=frozenset(user.groups), auth_methods=methods,
                         auth_time=float(int(now)), mfa=mfa, idp=method)
    except PrincipalError as exc:
        return deny(Reason.INTERNAL_ERROR, status=500, detail=f"directory user: {exc}")


def mfa_gate(principal: Principal, require_mfa: bool) -> Decision | None:
    """An OIDC login without MFA where the broker requires it: refused."""
    if require_mfa and not principal.mfa:
        methods = ", ".join(sorted(principal.auth_methods)) or "none"
        return deny(Reason.MFA_REQUIRED, status=403,
                    detail=f"the identity provider reported methods [{methods}], no second factor")
    return None


def session_summary(principal: Principal, sid: str, expires_at: float,
                    session_expires_at: float) -> dict[str, Any]:
    """What the agent stores and shows after a login or refresh (no secrets but the token)."""
    return {
        "sid": sid, "user": principal.username, "display_name": principal.display_name,
        "email": principal.email, "groups": sorted(principal.groups),
        "methods": sorted(principal.auth_methods), "mfa": principal.mfa,
        "auth_time": principal.auth_time, "idp": principal.idp, "tenant": principal.tenant,
        "expires_at": expires_at, "session_expires_at": session_expires_at,
    }


class LoginThrottle:
    """Failed password logins per device: after `max_failures` within `window_seconds` the
    device must wait. It keeps a stolen laptop from trying passwords against the directory,
    which would also lock the real users out (AD's lockout counts every bad bind). Sans-IO:
    `now` is passed in; bounded to `max_keys` devices (the oldest is forgotten first).
    """

    def __init__(self, max_failures: int = 10, window_seconds: float = 300.0,
                 max_keys: int = 100_000) -> None:
        self.max_failures, self.window_seconds, self.max_keys = max_failures, window_seconds, max_keys
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        times = self._failures.get(key)
        if times is None:
            return 0.0
        while times and now - times[0] >= self.window_seconds:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        return times[0] + self.window_seconds - now if len(times) >= self.max_failures else 0.0

    def failed(self, key: str, now: float) -> None:
        times = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
        times.append(now)
        self._failures[key] = times   # re-inserted: the dict's order is least recently failed
        while len(self._failures) > self.max_keys:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


def throttled(retry_after_seconds: float) -> Decision:
    return deny(Reason.LOGIN_RATE_LIMITED, status=429,
                detail=f"try again in {max(1, round(retry_after_seconds))} s")
