"""The store's admin records (a mixin of `Store`): admin accounts (password hash, sealed TOTP
secret and its state) and admin API tokens (only their SHA-256; a role and a scope each; login
tokens expire)."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from broker.admin_auth import AdminIdentity
from broker.runtime.tables import StoreError, admin_accounts, admin_tokens
from idp_bridge.totp import TotpState

T = TypeVar("T")


class AdminRecords:
    _transaction: Callable[..., AbstractContextManager[Connection]]

    # -- tokens ----------------------------------------------------------------------------------

    def add_admin_token(self, name: str, token_hash: str, now: float, *,
                        role: str = "prefecture-operator", tenant_id: str | None = None,
                        expires_at: float | None = None) -> None:
        AdminIdentity(name, role, tenant_id)   # validates role and scope
        with self._transaction("cannot add an admin token", write=True,
                               conflict=f"an admin token named {name!r} already exists") as conn:
            conn.execute(admin_tokens.insert().values(
                token_hash=token_hash, name=name, created_at=now, revoked_at=None, role=role,
                tenant_id=tenant_id, expires_at=expires_at))

    def admin_token_identity(self, token_hash: str, now: float) -> AdminIdentity | None:
        """Who a live, unexpired admin token stands for, or None."""
        c = admin_tokens.c
        with self._transaction("cannot read admin tokens") as conn:
            row = conn.execute(sa.select(c.name, c.role, c.tenant_id).where(
                c.token_hash == token_hash, c.revoked_at.is_(None),
                sa.or_(c.expires_at.is_(None), c.expires_at > now))).first()
        if row is None:
            return None
        name = str(row.name).split("#", 1)[0]     # login tokens are "<account>#<random>"
        return AdminIdentity(name, row.role, row.tenant_id)

    def admin_token_name(self, token_hash: str) -> str | None:
        c = admin_tokens.c
        with self._transaction("cannot read admin tokens") as conn:
            value = conn.execute(sa.select(c.name).where(c.token_hash == token_hash,
                                                         c.revoked_at.is_(None))).scalar_one_or_none()
        return None if value is None else str(value)

    def revoke_admin_token(self, name: str, now: float) -> bool:
        c = admin_tokens.c
        with self._transaction("cannot revoke an admin token", write=True) as conn:
            return bool(conn.execute(admin_tokens.update().where(
                c.name == name, c.revoked_at.is_(None)).values(revoked_at=now)).rowcount)

    # -- accounts ----------------------------------------------------------------------------------

    def add_admin_account(self, identity: AdminIdentity, password_hash: str, sealed_totp: bytes,
                          now: float) -> None:
        with self._transaction("cannot add an admin account", write=True,
                               conflict=f"an admin named {identity.name!r} already exists") as conn:
            conn.execute(admin_accounts.insert().values(
                name=identity.name, role=identity.role, tenant_id=identity.tenant,
                password_hash=password_hash, sealed_totp=sealed_totp, last_accepted_step=-1,
                failure_times="[]", consecutive_failures=0, created_at=now, disabled=False))

    def admin_account(self, name: str) -> tuple[AdminIdentity, str] | None:
        """(identity, password hash) of an enabled account."""
        c = admin_accounts.c
        with self._transaction("cannot read admin accounts") as conn:
            row = conn.execute(sa.select(c.role, c.tenant_id, c.password_hash).where(
                c.name == name, c.disabled.is_(False))).first()
        return None if row is None else (AdminIdentity(name, row.role, row.tenant_id),
                                         str(row.password_hash))

    def admin_totp_attempt(self, name: str,
                           check: Callable[[bytes, TotpState], tuple[T, TotpState]]) -> T | None:
        c = admin_accounts.c
        with self._transaction(f"cannot check the TOTP of admin {name!r}", write=True) as conn:
            row = conn.execute(sa.select(admin_accounts).where(c.name == name)
                               .with_for_update()).one_or_none()
            if row is None:
                return None
            try:
                failures = tuple(float(t) for t in json.loads(row.failure_times))
            except (ValueError, TypeError):
                failures = ()
            result, state = check(bytes(row.sealed_totp), TotpState(
                int(row.last_accepted_step), failures, int(row.consecutive_failures)))
            conn.execute(admin_accounts.update().where(c.name == name).values(
                last_accepted_step=state.last_accepted_step,
                failure_times=json.dumps(list(state.failure_times)),
                consecutive_failures=state.consecutive_failures))
        return result

    def set_admin_disabled(self, name: str, disabled: bool) -> bool:
        c = admin_accounts.c
        with self._transaction("cannot change an admin account", write=True) as conn:
            changed = conn.execute(admin_accounts.update().where(c.name == name)
                                   .values(disabled=disabled)).rowcount
        if not changed:
            raise StoreError(f"no admin named {name!r}")
        return True
