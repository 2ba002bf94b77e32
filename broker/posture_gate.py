"""Whether a device may open a stream, as far as quarantine and posture go (pure).

Asked by the broker on every new stream and every half second for open ones
(broker/runtime/posture_service.py keeps the state). A quarantined device, or one whose last
verdict is missing, stale or non-compliant, is refused with the reason, unless the destination
is a repair destination (`[posture] quarantine_allow`). Tenants without a posture profile are
not posture-checked; quarantine still applies.
"""

from __future__ import annotations

from broker.posture import PostureVerdict, stale
from broker.posture_profile import PostureConfig
from ztcore.decision import Decision, deny
from ztcore.reasons import Reason


def device_refusal(config: PostureConfig, tenant: str, quarantine_reason: str | None,
                   verdict: PostureVerdict | None, received_at: float | None,
                   now: float) -> Decision | None:
    """Why this device may not open streams now (before any destination exception).

    `quarantine_reason` is None when the device is not quarantined; `verdict` and `received_at`
    describe its newest accepted report (None: none yet).
    """
    if quarantine_reason is not None:
        return deny(Reason.DEVICE_QUARANTINED, status=403,
                    detail=quarantine_reason or "quarantined by an administrator")
    profile = config.profile_for(tenant)
    if profile is None:
        return None
    if verdict is None or received_at is None:
        return deny(Reason.POSTURE_MISSING, status=403, detail="no posture report from this device yet")
    if stale(received_at, profile, now):
        return deny(Reason.POSTURE_STALE, status=403,
                    detail=f"last report {now - received_at:.0f} s ago, at most "
                           f"{profile.max_report_age_seconds} s")
    decision = verdict.decision()
    return None if decision.allowed else decision


def gate(config: PostureConfig, refusal: Decision | None, host: str, port: int) -> Decision | None:
    """The device's refusal, unless host:port is a repair destination."""
    if refusal is None or config.quarantine_allows(host, port):
        return None
    return refusal
