"""The broker's database: tenants, enrolment codes and devices, on SQLite or PostgreSQL.

This module owns every SQL statement the broker runs and the translation between rows and the
values of `broker.devices`. It is a thin shell: it decides nothing about policy (whether a
device may renew, whether a code may be issued), it records facts. SQLAlchemy types and
exceptions stop here; callers see dataclasses and `StoreError`.

Times are stored as DOUBLE PRECISION epoch seconds (UTC) and every method takes `now` from its
caller; nothing here reads the clock. The same code runs on SQLite (the default, one broker) and
PostgreSQL (several brokers): single use of an enrolment code rests on one conditional UPDATE,
which both engines apply atomically.

The methods are blocking; an asyncio caller runs them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, Row, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from broker.devices import (
    DEVICE_ACTIVE,
    DEVICE_REVOKED,
    Device,
    EnrolmentCode,
    RedeemOutcome,
    Tenant,
    validate_tenant_id,
)
from broker.runtime.admin_store import AdminRecords
from broker.runtime.identity_store import IdentityRecords
from broker.runtime.policy_store import PolicyRecords
from broker.runtime.posture_store import PostureRecords
from broker.runtime.routing_store import RoutingRecords
from broker.runtime.tables import METADATA, StoreError, devices, enrolment_codes, meta, tenants
from broker.runtime.unblock_store import UnblockRecords
from ztcore.errors import ConfigError

__all__ = ["METADATA", "Store", "StoreError", "engine_url"]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent.parent / "migrations"
# Any fixed 64-bit key: it serialises `migrate` between brokers starting together.
_MIGRATE_LOCK_KEY: Final = 0x5E4B1_0001
_SQLITE_BUSY_TIMEOUT_SECONDS: Final = 30.0
_PG_CONNECT_TIMEOUT_SECONDS: Final = 10
_WRITE: Final = "sekimori_write"




def engine_url(url: str) -> URL:
    """Parse a store URL, choosing our drivers; raise ConfigError for anything unsupported."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"store url: cannot parse {url!r}") from exc
    backend = parsed.get_backend_name()
    driver = parsed.get_driver_name()
    if backend in ("postgresql", "postgres") and driver in ("psycopg", "psycopg2", ""):
        # psycopg 3 only: "postgresql://" would otherwise pick psycopg2.
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("pysqlite", ""):
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError(
                "store url: in-memory SQLite is not supported (each connection would see its "
                "own empty database); use sqlite:///path/to/sekimori.db")
        return parsed.set(drivername="sqlite+pysqlite")
    shown = parsed.render_as_string(hide_password=True)
    raise ConfigError(f"store url: {shown!r} is not supported; use sqlite:/// or postgresql://")


