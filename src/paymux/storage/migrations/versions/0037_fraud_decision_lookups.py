"""the fraud decision's functions: key look-ups and plans kept (issue 13, helpers FRD, FRD2)

``paymux_fraud_decision_start`` (migration 0036) replaced by the same function (same
arguments, same rows, same locks, same statements in the same order, so the same
semantics: tests/integration/test_fraud_decision_lock_read.py) that costs less inside
PostgreSQL, where most of a decision's time went (0.68 ms of the call, on a quiet machine):

- Look-ups, not scans. The counts' ``"key" = ANY(p_keys) ... GROUP BY "key"`` was planned,
  on tables never analyzed or analyzed while small, as a scan of ALL the account's bucket
  rows in key order, the keys a filter (a btree scan with an array on a column past the
  first loses the key order the ``GROUP BY`` wants): 669 pages for 2 keys when the account
  had 700. The card's ``"key" = ANY(...) AND card = p_card`` skipped the key column (every
  card row of the account), and the lists' ``match_value = ANY(p_values)`` scanned every
  item of each list. Now one aggregate per key (``unnest(p_keys)``, ``CROSS JOIN LATERAL``,
  ``"key" = k``) and one look-up per key and per list value (``LIMIT 1``: at most one row,
  and a subquery the planner cannot flatten into a join it could hash over that same
  scan); the reservation reads the card's rows once (a ``WITH``), not twice. A list's
  matches come once per (list, value): the caller keeps a set of them.
- Plans kept (``SET plan_cache_mode = force_generic_plan``, for the function's statements
  only). PL/pgSQL plans a statement again at every call while the planner's cost for a
  plan with the call's values beats the generic plan's, which it did here: about 0.4 ms of
  a 0.6 ms call was planning (measured with the setting forced each way). With look-ups by
  key, the generic plan is the right one whatever the values; it is made again after an
  ``ANALYZE`` or a schema change of its tables.

bench/fraud.py replays its last 500 calls under ``EXPLAIN ANALYZE``: the call's run went
from 0.51-0.61 ms to 0.21-0.26 ms (mean), 777 pages to 34-36 (docs/benchmarks.md).

``paymux_fraud_decision_undo`` (a block takes the reservation back with it, in the same
transaction: many calls during a card-testing attack) replaced the same way (helper FRD2):
same arguments, same rows left (tests/integration/test_fraud_decision_lock_read.py), each
row the reservation changed taken back by its primary key in a loop (``_UNDO`` below), where
0036's joined its arrays to the tables and deleted the card's rows by card without the key,
reading every card row of the account; its plans kept too. bench/fraud.py replays a block's
undo after each of its last 500 calls: 198-1,425 pages per undo to 15, 0.62-0.71 ms to
0.10-0.14 ms (mean) inside PostgreSQL.

``paymux_fraud_settle`` (new): an answered attempt's settle, one UPDATE per key (up to four
round trips in the settling transaction) made one call; the same statements in the same
order (the keys sorted, one row at a time: no deadlock between two settles sharing keys).

SQLite has no functions: nothing changes there. The downgrade drops ``paymux_fraud_settle``
and puts migration 0036's two functions back.

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-03 22:30:00.000000
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0037"
down_revision = "0036"
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

# The figures as the per-key aggregate names them, and as the read returns them.
_NAMED = ", ".join(f"{figure} AS f{i}" for i, figure in enumerate(_BUCKET_FIGURES))
_PER_KEY = [f"b.f{i}" for i in range(len(_BUCKET_FIGURES))]

# The card's row with key ``{key}``: a primary-key look-up (``LIMIT 1``: at most one row,
# and not flattened into a join).
_CARD_ROW = """(
        SELECT c.minute FROM fraud_velocity_cards c
        WHERE c.account_id = p_account AND c.livemode = p_livemode AND c."key" = {key}
            AND c.card = p_card
        LIMIT 1
    )"""

_FUNCTION = f"""
CREATE OR REPLACE FUNCTION paymux_fraud_decision_start(
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
SET plan_cache_mode = force_generic_plan
AS $function$
#variable_conflict use_column
DECLARE
    lock_key BIGINT;
BEGIN
    -- The keys' locks one at a time, in the caller's (sorted) order.
    FOREACH lock_key IN ARRAY lock_keys LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;
    -- A statement of its own: its snapshot is taken now, with the locks held. Each key's
    -- rows by a look-up of its own (migration 0037's docstring).
    RETURN QUERY
    SELECT CAST('b' AS TEXT), CAST(b."key" AS TEXT), {_padded(_PER_KEY)}, CAST(NULL AS TEXT)
    FROM unnest(p_keys) AS k (k)
    CROSS JOIN LATERAL (
        SELECT b."key", {_NAMED}
        FROM fraud_velocity_buckets b
        WHERE b.account_id = p_account AND b.livemode = p_livemode AND b."key" = k.k
        GROUP BY b."key"
    ) AS b
    UNION ALL
    SELECT CAST('v' AS TEXT), CAST(NULL AS TEXT),
        {_padded(["count(*)", "coalesce(max(r.updated_us), 0)"])}, CAST(NULL AS TEXT)
    FROM fraud_rules r
    WHERE r.account_id = p_account AND r.livemode = p_livemode
    UNION ALL
    SELECT CAST('l' AS TEXT), CAST(l.alias AS TEXT), {_padded([])},
        CAST(i.match_value AS TEXT)
    FROM radar_value_lists l
    CROSS JOIN LATERAL unnest(p_values) AS v (v)
    CROSS JOIN LATERAL (
        SELECT i.match_value FROM radar_value_list_items i
        WHERE i.value_list_id = l.id AND i.match_value = v.v
        LIMIT 1
    ) AS i
    WHERE l.account_id = p_account AND l.livemode = p_livemode AND l.alias = ANY(p_aliases)
    UNION ALL
    SELECT CAST('p' AS TEXT), CAST(k.k AS TEXT), {_padded(["c.minute"])},
        CAST(NULL AS TEXT)
    FROM unnest(p_keys) AS k (k)
    CROSS JOIN LATERAL {_CARD_ROW.format(key="k.k")} AS c;
    IF p_reserve_minute IS NULL THEN
        RETURN;
    END IF;
    -- The attempt counted in minute p_reserve_minute, as velocity.reserve counts it (the
    -- caller undoes it on a block: paymux_fraud_decision_undo): attempts + 1 per key; the
    -- card (p_card) with each of p_card_keys not tried with it this minute moves here
    -- (cards + 1 here, - 1 in its last minute's row if that is within the day). Rows in
    -- (key, minute) order, as velocity.reserve and settle take them: no deadlock.
    WITH last AS (
        SELECT k.k, l.minute
        FROM unnest(p_keys) AS k (k)
        LEFT JOIN LATERAL {_CARD_ROW.format(key="k.k")} AS l ON true
    )
    INSERT INTO fraud_velocity_buckets AS b
        (account_id, livemode, "key", minute, attempts, declines, settled, cards)
    SELECT p_account, p_livemode, r.k, r.m, r.a, 0, 0, r.c
    FROM (
        SELECT l.k, p_reserve_minute AS m, 1 AS a,
            CASE WHEN l.k = ANY(p_card_keys) AND l.minute IS DISTINCT FROM p_reserve_minute
                THEN 1 ELSE 0 END AS c
        FROM last AS l
        UNION ALL
        SELECT l.k, l.minute, 0, -1
        FROM last AS l
        WHERE l.k = ANY(p_card_keys) AND l.minute <> p_reserve_minute
            AND l.minute >= p_since_day
    ) AS r
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


# The block's undo (migration 0036's ``paymux_fraud_decision_undo``, same arguments, same
# rows left): each row the reservation changed taken back by its own primary key, in a loop,
# where 0036 joined the arrays to the tables (``"key" = ANY(keys)``, ``minute = ANY(...)``,
# and for the card's rows ``card = p_card`` without the key: every card row of the account).
# The loops' rows are the reservation's own, computed from the arguments alone (no table
# read): the bucket rows it added to (each key's row in p_reserve_minute; the card's last
# minute with each of p_card_keys, within the day, where it took the card away), then the
# card's rows it wrote. A bucket row holding nothing once taken back (one the reservation
# created) is deleted: 0036 deleted any such row among every key's rows in any of those
# minutes, the same rows unless another of them held nothing before the attempt (an attempt
# creates a key's row with attempts 1), which 0036 deleted and this leaves as it was.
_UNDO = """
CREATE OR REPLACE FUNCTION paymux_fraud_decision_undo(
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
SET plan_cache_mode = force_generic_plan
AS $function$
DECLARE
    r RECORD;
    emptied BOOLEAN;
BEGIN
    -- The reservation's changes taken back, in the same transaction (a block records
    -- nothing): the rows are this transaction's already (locked by the reservation).
    -- p_last_keys/p_last_minutes: the card's last minute with each key, as the decision's
    -- read found it before the reservation. Rows in (key, minute) order, as it took them.
    FOR r IN
        SELECT k.k, p_reserve_minute AS m, 1 AS a,
            CASE WHEN k.k = ANY(p_card_keys) AND l.minute IS DISTINCT FROM p_reserve_minute
                THEN 1 ELSE 0 END AS c
        FROM unnest(p_keys) AS k (k)
        LEFT JOIN unnest(p_last_keys, p_last_minutes) AS l ("key", minute) ON l."key" = k.k
        UNION ALL
        SELECT l."key", l.minute, 0, -1
        FROM unnest(p_last_keys, p_last_minutes) AS l ("key", minute)
        WHERE l."key" = ANY(p_card_keys) AND l.minute <> p_reserve_minute
            AND l.minute >= p_since_day
        ORDER BY 1, 2
    LOOP
        UPDATE fraud_velocity_buckets AS b
        SET attempts = b.attempts - r.a, cards = b.cards - r.c
        WHERE b.account_id = p_account AND b.livemode = p_livemode AND b."key" = r.k
            AND b.minute = r.m
        RETURNING b.attempts = 0 AND b.declines = 0 AND b.settled = 0 AND b.cards = 0
            AND b.gateway_risk IS NULL AND b.gateway_risk_score IS NULL
        INTO emptied;
        -- A row the reservation created holds nothing now.
        IF emptied THEN
            DELETE FROM fraud_velocity_buckets AS b
            WHERE b.account_id = p_account AND b.livemode = p_livemode AND b."key" = r.k
                AND b.minute = r.m;
        END IF;
    END LOOP;
    -- The card's rows: back to their last minute, or gone where the card was new.
    FOR r IN
        SELECT k.k, l.minute
        FROM unnest(p_card_keys) AS k (k)
        LEFT JOIN unnest(p_last_keys, p_last_minutes) AS l ("key", minute) ON l."key" = k.k
        ORDER BY 1
    LOOP
        IF r.minute IS NULL THEN
            DELETE FROM fraud_velocity_cards AS c
            WHERE c.account_id = p_account AND c.livemode = p_livemode AND c."key" = r.k
                AND c.card = p_card;
        ELSE
            UPDATE fraud_velocity_cards AS c SET minute = r.minute
            WHERE c.account_id = p_account AND c.livemode = p_livemode AND c."key" = r.k
                AND c.card = p_card AND c.minute <> r.minute;
        END IF;
    END LOOP;
END
$function$
"""


# An answered attempt settled on every one of its keys in ONE round trip (``velocity.settle``
# on PostgreSQL), where it was one UPDATE per key (up to four). Still one row at a time, in
# the order the caller gives (its keys sorted): an UPDATE of several rows would lock them in
# its plan's order, and two settling transactions sharing keys could deadlock.
_SETTLE = """
CREATE FUNCTION paymux_fraud_settle(
    p_account TEXT, p_mode BOOLEAN, p_keys TEXT[], p_minute BIGINT,
    p_declined INTEGER, p_rank INTEGER, p_score INTEGER
) RETURNS INTEGER
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $function$
DECLARE
    k TEXT;
    settled_rows INTEGER := 0;
    n INTEGER;
BEGIN
    FOREACH k IN ARRAY p_keys LOOP
        UPDATE fraud_velocity_buckets SET settled = settled + 1,
            declines = declines + p_declined,
            gateway_risk = CASE WHEN coalesce(gateway_risk, 0) < p_rank
                THEN p_rank ELSE gateway_risk END,
            gateway_risk_score = CASE WHEN coalesce(gateway_risk_score, -1) < p_score
                THEN p_score ELSE gateway_risk_score END
        WHERE account_id = p_account AND livemode = p_mode AND "key" = k
            AND minute = p_minute;
        GET DIAGNOSTICS n = ROW_COUNT;
        settled_rows := settled_rows + n;
    END LOOP;
    RETURN settled_rows;
END
$function$
"""


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgres():
        op.execute(_FUNCTION)
        op.execute(_UNDO)
        op.execute(_SETTLE)


def downgrade() -> None:
    if _postgres():
        op.execute(
            "DROP FUNCTION paymux_fraud_settle(TEXT, BOOLEAN, TEXT[], BIGINT, INTEGER, INTEGER,"
            " INTEGER)"
        )
        previous = importlib.import_module(
            "paymux.storage.migrations.versions.0036_fraud_decision_function"
        )
        for function in (previous._FUNCTION, previous._UNDO):
            op.execute(function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
