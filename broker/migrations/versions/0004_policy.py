"""Access policy: prefecture → municipality tenancy (`tenants.parent`) with each municipality's
security model, each device's segment (mynumber / lgwan / internet), each tenant's policy
document (YAML, with a revision; `meta.policy_revision` is bumped with every change so brokers
recompile within a second), and the admin audit trail (actor, time, before and after), admin accounts (role, scope, password
hash, sealed TOTP secret and its state) and roles and scopes on admin tokens.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("parent", sa.String(63), nullable=True))
        batch.add_column(sa.Column("model", sa.String(16), nullable=False, server_default="beta"))
        batch.create_foreign_key("fk_tenants_parent_tenants", "tenants", ["parent"], ["id"])
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("segment", sa.String(16), nullable=False,
                                   server_default="internet"))
    with op.batch_alter_table("meta") as batch:
        batch.add_column(sa.Column("policy_revision", sa.BigInteger(), nullable=False,
                                   server_default="0"))
    op.create_table(
        "tenant_policies",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_policies"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_tenant_policies_tenant_id_tenants"),
    )
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=True),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_admin_audit"),
    )
    op.create_index("ix_admin_audit_tenant_id", "admin_audit", ["tenant_id"])
    with op.batch_alter_table("admin_tokens") as batch:
        batch.add_column(sa.Column("role", sa.String(32), nullable=False,
                                   server_default="prefecture-operator"))
        batch.add_column(sa.Column("tenant_id", sa.String(63), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.Double(), nullable=True))
    op.create_table(
        "admin_accounts",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=True),
        sa.Column("password_hash", sa.String(300), nullable=False),
        sa.Column("sealed_totp", sa.LargeBinary(), nullable=False),
        sa.Column("last_accepted_step", sa.BigInteger(), nullable=False),
        sa.Column("failure_times", sa.String(400), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("name", name="pk_admin_accounts"),
    )


def downgrade() -> None:
    op.drop_table("admin_accounts")
    with op.batch_alter_table("admin_tokens") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("tenant_id")
        batch.drop_column("role")
    op.drop_index("ix_admin_audit_tenant_id", table_name="admin_audit")
    op.drop_table("admin_audit")
    op.drop_table("tenant_policies")
    with op.batch_alter_table("meta") as batch:
        batch.drop_column("policy_revision")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("segment")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_constraint("fk_tenants_parent_tenants", type_="foreignkey")
        batch.drop_column("model")
        batch.drop_column("parent")
