"""The broker's posture service: posture reports over the tunnel, and the posture gate per stream.

A report (`POST /v1/posture`, a JWS signed by the device key) is checked against the tunnel's
device certificate (broker/posture_report.py), recorded only if its sequence number is new
(the store's conditional write refuses replays across brokers), and evaluated against the
tenant's profile (broker/posture.py). The verdict goes back to the agent, with the reporting
interval the broker wants.

The gate (broker/posture_gate.py, pure) is asked on every new stream and every half second for
open ones; this service gives it the device's newest verdict.

Reports are handled in a worker thread (store I/O); the gate runs on the event loop and only
reads `self.devices`, which the worker replaces per device in one assignment.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from broker import posture_gate
from broker.devices import Device
from broker.pki import DeviceIdentity
from broker.posture import PostureVerdict, evaluate
from broker.posture_profile import PostureConfig
from broker.posture_report import PostureReport, verify_report
from broker.runtime.identity_service import ControlReply
from broker.runtime.posture_store import PostureRecord
from ztcore.decision import Decision, allow, deny
from ztcore.reasons import Reason

log = logging.getLogger("sekimori.posture")
PATH_POSTURE = "/v1/posture"


class PostureStore(Protocol):
    def record_posture(self, record: PostureRecord) -> bool: ...


@dataclass(frozen=True, slots=True)
class DevicePosture:
    """A device's newest accepted report and what it was judged."""

    seq: int
    received_at: float
    verdict: PostureVerdict
    report: PostureReport


@dataclass
class PostureService:
    config: PostureConfig
    store: PostureStore
    clock: Callable[[], float] = time.time
    devices: dict[str, DevicePosture] = field(default_factory=dict)

    # -- reports (worker thread) ----------------------------------------------------------------

    def handle_report(self, identity: DeviceIdentity, public_key: Any, body: bytes) -> ControlReply:
        try:
            return self._handle_report(identity, public_key, body)
        except Exception as exc:  # fail closed, and say so
            log.exception("posture report of %s failed", identity.device_id)
            return ControlReply(deny(Reason.INTERNAL_ERROR, status=500,
                                     detail=f"{type(exc).__name__} while checking the report"))

    def _handle_report(self, identity: DeviceIdentity, public_key: Any, body: bytes) -> ControlReply:
        now = self.clock()
        profile = self.config.profile_for(identity.tenant_id)
        max_age = profile.max_report_age_seconds if profile is not None else \
            2 * self.config.report_interval_seconds
        report = verify_report(body, public_key, identity.device_id, identity.tenant_id, now,
                               max_age_seconds=max_age)
        if isinstance(report, Decision):
            return ControlReply(report)
        known = self.devices.get(identity.device_id)
        if known is not None and report.seq <= known.seq:
            return ControlReply(_replayed(report.seq, known.seq))
        verdict = evaluate(profile, report.facts, now, now) if profile is not None else None
        if verdict is None:
            verdict = PostureVerdict(True, (), now, "")
        accepted = self.store.record_posture(PostureRecord(
            identity.device_id, report.seq, now, json.dumps(report.facts.to_json_dict()),
            json.dumps(verdict.to_json_dict(), ensure_ascii=False), verdict.compliant))
        if not accepted:
            return ControlReply(_replayed(report.seq, None))
        self.devices[identity.device_id] = DevicePosture(report.seq, now, verdict, report)
        decision = verdict.decision()
        # The report was accepted (200, with the verdict for the agent to show); whether the
        # device may work is the verdict, which is also what the audit log records.
        return ControlReply(allow(decision.reason), {
            "verdict": verdict.to_json_dict(),
            "report_interval_seconds": self.config.report_interval_seconds,
        }, audit=decision)

    # -- the gate (event loop) ------------------------------------------------------------------

    def device_refusal(self, device: Device | None, tenant: str, device_id: str,
                       now: float) -> Decision | None:
        """Why this device may not open streams now (broker/posture_gate.py decides)."""
        posture = self.devices.get(device_id)
        quarantined = (device.quarantine_reason if device is not None and device.quarantined
                       else None)
        return posture_gate.device_refusal(
            self.config, tenant, quarantined, posture.verdict if posture else None,
            posture.received_at if posture else None, now)

    def gate(self, device: Device | None, tenant: str, device_id: str, host: str, port: int,
             now: float) -> Decision | None:
        """None when a stream to host:port may open; else the deny with its reason."""
        return posture_gate.gate(self.config, self.device_refusal(device, tenant, device_id, now),
                                 host, port)


def _replayed(seq: int, newest: int | None) -> Decision:
    detail = f"sequence {seq} is not newer than {newest}" if newest is not None else \
        f"sequence {seq} was already recorded (perhaps by another broker)"
    return deny(Reason.POSTURE_REPORT_REPLAYED, status=409, detail=detail)
