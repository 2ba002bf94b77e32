"""Account state (idp_bridge/account_state.py): AD bind sub-codes, userAccountControl and friends,
ppolicy, shadowExpire, each to its own reason; recorded values, fixed `now`."""

from __future__ import annotations

import pytest

from idp_bridge.account_state import (
    FILETIME_NEVER,
    Attributes,
    ad_account_state,
    ad_bind_failure,
    filetime_to_unix,
    generic_account_state,
    ppolicy_verdict,
)
from ztcore.reasons import Reason

NOW = 1_798_761_600.0  # 2027-01-01T00:00:00Z
FILETIME_NOW = int((NOW + 11_644_473_600) * 10_000_000)
DAY = 86_400 * 10_000_000  # a day in FILETIME ticks


def windows(code: str) -> str:
    """The diagnostic message a Windows Server DC sends with LDAP result 49."""
    return f"80090308: LdapErr: DSID-0C090439, comment: AcceptSecurityContext error, data {code}, v4563\x00"


def samba(code: str) -> str:
    """Samba AD DC's version of the same message (4.17, tests/integration/test_ad_directory.py)."""
    return f"80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {code}, v1db1"


@pytest.mark.parametrize("message", [windows, samba])
@pytest.mark.parametrize(("code", "reason"), [
    ("525", Reason.USER_NOT_FOUND),
    ("52e", Reason.CREDENTIALS_INVALID),
    ("52E", Reason.CREDENTIALS_INVALID),
    ("530", Reason.LOGON_HOURS),
    ("531", Reason.WORKSTATION_NOT_ALLOWED),
    ("532", Reason.PASSWORD_EXPIRED),
    ("533", Reason.ACCOUNT_DISABLED),
    ("701", Reason.ACCOUNT_EXPIRED),
    ("773", Reason.PASSWORD_MUST_CHANGE),
    ("775", Reason.ACCOUNT_LOCKED),
    ("568", Reason.CREDENTIALS_INVALID),  # unknown to us: still a refused bind
])
def test_ad_bind_subcodes(message: object, code: str, reason: Reason) -> None:
    verdict = ad_bind_failure(message(code))  # type: ignore[operator]
    assert verdict.reason is reason
    assert f"data {code.lower()}" in verdict.detail


@pytest.mark.parametrize("message", ["", "Invalid credentials", "data", "data zz9, v1"])
def test_ad_bind_without_a_subcode_is_invalid_credentials(message: str) -> None:
    assert ad_bind_failure(message).reason is Reason.CREDENTIALS_INVALID


def test_the_subcode_is_read_whole() -> None:
    # a longer code is not mistaken for the one it starts with (7750 is not 775, "locked")
    assert ad_bind_failure("comment: x, data 7750, v1").reason is Reason.CREDENTIALS_INVALID
    assert ad_bind_failure("comment: x, data 775z, v1").reason is Reason.CREDENTIALS_INVALID


def attrs(**values: object) -> Attributes:
    names = {"uac": "useraccountcontrol", "computed": "msds-user-account-control-computed",
             "pwd_last_set": "pwdlastset", "expires": "accountexpires"}
    return {names.get(k, k.lower()): (str(v),) for k, v in values.items()}


FINE = {"uac": 0x200, "pwd_last_set": FILETIME_NOW - 30 * DAY, "expires": FILETIME_NEVER}


