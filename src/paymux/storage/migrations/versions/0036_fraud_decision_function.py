"""the fraud decision's lock, read and reservation in one round trip on PostgreSQL (issue 13,
helper FRD)

``paymux_fraud_decision_start``: a ``VOLATILE`` PL/pgSQL function that takes the velocity
keys' transaction-scoped advisory locks (``lock_keys``, sorted by the caller: one order, no
deadlock), returns the decision's read (``fraud/velocity.py``'s ``decision_read``: the keys'
counts, the rules' version, the payment's values in the account's lists, the card's last
minute with each key) in the same rows and columns as that read's ``UNION ALL``, and then,
given ``p_reserve_minute``, counts the attempt as ``velocity.reserve`` does (attempts + 1 per
key, the card moved to this minute), after the read, which does not see it. The rules decide
after the call, in Python: an allowed attempt is then counted already (one round trip for
the whole decision instead of three: lock, read, write); a blocked one is taken back by
``paymux_fraud_decision_undo`` in the same transaction, before anything commits, so a block
still records nothing (docs/fraud.md). No one sees the reservation meanwhile: other deciders
of the keys wait for their lock, other readers see committed rows only.

Why a function and not one plain statement: a statement reads the snapshot taken when it
starts (READ COMMITTED), before it waits for a lock it takes itself, so a read folded into
the lock's statement would miss the attempt the lock's previous holder committed while it
waited. Inside a ``VOLATILE`` function each statement takes a fresh snapshot: the read runs
after the locks are held and sees what their previous holder committed
(tests/integration/test_fraud_decision_lock_read.py shows it; the same test fails with the
lock and the read in one plain statement, or with the function ``STABLE``).

The figures' columns are ``BIGINT`` (the read's sums and counts); the windows are the three
of ``fraud/attributes.py``'s ``VELOCITY_WINDOWS`` (10 minutes, an hour, a day), passed as
the minute each starts. The ``IN`` lists of the per-shape statement are arrays here
(``= ANY``): the same primary-key and index look-ups. SQLite has no such functions and needs
none (its write transaction is the only writer; its statements cost no round trip): nothing
to do there.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-03 19:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None

_FIGURES = 13  # the read's widest part (the buckets'): see velocity._WIDTH
_COLUMNS = ", ".join(f"f{i} BIGINT" for i in range(_FIGURES))


def _padded(figures: list[str]) -> str:
    padded = figures + ["NULL"] * (_FIGURES - len(figures))
    return ", ".join(f"CAST({figure} AS BIGINT)" for figure in padded)


_BUCKET_FIGURES = [
    "sum(CASE WHEN b.minute >= p_pending_since THEN b.attempts - b.settled ELSE 0 END)",
    *(
        f"sum(CASE WHEN b.minute >= {since} THEN b.{column} ELSE 0 END)"
        for since in ("p_since_10m", "p_since_hour", "p_since_daily")
        for column in ("attempts", "declines", "cards")
    ),
    "max(CASE WHEN b.minute >= p_since_day THEN b.gateway_risk END)",
    "max(CASE WHEN b.minute >= p_since_day THEN b.gateway_risk_score END)",
    "min(b.minute)",
]

# The rows an attempt adds to: (k, m, a, c) = key, minute, attempts, cards. ``{last}``: the
# card's rows with the keys before the attempt ("key", minute, where card = p_card): the
# table itself while the reservation has not moved them, or the minutes the read found.
_MOVES = """
    SELECT k.k, p_reserve_minute AS m, 1 AS a,
        CASE WHEN k.k = ANY(p_card_keys) AND l.minute IS DISTINCT FROM p_reserve_minute
            THEN 1 ELSE 0 END AS c
    FROM unnest(p_keys) AS k (k)
    LEFT JOIN {last} ON l."key" = k.k{mine}
    UNION ALL
    SELECT l."key", l.minute, 0, -1
    FROM {last}
    WHERE l."key" = ANY(p_card_keys) AND l.minute <> p_reserve_minute
        AND l.minute >= p_since_day{mine}
"""
_LAST = 'unnest(p_last_keys, p_last_minutes) AS l ("key", minute)'
_TABLE = "fraud_velocity_cards AS l"
_MINE = " AND l.account_id = p_account AND l.livemode = p_livemode AND l.card = p_card"

_FUNCTION = f"""
CREATE FUNCTION paymux_fraud_decision_start(
    lock_keys BIGINT[],
    p_account TEXT,
    p_livemode BOOLEAN,
    p_keys TEXT[],
    p_pending_since BIGINT,
    p_since_10m BIGINT,
    p_since_hour BIGINT,
    p_since_daily BIGINT,
    p_since_day BIGINT,
    p_aliases TEXT[],
    p_values TEXT[],
    p_card TEXT,
    p_reserve_minute BIGINT,
    p_card_keys TEXT[]
) RETURNS TABLE (part TEXT, "key" TEXT, {_COLUMNS}, item TEXT)
LANGUAGE plpgsql VOLATILE
AS $function$
#variable_conflict use_column
DECLARE
    lock_key BIGINT;