class Store(IdentityRecords, PostureRecords, PolicyRecords, AdminRecords, RoutingRecords, UnblockRecords):
    """Tenants, enrolment codes, devices, TOTP factors and login sessions in one SQL database."""

    def __init__(self, url: str) -> None:
        parsed = engine_url(url)
        self._engine = _create_engine(parsed)

    # -- lifecycle -------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest revision; running it again changes nothing."""
        config = Config()
        # configparser interpolation: a "%" in the install path must be doubled.
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        try:
            with self._transaction("cannot migrate the database", write=True) as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": _MIGRATE_LOCK_KEY})
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except CommandError as exc:
            # Typically a database migrated by a newer broker than this one.
            raise StoreError(f"cannot migrate the database: {exc}") from exc

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- tenants ---------------------------------------------------------------------------------

    def add_tenant(self, tenant_id: str, name: str, now: float) -> Tenant:
        try:
            validate_tenant_id(tenant_id)
        except ValueError as exc:
            raise StoreError(str(exc)) from exc
        tenant = Tenant(id=tenant_id, name=name, created_at=now)
        with self._transaction(f"cannot add tenant {tenant_id!r}", write=True,
                               conflict=f"tenant {tenant_id!r} already exists") as conn:
            conn.execute(tenants.insert().values(id=tenant_id, name=name, created_at=now))
        return tenant

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        with self._transaction(f"cannot read tenant {tenant_id!r}") as conn:
            row = conn.execute(tenants.select().where(tenants.c.id == tenant_id)).one_or_none()
        return None if row is None else _tenant(row)

    def list_tenants(self) -> list[Tenant]:
        with self._transaction("cannot list tenants") as conn:
            rows = conn.execute(tenants.select().order_by(tenants.c.id)).all()
        return [_tenant(row) for row in rows]

    # -- enrolment codes -------------------------------------------------------------------------

    def create_enrolment_code(self, tenant_id: str, code_hash: str, now: float,
                              expires_at: float, label: str = "") -> EnrolmentCode:
        with self._transaction(f"cannot create an enrolment code for tenant {tenant_id!r}",
                               write=True,
                               conflict="an enrolment code with this hash already exists",
                               ) as conn:
            _require_tenant(conn, tenant_id)
            result = conn.execute(enrolment_codes.insert().values(
                tenant_id=tenant_id, code_hash=code_hash, label=label, created_at=now,
                expires_at=expires_at, used_at=None, used_by_device=None))
            code_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        if not isinstance(code_id, int):
            raise StoreError("cannot create an enrolment code: the database returned no id")
        return EnrolmentCode(id=code_id, tenant_id=tenant_id, code_hash=code_hash, label=label,
                             created_at=now, expires_at=expires_at, used_at=None,
                             used_by_device=None)

    def redeem_enrolment_code(self, code_hash: str, now: float,
                              device_id: str) -> tuple[RedeemOutcome, str | None]:
        """Use a code once; on OK also return its tenant id.

        Single use holds across brokers sharing the database: the UPDATE below only matches an
        unused, unexpired row, and the database applies it to that row once (PostgreSQL
        re-checks the WHERE clause after waiting for a concurrent writer's row lock; SQLite
        takes the write lock at BEGIN IMMEDIATE). Whoever sees rowcount 1 owns the code.
        """
        c = enrolment_codes.c
        claim = (enrolment_codes.update()
                 .where(c.code_hash == code_hash, c.used_at.is_(None), c.expires_at > now)
                 .values(used_at=now, used_by_device=device_id))
        with self._transaction("cannot redeem an enrolment code", write=True) as conn:
            claimed = conn.execute(claim).rowcount == 1
            row = conn.execute(sa.select(c.tenant_id, c.used_at, c.expires_at)
                               .where(c.code_hash == code_hash)).one_or_none()
        if claimed and row is not None:
            return RedeemOutcome.OK, str(row.tenant_id)
        if row is None:
            return RedeemOutcome.INVALID, None
        if row.used_at is not None:
            return RedeemOutcome.USED, None
        if row.expires_at <= now:
            return RedeemOutcome.EXPIRED, None
        # Unused, unexpired, yet the UPDATE matched nothing: never expected; fail closed.
        raise StoreError("cannot redeem an enrolment code: the database gave inconsistent answers")

    def list_enrolment_codes(self, tenant_id: str | None = None) -> list[EnrolmentCode]:
        query = enrolment_codes.select().order_by(enrolment_codes.c.id)
        if tenant_id is not None:
            query = query.where(enrolment_codes.c.tenant_id == tenant_id)
        with self._transaction("cannot list enrolment codes") as conn:
            rows = conn.execute(query).all()
        return [_enrolment_code(row) for row in rows]

    # -- devices ---------------------------------------------------------------------------------

    def add_device(self, device: Device) -> None:
        with self._transaction(f"cannot add device {device.id!r}", write=True,
                               conflict=f"device {device.id!r} already exists") as conn:
            _require_tenant(conn, device.tenant_id)
            conn.execute(devices.insert().values(
                id=device.id, tenant_id=device.tenant_id, name=device.name,
                status=device.status, created_at=device.created_at,
                cert_serial=device.cert_serial, cert_fingerprint=device.cert_fingerprint,
                cert_not_after=device.cert_not_after, revoked_at=device.revoked_at,
                revoke_reason=device.revoke_reason, last_seen_at=device.last_seen_at,
                quarantined_at=device.quarantined_at, quarantine_reason=device.quarantine_reason,
                segment=device.segment))
            _bump_devices_revision(conn)

    def get_device(self, device_id: str) -> Device | None:
        with self._transaction(f"cannot read device {device_id!r}") as conn:
            row = conn.execute(devices.select().where(devices.c.id == device_id)).one_or_none()
        return None if row is None else _device(row)

    def list_devices(self, tenant_id: str | None = None) -> list[Device]:
        query = devices.select().order_by(devices.c.tenant_id, devices.c.created_at,
                                          devices.c.id)
        if tenant_id is not None:
            query = query.where(devices.c.tenant_id == tenant_id)
        with self._transaction("cannot list devices") as conn:
            rows = conn.execute(query).all()
        return [_device(row) for row in rows]

    def revoke_device(self, device_id: str, reason: str, now: float) -> bool:
        """Revoke a device; False if it is unknown. Revoking twice keeps the first time and
        reason and does not bump the revision."""
        c = devices.c
        with self._transaction(f"cannot revoke device {device_id!r}", write=True) as conn:
            changed = conn.execute(
                devices.update().where(c.id == device_id, c.status == DEVICE_ACTIVE)
                .values(status=DEVICE_REVOKED, revoked_at=now, revoke_reason=reason)).rowcount
            if changed:
                _bump_devices_revision(conn)
                return True
            return conn.execute(sa.select(c.id).where(c.id == device_id)).first() is not None

    def update_device_certificate(self, device_id: str, serial: str, fingerprint: str,
                                  not_after: float, now: float) -> None:
        """Record a renewed certificate (the device was seen `now`). The status is untouched:
        a revoked device stays revoked; whether it may renew is the caller's decision."""
        c = devices.c
        with self._transaction(f"cannot update the certificate of device {device_id!r}",
                               write=True) as conn:
            changed = conn.execute(
                devices.update().where(c.id == device_id)
                .values(cert_serial=serial, cert_fingerprint=fingerprint,
                        cert_not_after=not_after, last_seen_at=now)).rowcount
            if not changed:
                raise StoreError(f"unknown device {device_id!r}")
            _bump_devices_revision(conn)

    def set_quarantine(self, device_id: str, now: float, reason: str | None) -> bool | None:
        """Quarantine a device (`reason` given) or release it (None). True if that changed
        something, False if it was already so, None if the device is unknown. Bumps the
        revision, so every broker cuts (or restores) the device's streams within a second."""
        c = devices.c
        values: dict[str, Any] = ({"quarantined_at": now, "quarantine_reason": reason[:200]}
                                  if reason is not None else
                                  {"quarantined_at": None, "quarantine_reason": ""})
        state = c.quarantined_at.is_(None) if reason is not None else c.quarantined_at.is_not(None)
        with self._transaction(f"cannot change the quarantine of {device_id!r}", write=True) as conn:
            if conn.execute(sa.select(c.id).where(c.id == device_id)).first() is None:
                return None
            changed = conn.execute(devices.update().where(c.id == device_id, state)
                                   .values(**values)).rowcount
            if changed:
                _bump_devices_revision(conn)
            return bool(changed)

    def touch_device(self, device_id: str, now: float) -> None:
        """Record that a device was seen; never moves last_seen_at backwards. An unknown id is
        ignored. Does not bump the revision: last_seen_at is not part of the registry."""
        c = devices.c
        with self._transaction(f"cannot touch device {device_id!r}", write=True) as conn:
            conn.execute(devices.update()
                         .where(c.id == device_id,
                                sa.or_(c.last_seen_at.is_(None), c.last_seen_at < now))
                         .values(last_seen_at=now))

    def devices_revision(self) -> int:
        """A counter bumped with every device insert, revocation and certificate change.

        To refresh a registry, read the revision first, then list the devices: a change made in
        between shows up in the list and again as a newer revision, never the other way round.
        """
        with self._transaction("cannot read the devices revision") as conn:
            value = conn.execute(sa.select(meta.c.devices_revision)
                                 .where(meta.c.id == 1)).scalar_one_or_none()
        if value is None:
            raise StoreError("cannot read the devices revision: the database is not migrated")
        return int(value)

    def revisions(self) -> tuple[int, int, int]:
        """(devices, sessions, policy) revisions in one read: what a broker polls."""
        with self._transaction("cannot read the revisions") as conn:
            row = conn.execute(sa.select(meta.c.devices_revision, meta.c.sessions_revision,
                                         meta.c.policy_revision).where(meta.c.id == 1)).first()
        if row is None:
            raise StoreError("cannot read the revisions: the database is not migrated")
        return int(row[0]), int(row[1]), int(row[2])

    # -- plumbing --------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, action: str, *, write: bool = False,
                     conflict: str | None = None) -> Iterator[Connection]:
        """One transaction, committed on success; SQLAlchemy errors become StoreError here.

        `write` starts SQLite transactions with BEGIN IMMEDIATE, so a writer waits for the lock
        up front instead of failing to upgrade a read lock half way. `conflict` is the message
        for an integrity error (a duplicate key).
        """
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    yield conn
        except IntegrityError as exc:
            raise StoreError(conflict or f"{action}: {_describe(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"{action}: {_describe(exc)}") from exc


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_SECONDS
        return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    engine = sa.create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_SECONDS})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 module (it skips it before SELECT and DDL) so that
    # _sqlite_on_begin decides; see SQLAlchemy's "Enabling Non-Legacy SQLite Transactional Modes".
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL: readers (the revision poll) do not wait for a writer, nor a writer for readers.
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _require_tenant(conn: Connection, tenant_id: str) -> None:
    if conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
        raise StoreError(f"unknown tenant {tenant_id!r}")


