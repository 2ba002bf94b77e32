"""The store's posture records: each device's newest report (a mixin of `Store`).

Recording a report is one conditional write: it lands only if its sequence number is higher
than the stored one, so a replayed report is refused even when it reaches another broker.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from broker.runtime.tables import device_posture, devices


@dataclass(frozen=True, slots=True)
class PostureRecord:
    device_id: str
    seq: int
    received_at: float
    facts_json: str
    verdict_json: str
    compliant: bool


class PostureRecords:
    _transaction: Callable[..., AbstractContextManager[Connection]]

    def record_posture(self, record: PostureRecord) -> bool:
        """Store `record` if its `seq` is newer than the stored one; False for a replay."""
        c = device_posture.c
        values = dict(seq=record.seq, received_at=record.received_at, facts=record.facts_json,
                      verdict=record.verdict_json, compliant=record.compliant)
        with self._transaction("cannot record a posture report", write=True) as conn:
            if conn.execute(device_posture.update().where(
                    c.device_id == record.device_id, c.seq < record.seq).values(**values)).rowcount:
                return True
            if conn.execute(sa.select(c.seq).where(c.device_id == record.device_id)).first():
                return False            # a row with this seq or a newer one exists: replay
            try:
                with conn.begin_nested():
                    conn.execute(device_posture.insert().values(device_id=record.device_id,
                                                                **values))
            except IntegrityError:      # another broker inserted first: compare again
                return bool(conn.execute(device_posture.update().where(
                    c.device_id == record.device_id, c.seq < record.seq).values(**values)).rowcount)
            return True

    def last_posture_seq(self, device_id: str) -> int:
        """The newest recorded sequence number of a device (-1: none yet)."""
        with self._transaction("cannot read posture") as conn:
            value = conn.execute(sa.select(device_posture.c.seq).where(
                device_posture.c.device_id == device_id)).scalar_one_or_none()
        return -1 if value is None else int(value)

    def device_postures(self, tenant_id: str | None = None) -> dict[str, PostureRecord]:
        c = device_posture.c
        query = sa.select(device_posture).join(devices, devices.c.id == c.device_id)
        if tenant_id is not None:
            query = query.where(devices.c.tenant_id == tenant_id)
        with self._transaction("cannot read posture") as conn:
            rows = conn.execute(query).all()
        return {row.device_id: PostureRecord(row.device_id, int(row.seq), float(row.received_at),
                                             row.facts, row.verdict, bool(row.compliant))
                for row in rows}
