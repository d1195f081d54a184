"""per-account gateway connections, key kinds and rolls, the audit log, livemode everywhere

Connections hold a gateway's credentials (envelope-encrypted) for one account and mode.
Payments, payment methods and attempts remember the connection that ran them; the webhook
inbox and jobs carry their account. API keys get a kind (secret, publishable, restricted),
permissions and an expiry (a rolled key's grace period). Every object gets ``livemode``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_LIVEMODE_TABLES = (
    "customers",
    "payment_methods",
    "payment_intents",
    "refunds",
    "disputes",
    "events",
)
_CONNECTION_TABLES = ("payment_methods", "payment_intents", "gateway_attempts")


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column("credential_hints", sa.JSON(), nullable=False),
        sa.Column("currencies", sa.JSON(), nullable=True),
        sa.Column("payment_method_types", sa.JSON(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("failover", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_connections_account", "connections", ["account_id", "gateway"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=True),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_account_created", "audit_log", ["account_id", "created_us"])
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="secret")
        )
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("permissions", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("expires_us", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("rolled_to", sa.String(length=40), nullable=True))
    for table in _LIVEMODE_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("livemode", sa.Boolean(), nullable=False, server_default=sa.false())
            )
    for table in _CONNECTION_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("connection_id", sa.String(length=40), nullable=True))
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_secret", sa.String(length=100), nullable=True))
    with op.batch_alter_table("webhook_inbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("connection_id", sa.String(length=40), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_id", sa.String(length=40), nullable=True))
    _audit_log_append_only()


# The audit log is append-only: the database itself refuses an UPDATE or a DELETE.
_AUDIT_TRIGGERS = ("audit_log_no_update", "audit_log_no_delete")


def _audit_log_append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
            END;
            $$
            """
        )
        for name, verb in zip(_AUDIT_TRIGGERS, ("UPDATE", "DELETE"), strict=True):
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {verb} ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
            )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
        return
    for name, verb in zip(_AUDIT_TRIGGERS, ("UPDATE", "DELETE"), strict=True):
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {verb} ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )


def _drop_audit_log_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in _AUDIT_TRIGGERS + (("audit_log_no_truncate",) if postgres else ()):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON audit_log" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")


def downgrade() -> None:
    _drop_audit_log_triggers()
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("account_id")
    with op.batch_alter_table("webhook_inbox", schema=None) as batch_op:
        batch_op.drop_column("connection_id")
        batch_op.drop_column("account_id")
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_column("client_secret")
    for table in _CONNECTION_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("connection_id")
    for table in _LIVEMODE_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("livemode")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        for column in ("rolled_to", "expires_us", "permissions", "name", "kind"):
            batch_op.drop_column(column)
    op.drop_index("ix_audit_log_account_created", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_connections_account", table_name="connections")
    op.drop_table("connections")
