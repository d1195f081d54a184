"""dashboard users, sessions and login attempts (issue 15, helper H7)

- ``dashboard_users``: people who sign in to /dashboard (argon2 hash, sealed TOTP secret,
  role);
- ``dashboard_sessions``: signed-in browsers (SHA-256 of the cookie's token, CSRF token,
  test/live mode, created and last seen for the absolute and idle timeouts);
- ``dashboard_login_attempts``: failed sign-ins per e-mail and per client address (lockout).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-02 17:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("totp_secret", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("last_login_us", sa.BigInteger(), nullable=True),
        sa.Column("last_totp_step", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_dashboard_users_account_id", "dashboard_users", ["account_id"])
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("dashboard_users.id"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("seen_us", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_dashboard_sessions_user_id", "dashboard_sessions", ["user_id"])
    op.create_table(
        "dashboard_login_attempts",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start_us", sa.BigInteger(), nullable=False),
        sa.Column("locked_until_us", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("dashboard_login_attempts")
    op.drop_index("ix_dashboard_sessions_user_id", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_index("ix_dashboard_users_account_id", table_name="dashboard_users")
    op.drop_table("dashboard_users")
