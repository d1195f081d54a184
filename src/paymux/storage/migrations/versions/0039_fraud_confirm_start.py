"""the confirm's intent lock inside the fraud decision's call (issues 13 and 10)

A confirm decided with fraud rules on PostgreSQL read its intent again under its lock
(``SELECT ... FOR UPDATE``, a round trip of its own) before the decision's call, so the
decision was made on the intent as it is at the start, not as the confirm's first read saw
it. ``paymux_fraud_confirm_start`` takes that lock in the decision's own round trip: it
locks the intent only if it still holds what the decision was made on (its status and
confirmation count, and the values the facts read: amount, currency, customer, receipt
email, off_session, the shipping country), then runs ``paymux_fraud_decision_start``
(migration 0037) with the remaining arguments. Otherwise it locks nothing and returns one
row, part ``m`` (moved): the caller rolls its transaction back (nothing of it is kept: no
key locked, no attempt counted) and decides again on the intent read under its lock
(services/payments.py ``_start_authorize``). Lock order as before: the intent row, then the
velocity keys.

SQLite has no functions: nothing changes there (its writer holds the database; the intent
read again in the transaction costs no round trip).

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-04 04:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None

_FIGURES = 13  # the read's columns f0..f12 (migration 0037's ``_FIGURES``)
_COLUMNS = ", ".join(f"f{i} BIGINT" for i in range(_FIGURES))
_NULLS = ", ".join("CAST(NULL AS BIGINT)" for _ in range(_FIGURES))
# paymux_fraud_decision_start's arguments (migration 0037), passed through as they came.
_DECISION_ARGUMENTS = (
    ("lock_keys", "BIGINT[]"),
    ("p_account", "TEXT"),
    ("p_livemode", "BOOLEAN"),
    ("p_keys", "TEXT[]"),
    ("p_pending_since", "BIGINT"),
    ("p_since_10m", "BIGINT"),
    ("p_since_hour", "BIGINT"),
    ("p_since_daily", "BIGINT"),
    ("p_since_day", "BIGINT"),
    ("p_aliases", "TEXT[]"),
    ("p_values", "TEXT[]"),
    ("p_card", "TEXT"),
    ("p_reserve_minute", "BIGINT"),
    ("p_card_keys", "TEXT[]"),
)
_SIGNATURE = (
    "p_intent TEXT, p_status TEXT, p_confirm_count INTEGER, p_amount BIGINT, p_currency TEXT,"
    " p_customer TEXT, p_receipt_email TEXT, p_off_session BOOLEAN, p_shipping_country TEXT, "
    + ", ".join(f"{name} {kind}" for name, kind in _DECISION_ARGUMENTS)
)

_FUNCTION = f"""
CREATE FUNCTION paymux_fraud_confirm_start({_SIGNATURE})
RETURNS TABLE (part TEXT, "key" TEXT, {_COLUMNS}, item TEXT)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $function$
BEGIN
    -- The intent locked only if it is as the decision saw it (a row that no longer matches
    -- is not locked: READ COMMITTED checks the row's latest version once it is free).
    PERFORM 1 FROM payment_intents i
    WHERE i.id = p_intent AND i.status = p_status AND i.confirm_count = p_confirm_count
        AND i.amount = p_amount AND i.currency = p_currency
        AND i.customer_id IS NOT DISTINCT FROM p_customer
        AND i.receipt_email IS NOT DISTINCT FROM p_receipt_email
        AND i.off_session IS NOT DISTINCT FROM p_off_session
        AND (i.shipping -> 'address' ->> 'country') IS NOT DISTINCT FROM p_shipping_country
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT CAST('m' AS TEXT), CAST(NULL AS TEXT), {_NULLS}, CAST(NULL AS TEXT);
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM paymux_fraud_decision_start(
        {", ".join(name for name, _ in _DECISION_ARGUMENTS)});
END
$function$
"""  # noqa: S608 (every part a constant of this module)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgres():
        op.execute(_FUNCTION)


def downgrade() -> None:
    if _postgres():
        op.execute(f"DROP FUNCTION paymux_fraud_confirm_start({_SIGNATURE})")