def _bump_devices_revision(conn: Connection) -> None:
    # Same transaction as the device change, so the bump and the change commit together; on
    # PostgreSQL the row lock on meta also orders concurrent bumps.
    bumped = conn.execute(meta.update().where(meta.c.id == 1)
                          .values(devices_revision=meta.c.devices_revision + 1)).rowcount
    if bumped != 1:
        raise StoreError("the meta row is missing: the database is not migrated")


def _describe(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    # psycopg messages carry DETAIL/HINT lines; keep them on one line for the log.
    return " ".join(str(orig if orig is not None else exc).split())


def _tenant(row: Row[Any]) -> Tenant:
    return Tenant(id=row.id, name=row.name, created_at=float(row.created_at), parent=row.parent,
                  model=row.model)


def _enrolment_code(row: Row[Any]) -> EnrolmentCode:
    return EnrolmentCode(
        id=int(row.id), tenant_id=row.tenant_id, code_hash=row.code_hash, label=row.label,
        created_at=float(row.created_at), expires_at=float(row.expires_at),
        used_at=_optional_float(row.used_at), used_by_device=row.used_by_device)


def _device(row: Row[Any]) -> Device:
    return Device(
        id=row.id, tenant_id=row.tenant_id, name=row.name, status=row.status,
        created_at=float(row.created_at), cert_serial=row.cert_serial,
        cert_fingerprint=row.cert_fingerprint, cert_not_after=float(row.cert_not_after),
        revoked_at=_optional_float(row.revoked_at), revoke_reason=row.revoke_reason,
        last_seen_at=_optional_float(row.last_seen_at),
        quarantined_at=_optional_float(row.quarantined_at),
        quarantine_reason=row.quarantine_reason or "", segment=row.segment or "internet")


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
