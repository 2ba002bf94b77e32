"""Initial schema: tenants, enrolment codes, devices and the one-row meta table.

Times are DOUBLE PRECISION epoch seconds (UTC), not DateTime columns: the public API speaks
floats, the value round-trips exactly on SQLite and PostgreSQL, and comparisons such as
`expires_at > :now` need no time-zone handling. `meta.devices_revision` is bumped in the same
transaction as every device insert, revocation and certificate change, so a broker can poll one
row to know when to reload its registry.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
    )
    op.create_table(
        "enrolment_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("used_at", sa.Double(), nullable=True),
        sa.Column("used_by_device", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_enrolment_codes"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_enrolment_codes_tenant_id_tenants"),
    )
    op.create_index(
        "ix_enrolment_codes_code_hash", "enrolment_codes", ["code_hash"], unique=True)
    op.create_index("ix_enrolment_codes_tenant_id", "enrolment_codes", ["tenant_id"])
    op.create_table(
        "devices",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("cert_serial", sa.String(128), nullable=False),
        sa.Column("cert_fingerprint", sa.String(128), nullable=False),
        sa.Column("cert_not_after", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.Column("revoke_reason", sa.String(200), nullable=False),
        sa.Column("last_seen_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_devices_tenant_id_tenants"),
        sa.CheckConstraint("status IN ('active', 'revoked')", name="ck_devices_status"),
    )
    op.create_index("ix_devices_tenant_id", "devices", ["tenant_id"])
    meta = op.create_table(
        "meta",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("devices_revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_meta"),
        sa.CheckConstraint("id = 1", name="ck_meta_one_row"),
    )
    op.bulk_insert(meta, [{"id": 1, "devices_revision": 0}])


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_index("ix_devices_tenant_id", table_name="devices")
    op.drop_table("devices")
    op.drop_index("ix_enrolment_codes_tenant_id", table_name="enrolment_codes")
    op.drop_index("ix_enrolment_codes_code_hash", table_name="enrolment_codes")
    op.drop_table("enrolment_codes")
    op.drop_table("tenants")
