"""The data path's device check (broker/registry.py): an immutable snapshot decides per device."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import pytest

from broker.devices import DEVICE_ACTIVE, DEVICE_REVOKED, Device
from broker.pki import DeviceIdentity
from broker.registry import RegistrySnapshot
from ztcore.decision import Action
from ztcore.reasons import Reason

NOW = 1_750_000_000.0

ACTIVE = Device(id="dev-a", tenant_id="kita-city", name="窓口PC-01", status=DEVICE_ACTIVE,
                created_at=NOW - 86_400, cert_serial="1a", cert_fingerprint="ab" * 32,
                cert_not_after=NOW + 86_400)
REVOKED = replace(ACTIVE, id="dev-r", status=DEVICE_REVOKED, revoked_at=NOW - 60,
                  revoke_reason="紛失届 (lost on the train) #1234")
REVOKED_SILENTLY = replace(ACTIVE, id="dev-s", status=DEVICE_REVOKED, revoked_at=NOW - 60)
OTHER_TENANT = replace(ACTIVE, id="dev-o", tenant_id="minami-town")
SNAPSHOT = RegistrySnapshot.build(7, [ACTIVE, REVOKED, REVOKED_SILENTLY, OTHER_TENANT])

# (identity from the client certificate, expected reason or None for "may open streams", detail)
CASES: list[tuple[str, DeviceIdentity | None, Reason | None, str]] = [
    ("active", DeviceIdentity("kita-city", "dev-a"), None, ""),
    ("other-tenant-active", DeviceIdentity("minami-town", "dev-o"), None, ""),
    ("no-identity", None, Reason.DEVICE_UNKNOWN, "certificate names no Sekimori device"),
    ("unknown-device", DeviceIdentity("kita-city", "dev-x"), Reason.DEVICE_UNKNOWN,
     "device dev-x is not enrolled"),
    ("wrong-tenant", DeviceIdentity("minami-town", "dev-a"), Reason.DEVICE_UNKNOWN,
     "device dev-a is not enrolled"),
    ("tenant-spoofed-onto-other", DeviceIdentity("kita-city", "dev-o"), Reason.DEVICE_UNKNOWN,
     "device dev-o is not enrolled"),
    ("revoked-with-reason", DeviceIdentity("kita-city", "dev-r"), Reason.DEVICE_REVOKED,
     "device dev-r revoked: 紛失届 (lost on the train) #1234"),
    ("revoked-without-reason", DeviceIdentity("kita-city", "dev-s"), Reason.DEVICE_REVOKED,
     "device dev-s revoked"),
    ("revoked-wrong-tenant", DeviceIdentity("minami-town", "dev-r"), Reason.DEVICE_UNKNOWN,
     "device dev-r is not enrolled"),
]


@pytest.mark.parametrize("identity, reason, detail", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_check(identity: DeviceIdentity | None, reason: Reason | None, detail: str) -> None:
    decision = SNAPSHOT.check(identity, NOW)
    if reason is None:
        assert decision is None
        return
    assert decision is not None
    assert decision.action is Action.DENY and not decision.allowed
    assert decision.reasons == (reason,)
    assert decision.status == 403
    assert decision.detail == detail


def test_empty_snapshot_knows_no_device() -> None:
    empty = RegistrySnapshot()
    assert empty.revision == -1
    decision = empty.check(DeviceIdentity("kita-city", "dev-a"), NOW)
    assert decision is not None and decision.reason is Reason.DEVICE_UNKNOWN


def test_build_indexes_by_device_id_and_keeps_the_revision() -> None:
    assert SNAPSHOT.revision == 7
    assert set(SNAPSHOT.devices) == {"dev-a", "dev-r", "dev-s", "dev-o"}
    assert SNAPSHOT.devices["dev-r"] is REVOKED


def test_a_new_snapshot_revokes_without_touching_the_old_one() -> None:
    identity = DeviceIdentity("kita-city", "dev-a")
    newer = RegistrySnapshot.build(8, [replace(ACTIVE, status=DEVICE_REVOKED,
                                               revoke_reason="退職")])
    decision = newer.check(identity, NOW)
    assert decision is not None and decision.reason is Reason.DEVICE_REVOKED
    assert decision.detail == "device dev-a revoked: 退職"
    assert SNAPSHOT.check(identity, NOW) is None  # the old snapshot still says active


def test_snapshot_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        SNAPSHOT.revision = 9  # type: ignore[misc]
