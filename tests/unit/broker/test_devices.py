"""Tenant ids, device values and redeem outcomes: broker/devices.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.devices import Device, RedeemOutcome, validate_tenant_id
from ztcore.reasons import Reason


@pytest.mark.parametrize("tenant_id", [
    "ab", "city-a", "0a", "shibuya-ku", "a" * 63, "a-", "13101",
])
def test_valid_tenant_ids(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id


@pytest.mark.parametrize("tenant_id", [
    "", "a", "-ab", "City-A", "city_a", "city a", "a" * 64, "city-a\n", "çity", "ｃｉｔｙ",
    "city.a", "渋谷区",
])
def test_invalid_tenant_ids(tenant_id: str) -> None:
    with pytest.raises(ValueError, match="invalid tenant id"):
        validate_tenant_id(tenant_id)


@given(st.from_regex(r"[a-z0-9][a-z0-9-]{1,62}", fullmatch=True))
def test_every_slug_is_a_tenant_id(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id


@pytest.mark.parametrize("outcome, reason", [
    (RedeemOutcome.OK, None),
    (RedeemOutcome.INVALID, Reason.ENROLMENT_CODE_INVALID),
    (RedeemOutcome.USED, Reason.ENROLMENT_CODE_USED),
    (RedeemOutcome.EXPIRED, Reason.ENROLMENT_CODE_EXPIRED),
])
def test_redeem_outcome_reasons(outcome: RedeemOutcome, reason: Reason | None) -> None:
    assert outcome.reason is reason


def _device(status: str) -> Device:
    return Device(id="d1", tenant_id="city-a", name="pc", status=status, created_at=1.0,
                  cert_serial="01", cert_fingerprint="ab", cert_not_after=2.0,
                  revoked_at=None, revoke_reason="", last_seen_at=None)


def test_device_status_is_checked() -> None:
    assert not _device("active").revoked
    assert _device("revoked").revoked
    with pytest.raises(ValueError, match="invalid device status"):
        _device("disabled")
