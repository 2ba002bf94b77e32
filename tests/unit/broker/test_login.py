"""broker/login.py: login request bodies, and who a directory login plus TOTP makes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.login import (
    MAX_BODY_BYTES,
    PasswordLogin,
    directory_principal,
    mfa_gate,
    parse_password_login,
    session_summary,
    totp_account,
)
from idp_bridge.directory import DirectoryUser
from idp_bridge.groups import GroupResolution
from idp_bridge.totp import TotpOutcome
from ztcore.decision import Decision
from ztcore.principal import Principal
from ztcore.reasons import Reason

NOW = 1_800_000_000.5
USER = DirectoryUser(dn="uid=yamada-taro,ou=people,dc=demo", username="yamada-taro",
                     display_name="山田 太郎", email=None, groups=("zeimu-ka", "all-staff"),
                     group_resolution=GroupResolution((), "walk"))


def _body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_password_login_is_parsed_and_its_repr_hides_secrets() -> None:
    login = parse_password_login(_body(username="yamada-taro", password=" p w ", totp="123456"))
    assert login == PasswordLogin("", "yamada-taro", " p w ", "123456")
    assert "p w" not in repr(login) and "123456" not in repr(login)


@pytest.mark.parametrize(("body", "detail"), [
    (b"not json", "not JSON"), (b"[1]", "JSON object"), (_body(username=1), "username"),
    (_body(username="a", password=None), "password"), (_body(username="a\x00b"), "control"),
    (_body(username="a", role="admin"), "role: unknown field"),
    (_body(username="a", totp="1" * 17), "totp"),
    (b"{" + b" " * MAX_BODY_BYTES + b"}", "over"),
    (b"\xff\xfe", "not JSON"),
])
def test_a_bad_login_body_is_refused_with_what_is_wrong(body: bytes, detail: str) -> None:
    refused = parse_password_login(body)
    assert isinstance(refused, Decision) and refused.reason is Reason.REQUEST_INVALID
    assert detail in refused.detail and refused.status == 400


@given(st.binary(max_size=300))
def test_any_bytes_give_a_login_or_a_deny_never_an_exception(body: bytes) -> None:
    assert isinstance(parse_password_login(body), PasswordLogin | Decision)


def test_the_totp_key_is_case_folded() -> None:
    assert totp_account(" Yamada-Taro ") == totp_account("yamada-taro") == "yamada-taro"


def test_password_and_totp_make_an_mfa_principal() -> None:
    principal = directory_principal("demo-city", "ad", USER, TotpOutcome(True, Reason.TOTP_ACCEPTED),
                                    True, NOW)
    assert isinstance(principal, Principal)
    assert principal.auth_methods == {"pwd", "otp"} and principal.mfa
    assert principal.groups == {"zeimu-ka", "all-staff"} and principal.auth_time == int(NOW)
    assert principal.idp == "ad" and principal.subject == USER.dn


@pytest.mark.parametrize(("totp", "require_mfa", "reason"), [
    (None, True, Reason.TOTP_NOT_ENROLLED),
    (TotpOutcome(False, Reason.TOTP_REPLAYED), True, Reason.TOTP_REPLAYED),
    (TotpOutcome(False, Reason.TOTP_REPLAYED), False, Reason.TOTP_REPLAYED),
    (TotpOutcome(False, Reason.TOTP_RATE_LIMITED), True, Reason.TOTP_RATE_LIMITED),
    (TotpOutcome(False, Reason.TOTP_MALFORMED), True, Reason.TOTP_MALFORMED),
])
def test_a_missing_or_wrong_second_factor_is_refused(totp: TotpOutcome | None, require_mfa: bool,
                                                     reason: Reason) -> None:
    refused = directory_principal("demo-city", "ad", USER, totp, require_mfa, NOW)
    assert isinstance(refused, Decision) and refused.reason is reason and not refused.allowed


def test_without_required_mfa_a_user_without_totp_gets_a_password_only_session() -> None:
    principal = directory_principal("demo-city", "ad", USER, None, False, NOW)
    assert isinstance(principal, Principal) and principal.auth_methods == {"pwd"}
    assert not principal.mfa
    refused = mfa_gate(principal, True)
    assert refused is not None and refused.reason is Reason.MFA_REQUIRED and "pwd" in refused.detail
    assert mfa_gate(principal, False) is None


def test_the_session_summary_has_no_secret_but_the_user_facts() -> None:
    principal = directory_principal("demo-city", "ad", USER, TotpOutcome(True, Reason.TOTP_ACCEPTED),
                                    True, NOW)
    assert isinstance(principal, Principal)
    summary = session_summary(principal, "sid-1", NOW + 900, NOW + 43200)
    assert summary["methods"] == ["otp", "pwd"] and summary["user"] == "yamada-taro"
    assert "token" not in summary and "password" not in json.dumps(summary)


def test_the_login_throttle_stops_a_device_after_ten_failures_for_five_minutes() -> None:
    from broker.login import LoginThrottle

    throttle = LoginThrottle(max_failures=10, window_seconds=300, max_keys=3)
    for i in range(9):
        throttle.failed("laptop-1", NOW + i)
    assert throttle.retry_after("laptop-1", NOW + 9) == 0
    throttle.failed("laptop-1", NOW + 9)
    assert throttle.retry_after("laptop-1", NOW + 10) == pytest.approx(290)
    assert throttle.retry_after("laptop-2", NOW + 10) == 0          # other devices unaffected
    assert throttle.retry_after("laptop-1", NOW + 300) == 0         # the first failure aged out
    throttle.succeeded("laptop-1")
    assert throttle.retry_after("laptop-1", NOW + 10) == 0
    for key in ("a", "b", "c", "d"):
        throttle.failed(key, NOW)
    assert len(throttle._failures) == 3 and "a" not in throttle._failures   # bounded
