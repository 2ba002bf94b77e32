"""The store's policy records (a mixin of `Store`): tenancy (parent prefecture, security model),
devices' segments, each tenant's policy document, and the admin audit trail.

Every change here writes an `admin_audit` row in the same transaction, with the actor and the
value before and after, and bumps `meta.policy_revision` when it changes what a decision sees,
so every broker recompiles within a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from broker.devices import SECURITY_MODELS, SEGMENTS
from broker.runtime.tables import StoreError, admin_audit, devices, meta, tenant_policies, tenants


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    tenant_id: str
    document: str
    revision: int
    updated_at: float
    updated_by: str


@dataclass(frozen=True, slots=True)
class AdminAuditRecord:
    id: int
    time: float
    actor: str
    action: str
    tenant_id: str | None
    target: str
    before: str | None
    after: str | None


class PolicyRecords:
    _transaction: Callable[..., AbstractContextManager[Connection]]

    def set_tenancy(self, tenant_id: str, *, parent: str | None, model: str, actor: str,
                    now: float) -> None:
        """Put a municipality under a prefecture (or none) with its security model."""
        if model not in SECURITY_MODELS:
            raise StoreError(f"model: expected one of {', '.join(sorted(SECURITY_MODELS))}")
        c = tenants.c
        with self._transaction(f"cannot change tenant {tenant_id!r}", write=True) as conn:
            row = conn.execute(sa.select(c.parent, c.model).where(c.id == tenant_id)).first()
            if row is None:
                raise StoreError(f"unknown tenant {tenant_id!r}")
            if parent is not None:
                if parent == tenant_id or conn.execute(
                        sa.select(c.parent).where(c.id == parent)).first() is None:
                    raise StoreError(f"parent: unknown tenant {parent!r}")
                if conn.execute(sa.select(c.id).where(c.parent == tenant_id)).first() is not None:
                    raise StoreError(f"{tenant_id!r} has municipalities of its own: "
                                     "only two levels (prefecture, municipality)")
            conn.execute(tenants.update().where(c.id == tenant_id).values(parent=parent, model=model))
            _audit(conn, now, actor, "tenant.tenancy", tenant_id, tenant_id,
                   json.dumps({"parent": row.parent, "model": row.model}),
                   json.dumps({"parent": parent, "model": model}))
            _bump(conn)

    def set_device_segment(self, device_id: str, segment: str, *, actor: str, now: float) -> bool:
        if segment not in SEGMENTS:
            raise StoreError(f"segment: expected one of {', '.join(sorted(SEGMENTS))}")
        c = devices.c
        with self._transaction(f"cannot change device {device_id!r}", write=True) as conn:
            row = conn.execute(sa.select(c.segment, c.tenant_id).where(c.id == device_id)).first()
            if row is None:
                return False
            conn.execute(devices.update().where(c.id == device_id).values(segment=segment))
            _audit(conn, now, actor, "device.segment", row.tenant_id, device_id, row.segment,
                   segment)
            conn.execute(meta.update().where(meta.c.id == 1)
                         .values(devices_revision=meta.c.devices_revision + 1))
        return True

    def put_policy(self, tenant_id: str, document: str, *, actor: str, now: float) -> int:
        """Store a tenant's (already validated) policy document; returns its new revision."""
        c = tenant_policies.c
        with self._transaction(f"cannot store the policy of {tenant_id!r}", write=True) as conn:
            if conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
                raise StoreError(f"unknown tenant {tenant_id!r}")
            row = conn.execute(sa.select(c.document, c.revision)
                               .where(c.tenant_id == tenant_id)).first()
            revision = (int(row.revision) + 1) if row is not None else 1
            if row is None:
                conn.execute(tenant_policies.insert().values(
                    tenant_id=tenant_id, document=document, revision=revision, updated_at=now,
                    updated_by=actor))
            else:
                conn.execute(tenant_policies.update().where(c.tenant_id == tenant_id).values(
                    document=document, revision=revision, updated_at=now, updated_by=actor))
            _audit(conn, now, actor, "policy.put", tenant_id, f"revision {revision}",
                   row.document if row is not None else None, document)
            _bump(conn)
        return revision

    def get_policy(self, tenant_id: str) -> PolicyDocument | None:
        with self._transaction("cannot read the policy") as conn:
            row = conn.execute(tenant_policies.select()
                               .where(tenant_policies.c.tenant_id == tenant_id)).first()
        return None if row is None else PolicyDocument(row.tenant_id, row.document,
                                                       int(row.revision), float(row.updated_at),
                                                       row.updated_by)

    def list_policies(self) -> list[PolicyDocument]:
        with self._transaction("cannot read the policies") as conn:
            rows = conn.execute(tenant_policies.select().order_by(tenant_policies.c.tenant_id)).all()
        return [PolicyDocument(r.tenant_id, r.document, int(r.revision), float(r.updated_at),
                               r.updated_by) for r in rows]

    def policy_revision(self) -> int:
        with self._transaction("cannot read the policy revision") as conn:
            value = conn.execute(sa.select(meta.c.policy_revision)
                                 .where(meta.c.id == 1)).scalar_one_or_none()
        if value is None:
            raise StoreError("cannot read the policy revision: the database is not migrated")
        return int(value)

    def record_admin_action(self, *, actor: str, action: str, tenant_id: str | None, target: str,
                            before: str | None, after: str | None, now: float) -> None:
        with self._transaction("cannot write the admin audit trail", write=True) as conn:
            _audit(conn, now, actor, action, tenant_id, target, before, after)

    def admin_audit(self, tenant_id: str | None = None, limit: int = 200) -> list[AdminAuditRecord]:
        c = admin_audit.c
        query = admin_audit.select().order_by(c.id.desc()).limit(limit)
        if tenant_id is not None:
            query = query.where(c.tenant_id == tenant_id)
        with self._transaction("cannot read the admin audit trail") as conn:
            rows = conn.execute(query).all()
        return [AdminAuditRecord(int(r.id), float(r.time), r.actor, r.action, r.tenant_id,
                                 r.target, r.before, r.after) for r in rows]


def _audit(conn: Connection, now: float, actor: str, action: str, tenant_id: str | None,
           target: str, before: str | None, after: str | None) -> None:
    conn.execute(admin_audit.insert().values(time=now, actor=actor[:200], action=action,
                                             tenant_id=tenant_id, target=target[:200],
                                             before=before, after=after))


def _bump(conn: Connection) -> None:
    if conn.execute(meta.update().where(meta.c.id == 1)
                    .values(policy_revision=meta.c.policy_revision + 1)).rowcount != 1:
        raise StoreError("the meta row is missing: the database is not migrated")
