"""The store's unblock requests (a mixin of `Store`): recorded from the gateway's block page,
listed and decided by an admin. An approval lets the host through the tenant's URL-category
and list blocks until it expires; it never lifts an IOC, DLP or malware block (those are about
the content or known-bad infrastructure, not about a site being in the wrong category)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from broker.runtime.policy_store import _audit
from broker.runtime.tables import StoreError, tenants, unblock_requests

PENDING, APPROVED, DENIED = "pending", "approved", "denied"
MAX_PENDING_PER_TENANT = 1000    # a flood of requests from one laptop cannot fill the database


@dataclass(frozen=True, slots=True)
class UnblockRequest:
    id: int
    tenant_id: str
    device_id: str | None
    username: str | None
    host: str
    url: str
    reason_code: str
    request_id: str
    justification: str
    created_at: float
    status: str
    decided_by: str | None
    decided_at: float | None
    expires_at: float | None
    note: str | None

    def to_json_dict(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__slots__}  # type: ignore[attr-defined]


def _row(r: sa.Row) -> UnblockRequest:  # type: ignore[type-arg]
    return UnblockRequest(int(r.id), r.tenant_id, r.device_id, r.username, r.host, r.url, r.reason_code,
                          r.request_id, r.justification, float(r.created_at), r.status, r.decided_by,
                          None if r.decided_at is None else float(r.decided_at),
                          None if r.expires_at is None else float(r.expires_at), r.note)


class UnblockRecords:
    _transaction: Callable[..., AbstractContextManager[Connection]]

    def add_unblock_request(self, *, tenant_id: str, device_id: str | None, username: str | None,
                            host: str, url: str, reason_code: str, request_id: str,
                            justification: str, now: float) -> int:
        c = unblock_requests.c
        with self._transaction("cannot record the unblock request", write=True) as conn:
            if conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
                raise StoreError(f"unknown tenant {tenant_id!r}")
            pending = conn.execute(sa.select(sa.func.count()).select_from(unblock_requests)
                                   .where(c.tenant_id == tenant_id, c.status == PENDING)).scalar_one()
            if pending >= MAX_PENDING_PER_TENANT:
                raise StoreError(f"{tenant_id} already has {pending} pending unblock requests")
            row_id = conn.execute(unblock_requests.insert().values(
                tenant_id=tenant_id, device_id=device_id, username=username, host=host[:253],
                url=url[:2048], reason_code=reason_code[:64], request_id=request_id[:32],
                justification=justification[:1000], created_at=now, status=PENDING)).inserted_primary_key
        assert row_id is not None
        return int(row_id[0])

    def list_unblock_requests(self, tenant_id: str | None = None,
                              status: str | None = None) -> list[UnblockRequest]:
        c = unblock_requests.c
        query = unblock_requests.select().order_by(c.id)
        if tenant_id is not None:
            query = query.where(c.tenant_id == tenant_id)
        if status is not None:
            query = query.where(c.status == status)
        with self._transaction("cannot list unblock requests") as conn:
            return [_row(r) for r in conn.execute(query).all()]

    def get_unblock_request(self, request_id: int) -> UnblockRequest | None:
        with self._transaction("cannot read the unblock request") as conn:
            r = conn.execute(unblock_requests.select().where(unblock_requests.c.id == request_id)).first()
        return None if r is None else _row(r)

    def decide_unblock(self, request_id: int, *, approve: bool, minutes: int, actor: str, note: str,
                       now: float) -> UnblockRequest:
        """Approve (for `minutes`) or deny a pending request; StoreError if it is not pending."""
        c = unblock_requests.c
        with self._transaction("cannot decide the unblock request", write=True) as conn:
            r = conn.execute(unblock_requests.select().where(c.id == request_id)).first()
            if r is None:
                raise StoreError(f"no unblock request {request_id}")
            if r.status != PENDING:
                raise StoreError(f"unblock request {request_id} is already {r.status}")
            values = dict(status=APPROVED if approve else DENIED, decided_by=actor[:200], decided_at=now,
                          expires_at=now + minutes * 60 if approve else None, note=note[:500] or None)
            conn.execute(unblock_requests.update().where(c.id == request_id).values(**values))
            _audit(conn, now, actor, "unblock.approve" if approve else "unblock.deny", r.tenant_id,
                   f"{request_id} {r.host}", None, f"{minutes} minutes" if approve else note or None)
            r = conn.execute(unblock_requests.select().where(c.id == request_id)).one()
        return _row(r)

    def active_unblocks(self, now: float) -> list[tuple[str, str, float]]:
        """(tenant, host, expires_at) of the approvals in force."""
        c = unblock_requests.c
        with self._transaction("cannot read the approved unblock requests") as conn:
            rows = conn.execute(sa.select(c.tenant_id, c.host, c.expires_at)
                                .where(c.status == APPROVED, c.expires_at > now)).all()
        return [(r.tenant_id, r.host, float(r.expires_at)) for r in rows]
