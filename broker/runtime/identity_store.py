"""The store's identity records: TOTP factors, login sessions and revoked tokens.

A mixin of `broker.runtime.store.Store` (same engine, same transactions, same `StoreError`).
It records facts and decides nothing: whether a code is right is `idp_bridge.totp`'s call,
made inside `totp_attempt`'s transaction so that two brokers checking the same user's codes at
once cannot both accept one (RFC 6238 §5.2) or both forget a failure. Usernames are stored as
given; callers pass the directory's canonical spelling, lower-cased.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from broker.runtime.tables import (
    StoreError,
    login_sessions,
    meta,
    revoked_tokens,
    session_keys,
    tenants,
    totp_factors,
)
from idp_bridge.totp import TotpState

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LoginSessionRecord:
    """One login (a refresh chain of session tokens), as the admin console lists it."""

    sid: str
    tenant_id: str
    device_id: str
    subject: str
    username: str
    idp: str
    methods: tuple[str, ...]
    auth_time: float
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    revoke_reason: str = ""


class IdentityRecords:
    _transaction: Callable[..., AbstractContextManager[Connection]]

    # -- TOTP factors ----------------------------------------------------------------------------

    def put_totp_factor(self, tenant_id: str, username: str, sealed_secret: bytes,
                        now: float) -> None:
        """Enrol (or re-enrol, replacing the old secret and its state) a user's TOTP factor."""
        c = totp_factors.c
        with self._transaction(f"cannot enrol TOTP for {username!r}", write=True) as conn:
            if conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
                raise StoreError(f"unknown tenant {tenant_id!r}")
            conn.execute(totp_factors.delete().where(c.tenant_id == tenant_id,
                                                     c.username == username))
            conn.execute(totp_factors.insert().values(
                tenant_id=tenant_id, username=username, sealed_secret=sealed_secret,
                created_at=now, last_accepted_step=-1, failure_times="[]",
                consecutive_failures=0))

    def delete_totp_factor(self, tenant_id: str, username: str) -> bool:
        c = totp_factors.c
        with self._transaction(f"cannot remove TOTP of {username!r}", write=True) as conn:
            return bool(conn.execute(totp_factors.delete().where(
                c.tenant_id == tenant_id, c.username == username)).rowcount)

    def has_totp_factor(self, tenant_id: str, username: str) -> bool:
        c = totp_factors.c
        with self._transaction("cannot read TOTP factors") as conn:
            return conn.execute(sa.select(c.username).where(
                c.tenant_id == tenant_id, c.username == username)).first() is not None

    def list_totp_users(self, tenant_id: str) -> list[tuple[str, float, int]]:
        """(username, enrolled at, consecutive failures) of a tenant's TOTP factors."""
        c = totp_factors.c
        with self._transaction("cannot list TOTP factors") as conn:
            rows = conn.execute(sa.select(c.username, c.created_at, c.consecutive_failures)
                                .where(c.tenant_id == tenant_id).order_by(c.username)).all()
        return [(row.username, float(row.created_at), int(row.consecutive_failures))
                for row in rows]

    def totp_attempt(self, tenant_id: str, username: str,
                     check: Callable[[bytes, TotpState], tuple[T, TotpState]]) -> T | None:
        """Run `check(sealed_secret, state)` and store the state it returns, atomically per
        user; None when the user has no TOTP factor."""
        c = totp_factors.c
        where = (c.tenant_id == tenant_id, c.username == username)
        with self._transaction(f"cannot check TOTP of {username!r}", write=True) as conn:
            row = conn.execute(sa.select(totp_factors).where(*where).with_for_update()).one_or_none()
            if row is None:
                return None
            result, state = check(bytes(row.sealed_secret), _totp_state(row))
            conn.execute(totp_factors.update().where(*where).values(
                last_accepted_step=state.last_accepted_step,
                failure_times=json.dumps(list(state.failure_times)),
                consecutive_failures=state.consecutive_failures))
        return result

    # -- login sessions and revocation -----------------------------------------------------------

    def add_login_session(self, record: LoginSessionRecord) -> None:
        with self._transaction("cannot record a login session", write=True,
                               conflict=f"session {record.sid!r} already exists") as conn:
            conn.execute(login_sessions.insert().values(
                sid=record.sid, tenant_id=record.tenant_id, device_id=record.device_id,
                subject=record.subject, username=record.username, idp=record.idp,
                methods=" ".join(record.methods), auth_time=record.auth_time,
                created_at=record.created_at, expires_at=record.expires_at,
                revoked_at=None, revoke_reason=""))

    def list_login_sessions(self, tenant_id: str | None = None, *, username: str | None = None,
                            active_at: float | None = None) -> list[LoginSessionRecord]:
        c = login_sessions.c
        query = login_sessions.select().order_by(c.created_at, c.sid)
        if tenant_id is not None:
            query = query.where(c.tenant_id == tenant_id)
        if username is not None:
            query = query.where(c.username == username)
        if active_at is not None:
            query = query.where(c.revoked_at.is_(None), c.expires_at > active_at)
        with self._transaction("cannot list login sessions") as conn:
            return [_login_session(row) for row in conn.execute(query).all()]

    def revoke_login_sessions(self, tenant_id: str, now: float, reason: str, *,
                              username: str | None = None, sid: str | None = None,
                              device_id: str | None = None) -> int:
        """Revoke the tenant's live sessions matching every filter given; how many."""
        if username is None and sid is None and device_id is None:
            raise StoreError("revoking sessions needs a user, a session id or a device")
        c = login_sessions.c
        query = login_sessions.update().where(c.tenant_id == tenant_id, c.revoked_at.is_(None),
                                              c.expires_at > now)
        if username is not None:
            query = query.where(c.username == username)
        if sid is not None:
            query = query.where(c.sid == sid)
        if device_id is not None:
            query = query.where(c.device_id == device_id)
        with self._transaction("cannot revoke login sessions", write=True) as conn:
            count = int(conn.execute(query.values(revoked_at=now,
                                                  revoke_reason=reason[:200])).rowcount)
            if count:
                _bump_sessions_revision(conn)
        return count

    def revoke_token(self, jti: str, tenant_id: str, expires_at: float, now: float) -> None:
        """Revoke one session token (the rest of its login stays valid)."""
        with self._transaction("cannot revoke a token", write=True) as conn:
            conn.execute(revoked_tokens.delete().where(revoked_tokens.c.jti == jti))
            conn.execute(revoked_tokens.insert().values(jti=jti, tenant_id=tenant_id,
                                                        revoked_at=now, expires_at=expires_at))
            _bump_sessions_revision(conn)

    # -- session-signing public keys --------------------------------------------------------------

    def publish_session_keys(self, broker: str, keys: list[tuple[str, bytes, float | None]],
                             now: float) -> None:
        """Publish this broker's verification keys: (kid, raw Ed25519 public key, accept until;
        None for the active key). A republished kid takes the new `accept_until`."""
        c = session_keys.c
        with self._transaction("cannot publish session keys", write=True) as conn:
            for kid, public, until in keys:
                conn.execute(session_keys.delete().where(c.kid == kid))
                conn.execute(session_keys.insert().values(kid=kid, public_key=public, broker=broker,
                                                          published_at=now, accept_until=until))
            conn.execute(session_keys.delete().where(c.accept_until.is_not(None),
                                                     c.accept_until < now))
            _bump_sessions_revision(conn)

    def session_keys(self, now: float) -> list[tuple[str, bytes, float | None]]:
        c = session_keys.c
        with self._transaction("cannot read session keys") as conn:
            rows = conn.execute(sa.select(c.kid, c.public_key, c.accept_until).where(
                sa.or_(c.accept_until.is_(None), c.accept_until > now)).order_by(c.kid)).all()
        return [(row.kid, bytes(row.public_key),
                 None if row.accept_until is None else float(row.accept_until)) for row in rows]

    def sessions_revision(self) -> int:
        """Bumped with every revocation; read it before `revoked_ids` (see devices_revision)."""
        with self._transaction("cannot read the sessions revision") as conn:
            value = conn.execute(sa.select(meta.c.sessions_revision)
                                 .where(meta.c.id == 1)).scalar_one_or_none()
        if value is None:
            raise StoreError("cannot read the sessions revision: the database is not migrated")
        return int(value)

    def revoked_ids(self, now: float) -> frozenset[str]:
        """The `sid`s of revoked sessions and the `jti`s of revoked tokens not yet expired."""
        s, r = login_sessions.c, revoked_tokens.c
        with self._transaction("cannot read revoked sessions") as conn:
            sids = conn.execute(sa.select(s.sid).where(s.revoked_at.is_not(None),
                                                       s.expires_at > now)).scalars().all()
            jtis = conn.execute(sa.select(r.jti).where(r.expires_at > now)).scalars().all()
        return frozenset(str(v) for v in sids) | frozenset(str(v) for v in jtis)


def _bump_sessions_revision(conn: Connection) -> None:
    bumped = conn.execute(meta.update().where(meta.c.id == 1)
                          .values(sessions_revision=meta.c.sessions_revision + 1)).rowcount
    if bumped != 1:
        raise StoreError("the meta row is missing: the database is not migrated")


def _totp_state(row: Row[Any]) -> TotpState:
    try:
        failures = tuple(float(t) for t in json.loads(row.failure_times))
    except (ValueError, TypeError):
        failures = ()
    return TotpState(last_accepted_step=int(row.last_accepted_step), failure_times=failures,
                     consecutive_failures=int(row.consecutive_failures))


def _login_session(row: Row[Any]) -> LoginSessionRecord:
    return LoginSessionRecord(
        sid=row.sid, tenant_id=row.tenant_id, device_id=row.device_id, subject=row.subject,
        username=row.username, idp=row.idp, methods=tuple(row.methods.split()),
        auth_time=float(row.auth_time), created_at=float(row.created_at),
        expires_at=float(row.expires_at),
        revoked_at=None if row.revoked_at is None else float(row.revoked_at),
        revoke_reason=row.revoke_reason)
