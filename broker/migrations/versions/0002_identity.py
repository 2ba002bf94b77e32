"""Identity: TOTP factors (sealed secrets and their verification state), login sessions, revoked
tokens, the session-signing public keys every broker publishes (so a token is good at any
broker sharing the store), and `meta.sessions_revision`, bumped with every revocation and key
publication so that brokers polling one row learn of it within a second.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("meta", sa.Column("sessions_revision", sa.BigInteger(), nullable=False,
                                    server_default="0"))
    op.create_table(
        "totp_factors",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("username", sa.String(256), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_accepted_step", sa.BigInteger(), nullable=False),
        sa.Column("failure_times", sa.String(400), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "username", name="pk_totp_factors"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_totp_factors_tenant_id_tenants"),
    )
    op.create_table(
        "login_sessions",
        sa.Column("sid", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
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
        sa.PrimaryKeyConstraint("sid", name="pk_login_sessions"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_login_sessions_tenant_id_tenants"),
    )
    op.create_index("ix_login_sessions_tenant_id", "login_sessions", ["tenant_id"])
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_revoked_tokens"),
    )


    op.create_table(
        "session_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("broker", sa.String(200), nullable=False),
        sa.Column("published_at", sa.Double(), nullable=False),
        sa.Column("accept_until", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("kid", name="pk_session_keys"),
    )


def downgrade() -> None:
    op.drop_table("session_keys")
    op.drop_table("revoked_tokens")
    op.drop_index("ix_login_sessions_tenant_id", table_name="login_sessions")
    op.drop_table("login_sessions")
    op.drop_table("totp_factors")
    with op.batch_alter_table("meta") as batch:   # SQLite cannot drop a column in place
        batch.drop_column("sessions_revision")
