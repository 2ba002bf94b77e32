"""Tenants, devices and enrolment codes as plain values, and the outcome of redeeming a code.

This module owns the shapes the store hands out and the broker's registry keeps in memory. It
holds data and validation only: no database, no clock. All times are float epoch seconds, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from ztcore.reasons import Reason
from ztcore.tenants import TENANT_ID_RULE, is_tenant_id

DEVICE_ACTIVE: Final = "active"
DEVICE_REVOKED: Final = "revoked"
DEVICE_STATUSES: Final = frozenset({DEVICE_ACTIVE, DEVICE_REVOKED})
SEGMENTS: Final = frozenset({"mynumber", "lgwan", "internet"})
SECURITY_MODELS: Final = frozenset({"alpha", "beta", "beta_prime"})

def validate_tenant_id(text: str) -> str:
    """Return `text` if it is a tenant id (a lowercase slug, 2 to 63 characters)."""
    if not is_tenant_id(text):
        raise ValueError(f"invalid tenant id {text!r}: use {TENANT_ID_RULE}")
    return text


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    created_at: float
    parent: str | None = None    # the prefecture that operates this municipality
    model: str = "beta"          # MIC security model: alpha, beta or beta_prime


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    tenant_id: str
    name: str
    status: str  # DEVICE_ACTIVE or DEVICE_REVOKED
    created_at: float
    cert_serial: str
    cert_fingerprint: str
    cert_not_after: float
    revoked_at: float | None = None
    revoke_reason: str = ""
    last_seen_at: float | None = None
    quarantined_at: float | None = None   # an admin cut the device off (it may reach only the
    quarantine_reason: str = ""           # repair destinations, [posture] quarantine_allow)
    segment: str = "internet"             # mynumber / lgwan / internet (三層分離)

    def __post_init__(self) -> None:
        if self.status not in DEVICE_STATUSES:
            raise ValueError(
                f"invalid device status {self.status!r}: expected 'active' or 'revoked'")
        if self.segment not in SEGMENTS:
            raise ValueError(f"invalid device segment {self.segment!r}: expected one of "
                             f"{', '.join(sorted(SEGMENTS))}")

    @property
    def revoked(self) -> bool:
        return self.status == DEVICE_REVOKED

    @property
    def quarantined(self) -> bool:
        return self.quarantined_at is not None


@dataclass(frozen=True, slots=True)
class EnrolmentCode:
    id: int
    tenant_id: str
    code_hash: str
    label: str
    created_at: float
    expires_at: float
    used_at: float | None
    used_by_device: str | None


class RedeemOutcome(Enum):
    OK = "ok"
    INVALID = "invalid"
    USED = "used"
    EXPIRED = "expired"

    @property
    def reason(self) -> Reason | None:
        """The deny reason to show the enrolling user, or None when the code was accepted."""
        return _REDEEM_REASONS[self]


_REDEEM_REASONS: Final[dict[RedeemOutcome, Reason | None]] = {
    RedeemOutcome.OK: None,
    RedeemOutcome.INVALID: Reason.ENROLMENT_CODE_INVALID,
    RedeemOutcome.USED: Reason.ENROLMENT_CODE_USED,
    RedeemOutcome.EXPIRED: Reason.ENROLMENT_CODE_EXPIRED,
}
