"""The broker's tables as its queries see them (SQLAlchemy Core), in one place.

The schema itself is created by the Alembic migrations in broker/migrations;
tests/integration/test_store.py checks that the two agree. Times are DOUBLE PRECISION epoch
seconds (UTC).
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

from ztcore.errors import ZTError


class StoreError(ZTError):
    """The database refused or failed an operation; the message says which and why."""


_md = sa.MetaData()
tenants = sa.Table(
    "tenants", _md,
    sa.Column("id", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("parent", sa.String(63), sa.ForeignKey("tenants.id"), nullable=True),
    sa.Column("model", sa.String(16), nullable=False, server_default="beta"),
)
enrolment_codes = sa.Table(
    "enrolment_codes", _md,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id"), nullable=False,
              index=True),
    sa.Column("code_hash", sa.String(64), nullable=False, unique=True, index=True),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False),
    sa.Column("used_at", sa.Double(), nullable=True),
    sa.Column("used_by_device", sa.String(128), nullable=True),
)
devices = sa.Table(
    "devices", _md,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id"), nullable=False,
              index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("cert_serial", sa.String(128), nullable=False),
    sa.Column("cert_fingerprint", sa.String(128), nullable=False),
    sa.Column("cert_not_after", sa.Double(), nullable=False),
    sa.Column("revoked_at", sa.Double(), nullable=True),
    sa.Column("revoke_reason", sa.String(200), nullable=False),
    sa.Column("last_seen_at", sa.Double(), nullable=True),
    sa.Column("quarantined_at", sa.Double(), nullable=True),
    sa.Column("quarantine_reason", sa.String(200), nullable=False, server_default=""),
    sa.Column("segment", sa.String(16), nullable=False, server_default="internet"),
)
meta = sa.Table(
    "meta", _md,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("devices_revision", sa.BigInteger(), nullable=False),
    sa.Column("sessions_revision", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("policy_revision", sa.BigInteger(), nullable=False, server_default="0"),
)
totp_factors = sa.Table(
    "totp_factors", _md,
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("username", sa.String(256), primary_key=True),
    sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("last_accepted_step", sa.BigInteger(), nullable=False),
    sa.Column("failure_times", sa.String(400), nullable=False),
    sa.Column("consecutive_failures", sa.Integer(), nullable=False),
)
login_sessions = sa.Table(
    "login_sessions", _md,
    sa.Column("sid", sa.String(128), primary_key=True),
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id"), nullable=False,
              index=True),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("username", sa.String(256), nullable=False),
    sa.Column("idp", sa.String(256), nullable=False),
    sa.Column("methods", sa.String(200), nullable=False),
    sa.Column("auth_time", sa.Double(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False),
    sa.Column("revoked_at", sa.Double(), nullable=True),
    sa.Column("revoke_reason", sa.String(200), nullable=False),
)
revoked_tokens = sa.Table(
    "revoked_tokens", _md,
    sa.Column("jti", sa.String(128), primary_key=True),
    sa.Column("tenant_id", sa.String(63), nullable=False),
    sa.Column("revoked_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False),
)
session_keys = sa.Table(
    "session_keys", _md,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("public_key", sa.LargeBinary(), nullable=False),   # raw Ed25519, 32 bytes
    sa.Column("broker", sa.String(200), nullable=False),
    sa.Column("published_at", sa.Double(), nullable=False),
    sa.Column("accept_until", sa.Double(), nullable=True),       # None: a broker's active key
)
device_posture = sa.Table(
    "device_posture", _md,
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.id"), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),          # the newest report's sequence
    sa.Column("received_at", sa.Double(), nullable=False),
    sa.Column("facts", sa.Text(), nullable=False),              # JSON (ztcore.posture)
    sa.Column("verdict", sa.Text(), nullable=False),            # JSON (broker.posture)
    sa.Column("compliant", sa.Boolean(), nullable=False),
)
admin_tokens = sa.Table(
    "admin_tokens", _md,
    sa.Column("token_hash", sa.String(64), primary_key=True),   # SHA-256 hex of the token
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("revoked_at", sa.Double(), nullable=True),
    sa.Column("role", sa.String(32), nullable=False, server_default="prefecture-operator"),
    sa.Column("tenant_id", sa.String(63), nullable=True),       # the scope; None: every tenant
    sa.Column("expires_at", sa.Double(), nullable=True),        # login tokens expire
)
admin_accounts = sa.Table(
    "admin_accounts", _md,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("tenant_id", sa.String(63), nullable=True),
    sa.Column("password_hash", sa.String(300), nullable=False),  # scrypt, with its parameters
    sa.Column("sealed_totp", sa.LargeBinary(), nullable=False),  # idp_bridge.totp sealing
    sa.Column("last_accepted_step", sa.BigInteger(), nullable=False),
    sa.Column("failure_times", sa.String(400), nullable=False),
    sa.Column("consecutive_failures", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
)
tenant_policies = sa.Table(
    "tenant_policies", _md,
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("document", sa.Text(), nullable=False),            # the policy as YAML
    sa.Column("revision", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)
admin_audit = sa.Table(
    "admin_audit", _md,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("time", sa.Double(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("tenant_id", sa.String(63), nullable=True, index=True),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("before", sa.Text(), nullable=True),
    sa.Column("after", sa.Text(), nullable=True),
)
m365_versions = sa.Table(
    "m365_versions", _md,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("instance", sa.String(32), nullable=False, index=True),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("imported_at", sa.Double(), nullable=False),
    sa.Column("imported_by", sa.String(200), nullable=False),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("data", sa.Text(), nullable=False),                 # Microsoft's JSON, as received
    sa.Column("diff", sa.Text(), nullable=True),                  # from the version before (JSON)
)
tenant_routing = sa.Table(
    "tenant_routing", _md,
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("document", sa.Text(), nullable=False),            # the routing document (YAML)
    sa.Column("revision", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)
unblock_requests = sa.Table(
    "unblock_requests", _md,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("device_id", sa.String(64), nullable=True),
    sa.Column("username", sa.String(256), nullable=True),
    sa.Column("host", sa.String(253), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("reason_code", sa.String(64), nullable=False),       # the block's machine reason
    sa.Column("request_id", sa.String(32), nullable=False),        # of the blocked request
    sa.Column("justification", sa.String(1000), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),            # pending / approved / denied
    sa.Column("decided_by", sa.String(200), nullable=True),
    sa.Column("decided_at", sa.Double(), nullable=True),
    sa.Column("expires_at", sa.Double(), nullable=True),           # of an approval
    sa.Column("note", sa.String(500), nullable=True),
)
METADATA: Final = _md
