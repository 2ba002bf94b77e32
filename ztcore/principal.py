"""The Principal: who is asking, as every package sees it after login.

This module owns the shape of an authenticated identity and its validation. idp_bridge builds a
Principal from the directory (AD/LDAP + TOTP) or from an OIDC ID token; the broker carries it in
its session token and hands it to the decision pipeline. A Principal is a frozen value: it
cannot change after the login that produced it, and an invalid one cannot exist (construction
raises `PrincipalError` naming the field).

It must not decide anything (whether MFA is enough for an app, whether a group grants access:
those are policy) and must not read the clock: ages are computed by callers from their `now`.
Whether the authentication counts as MFA is decided by idp_bridge (per IdP, from `amr`/`acr`)
and recorded here as `mfa`; this module does not second-guess it from `auth_methods`.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Final

from ztcore.errors import ZTError
from ztcore.tenants import TENANT_ID_RULE, is_tenant_id

MAX_NAME_LENGTH: Final = 256       # subject, username, display name, idp
MAX_EMAIL_LENGTH: Final = 254      # RFC 5321 forward-path limit, less the angle brackets
MAX_GROUP_LENGTH: Final = 1024     # AD distinguished names of nested OUs get long
MAX_METHOD_LENGTH: Final = 64      # RFC 8176 `amr` values are short tokens
# Line breaks and controls would forge lines in logs and terminals; bidi overrides would make a
# name read differently on screen than in the audit log (Trojan Source, CVE-2021-42574). Other
# format and space characters (U+3000 in 「山田　太郎」) are legitimate in names.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cs", "Zl", "Zp"})
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                                  "\u200e\u200f\u061c")


class PrincipalError(ZTError):
    """A Principal field is invalid; the message starts with the field's name."""


def _check_text(field: str, value: object, max_length: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise PrincipalError(f"{field}: expected a string, got {type(value).__name__}")
    if not value.strip():
        if allow_empty and not value:
            return value
        raise PrincipalError(f"{field}: must not be empty or blank")
    if len(value) > max_length:
        raise PrincipalError(f"{field}: longer than {max_length} characters")
    for char in value:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES or char in _BIDI_CONTROLS:
            raise PrincipalError(f"{field}: contains control character U+{ord(char):04X}")
    return value


def _check_set(field: str, value: object, max_length: int) -> None:
    if not isinstance(value, frozenset):
        raise PrincipalError(f"{field}: expected a frozenset, got {type(value).__name__}")
    for item in value:
        _check_text(f"{field}[{item!r}]", item, max_length)


def _check_email(value: object) -> None:
    email = _check_text("email", value, MAX_EMAIL_LENGTH, allow_empty=True)
    if not email:
        return  # directories and IdPs often have no mail attribute
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in email):
        raise PrincipalError(f"email: {email!r} is not an address")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user of one tenant.

    `subject` is the IdP's stable identifier (AD objectGUID / LDAP entryUUID or DN, OIDC `sub`);
    `username` is what the user typed or the IdP's preferred username. `auth_methods` are RFC
    8176 `amr` values ("pwd", "otp", ...). `auth_time` is the epoch second of the last
    interactive authentication (a refresh keeps it, a step-up renews it). `idp` names the
    configured identity source that vouched for the user.
    """

    tenant: str
    subject: str
    username: str
    display_name: str
    email: str
    groups: frozenset[str]
    auth_methods: frozenset[str]
    auth_time: float
    mfa: bool
    idp: str

    def __post_init__(self) -> None:
        if not is_tenant_id(self.tenant):
            raise PrincipalError(f"tenant: {self.tenant!r} is not a tenant id ({TENANT_ID_RULE})")
        _check_text("subject", self.subject, MAX_NAME_LENGTH)
        _check_text("username", self.username, MAX_NAME_LENGTH)
        _check_text("display_name", self.display_name, MAX_NAME_LENGTH, allow_empty=True)
        _check_email(self.email)
        _check_set("groups", self.groups, MAX_GROUP_LENGTH)
        _check_set("auth_methods", self.auth_methods, MAX_METHOD_LENGTH)
        if not self.auth_methods:
            raise PrincipalError("auth_methods: at least one method is required")
        # bool is an int: a True auth_time is a bug, not the epoch second 1.
        if (isinstance(self.auth_time, bool) or not isinstance(self.auth_time, int | float)
                or not math.isfinite(self.auth_time) or self.auth_time < 0):
            raise PrincipalError(f"auth_time: {self.auth_time!r} is not a time in epoch seconds")
        if not isinstance(self.mfa, bool):
            raise PrincipalError(f"mfa: expected a bool, got {type(self.mfa).__name__}")
        _check_text("idp", self.idp, MAX_NAME_LENGTH)

    def auth_age_seconds(self, now: float) -> float:
        """Seconds since the last interactive authentication (negative if it is in the future)."""
        return now - self.auth_time
