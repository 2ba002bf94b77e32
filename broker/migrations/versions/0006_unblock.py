"""Unblock requests from the gateway's block page: who asked, for which URL, why, and the
admin's decision (an approval is a time-limited allow of the host for the tenant).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "unblock_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("username", sa.String(256), nullable=True),
        sa.Column("host", sa.String(253), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("justification", sa.String(1000), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", sa.Double(), nullable=True),
        sa.Column("expires_at", sa.Double(), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_unblock_requests"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_unblock_requests_tenant_id_tenants"),
    )
    op.create_index("ix_unblock_requests_tenant_id", "unblock_requests", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_unblock_requests_tenant_id", table_name="unblock_requests")
    op.drop_table("unblock_requests")
