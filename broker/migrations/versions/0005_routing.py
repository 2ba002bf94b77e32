"""Microsoft 365 breakout and agent routing: the imported versions of Microsoft's endpoint data
(the raw JSON, its version and digest, and the diff from the version before), and each tenant's
routing document (breakout choices, split DNS, captive-portal window, override limits).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "m365_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance", sa.String(32), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("imported_at", sa.Double(), nullable=False),
        sa.Column("imported_by", sa.String(200), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_m365_versions"),
    )
    op.create_index("ix_m365_versions_instance", "m365_versions", ["instance"])
    op.create_table(
        "tenant_routing",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_routing"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_tenant_routing_tenant_id_tenants"),
    )


def downgrade() -> None:
    op.drop_table("tenant_routing")
    op.drop_index("ix_m365_versions_instance", table_name="m365_versions")
    op.drop_table("m365_versions")
