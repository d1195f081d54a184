"""the confirm's intent lock inside the fraud decision's call (issues 13 and 10)

A confirm decided with fraud rules on PostgreSQL read its intent again under its lock
(``SELECT ... FOR UPDATE``, a round trip of its own) before the decision's call, so the
decision was made on the intent as it is at the start, not as the confirm's first read saw
it. ``paymux_fraud_confirm_start`` takes that lock in the decision's own round trip: it
locks the intent only if it still holds what the decision was made on (its status and
confirmation count, and the values the facts read: amount, currency, customer, receipt
email, off_session, the shipping country), then does what ``paymux_fraud_decision_start``
(migration 0037) does with the remaining arguments (its body, the same text). Otherwise
it locks nothing and returns one row, part ``m`` (moved): the caller rolls its transaction
back (nothing of it is kept: no key locked, no attempt counted) and decides again on the intent read under its lock
(services/payments.py ``_start_authorize``). Lock order as before: the intent row, then the
velocity keys.

SQLite has no functions: nothing changes there (its writer holds the database; the intent
read again in the transaction costs no round trip).

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-04 04:00:00.000000
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None

# The decision's function as migration 0037 created it (its text, kept there): this one is
# the same body with the intent's lock first. Not a call of it: a PL/pgSQL function calling
# another and returning its rows (``RETURN QUERY SELECT * FROM ...``) costs a second
# function call and a copy of every row (measured: 0.02 ms a decision).
_0037 = importlib.import_module("paymux.storage.migrations.versions.0037_fraud_decision_lookups")
_DECISION: str = _0037._FUNCTION
_GUARD_ARGUMENTS = (
    "p_intent TEXT, p_status TEXT, p_confirm_count INTEGER, p_amount BIGINT, p_currency TEXT,"
    " p_customer TEXT, p_receipt_email TEXT, p_off_session BOOLEAN, p_shipping_country TEXT"
)
_HEADER = "CREATE OR REPLACE FUNCTION paymux_fraud_decision_start(\n    lock_keys BIGINT[],"
_BODY = "BEGIN\n    -- The keys' locks one at a time"
_GUARD = """BEGIN
    -- The intent locked first, and only if it is as the decision saw it (a row that no
    -- longer matches is not locked: READ COMMITTED checks the row's latest version once it
    -- is free); if not, one row, part 'm', and nothing else done.
    PERFORM 1 FROM payment_intents i
    WHERE i.id = p_intent AND i.status = p_status AND i.confirm_count = p_confirm_count
        AND i.amount = p_amount AND i.currency = p_currency
        AND i.customer_id IS NOT DISTINCT FROM p_customer
        AND i.receipt_email IS NOT DISTINCT FROM p_receipt_email
        AND i.off_session IS NOT DISTINCT FROM p_off_session
        AND (i.shipping -> 'address' ->> 'country') IS NOT DISTINCT FROM p_shipping_country
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT CAST('m' AS TEXT), CAST(NULL AS TEXT), {nulls}, CAST(NULL AS TEXT);
        RETURN;
    END IF;
    -- The keys' locks one at a time"""
_NULLS = ", ".join("CAST(NULL AS BIGINT)" for _ in range(_0037._FIGURES))  # f0.. as 0037's


def _function() -> str:
    assert _DECISION.count(_HEADER) == 1 and _DECISION.count(_BODY) == 1
    return _DECISION.replace(
        _HEADER,
        f"CREATE FUNCTION paymux_fraud_confirm_start(\n    {_GUARD_ARGUMENTS},\n    lock_keys"
        " BIGINT[],",
    ).replace(_BODY, _GUARD.format(nulls=_NULLS))


# Its arguments' types, for the downgrade's DROP: the guard's, then 0037's.
_SIGNATURE = (
    "TEXT, TEXT, INTEGER, BIGINT, TEXT, TEXT, TEXT, BOOLEAN, TEXT, BIGINT[], TEXT, BOOLEAN,"
    " TEXT[], BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, TEXT[], TEXT[], TEXT, BIGINT, TEXT[]"
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgres():
        op.execute(_function())


def downgrade() -> None:
    if _postgres():
        op.execute(f"DROP FUNCTION paymux_fraud_confirm_start({_SIGNATURE})")
