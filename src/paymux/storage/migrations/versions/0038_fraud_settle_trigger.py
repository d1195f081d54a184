"""the fraud velocity settle rides on the intent's own UPDATE: a trigger (issue 13, helper STL)

An answered attempt's settle (``fraud/decisions.py`` ``on_settled``) was a round trip of its
own in the settling transaction (``paymux_fraud_settle``, migration 0037; up to four UPDATEs
run from Python on SQLite), right before the intent's UPDATE that writes the attempt's
``fraud_outcome`` record as counted, an UPDATE the payment pays with or without fraud. Now
``on_settled`` only records the settle in that record (``settle``: ``declined`` 0 or 1, the
gateway's risk ``rank`` 1-3 and ``score`` 0-100, each null when the gateway gave none), and
this trigger applies it when the intent's UPDATE writes it: no statement of its own.

``AFTER UPDATE OF fraud_outcome ON payment_intents FOR EACH ROW``, firing only when the
record goes from not counted to counted with a minute and carries its settle:

- NEW counted (JSON ``true``) with a ``minute`` and a ``settle`` object, and the OLD record
  null or not counted. A block's record is counted with no minute (it counted nothing):
  it does not fire; neither does a second UPDATE of a counted record (a late or duplicated
  webhook: once per confirm, as the ``counted`` flag always made it), nor a new confirm's
  record (not counted yet). A record counted without ``settle`` (written by code from
  before this migration, which settled on its own) does not fire either: no double count.
- The bucket row of the record's minute of each of its keys (``keys``: kind -> digest, of
  the intent's account and mode): ``settled`` + 1, ``declines`` + ``declined``, the
  minute's ``gateway_risk`` / ``gateway_risk_score`` raised to ``rank`` / ``score`` when
  higher (null records nothing), exactly as ``paymux_fraud_settle`` (0037) did when called.

PostgreSQL: the trigger function calls ``paymux_fraud_settle`` (0037's, unchanged) with the
keys in their sorted order (``COLLATE "C"``: byte order, Python's ``sorted`` of hex
digests), one row at a time, so two settles sharing keys never deadlock. The column is
``json``: ``->>`` gives ``'true'``. SQLite: one UPDATE over the keys (``json_each``), its
write transaction the only writer; JSON ``true`` is told by ``json_type`` (``json_extract``
gives it as 1, as it gives the number 1).

The downgrade drops the triggers and the trigger function (``paymux_fraud_settle`` stays:
0037's); code from before this migration settles on its own again.

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-04 03:30:00.000000
"""

from __future__ import annotations

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
    settle json := NEW.fraud_outcome -> 'settle';
BEGIN
    -- The record's settle applied to its minute's bucket row of each key, one row at a
    -- time in the keys' byte order (0037's function): no deadlock between two settles.
    PERFORM paymux_fraud_settle(
        NEW.account_id,
        NEW.livemode,
        ARRAY(
            SELECT k.value FROM json_each_text(NEW.fraud_outcome -> 'keys') AS k
            ORDER BY k.value COLLATE "C"
        ),
        CAST(NEW.fraud_outcome ->> 'minute' AS BIGINT),
        coalesce(CAST(settle ->> 'declined' AS INTEGER), 0),
        CAST(settle ->> 'rank' AS INTEGER),
        CAST(settle ->> 'score' AS INTEGER)
    );
    RETURN NULL;
END
$function$
"""  # noqa: S608 (every part a constant of this module)

# The condition in the trigger's WHEN: no function call for the UPDATEs that count nothing.
_PG_TRIGGER = f"""
CREATE TRIGGER {_TRIGGER}
AFTER UPDATE OF fraud_outcome ON payment_intents
FOR EACH ROW
WHEN (
    (NEW.fraud_outcome ->> 'counted') = 'true'
    AND (NEW.fraud_outcome ->> 'minute') IS NOT NULL
    AND json_typeof(NEW.fraud_outcome -> 'settle') = 'object'
    AND (OLD.fraud_outcome ->> 'counted') IS DISTINCT FROM 'true'
)
EXECUTE FUNCTION {_TRIGGER}()
"""

_SQLITE_TRIGGER = f"""
CREATE TRIGGER {_TRIGGER}
AFTER UPDATE OF fraud_outcome ON payment_intents
FOR EACH ROW
WHEN json_type(NEW.fraud_outcome, '$.counted') = 'true'
    AND json_extract(NEW.fraud_outcome, '$.minute') IS NOT NULL
    AND json_type(NEW.fraud_outcome, '$.settle') = 'object'
    AND (OLD.fraud_outcome IS NULL OR json_type(OLD.fraud_outcome, '$.counted') IS NOT 'true')
BEGIN
    UPDATE fraud_velocity_buckets SET settled = settled + 1,
        declines = declines
            + coalesce(json_extract(NEW.fraud_outcome, '$.settle.declined'), 0),
        gateway_risk = CASE
            WHEN coalesce(gateway_risk, 0) < json_extract(NEW.fraud_outcome, '$.settle.rank')
            THEN json_extract(NEW.fraud_outcome, '$.settle.rank') ELSE gateway_risk END,
        gateway_risk_score = CASE
            WHEN coalesce(gateway_risk_score, -1)
                < json_extract(NEW.fraud_outcome, '$.settle.score')
            THEN json_extract(NEW.fraud_outcome, '$.settle.score')
            ELSE gateway_risk_score END
    WHERE account_id = NEW.account_id AND livemode = NEW.livemode
        AND "key" IN (SELECT value FROM json_each(NEW.fraud_outcome, '$.keys'))
        AND minute = json_extract(NEW.fraud_outcome, '$.minute');
END
"""  # noqa: S608 (every part a constant of this module)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgres():
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute(f"DROP TRIGGER {_TRIGGER}" + (" ON payment_intents" if _postgres() else ""))
    if _postgres():
        op.execute(f"DROP FUNCTION {_TRIGGER}()")
