"""Posture: device quarantine (an admin's cut-off, with its reason), each device's newest
posture report (sequence number against replays, facts and verdict for the device list), and
the admin API's tokens (only their SHA-256 is stored).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("quarantined_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("quarantine_reason", sa.String(200), nullable=False,
                                   server_default=""))
    op.create_table(
        "device_posture",
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("facts", sa.Text(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("compliant", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_posture"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"],
                                name="fk_device_posture_device_id_devices"),
    )


    op.create_table(
        "admin_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_admin_tokens"),
        sa.UniqueConstraint("name", name="uq_admin_tokens_name"),
    )


def downgrade() -> None:
    op.drop_table("admin_tokens")
    op.drop_table("device_posture")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("quarantine_reason")
        batch.drop_column("quarantined_at")
