"""What the broker's tunnel connections share: config, audit sink, registry snapshot, the
login and posture services, and the broker-wide reactions to a changed registry, a changed
revocation set and the passing of time (posture staleness)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker.config import BrokerConfig
from broker.devices import Device
from broker.fair_share import TokenBucket
from broker.pki import DeviceIdentity
from broker.registry import RegistrySnapshot
from broker.runtime.audit_sink import AuditSink
from broker.runtime.identity_service import IdentityService
from broker.runtime.inspection import InspectionService
from broker.runtime.policy_service import PolicyService
from broker.runtime.posture_service import PostureService
from broker.runtime.routing_service import RoutingService
from broker.runtime.web_lists import WebListsService
from ztcore.audit import AuditEvent
from ztcore.reasons import REASON_TEXT, Reason

if TYPE_CHECKING:
    from broker.runtime.tunnel_server import TunnelConnection

log = logging.getLogger("sekimori.tunnel")
TOUCH_INTERVAL_SECONDS = 60.0

Renewer = Callable[[DeviceIdentity, bytes], bytes]


@dataclass
class BrokerState:
    """What the tunnel connections share; built by the composition root (broker.runtime.server)."""
    config: BrokerConfig
    audit: AuditSink
    renew: Renewer
    lookup_device: Callable[[str], Device | None]
    touch_device: Callable[[str, float], None] = lambda device_id, now: None
    last_touched: dict[str, float] = field(default_factory=dict)
    registry: RegistrySnapshot = field(default_factory=RegistrySnapshot)
    connections: set[TunnelConnection] = field(default_factory=set)
    shutting_down: bool = False
    streams_open: int = 0
    clock: Callable[[], float] = time.time
    identity: IdentityService | None = None
    posture: PostureService | None = None
    policy: PolicyService | None = None
    routing: RoutingService | None = None
    inspection: InspectionService | None = None
    web_lists: WebListsService | None = None        # URL categories, IOC feeds, tenants' lists
    record_unblock: Callable[..., int] | None = None  # Store.add_unblock_request
    tenant_streams: dict[str, int] = field(default_factory=dict)   # fair share accounting
    tenant_buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def bucket(self, tenant: str) -> TokenBucket:
        """The tenant's shared download bucket (created at its configured rate)."""
        found = self.tenant_buckets.get(tenant)
        if found is None:
            found = TokenBucket(self.config.quota(tenant).max_bytes_per_second, self.clock())
            self.tenant_buckets[tenant] = found
        return found

    def device_seen(self, device_id: str) -> None:
        """Record when a device last connected (at most once a minute per device, off the loop)."""
        now = self.clock()
        if now - self.last_touched.get(device_id, 0.0) < TOUCH_INTERVAL_SECONDS:
            return
        self.last_touched[device_id] = now
        asyncio.get_event_loop().run_in_executor(None, self._touch, device_id, now)

    def _touch(self, device_id: str, now: float) -> None:
        try:
            self.touch_device(device_id, now)
        except Exception:  # last-seen is informational: never let it hurt the tunnel
            log.exception("could not record last-seen time of %s", device_id)

    def registry_changed(self, snapshot: RegistrySnapshot) -> None:
        previous, self.registry = self.registry, snapshot
        now = self.clock()
        for device in snapshot.devices.values():
            before = previous.devices.get(device.id)
            if previous.revision < 0:
                continue      # at start-up: old news
            if device.revoked and (before is None or not before.revoked):
                self._device_event(now, device, "device-revoked", Reason.DEVICE_REVOKED,
                                   device.revoke_reason)
            if device.quarantined and (before is None or not before.quarantined):
                self._device_event(now, device, "device-quarantined", Reason.DEVICE_QUARANTINED,
                                   device.quarantine_reason)
            if before is not None and before.quarantined and not device.quarantined:
                self._device_event(now, device, "device-released", Reason.DEVICE_RELEASED, "")
        for conn in list(self.connections):
            conn.recheck_device(now)

    def _device_event(self, now: float, device: Device, kind: str, reason: Reason,
                      detail: str) -> None:
        text = REASON_TEXT[reason]
        refused = reason is not Reason.DEVICE_RELEASED
        self.audit.write(AuditEvent(
            time=now, kind=kind, tenant=device.tenant_id, device=device.id,
            decision="deny" if refused else "allow", reason=reason.value,
            message_ja=text.ja if refused else None, message_en=text.en if refused else None,
            detail=detail or None))

    def posture_tick(self) -> None:
        """Every second: streams of devices that became non-compliant, stale or quarantined end."""
        if self.posture is None:
            return
        now = self.clock()
        for conn in list(self.connections):
            conn.recheck_posture(now)

    def policy_changed(self) -> None:
        """A new policy generation: open streams it refuses end now."""
        for conn in list(self.connections):
            conn.recheck_policy()

    def revocations_changed(self, revoked: frozenset[str]) -> None:
        """New revocation set: streams opened under a revoked session or token end now."""
        if self.identity is None:
            return
        self.identity.revoked = revoked
        for conn in list(self.connections):
            conn.recheck_sessions(revoked)
