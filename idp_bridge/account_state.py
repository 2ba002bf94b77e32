"""Account state, pure: what a directory's answer says about an account, as a Reason.

Owns three mappings: an AD bind failure's diagnostic message (`… AcceptSecurityContext error,
data 52e, v4563`) to its sub-code's reason; the state attributes read after a good bind (AD:
`userAccountControl`, `msDS-User-Account-Control-Computed`, `pwdLastSet`, `accountExpires`;
other directories: ppolicy's `pwdAccountLockedTime`, `shadowExpire`, `nsAccountLock`) to a
reason, with `now` passed in; and the draft-behera password policy response control's error
code to a reason. It must not read a clock or a directory.

Attribute maps are `{lower-case name: (values as str, …)}`, as the shell decodes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ztcore.reasons import Reason

Attributes = Mapping[str, Sequence[str]]


class Verdict(NamedTuple):
    """A deny: the reason, and a detail for the audit log and the admin (never the password)."""

    reason: Reason
    detail: str


# -- AD: the bind failure's "data XXX" sub-code -------------------------------------------------------
# The hex code is the Windows error behind LDAP result 49 (invalidCredentials), e.g.
# "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563".
AD_BIND_SUBCODES: dict[str, tuple[Reason, str]] = {
    "525": (Reason.USER_NOT_FOUND, "user not found"),
    "52e": (Reason.CREDENTIALS_INVALID, "invalid credentials"),
    "530": (Reason.LOGON_HOURS, "not permitted to log on at this time"),
    "531": (Reason.WORKSTATION_NOT_ALLOWED, "not permitted to log on at this workstation"),
    "532": (Reason.PASSWORD_EXPIRED, "password expired"),
    "533": (Reason.ACCOUNT_DISABLED, "account disabled"),
    "701": (Reason.ACCOUNT_EXPIRED, "account expired"),
    "773": (Reason.PASSWORD_MUST_CHANGE, "user must reset password"),
    "775": (Reason.ACCOUNT_LOCKED, "account locked out"),
}
_AD_DATA = re.compile(r"\bdata ([0-9a-fA-F]{1,8})\b")


def ad_bind_failure(diagnostic: str) -> Verdict:
    """The reason for an AD simple bind refused with invalidCredentials. An unknown or missing
    sub-code is still invalid credentials: the bind failed, whatever the code says."""
    match = _AD_DATA.search(diagnostic)
    if match is None:
        return Verdict(Reason.CREDENTIALS_INVALID, _clip(f"bind refused: {diagnostic}"))
    code = match.group(1).lower()
    reason, meaning = AD_BIND_SUBCODES.get(code, (Reason.CREDENTIALS_INVALID, "unknown sub-code"))
    return Verdict(reason, f"AD bind refused: data {code} ({meaning})")


# -- AD: userAccountControl and friends, after a good bind -----------------------------------------
UF_ACCOUNTDISABLE = 0x0002
UF_LOCKOUT = 0x0010
UF_DONT_EXPIRE_PASSWD = 0x0001_0000
UF_SMARTCARD_REQUIRED = 0x0004_0000
UF_PASSWORD_EXPIRED = 0x0080_0000
FILETIME_NEVER = 0x7FFF_FFFF_FFFF_FFFF
_FILETIME_EPOCH_OFFSET_SECONDS = 11_644_473_600  # 1601-01-01 to 1970-01-01
AD_STATE_ATTRIBUTES = ("userAccountControl", "msDS-User-Account-Control-Computed", "pwdLastSet",
                       "accountExpires")


def filetime_to_unix(filetime: int) -> float:
    """Windows FILETIME (100 ns ticks since 1601-01-01 UTC) to Unix seconds."""
    return filetime / 10_000_000 - _FILETIME_EPOCH_OFFSET_SECONDS


def _first(attrs: Attributes, name: str) -> str | None:
    values = attrs.get(name.lower())
    return values[0].strip() if values else None


def _integer(attrs: Attributes, name: str) -> int | None | Verdict:
    text = _first(attrs, name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return Verdict(Reason.ACCOUNT_STATE_UNKNOWN, f"{name} is not a number: {_clip(text)!r}")


def ad_account_state(attrs: Attributes, now: float) -> Verdict | None:
    """Deny if the account may not log in, else None. AD keeps the LOCKOUT and PASSWORD_EXPIRED
    bits current only in the constructed msDS-User-Account-Control-Computed, so both are read.
    Without a readable userAccountControl the state is unknown, and that denies (fail closed)."""
    uac = _integer(attrs, "userAccountControl")
    if isinstance(uac, Verdict):
        return uac
    if uac is None:
        return Verdict(Reason.ACCOUNT_STATE_UNKNOWN,
                       "userAccountControl not readable: check the service account's read rights")
    computed = _integer(attrs, "msDS-User-Account-Control-Computed")
    if isinstance(computed, Verdict):
        return computed
    flags = uac | (computed or 0)
    if uac & UF_ACCOUNTDISABLE:
        return Verdict(Reason.ACCOUNT_DISABLED,
                       f"userAccountControl {uac:#x} has ACCOUNTDISABLE (0x2)")
    expires = _integer(attrs, "accountExpires")
    if isinstance(expires, Verdict):
        return expires
    if expires not in (None, 0, FILETIME_NEVER) and filetime_to_unix(expires) <= now:
        return Verdict(Reason.ACCOUNT_EXPIRED,
                       f"accountExpires {expires} is in the past")
    if flags & UF_LOCKOUT:
        return Verdict(Reason.ACCOUNT_LOCKED, f"userAccountControl {flags:#x} has LOCKOUT (0x10)")
    pwd_last_set = _integer(attrs, "pwdLastSet")
    if isinstance(pwd_last_set, Verdict):
        return pwd_last_set
    # pwdLastSet 0 means "must change" only for an account whose password can expire: with
    # DONT_EXPIRE_PASSWD or SMARTCARD_REQUIRED the DC lets the bind through and does not set
    # PASSWORD_EXPIRED ([MS-ADTS] 3.1.1.4.5.17, [MS-SAMR] PasswordMustChange; observed on Samba
    # 4.17). A DC sets PASSWORD_EXPIRED for "must change" too, and refuses that bind with 773
    # (must change), not 532 (expired): pwdLastSet 0 is read first, so both paths agree.
    if pwd_last_set == 0 and not uac & (UF_DONT_EXPIRE_PASSWD | UF_SMARTCARD_REQUIRED):
        return Verdict(Reason.PASSWORD_MUST_CHANGE, "pwdLastSet is 0 (must change at next logon)")
    if flags & UF_PASSWORD_EXPIRED:
        return Verdict(Reason.PASSWORD_EXPIRED,
                       f"userAccountControl {flags:#x} has PASSWORD_EXPIRED (0x800000)")
    return None


# -- other directories (OpenLDAP ppolicy, RFC 2307 shadow, 389-DS / FreeIPA) ---------------------------
GENERIC_STATE_ATTRIBUTES = ("pwdAccountLockedTime", "shadowExpire", "nsAccountLock")
# ppolicy: this value means "locked until an administrator unlocks it" (draft-behera §5.3.3).
PERMANENT_LOCK = "000001010000Z"
_SECONDS_PER_DAY = 86_400


def generic_account_state(attrs: Attributes, now: float) -> Verdict | None:
    """Deny if the account may not log in, else None. A temporary ppolicy lock is the server's to
    enforce (it refuses the bind and says so in the response control); an administrator's
    permanent lock, `nsAccountLock` and `shadowExpire` are enforced here as well, since a server
    without the matching overlay or plugin lets the bind through."""
    if _first(attrs, "pwdAccountLockedTime") == PERMANENT_LOCK:
        return Verdict(Reason.ACCOUNT_DISABLED,
                       f"pwdAccountLockedTime {PERMANENT_LOCK} (locked by an administrator)")
    lock = _first(attrs, "nsAccountLock")
    if lock is not None and lock.lower() == "true":
        return Verdict(Reason.ACCOUNT_DISABLED, "nsAccountLock is TRUE")
    shadow_expire = _integer(attrs, "shadowExpire")
    if isinstance(shadow_expire, Verdict):
        return shadow_expire
    # shadow(5), as pam_unix reads it: -1 (or absent) never expires, otherwise the account is
    # expired from the start of that day (days since 1970-01-01 UTC) on.
    if shadow_expire is not None and shadow_expire != -1 and now >= shadow_expire * _SECONDS_PER_DAY:
        return Verdict(Reason.ACCOUNT_EXPIRED, f"shadowExpire {shadow_expire} is in the past")
    return None


# draft-behera-ldap-password-policy, PasswordPolicyResponseValue.error
PPOLICY_PASSWORD_EXPIRED = 0
PPOLICY_ACCOUNT_LOCKED = 1
PPOLICY_CHANGE_AFTER_RESET = 2


def ppolicy_verdict(error: int | None, attrs: Attributes) -> Verdict | None:
    """The password policy control's error on a bind (failed or not), or None if it has none that
    concerns a login."""
    if error == PPOLICY_PASSWORD_EXPIRED:
        return Verdict(Reason.PASSWORD_EXPIRED, "password policy: password expired")
    if error == PPOLICY_ACCOUNT_LOCKED:
        if _first(attrs, "pwdAccountLockedTime") == PERMANENT_LOCK:
            return Verdict(Reason.ACCOUNT_DISABLED,
                           f"password policy: locked by an administrator ({PERMANENT_LOCK})")
        return Verdict(Reason.ACCOUNT_LOCKED, "password policy: account locked")
    if error == PPOLICY_CHANGE_AFTER_RESET:
        return Verdict(Reason.PASSWORD_MUST_CHANGE, "password policy: change after reset")
    return None


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
