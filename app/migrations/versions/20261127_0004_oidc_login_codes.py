"""oidc: login codes, the one-time codes an OpenID Connect sign-in hands the frontend

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 15:40:05.893405
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oidc_login_codes",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oidc_login_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_login_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_oidc_login_codes_code_hash")),
    )
    with op.batch_alter_table("oidc_login_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oidc_login_codes_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_oidc_login_codes_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_oidc_login_codes_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oidc_login_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_login_codes_user_id"))
        batch_op.drop_index(batch_op.f("ix_oidc_login_codes_expires_at"))
        batch_op.drop_index(batch_op.f("ix_oidc_login_codes_created_at"))

    op.drop_table("oidc_login_codes")
