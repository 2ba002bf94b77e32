"""The store's posture, policy and admin records on SQLite and PostgreSQL: a replayed posture
report is refused even across brokers, quarantine is a flag with a reason, policy documents get
revisions with the admin audit trail's before and after, tenancy is two levels, and admin tokens
expire and carry their scope."""

from __future__ import annotations

import pytest

from broker.admin_auth import AdminIdentity
from broker.devices import Device
from broker.runtime.posture_store import PostureRecord
from broker.runtime.store import Store, StoreError

NOW = 1_800_000_000.0


@pytest.fixture
def filled(store: Store) -> Store:
    for tenant in ("pref", "city", "town"):
        store.add_tenant(tenant, tenant, NOW)
    store.add_device(Device("dev-1", "city", "pc", "active", NOW, "1", "ab", NOW + 86400))
    return store


def _record(seq: int, compliant: bool = True) -> PostureRecord:
    return PostureRecord("dev-1", seq, NOW + seq, '{"firewall_on": true}',
                         '{"compliant": %s, "failed": []}' % str(compliant).lower(), compliant)


def test_posture_reports_only_move_forward(filled: Store) -> None:
    assert filled.record_posture(_record(5))
    assert not filled.record_posture(_record(5))          # the same report again: a replay
    assert not filled.record_posture(_record(4))
    assert filled.record_posture(_record(6, compliant=False))
    assert filled.last_posture_seq("dev-1") == 6
    stored = filled.device_postures("city")["dev-1"]
    assert stored.seq == 6 and not stored.compliant
    assert filled.device_postures("town") == {}


def test_quarantine_is_a_flag_with_a_reason_and_bumps_the_revision(filled: Store) -> None:
    before = filled.devices_revision()
    assert filled.set_quarantine("dev-1", NOW, "EDR alert") is True
    assert filled.set_quarantine("dev-1", NOW + 1, "again") is False     # already: unchanged
    device = filled.get_device("dev-1")
    assert device is not None and device.quarantined and device.quarantine_reason == "EDR alert"
    assert filled.set_quarantine("dev-1", NOW + 2, None) is True
    assert filled.get_device("dev-1").quarantined is False             # type: ignore[union-attr]
    assert filled.devices_revision() == before + 2
    assert filled.set_quarantine("nope", NOW, "x") is None


def test_policies_get_revisions_and_the_trail_keeps_before_and_after(filled: Store) -> None:
    revision = filled.policy_revision()
    assert filled.put_policy("city", "rules: []\n", actor="cli:root", now=NOW) == 1
    assert filled.put_policy("city", "rules: [1]\n", actor="municipal-admin:tanaka", now=NOW + 1) == 2
    assert filled.policy_revision() == revision + 2
    doc = filled.get_policy("city")
    assert doc is not None and doc.document == "rules: [1]\n" and doc.updated_by.endswith("tanaka")
    trail = filled.admin_audit("city")
    assert trail[0].before == "rules: []\n" and trail[0].after == "rules: [1]\n"
    with pytest.raises(StoreError, match="unknown tenant"):
        filled.put_policy("nowhere", "x", actor="a", now=NOW)


def test_tenancy_is_two_levels_and_audited(filled: Store) -> None:
    filled.set_tenancy("city", parent="pref", model="alpha", actor="cli:root", now=NOW)
    assert {t.id: (t.parent, t.model) for t in filled.list_tenants()}["city"] == ("pref", "alpha")
    with pytest.raises(StoreError, match="two levels"):
        filled.set_tenancy("pref", parent="town", model="beta", actor="x", now=NOW)
    with pytest.raises(StoreError, match="model"):
        filled.set_tenancy("town", parent=None, model="gamma", actor="x", now=NOW)
    with pytest.raises(StoreError, match="parent: unknown"):
        filled.set_tenancy("town", parent="atlantis", model="beta", actor="x", now=NOW)
    assert filled.admin_audit("city")[0].action == "tenant.tenancy"


def test_admin_tokens_expire_and_carry_their_scope(filled: Store) -> None:
    filled.add_admin_token("tanaka#1", "h" * 64, NOW, role="municipal-admin", tenant_id="city",
                           expires_at=NOW + 3600)
    assert filled.admin_token_identity("h" * 64, NOW + 10) == AdminIdentity("tanaka", "municipal-admin",
                                                                             "city")
    assert filled.admin_token_identity("h" * 64, NOW + 3600) is None
    assert filled.admin_token_identity("x" * 64, NOW) is None
    filled.add_admin_token("soc", "s" * 64, NOW, role="auditor")
    assert filled.revoke_admin_token("soc", NOW)
    assert filled.admin_token_identity("s" * 64, NOW) is None
    with pytest.raises(ValueError, match="role"):
        filled.add_admin_token("bad", "b" * 64, NOW, role="root")
