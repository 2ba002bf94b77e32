"""The device registry as the data path sees it: an immutable snapshot, swapped whole.

The broker reloads the snapshot from the store when the store's device revision changes; the
tunnel asks it, per connection and again when it changes, whether a certificate's device may
open streams. Pure: no store access here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from broker.devices import Device
from broker.pki import DeviceIdentity
from ztcore.decision import Decision, deny
from ztcore.reasons import Reason


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    revision: int = -1
    devices: dict[str, Device] = field(default_factory=dict)

    @classmethod
    def build(cls, revision: int, devices: Iterable[Device]) -> RegistrySnapshot:
        return cls(revision, {d.id: d for d in devices})

    def check(self, identity: DeviceIdentity | None, now: float) -> Decision | None:
        """None when the device may open streams; else the deny, with its reason."""
        if identity is None:
            return deny(Reason.DEVICE_UNKNOWN, detail="certificate names no Sekimori device")
        device = self.devices.get(identity.device_id)
        if device is None or device.tenant_id != identity.tenant_id:
            return deny(Reason.DEVICE_UNKNOWN, detail=f"device {identity.device_id} is not enrolled")
        if device.status != "active":
            detail = f"device {device.id} revoked"
            if device.revoke_reason:
                detail += f": {device.revoke_reason}"
            return deny(Reason.DEVICE_REVOKED, detail=detail)
        return None
