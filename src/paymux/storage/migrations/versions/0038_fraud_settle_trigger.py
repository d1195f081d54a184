"""the fraud velocity settle rides on the intent's own UPDATE: a column and its trigger (issue 13)

An answered attempt's settle (``fraud/decisions.py`` ``on_settled``) was a round trip of its
own in the settling transaction (``paymux_fraud_settle``, migration 0037; up to four UPDATEs
run from Python on SQLite), right before the intent's UPDATE that the payment pays with or
without fraud. Now ``on_settled`` only sets the intent's new column ``fraud_settle`` (helpers
STL, STL2): the attempt's ``keys`` (its velocity digests, sorted), its ``minute``, and the
answer (``declined`` 0 or 1, the gateway's risk ``rank`` 1-3 and ``score`` 0-100, each null
when the gateway gave none); that UPDATE writes it, and this trigger applies it: no
statement of its own. A column apart from ``fraud_outcome`` (the decision's record, 1-2 KB
of ``json`` text with its facts): the trigger reads ~150 bytes, not the record, which each
``->`` on a ``json`` value parses whole, and the settle sends and writes those bytes only.
Adding a nullable column is a catalog-only change on PostgreSQL.

``AFTER UPDATE OF fraud_settle ON payment_intents FOR EACH ROW WHEN (OLD.fraud_settle IS
NULL AND NEW.fraud_settle IS NOT NULL)``: no JSON read to tell whether it fires. Once per
confirm: a decision resets the column to NULL with its record (``FraudEngine.screen_in``),
and ``on_settled`` sets it only while it is NULL, so a late or duplicated webhook (or any
other UPDATE of the intent) counts nothing, and a block (no attempt counted: no minute)
never sets it.

The bucket row of the settle's minute of each of its keys (of the intent's account and
mode): ``settled`` + 1, ``declines`` + ``declined``, the minute's ``gateway_risk`` /
``gateway_risk_score`` raised to ``rank`` / ``score`` when higher (null records nothing),
exactly as ``paymux_fraud_settle`` (0037) did when called.

PostgreSQL: the trigger function reads the value once (``json_to_record``) and calls
``paymux_fraud_settle`` (0037's, unchanged) with the keys in byte order (``COLLATE "C"``,
as Python's ``sorted`` of hex digests gives them), one row at a time, so two settles sharing
keys never deadlock. SQLite: one UPDATE over the keys (``json_each``), its write transaction
the only writer.

The downgrade drops the trigger, the trigger function and the column (``paymux_fraud_settle``
stays: 0037's); code from before this migration settles on its own again.

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-04 03:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None

# The trigger and its function (PostgreSQL), named apart from 0036/0037's ``paymux_fraud_*``
# functions, which are called; this one only fires.
_TRIGGER = "paymux_intent_fraud_settle"

_PG_FUNCTION = f"""
CREATE FUNCTION {_TRIGGER}() RETURNS trigger
LANGUAGE plpgsql VOLATILE
AS $function$
DECLARE
    settle RECORD;
BEGIN
    SELECT * INTO settle FROM json_to_record(NEW.fraud_settle)
        AS s(keys json, minute BIGINT, declined INTEGER, rank INTEGER, score INTEGER);
    -- The settle applied to its minute's bucket row of each key, one row at a time in the
    -- keys' byte order (0037's function): no deadlock between two settles.
    PERFORM paymux_fraud_settle(
        NEW.account_id,
        NEW.livemode,
        ARRAY(
            SELECT k FROM json_array_elements_text(settle.keys) AS k ORDER BY k COLLATE "C"
        ),
        settle.minute,
        coalesce(settle.declined, 0),
        settle.rank,
        settle.score
    );
    RETURN NULL;
END
$function$
"""  # noqa: S608 (every part a constant of this module)

# The trigger's WHEN reads no JSON: no function call for the UPDATEs that count nothing.
_PG_TRIGGER = f"""
CREATE TRIGGER {_TRIGGER}
AFTER UPDATE OF fraud_settle ON payment_intents
FOR EACH ROW
WHEN (OLD.fraud_settle IS NULL AND NEW.fraud_settle IS NOT NULL)
EXECUTE FUNCTION {_TRIGGER}()
"""

_SQLITE_TRIGGER = f"""
CREATE TRIGGER {_TRIGGER}
AFTER UPDATE OF fraud_settle ON payment_intents
FOR EACH ROW
WHEN OLD.fraud_settle IS NULL AND NEW.fraud_settle IS NOT NULL
BEGIN
    UPDATE fraud_velocity_buckets SET settled = settled + 1,
        declines = declines + coalesce(json_extract(NEW.fraud_settle, '$.declined'), 0),
        gateway_risk = CASE
            WHEN coalesce(gateway_risk, 0) < json_extract(NEW.fraud_settle, '$.rank')
            THEN json_extract(NEW.fraud_settle, '$.rank') ELSE gateway_risk END,
        gateway_risk_score = CASE
            WHEN coalesce(gateway_risk_score, -1) < json_extract(NEW.fraud_settle, '$.score')
            THEN json_extract(NEW.fraud_settle, '$.score') ELSE gateway_risk_score END
    WHERE account_id = NEW.account_id AND livemode = NEW.livemode
        AND "key" IN (SELECT value FROM json_each(NEW.fraud_settle, '$.keys'))
        AND minute = json_extract(NEW.fraud_settle, '$.minute');
END
"""  # noqa: S608 (every part a constant of this module)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fraud_settle", sa.JSON(), nullable=True))
    if _postgres():
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute(f"DROP TRIGGER {_TRIGGER}" + (" ON payment_intents" if _postgres() else ""))
    if _postgres():
        op.execute(f"DROP FUNCTION {_TRIGGER}()")
    with op.batch_alter_table("payment_intents", schema=None) as batch_op:
        batch_op.drop_column("fraud_settle")