BEGIN
    -- The keys' locks one at a time, in the caller's (sorted) order.
    FOREACH lock_key IN ARRAY lock_keys LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;
    -- A statement of its own: its snapshot is taken now, with the locks held.
    RETURN QUERY
    SELECT CAST('b' AS TEXT), CAST(b."key" AS TEXT), {_padded(_BUCKET_FIGURES)},
        CAST(NULL AS TEXT)
    FROM fraud_velocity_buckets b
    WHERE b.account_id = p_account AND b.livemode = p_livemode AND b."key" = ANY(p_keys)
    GROUP BY b."key"
    UNION ALL
    SELECT CAST('v' AS TEXT), CAST(NULL AS TEXT),
        {_padded(["count(*)", "coalesce(max(r.updated_us), 0)"])}, CAST(NULL AS TEXT)
    FROM fraud_rules r
    WHERE r.account_id = p_account AND r.livemode = p_livemode
    UNION ALL
    SELECT CAST('l' AS TEXT), CAST(l.alias AS TEXT), {_padded([])},
        CAST(i.match_value AS TEXT)
    FROM radar_value_lists l JOIN radar_value_list_items i ON i.value_list_id = l.id
    WHERE l.account_id = p_account AND l.livemode = p_livemode AND l.alias = ANY(p_aliases)
        AND i.match_value = ANY(p_values)
    UNION ALL
    SELECT CAST('p' AS TEXT), CAST(c."key" AS TEXT), {_padded(["c.minute"])},
        CAST(NULL AS TEXT)
    FROM fraud_velocity_cards c
    WHERE c.account_id = p_account AND c.livemode = p_livemode AND c.card = p_card
        AND c."key" = ANY(p_keys);
    IF p_reserve_minute IS NULL THEN
        RETURN;
    END IF;
    -- The attempt counted in minute p_reserve_minute, as velocity.reserve counts it (the
    -- caller undoes it on a block: paymux_fraud_decision_undo): attempts + 1 per key; the
    -- card (p_card) with each of p_card_keys not tried with it this minute moves here
    -- (cards + 1 here, - 1 in its last minute's row if that is within the day). Rows in
    -- (key, minute) order, as velocity.reserve and settle take them: no deadlock.
    INSERT INTO fraud_velocity_buckets AS b
        (account_id, livemode, "key", minute, attempts, declines, settled, cards)
    SELECT p_account, p_livemode, r.k, r.m, r.a, 0, 0, r.c
    FROM ({_MOVES.format(last=_TABLE, mine=_MINE)}) AS r
    ORDER BY r.k, r.m
    ON CONFLICT (account_id, livemode, "key", minute) DO UPDATE SET
        attempts = b.attempts + excluded.attempts, cards = b.cards + excluded.cards;
    INSERT INTO fraud_velocity_cards AS c (account_id, livemode, "key", card, minute)
    SELECT p_account, p_livemode, k.k, p_card, p_reserve_minute
    FROM unnest(p_card_keys) AS k (k)
    ORDER BY k.k
    ON CONFLICT (account_id, livemode, "key", card) DO UPDATE SET minute = excluded.minute
        WHERE c.minute <> excluded.minute;
END
$function$
"""  # noqa: S608 (every part a constant of this module)

_UNDO = f"""
CREATE FUNCTION paymux_fraud_decision_undo(
    p_account TEXT,
    p_livemode BOOLEAN,
    p_keys TEXT[],
    p_card TEXT,
    p_card_keys TEXT[],
    p_reserve_minute BIGINT,
    p_since_day BIGINT,
    p_last_keys TEXT[],
    p_last_minutes BIGINT[]
) RETURNS VOID
LANGUAGE plpgsql VOLATILE
AS $function$
BEGIN
    -- The reservation's changes taken back, in the same transaction (a block records
    -- nothing): the rows are this transaction's already (locked by the reservation).
    -- p_last_keys/p_last_minutes: the card's last minute with each key, as the decision's
    -- read found it before the reservation.
    UPDATE fraud_velocity_buckets AS b SET attempts = b.attempts - r.a, cards = b.cards - r.c
    FROM ({_MOVES.format(last=_LAST, mine="")}) AS r
    WHERE b.account_id = p_account AND b.livemode = p_livemode AND b."key" = r.k
        AND b.minute = r.m;
    -- A row the reservation created holds nothing now.
    DELETE FROM fraud_velocity_buckets AS b
    WHERE b.account_id = p_account AND b.livemode = p_livemode AND b."key" = ANY(p_keys)
        AND b.minute = ANY(array_append(p_last_minutes, p_reserve_minute))
        AND b.attempts = 0 AND b.declines = 0 AND b.settled = 0 AND b.cards = 0
        AND b.gateway_risk IS NULL AND b.gateway_risk_score IS NULL;
    -- The card's rows: back to their last minute, or gone where the card was new.
    DELETE FROM fraud_velocity_cards AS c
    WHERE c.account_id = p_account AND c.livemode = p_livemode AND c.card = p_card
        AND c."key" = ANY(p_card_keys) AND NOT (c."key" = ANY(p_last_keys));
    UPDATE fraud_velocity_cards AS c SET minute = l.minute
    FROM {_LAST}
    WHERE c.account_id = p_account AND c.livemode = p_livemode AND c.card = p_card
        AND c."key" = l."key" AND l."key" = ANY(p_card_keys);
END
$function$
"""  # noqa: S608 (every part a constant of this module)

_SIGNATURES = (
    "paymux_fraud_decision_start(BIGINT[], TEXT, BOOLEAN, TEXT[], BIGINT, BIGINT, BIGINT,"
    " BIGINT, BIGINT, TEXT[], TEXT[], TEXT, BIGINT, TEXT[])",
    "paymux_fraud_decision_undo(TEXT, BOOLEAN, TEXT[], TEXT, TEXT[], BIGINT, BIGINT, TEXT[],"
    " BIGINT[])",
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgres():
        op.execute(_FUNCTION)
        op.execute(_UNDO)


def downgrade() -> None:
    if _postgres():
        for signature in _SIGNATURES:
            op.execute(f"DROP FUNCTION {signature}")