@pytest.mark.parametrize(("changes", "reason"), [
    ({}, None),
    ({"uac": 0x10200}, None),  # DONT_EXPIRE_PASSWORD alone is fine
    ({"expires": 0}, None),  # 0 and 0x7FFF… both mean "never"
    ({"expires": FILETIME_NOW + DAY}, None),
    ({"uac": 0x202}, Reason.ACCOUNT_DISABLED),
    ({"uac": 0x2}, Reason.ACCOUNT_DISABLED),
    ({"uac": 0x210}, Reason.ACCOUNT_LOCKED),
    ({"computed": 0x10}, Reason.ACCOUNT_LOCKED),  # AD keeps LOCKOUT current only here
    ({"uac": 0x800200}, Reason.PASSWORD_EXPIRED),
    ({"computed": 0x800000}, Reason.PASSWORD_EXPIRED),
    ({"pwd_last_set": 0}, Reason.PASSWORD_MUST_CHANGE),
    # ... unless the password never expires (or a smart card is required): the DC lets the bind
    # through and leaves PASSWORD_EXPIRED out (Samba 4.17: uac 0x10200, pwdLastSet 0, computed 0)
    ({"uac": 0x10200, "pwd_last_set": 0, "computed": 0}, None),
    ({"uac": 0x40200, "pwd_last_set": 0}, None),
    ({"uac": 0x10200, "pwd_last_set": 0, "computed": 0x800000}, Reason.PASSWORD_EXPIRED),
    ({"expires": FILETIME_NOW - 1}, Reason.ACCOUNT_EXPIRED),
    ({"expires": FILETIME_NOW}, Reason.ACCOUNT_EXPIRED),
    # several at once: disabled wins, then expired, locked, must change, password expired
    ({"uac": 0x800212, "pwd_last_set": 0, "expires": 1}, Reason.ACCOUNT_DISABLED),
    ({"uac": 0x800210, "pwd_last_set": 0, "expires": 1}, Reason.ACCOUNT_EXPIRED),
    ({"uac": 0x800210, "pwd_last_set": 0}, Reason.ACCOUNT_LOCKED),
    # Samba 4.17 for a "must change" account: computed PASSWORD_EXPIRED, and its bind gets 773
    ({"uac": 0x200, "computed": 0x800000, "pwd_last_set": 0}, Reason.PASSWORD_MUST_CHANGE),
    ({"uac": 0x800200, "pwd_last_set": 0}, Reason.PASSWORD_MUST_CHANGE),
    ({"uac": 0x200, "computed": 0x800000, "pwd_last_set": "x"}, Reason.ACCOUNT_STATE_UNKNOWN),
    # unreadable state fails closed
    ({"uac": "abc"}, Reason.ACCOUNT_STATE_UNKNOWN),
    ({"expires": "soon"}, Reason.ACCOUNT_STATE_UNKNOWN),
    ({"computed": ""}, Reason.ACCOUNT_STATE_UNKNOWN),
])
def test_ad_account_state(changes: dict[str, object], reason: Reason | None) -> None:
    verdict = ad_account_state(attrs(**{**FINE, **changes}), NOW)
    assert (verdict.reason if verdict else None) is reason


def test_ad_account_state_without_user_account_control_fails_closed() -> None:
    verdict = ad_account_state(attrs(pwd_last_set=1), NOW)
    assert verdict is not None and verdict.reason is Reason.ACCOUNT_STATE_UNKNOWN
    assert "read rights" in verdict.detail


def test_filetime() -> None:
    assert filetime_to_unix(116_444_736_000_000_000) == 0.0  # 1970-01-01
    assert filetime_to_unix(FILETIME_NOW) == pytest.approx(NOW)


@pytest.mark.parametrize(("values", "reason"), [
    ({}, None),
    ({"pwdAccountLockedTime": "000001010000Z"}, Reason.ACCOUNT_DISABLED),
    ({"pwdAccountLockedTime": "20261231235959Z"}, None),  # temporary: the server enforces it
    ({"nsAccountLock": "TRUE"}, Reason.ACCOUNT_DISABLED),
    ({"nsAccountLock": "false"}, None),
    ({"shadowExpire": "-1"}, None),
    ({"shadowExpire": "1"}, Reason.ACCOUNT_EXPIRED),
    ({"shadowExpire": "0"}, Reason.ACCOUNT_EXPIRED),  # pam_unix reads 0 as expired
    ({"shadowExpire": str(int(NOW // 86_400))}, Reason.ACCOUNT_EXPIRED),  # from that day on
    ({"shadowExpire": str(int(NOW // 86_400) + 1)}, None),
    ({"shadowExpire": "never"}, Reason.ACCOUNT_STATE_UNKNOWN),
])
def test_generic_account_state(values: dict[str, str], reason: Reason | None) -> None:
    verdict = generic_account_state({k.lower(): (v,) for k, v in values.items()}, NOW)
    assert (verdict.reason if verdict else None) is reason


@pytest.mark.parametrize(("error", "locked", "reason"), [
    (None, None, None),
    (0, None, Reason.PASSWORD_EXPIRED),
    (1, None, Reason.ACCOUNT_LOCKED),
    (1, "20261231235959Z", Reason.ACCOUNT_LOCKED),
    (1, "000001010000Z", Reason.ACCOUNT_DISABLED),
    (2, None, Reason.PASSWORD_MUST_CHANGE),
    (8, None, None),  # passwordInHistory and friends do not concern a bind
])
def test_ppolicy(error: int | None, locked: str | None, reason: Reason | None) -> None:
    values = {"pwdaccountlockedtime": (locked,)} if locked else {}
    verdict = ppolicy_verdict(error, values)
    assert (verdict.reason if verdict else None) is reason
