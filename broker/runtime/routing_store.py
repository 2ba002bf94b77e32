"""The store's routing records (a mixin of `Store`): the imported versions of Microsoft's
endpoint data and each tenant's routing document.

Both bump `meta.policy_revision` when they change what an agent is told, so every broker
rebuilds its rules within a second, and both write the admin audit trail in the same
transaction (an import records the diff from the version before).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from broker.runtime.policy_store import _audit, _bump
from broker.runtime.tables import StoreError, m365_versions, tenant_routing, tenants


@dataclass(frozen=True, slots=True)
class M365VersionRecord:
    id: int
    instance: str
    version: str
    sha256: str
    imported_at: float
    imported_by: str
    source: str
    diff: str | None


@dataclass(frozen=True, slots=True)
class RoutingDocument:
    tenant_id: str
    document: str
    revision: int
    updated_at: float
    updated_by: str


class RoutingRecords:
    _transaction: Callable[..., AbstractContextManager[Connection]]

    def add_m365_version(self, *, instance: str, version: str, sha256: str, data: str,
                         diff: str | None, source: str, actor: str, now: float) -> int:
        """Record a validated import; it becomes the version in force."""
        with self._transaction("cannot store the Microsoft 365 endpoint data", write=True) as conn:
            row_id = conn.execute(m365_versions.insert().values(
                instance=instance, version=version, sha256=sha256, imported_at=now,
                imported_by=actor[:200], source=source[:500], data=data, diff=diff)).inserted_primary_key
            assert row_id is not None
            _audit(conn, now, actor, "m365.import", None, f"{instance} {version}", None, diff)
            _bump(conn)
        return int(row_id[0])

    def m365_versions(self, instance: str) -> list[M365VersionRecord]:
        c = m365_versions.c
        with self._transaction("cannot read the Microsoft 365 versions") as conn:
            rows = conn.execute(sa.select(c.id, c.instance, c.version, c.sha256, c.imported_at,
                                          c.imported_by, c.source, c.diff)
                                .where(c.instance == instance).order_by(c.id)).all()
        return [M365VersionRecord(int(r.id), r.instance, r.version, r.sha256,
                                  float(r.imported_at), r.imported_by, r.source, r.diff)
                for r in rows]

    def m365_data(self, record_id: int | None, instance: str) -> tuple[M365VersionRecord, str] | None:
        """A version and its raw JSON: `record_id`, or the newest of `instance` when None."""
        c = m365_versions.c
        query = m365_versions.select()
        query = (query.where(c.id == record_id) if record_id is not None
                 else query.where(c.instance == instance).order_by(c.id.desc()).limit(1))
        with self._transaction("cannot read the Microsoft 365 endpoint data") as conn:
            r = conn.execute(query).first()
        if r is None:
            return None
        return (M365VersionRecord(int(r.id), r.instance, r.version, r.sha256,
                                  float(r.imported_at), r.imported_by, r.source, r.diff), r.data)

    def put_routing(self, tenant_id: str, document: str, *, actor: str, now: float) -> int:
        """Store a tenant's (already validated) routing document; returns its new revision."""
        c = tenant_routing.c
        with self._transaction(f"cannot store the routing of {tenant_id!r}", write=True) as conn:
            if conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
                raise StoreError(f"unknown tenant {tenant_id!r}")
            row = conn.execute(sa.select(c.document, c.revision)
                               .where(c.tenant_id == tenant_id)).first()
            revision = (int(row.revision) + 1) if row is not None else 1
            values = dict(document=document, revision=revision, updated_at=now, updated_by=actor)
            if row is None:
                conn.execute(tenant_routing.insert().values(tenant_id=tenant_id, **values))
            else:
                conn.execute(tenant_routing.update().where(c.tenant_id == tenant_id).values(**values))
            _audit(conn, now, actor, "routing.put", tenant_id, f"revision {revision}",
                   row.document if row is not None else None, document)
            _bump(conn)
        return revision

    def get_routing(self, tenant_id: str) -> RoutingDocument | None:
        with self._transaction("cannot read the routing document") as conn:
            row = conn.execute(tenant_routing.select()
                               .where(tenant_routing.c.tenant_id == tenant_id)).first()
        return None if row is None else RoutingDocument(row.tenant_id, row.document,
                                                        int(row.revision), float(row.updated_at),
                                                        row.updated_by)

    def list_routing(self) -> list[RoutingDocument]:
        with self._transaction("cannot read the routing documents") as conn:
            rows = conn.execute(tenant_routing.select().order_by(tenant_routing.c.tenant_id)).all()
        return [RoutingDocument(r.tenant_id, r.document, int(r.revision), float(r.updated_at),
                                r.updated_by) for r in rows]

