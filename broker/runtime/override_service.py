"""Issuing admin override codes: a short code that lifts the agent's enforcement on one device
for a limited time (a support case), checked by the agent offline (ztcore/override_code.py).
The device's secret is derived from the broker's sealing key, so every broker of a deployment
issues codes the device accepts. Each issue is written to the admin audit trail with the
actor, the device, the duration and the reason (the code itself is not stored).
"""

from __future__ import annotations

import json
import os

from broker.runtime.routing_lookup import routing_in_force
from broker.runtime.store import Store, StoreError
from ztcore.errors import ZTError
from ztcore.override_code import (
    MAX_MINUTES,
    OverrideCode,
    derive_device_secret,
    issue_override_code,
)


def issue_override(store: Store, seal_key: bytes, device_id: str, *, minutes: int, reason: str,
                   actor: str, now: float, tenant_scope: str | None = None) -> OverrideCode:
    """StoreError if the device is unknown, outside `tenant_scope`, revoked, or `minutes` is
    beyond the tenant's `override_max_minutes`."""
    device = store.get_device(device_id)
    if device is None or (tenant_scope is not None and device.tenant_id != tenant_scope):
        raise StoreError(f"unknown device {device_id!r}")
    if device.revoked_at is not None:
        raise StoreError(f"device {device_id!r} is revoked")
    if not reason.strip():
        raise StoreError("reason: say why enforcement is lifted (the support case)")
    limit = _max_minutes(store, device.tenant_id)
    if limit == 0:
        raise StoreError("override codes are disabled for this tenant (override_max_minutes: 0)")
    if not 1 <= minutes <= limit:
        raise StoreError(f"minutes: expected 1-{limit} (the tenant's override_max_minutes)")
    secret = derive_device_secret(seal_key, device.tenant_id, device_id)
    code = issue_override_code(secret, device_id, now, minutes, os.urandom(2))
    store.record_admin_action(
        actor=actor, action="device.override", tenant_id=device.tenant_id, target=device_id,
        before=None, after=json.dumps({"code_id": code.code_id, "minutes": minutes,
                                       "expires_at": code.expires_at, "reason": reason[:300]},
                                      ensure_ascii=False), now=now)
    return code


def _max_minutes(store: Store, tenant_id: str) -> int:
    try:
        policy, _ = routing_in_force(store, tenant_id)
    except ZTError:
        return 60     # an unreadable document: a conservative limit
    return min(policy.override_max_minutes, MAX_MINUTES)
