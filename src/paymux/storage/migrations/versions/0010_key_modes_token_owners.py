"""idempotency keys per mode; one owner per gateway token

**Idempotency keys per mode.** ``idempotency_keys`` was keyed by (account_id, key): a live
request replayed the answer a test request of the same account stored under the same key
(a test object, or a test "succeeded" payment instead of a live charge). Keys are now
per (account_id, livemode, key), as Stripe's are.

Existing rows get the mode they were made in where the row shows it, else test mode:

- live when the stored answer holds ``"livemode": true`` (every object paymux returns
  carries its mode, and an answer never mixes modes; a string value cannot match, since its
  quotes are escaped in the JSON);
- live when the row's recovery point names a live payment intent, refund or setup intent
  (a request that stopped half-way, whose retry must resume on the live object);
- otherwise (a stored 4xx, which names no object, or a row whose object is test mode or
  gone) ``livemode = false``. A live retry of such a 4xx runs again instead of replaying it,
  which refuses it again; keys are purged after 24 h anyway.

**Gateway token owners.** A token belongs to the account that first used it, and that was
a check (any other account's payment method with the token?) followed by a later insert:
two accounts using one token at the same moment could both record it. ``gateway_token_owners``
holds one row per (gateway, token), inserted in the transaction that records the payment
method; the primary key makes the claim atomic. Existing tokens recorded by exactly one
account get that account as their owner. Tokens recorded by several accounts (the gateways'
shared test tokens, which are never claimed, or a token the race let two accounts take)
get no row; the check on ``payment_methods`` still refuses them to any further account.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 05:35:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_KEYS = sa.table(
    "idempotency_keys",
    sa.column("livemode", sa.Boolean()),
    sa.column("response_body", sa.Text()),
    sa.column("object_id", sa.String()),
)
_MODED_OBJECTS = ("payment_intents", "refunds", "setup_intents")


def _live_ids(table: str) -> sa.Select[tuple[str]]:
    t = sa.table(table, sa.column("id", sa.String()), sa.column("livemode", sa.Boolean()))
    return sa.select(t.c.id).where(t.c.livemode == sa.true())


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("livemode", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        _KEYS.update()
        .where(
            sa.or_(
                _KEYS.c.response_body.like('%"livemode": true%'),
                *(_KEYS.c.object_id.in_(_live_ids(table)) for table in _MODED_OBJECTS),
            )
        )
        .values(livemode=sa.true())
    )
    _primary_key(["account_id", "livemode", "key"])

    op.create_table(
        "gateway_token_owners",
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("gateway", "token"),
    )
    op.execute(
        "INSERT INTO gateway_token_owners (gateway, token, account_id, created_us) "
        "SELECT gateway, token, MIN(account_id), MIN(created_us) FROM payment_methods "
        "GROUP BY gateway, token HAVING COUNT(DISTINCT account_id) = 1"
    )


def _primary_key(columns: list[str]) -> None:
    """Replace the primary key of idempotency_keys (unnamed since 0001: PostgreSQL called it
    idempotency_keys_pkey; SQLite rebuilds the table, from its definition given here)."""
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("idempotency_keys_pkey", "idempotency_keys", type_="primary")
        op.create_primary_key("idempotency_keys_pkey", "idempotency_keys", columns)
        return
    with op.batch_alter_table(
        "idempotency_keys", schema=None, recreate="always", copy_from=_keys_table(columns)
    ):
        pass


def _keys_table(primary_key: list[str]) -> sa.Table:
    """idempotency_keys as 0004 left it plus ``livemode``, with ``primary_key``."""
    columns: list[sa.schema.SchemaItem] = [
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("locked_us", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("recovery_point", sa.String(length=32), nullable=True),
        sa.Column("object_id", sa.String(length=40), nullable=True),
    ]
    return sa.Table(
        "idempotency_keys",
        sa.MetaData(),
        *columns,
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint(*primary_key),
        sa.Index("ix_idempotency_keys_created_us", "created_us"),
    )


def downgrade() -> None:
    op.drop_table("gateway_token_owners")
    # Two modes' rows with the same key cannot share the old key: the test one goes.
    op.execute(
        "DELETE FROM idempotency_keys WHERE livemode = false AND EXISTS (SELECT 1 FROM "
        "idempotency_keys AS live WHERE live.livemode = true "
        "AND live.account_id = idempotency_keys.account_id AND live.key = idempotency_keys.key)"
    )
    _primary_key(["account_id", "key"])
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("livemode")
