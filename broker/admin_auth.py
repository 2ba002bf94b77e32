"""Who may do what in the admin API: roles, scopes, and admin passwords.

Roles (issue 5): a **prefecture operator** manages its prefecture and every municipality under
it (scope None: every tenant — the broker operator); a **municipal admin** manages its own
tenant only; an **auditor** reads (its tenant, with the municipalities under it, or every
tenant) and changes nothing. Pure: the tenancy (tenant → parent) is passed in.

Admin passwords are hashed with scrypt (RFC 7914; n=2**15, r=8, p=1, 16-byte salt); the salt
comes from the caller. Admin logins also need a TOTP code (idp_bridge.totp), so an admin
session is always multi-factor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

PREFECTURE_OPERATOR: Final = "prefecture-operator"
MUNICIPAL_ADMIN: Final = "municipal-admin"
AUDITOR: Final = "auditor"
ROLES: Final = (PREFECTURE_OPERATOR, MUNICIPAL_ADMIN, AUDITOR)
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD_LENGTH: Final = 12


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    name: str
    role: str
    tenant: str | None          # the scope; None: every tenant

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role: expected one of {', '.join(ROLES)}, got {self.role!r}")
        if self.role == MUNICIPAL_ADMIN and self.tenant is None:
            raise ValueError("a municipal admin needs a tenant")


def can_read(admin: AdminIdentity, tenant: str, parents: Mapping[str, str | None]) -> bool:
    """Whether `admin` may see `tenant` (`parents`: each tenant's prefecture, or None)."""
    if admin.tenant is None:
        return admin.role != MUNICIPAL_ADMIN
    if tenant == admin.tenant:
        return True
    return admin.role in (PREFECTURE_OPERATOR, AUDITOR) and parents.get(tenant) == admin.tenant


def can_write(admin: AdminIdentity, tenant: str, parents: Mapping[str, str | None]) -> bool:
    return admin.role != AUDITOR and can_read(admin, tenant, parents)


def visible_tenants(admin: AdminIdentity, parents: Mapping[str, str | None]) -> list[str]:
    return sorted(t for t in parents if can_read(admin, t, parents))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes) -> str:
    """`scrypt$n$r$p$salt$hash` for storing; `salt` from os.urandom(16)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"an admin password needs at least {MIN_PASSWORD_LENGTH} characters")
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                            p=_SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored` (constant-time compare); False for a bad record."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or len(password) > 1024:
            return False
        computed = hashlib.scrypt(password.encode("utf-8"), salt=_unb64(salt), n=int(n),
                                  r=int(r), p=int(p), maxmem=64 * 1024 * 1024, dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, _unb64(digest))
