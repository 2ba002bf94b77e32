"""broker/runtime/posture_service.py's gate and report handling, with a fixed clock and an
in-memory stand-in for the store's one method it uses (a boundary: the store's real conditional
write is tested against SQLite and PostgreSQL in tests/integration/test_admin_records.py)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.posture_report import sign_report
from broker.devices import Device
from broker.pki import DeviceIdentity
from broker.posture_profile import parse_posture_config
from broker.runtime.posture_service import PostureService
from broker.runtime.posture_store import PostureRecord
from ztcore.posture import PostureFacts
from ztcore.reasons import Reason

NOW = 1_800_000_000.0
KEY = ec.derive_private_key(99, ec.SECP256R1())
IDENTITY = DeviceIdentity(tenant_id="city-a", device_id="dev-1")
CONFIG = parse_posture_config({
    "report_interval_seconds": 30, "quarantine_allow": ["updates.city-a.example:443"],
    "profile": [{"tenant": "city-a", "name": "standard", "min_os_version": {"linux": "12"},
                 "require_firewall": True, "require_disk_encryption": True,
                 "max_report_age_seconds": 90}]})
GOOD = PostureFacts("linux", "Debian", "12.7", None, True, "LUKS", True, None, None, (), None, "",
                    "0.1.0", "hw", NOW)


class MemoryStore:
    def __init__(self) -> None:
        self.seq: dict[str, int] = {}

    def record_posture(self, record: PostureRecord) -> bool:
        if record.seq <= self.seq.get(record.device_id, -1):
            return False
        self.seq[record.device_id] = record.seq
        return True


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def device(quarantined: bool = False) -> Device:
    return Device("dev-1", "city-a", "pc", "active", NOW, "1", "ab", NOW + 86400,
                  quarantined_at=NOW if quarantined else None,
                  quarantine_reason="EDR alert" if quarantined else "")


def service() -> tuple[PostureService, Clock]:
    clock = Clock()
    return PostureService(CONFIG, MemoryStore(), clock), clock


def report(svc: PostureService, seq: int, facts: PostureFacts = GOOD) -> Reason:
    reply = svc.handle_report(IDENTITY, KEY.public_key(),
                              sign_report(KEY, "dev-1", "city-a", seq, svc.clock(), facts))
    return (reply.audit or reply.decision).reason


def gate(svc: PostureService, host: str = "www.example.com", port: int = 443,
         quarantined: bool = False) -> Reason | None:
    refused = svc.gate(device(quarantined), "city-a", "dev-1", host, port, svc.clock())
    return None if refused is None else refused.reason


def test_no_report_yet_then_compliant_then_stale() -> None:
    svc, clock = service()
    assert gate(svc) is Reason.POSTURE_MISSING
    assert report(svc, 1) is Reason.DEVICE_COMPLIANT
    assert gate(svc) is None
    clock.now += 90
    assert gate(svc) is None                      # exactly the limit: still fresh
    clock.now += 1
    assert gate(svc) is Reason.POSTURE_STALE
    assert gate(svc, "updates.city-a.example", 443) is None    # the repair path stays


def test_a_non_compliant_report_refuses_streams_but_not_the_repair_path() -> None:
    svc, _ = service()
    off = PostureFacts(**{**GOOD.to_json_dict(), "firewall_on": False, "edr_running": (),
                          "errors": ()})
    assert report(svc, 1, off) is Reason.DEVICE_NONCOMPLIANT
    assert gate(svc) is Reason.DEVICE_NONCOMPLIANT
    assert gate(svc, "updates.city-a.example", 443) is None
    assert gate(svc, "updates.city-a.example", 80) is Reason.DEVICE_NONCOMPLIANT
    assert report(svc, 2) is Reason.DEVICE_COMPLIANT and gate(svc) is None


def test_quarantine_wins_over_a_compliant_posture() -> None:
    svc, _ = service()
    report(svc, 1)
    assert gate(svc, quarantined=True) is Reason.DEVICE_QUARANTINED
    assert gate(svc, "updates.city-a.example", 443, quarantined=True) is None


def test_replays_are_refused_in_memory_and_by_the_store() -> None:
    svc, _ = service()
    assert report(svc, 5) is Reason.DEVICE_COMPLIANT
    assert report(svc, 5) is Reason.POSTURE_REPORT_REPLAYED
    assert report(svc, 4) is Reason.POSTURE_REPORT_REPLAYED
    other, _ = service()
    other.store = svc.store                      # a second broker on the same store
    assert report(other, 5) is Reason.POSTURE_REPORT_REPLAYED


@pytest.mark.parametrize("tenant", ["city-b"])
def test_a_tenant_without_a_profile_is_not_posture_checked(tenant: str) -> None:
    svc, _ = service()
    assert svc.gate(device(), tenant, "dev-1", "www.example.com", 443, NOW) is None
    assert svc.gate(device(quarantined=True), tenant, "dev-1", "x", 443, NOW).reason \
        is Reason.DEVICE_QUARANTINED   # type: ignore[union-attr]
