"""Fraud rules: how fast the evaluator decides, and what a decision adds to a payment.

Prints:

1. rule evaluations per second with 50 rules: a payment matching none of them, so every
   rule is evaluated (``RuleSet.decide``, pure, one process, one core);
2. the added latency per payment, p50/p99, of the fraud decision as the confirm makes it
   (``FraudEngine.screen_in``, in the write transaction that starts the attempt: the keys'
   lock, the velocity counts and the rules' version in one statement, the rule set
   (cached), the list look-up, the facts, the score, the rules, and the attempt counted;
   on PostgreSQL the intent's lock, the keys' lock, the read and the attempt counted are one
   call, migrations 0036, 0037 and 0039, the first statement of the attempt's transaction:
   its BEGIN is sent before it, and not timed)
   on each database asked for (a SQLite file; PostgreSQL in a throwaway cluster) with the
   paymux schema, and of the velocity settle that the payment's settling transaction adds:
   the settle has no statement of its own (migration 0038: the intent's UPDATE that sets its
   small ``fraud_settle`` column fires a trigger that settles its keys), so what fraud adds
   there is that UPDATE with the settle against the same UPDATE without fraud's column
   (what a payment without fraud writes), both timed in each payment's settling
   transaction (after its BEGIN and the intent's lock), in turn first; "added per payment"
   is, payment by payment, the decision's wall time + (the UPDATE with the record - the
   UPDATE without it), then its p50/p99;
   with the decision's CPU time (this process's, the SQLite calls included: a figure a
   loaded machine inflates less than wall time) and its statements per payment, each with
   its mean time (counted by SQLAlchemy events and the driver layer's observers:
   ``storage/driver.py``); on PostgreSQL, the call's own run inside the server and the
   pages it touches (its last 500 calls replayed under ``EXPLAIN ANALYZE``, rolled back),
   and the same of a block's undo after each of them; and the settle's UPDATE replayed
   the same way, with the settle (the trigger's own time from the plan's ``Triggers``) and
   without fraud's column; and the mean size of the decision's record and of the settle
   (compact JSON text, bytes);
3. the velocity read of one key hammered with 10,000 and 100,000 distinct cards in a day
   (p50/p99, its CPU, on PostgreSQL the server's execution time), and a decision's read and
   write of that key.

Run: ``python bench/fraud.py [--payments 20000] [--rules 50] [--backends sqlite,postgres]
[--skip-flood | --flood-only]``. The decisions run on the event loop ``paymux serve`` runs on
(uvloop where it can be imported, cli.py), which it prints. Figures go to docs/benchmarks.md;
on a shared machine they vary from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import databases, loadavg

from paymux import heap
from paymux.cli import _event_loop_and_parser
from paymux.config import Settings
from paymux.fraud import velocity
from paymux.fraud.decisions import FraudEngine
from paymux.fraud.evaluate import RuleSet, compile_rule
from paymux.fraud.language import parse_rule
from paymux.fraud.request import PayerRequest, payer_request
from paymux.fraud.rules import FraudRules
from paymux.fraud.score import risk_score
from paymux.services.context import Context
from paymux.services.payments import PaymentsService
from paymux.storage import driver
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade
from paymux.storage.models import (
    Account,
    FraudRule,
    FraudVelocityBucket,
    FraudVelocityCard,
    PaymentIntent,
    PaymentMethod,
)

_TEMPLATES = (
    "block if :card_country: != :ip_country: and :amount_in_usd: > {n}000",
    "review if :email_domain: in @disposable_domains and :amount: > {n}00",
    "block if :declines_per_ip_hourly: > {n} and :distinct_cards_per_ip_hourly: > 3",
    "request_3ds if :amount_in_usd: > {n}50 and not :card_funding: = 'debit'",
    "review if :card_brand: in ('amex', 'discover', 'jcb') and :amount: >= {n}0000",
    "block if is_missing(:email:) and :amount_in_usd: > {n}999",
    "allow if :customer: = 'cus_vip{n}'",
    "block if :card_bin: in @blocked_bins_{n}",
    "review if (:ip_country: = 'ZZ' or :billing_address_country: = 'ZZ') and :amount: > {n}",
    "block if :payments_per_card_fingerprint_10m: > {n}0",
)


def fifty_rules(count: int) -> list[Any]:
    return [
        compile_rule(parse_rule(_TEMPLATES[i % len(_TEMPLATES)].format(n=i + 1)), id=f"r{i}")
        for i in range(count)
    ]


FACTS: dict[str, Any] = {
    "amount": 2500,
    "amount_in_usd": Decimal("25.00"),
    "currency": "usd",
    "card_brand": "visa",
    "card_funding": "credit",
    "card_country": "US",
    "ip_country": "US",
    "card_fingerprint": "fp_bench",
    "card_bin": "424242",
    "email": "payer@example.com",
    "email_domain": "example.com",
    "customer": "cus_123",
    "billing_address_country": "US",
    "declines_per_ip_hourly": 0,
    "distinct_cards_per_ip_hourly": 1,
    "payments_per_card_fingerprint_10m": 1,
}
LISTS = {"disposable_domains": frozenset({"mailinator.com"})}


def bench_evaluator(rules: int, payments: int) -> None:
    ruleset = RuleSet(fifty_rules(rules))
    assert ruleset.decide(FACTS, LISTS).rule is None  # nothing matches: every rule runs
    start = time.perf_counter()
    for _ in range(payments):
        ruleset.decide(FACTS, LISTS)
    elapsed = time.perf_counter() - start
    print(f"evaluator: {rules} rules, {payments} payments in {elapsed:.3f} s")
    print(f"  decisions/s:        {payments / elapsed:>12,.0f}")
    print(f"  rule evaluations/s: {payments * rules / elapsed:>12,.0f}")
    per_payment = []
    for _ in range(min(payments, 20000)):
        t0 = time.perf_counter()
        facts = dict(FACTS)
        facts["risk_score"] = risk_score(facts)
        ruleset.decide(facts, LISTS)
        per_payment.append((time.perf_counter() - t0) * 1000)
    print(
        f"  added CPU per payment (score + {rules} rules): p50 {_pct(per_payment, 50):.3f} ms, "
        f"p99 {_pct(per_payment, 99):.3f} ms"
    )


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


# The attempt's first statement before the decision (the confirm's is the intent's locked
# read): ``bench_screen``.
_FIRST = driver.Statement("SELECT 1")
# The settling transaction's statements (services/attempts.py ``settle_payment``): the
# intent's lock, then its UPDATE (``_store``) of what a settle changes, with the attempt's
# settle (``fraud_settle``: migration 0038's trigger settles its keys) or without it.
_LOCK_INTENT = driver.Statement(
    "SELECT id FROM payment_intents WHERE id = :b_id FOR UPDATE",
    sqlite="SELECT id FROM payment_intents WHERE id = :b_id",  # its writer is the only one
)
_SETTLED = ("status", "amount_received", "updated_us")
_REOPEN = driver.Statement(
    "UPDATE payment_intents SET status = 'requires_confirmation' WHERE id = :b_id"
)


def _intent_update(columns: tuple[str, ...], prefix: str = "") -> driver.Statement:
    c = PaymentIntent.__table__.c
    return driver.Statement(
        prefix
        + "UPDATE payment_intents SET "
        + ", ".join(f"{column} = :v_{column}" for column in columns)
        + " WHERE id = :b_id",
        binds={f"v_{column}": c[column].type for column in columns},
    )


# The decision's record and its settle reset, as the confirm's start writes them.
_RECORD = _intent_update(("fraud_outcome", "fraud_settle"))
_SETTLE_WITH = _intent_update((*_SETTLED, "fraud_settle"))
_SETTLE_WITHOUT = _intent_update(_SETTLED)


def _settled_params(now_us: int) -> dict[str, Any]:
    return {
        "v_status": "succeeded",
        "v_amount_received": 2500,
        "v_updated_us": now_us,
        "b_id": "pi_bench",
    }


async def bench_screen(url: str, backend: str, rules: int, payments: int) -> None:
    await asyncio.to_thread(upgrade, url)
    settings = Settings(database_url=url, fraud_usd_rates="EUR=1.08")
    db = Database(url)
    ctx = Context(db=db, gateways=None, settings=settings)  # type: ignore[arg-type]
    engine = FraudEngine(ctx, FraudRules(ctx))
    async with db.write() as s:
        s.add(Account(id="acct_bench", name="bench", created_us=ctx.now_us()))
        for i in range(rules):  # the account's own rules, as stored
            rule_text = _TEMPLATES[i % len(_TEMPLATES)].format(n=i + 1)
            if "@" in rule_text:  # lists would need to exist: use a plain rule instead
                rule_text = f"review if :amount: > {i + 1}0000000"
            s.add(
                FraudRule(
                    id=f"frr_{i}",
                    account_id="acct_bench",
                    livemode=False,
                    action=parse_rule(rule_text).action.value,
                    predicate=rule_text,
                    priority=i,
                    status="active",
                    metadata_={},
                    created_us=1,
                    updated_us=1,
                )
            )
    async with db.write() as s:
        # The intent's row, as a confirm finds it (the settle's UPDATE writes it).
        s.add(
            PaymentIntent(
                id="pi_bench",
                account_id="acct_bench",
                status="requires_confirmation",
                amount=2500,
                currency="eur",
                capture_method="automatic",
                gateway="sandbox",
                livemode=False,
                off_session=False,
                confirm_count=0,
                metadata_={},
                created_us=ctx.now_us(),
                updated_us=ctx.now_us(),
            )
        )
    # The intent as the confirm decides on it: its earlier read's row (``_read_intent``, a
    # named tuple of the model's attributes, as ``retrieve`` reads it), not an ORM object.
    pi = await PaymentsService(ctx)._read_intent("acct_bench", "pi_bench")
    screen_ms: list[float] = []
    cpu_ms: list[float] = []
    thread_ms: list[float] = []
    with_ms: list[float] = []  # the settle's UPDATE of the intent with its fraud_settle
    without_ms: list[float] = []  # the same UPDATE without fraud's column
    settles: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (record, settle)
    sizes: list[tuple[int, int]] = []  # (record, settle): bytes of compact JSON text
    statements: dict[str, list[float]] = collections.defaultdict(list)
    counting = [False]

    @event.listens_for(db.writer.sync_engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    @event.listens_for(db.writer.sync_engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if counting[0]:
            took = (time.perf_counter() - conn.info["bench_t0"]) * 1000
            statements[" ".join(sql.split())[:72]].append(took)

    def _driver(sql: str, took: float) -> None:
        if counting[0]:
            statements[" ".join(sql.split())[:72]].append(took * 1000)

    stop_observing = driver.observe(_driver)
    # The decision's call and its parameters (PostgreSQL).
    calls: list[tuple[driver.Statement, dict[str, Any]]] = []
    real_fetch = velocity.fetch

    async def _call(s: Any, statement: driver.Statement, params: dict[str, Any]) -> Any:
        if statement in (velocity._LOCKED_READ, velocity._GUARDED_READ):
            calls.append((statement, dict(params)))
        return await real_fetch(s, statement, params)

    velocity.fetch = _call  # type: ignore[assignment]
    # Set up: the heap settled as an API process settles it once started (paymux/heap.py),
    # so the collector's passes are the size they are there.
    heap.settle()
    for i in range(payments):
        pm = PaymentMethod(
            id=f"pm_{i}",
            card_brand="visa",
            card_country="US",
            card_funding="credit",
            card_fingerprint=f"fp_{i % 500}",
        )
        payer_request.set(PayerRequest(f"192.0.2.{i % 200}", "US", "bench"))
        # As the confirm decides: in the write transaction that starts the attempt
        # (its BEGIN and COMMIT are the attempt's, paid with or without a decision).
        async with db.write() as s:
            # The attempt's BEGIN (paid with or without a decision): on SQLite the
            # connection's BEGIN IMMEDIATE; on PostgreSQL sent at the checkout of a pooled
            # connection (storage/db.py: the BEGIN is the pool's ping), but by SQLAlchemy's
            # asyncpg adapter before the transaction's first statement on a new one, so
            # without a statement here the decision's figures could include the BEGIN's
            # round trip. The confirm's first statement is then, on PostgreSQL, the decision's
            # call, which locks the intent (``as_read``, migration 0039); on SQLite the
            # intent's read, then the decision.
            await driver.fetch(s, _FIRST, {})
            counting[0] = True
            t0, c0, h0 = time.perf_counter(), time.process_time(), time.thread_time()
            changes, blocked = await engine.screen_in(
                s, "acct_bench", pi, pm, as_read=not db.is_sqlite
            )
            t1, c1, h1 = time.perf_counter(), time.process_time(), time.thread_time()
            counting[0] = False
            assert blocked is None
            # The attempt's record, written with the attempt (as the confirm's start writes
            # it; not timed).
            record = changes["fraud_outcome"]
            await driver.execute(
                s, _RECORD, {"v_fraud_outcome": record, "v_fraud_settle": None, "b_id": "pi_bench"}
            )
        settle = velocity.settle_record(record["keys"].values(), record["minute"], declined=False)
        settles.append((record, settle))
        sizes.append((len(_compact(record)), len(_compact(settle))))
        # The settling transaction (its BEGIN and the intent's lock first, paid with or
        # without fraud): the intent's UPDATE with the settle (the trigger settles the keys)
        # and the same UPDATE without fraud's column, in turn first.
        async with db.write() as s:
            await driver.fetch(s, _LOCK_INTENT, {"b_id": "pi_bench"})
            for with_fraud in (i % 2 == 0, i % 2 == 1):
                params = _settled_params(ctx.now_us())
                if with_fraud:
                    params["v_fraud_settle"] = settle
                t2 = time.perf_counter()
                await driver.execute(s, _SETTLE_WITH if with_fraud else _SETTLE_WITHOUT, params)
                (with_ms if with_fraud else without_ms).append((time.perf_counter() - t2) * 1000)
            # Back as the next confirm finds it (not timed).
            await driver.execute(s, _REOPEN, {"b_id": "pi_bench"})
        screen_ms.append((t1 - t0) * 1000)
        cpu_ms.append((c1 - c0) * 1000)
        thread_ms.append((h1 - h0) * 1000)
    stop_observing()
    velocity.fetch = real_fetch  # type: ignore[assignment]
    inside = await _inside_postgres(db, calls[-500:]) if calls else ""
    if not db.is_sqlite:
        inside += "\n" + await _settle_inside_postgres(db, settles[-500:])
    await db.dispose()
    print(
        f"confirm's fraud decision on {backend} ({rules} rules + defaults, {payments} payments,"
        f" 1-min load {loadavg():.1f})"
    )
    print(
        f"  decision in the attempt's transaction (reads + decide + the attempt counted): "
        f"p50 {_pct(screen_ms, 50):.3f} ms, "
        f"p99 {_pct(screen_ms, 99):.3f} ms"
    )
    print(
        f"  the decision's CPU time (this process): mean {statistics.fmean(cpu_ms):.3f} ms, "
        f"p50 {_pct(cpu_ms, 50):.3f} ms, p99 {_pct(cpu_ms, 99):.3f} ms"
    )
    print(  # without other threads' CPU (SQLite's background checkpoints: one per 200 commits)
        f"  the decision's CPU time (its thread): mean {statistics.fmean(thread_ms):.3f} ms, "
        f"p50 {_pct(thread_ms, 50):.3f} ms, p99 {_pct(thread_ms, 99):.3f} ms"
    )
    added_settle = [a - b for a, b in zip(with_ms, without_ms, strict=True)]
    print(
        f"  settle: the intent's UPDATE with fraud_settle (trigger): "
        f"p50 {_pct(with_ms, 50):.3f} ms, p99 {_pct(with_ms, 99):.3f} ms; without fraud's "
        f"column: p50 {_pct(without_ms, 50):.3f} ms, p99 {_pct(without_ms, 99):.3f} ms"
    )
    print(  # per payment, both in its settling transaction
        f"  settle's added time per payment (with - without): "
        f"p50 {_pct(added_settle, 50):.3f} ms, p99 {_pct(added_settle, 99):.3f} ms"
    )
    added = [a + b for a, b in zip(screen_ms, added_settle, strict=True)]
    print(  # what a payment waits for fraud in all: the decision, then the settle's part
        f"  added per payment (decision + settle's added time): p50 {_pct(added, 50):.3f} ms, "
        f"p99 {_pct(added, 99):.3f} ms"
    )
    print(
        f"  the decision's record (fraud_outcome): mean {statistics.fmean(r for r, _ in sizes):.0f}"
        f" bytes; the settle (fraud_settle): mean {statistics.fmean(t for _, t in sizes):.0f}"
        " bytes (compact JSON text)"
    )
    total = sum(len(took) for took in statements.values())
    print(f"  statements per decision: {total / payments:.2f}")
    for sql, took in sorted(statements.items(), key=lambda kv: -len(kv[1])):
        print(f"    {len(took) / payments:.2f} x {statistics.fmean(took):.3f} ms  {sql}")
    if inside:
        print(inside)


class _Undone(Exception):
    """Rolls back a replayed call's transaction."""


def _plan(plan: Any) -> Any:
    """An ``EXPLAIN (FORMAT JSON)``'s plan, parsed (asyncpg gives it as text)."""
    return json.loads(plan) if isinstance(plan, str) else plan


def _explained(plan: Any) -> tuple[float, int]:
    """An ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``'s execution time and the pages its top
    node touched (found in shared buffers or read; a function's nested statements
    included)."""
    top = _plan(plan)
    node = top[0]["Plan"]
    touched = int(node["Shared Hit Blocks"] + node["Shared Read Blocks"])
    return float(top[0]["Execution Time"]), touched


def _figures(name: str, calls: int, took: list[float], pages: list[int]) -> str:
    return (
        f"  {name} inside PostgreSQL ({calls} calls replayed, EXPLAIN ANALYZE):"
        f" mean {statistics.fmean(took):.3f} ms, p50 {_pct(took, 50):.3f} ms,"
        f" p99 {_pct(took, 99):.3f} ms; pages touched per call {statistics.fmean(pages):.1f}"
    )


async def _rolled_back(db: Database, work: Any) -> Any:
    """The EXPLAIN plan ``work(s)`` gives, in a write transaction rolled back (an explained
    ANALYZE runs the call: nothing of it is kept)."""
    try:
        async with db.write() as s:
            rows = await work(s)
            raise _Undone(rows[0][0])
    except _Undone as undone:
        return undone.args[0]


async def _inside_postgres(
    db: Database, calls: list[tuple[driver.Statement, dict[str, Any]]]
) -> str:
    """The decision's call (``paymux_fraud_decision_start``) replayed with the parameters of
    the bench's last decisions, each under ``EXPLAIN (ANALYZE, BUFFERS)`` in a transaction
    rolled back: its run inside PostgreSQL (no round trip, no client) and the pages it
    touches, the nested statements' included (a count, which a loaded machine does not
    change). Then each call again, as a block would follow it: the call, then its undo
    (``paymux_fraud_decision_undo``, ``velocity.unreserve``'s arguments) explained, rolled
    back."""
    explains = {
        statement.sql: driver.Statement(
            "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) " + statement.sql
        )
        for statement in (velocity._LOCKED_READ, velocity._GUARDED_READ)
    }
    explain_undo = driver.Statement(
        "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) " + velocity._UNDO.sql
    )
    took: list[float] = []
    pages: list[int] = []
    undo_took: list[float] = []
    undo_pages: list[int] = []
    for statement, params in calls:
        explain = explains[statement.sql]
        plan = await _rolled_back(db, lambda s, p=params, e=explain: driver.fetch(s, e, p))
        run, touched = _explained(plan)
        took.append(run)
        pages.append(touched)
        if params["reserve_minute"] is None:
            continue

        async def undone(
            s: Any, p: dict[str, Any] = params, call: driver.Statement = statement
        ) -> Any:
            rows = await driver.fetch(s, call, p)
            undo = velocity.undo_params(
                p["account_id"],
                p["livemode"],
                p["keys"],
                p["card"],
                p["card_keys"],
                p["reserve_minute"],
                {row[1]: int(row[2]) for row in rows if row[0] == "p"},
            )
            return await driver.fetch(s, explain_undo, undo)

        run, touched = _explained(await _rolled_back(db, undone))
        undo_took.append(run)
        undo_pages.append(touched)
    figures = [_figures("the call's run", len(calls), took, pages)]
    if undo_took:
        figures.append(_figures("a block's undo", len(undo_took), undo_took, undo_pages))
    return "\n".join(figures)


async def _settle_inside_postgres(
    db: Database, settles: list[tuple[dict[str, Any], dict[str, Any]]]
) -> str:
    """The settle's UPDATE of the intent replayed for the bench's last payments: the record
    put back as the decision wrote it (its settle reset, committed), then, in a transaction
    rolled back, the UPDATE with the settle under ``EXPLAIN (ANALYZE, FORMAT JSON)``: its
    run inside PostgreSQL, the trigger's included, and the trigger's own time (the plan's
    ``Triggers`` entry); and the same UPDATE without fraud's column, explained the same
    way."""
    with_fraud = _intent_update((*_SETTLED, "fraud_settle"), _EXPLAIN)
    without = _intent_update(_SETTLED, _EXPLAIN)
    runs: list[float] = []
    triggers: list[float] = []
    bare: list[float] = []
    for record, settle in settles:
        # The record as the attempt's transaction committed it (a row version of an earlier
        # transaction, as the settle finds it: else PostgreSQL checks the row's foreign
        # keys again, which the settle does not pay).
        async with db.write() as s:
            await driver.execute(
                s, _RECORD, {"v_fraud_outcome": record, "v_fraud_settle": None, "b_id": "pi_bench"}
            )
        params = _settled_params(1) | {"v_fraud_settle": settle}
        plan = await _rolled_back(db, lambda s, p=params: driver.fetch(s, with_fraud, p))
        top = _plan(plan)
        runs.append(float(top[0]["Execution Time"]))
        fired = [t for t in top[0].get("Triggers") or [] if t["Trigger Name"] == _TRIGGER]
        assert [t["Calls"] for t in fired] == [1], top  # the settle set: once
        triggers.append(float(fired[0]["Time"]))
        plan = await _rolled_back(db, lambda s: driver.fetch(s, without, _settled_params(1)))
        top = _plan(plan)
        bare.append(float(top[0]["Execution Time"]))
    return (
        f"  the settle's UPDATE inside PostgreSQL ({len(settles)} replayed, EXPLAIN ANALYZE):"
        f" with fraud_settle mean {statistics.fmean(runs):.3f} ms,"
        f" p50 {_pct(runs, 50):.3f} ms, p99 {_pct(runs, 99):.3f} ms (the trigger's own"
        f" p50 {_pct(triggers, 50):.3f} ms, p99 {_pct(triggers, 99):.3f} ms); without"
        f" fraud's column mean {statistics.fmean(bare):.3f} ms, p50 {_pct(bare, 50):.3f} ms,"
        f" p99 {_pct(bare, 99):.3f} ms"
    )


_EXPLAIN = "EXPLAIN (ANALYZE, FORMAT JSON) "


def _compact(value: Any) -> bytes:
    """A JSON column's value as compact text (its size as stored, near enough)."""
    return json.dumps(value, separators=(",", ":")).encode()


_TRIGGER = "paymux_intent_fraud_settle"  # migration 0038's


async def bench_velocity_read(url: str, backend: str, attempts: int) -> None:
    """The velocity read for one key an attacker has hammered with ``attempts`` attempts
    over a day, each with a card of its own: a day of minute rows (with the distinct cards
    last tried in each minute, ``cards``), and the card rows; then what a decision of that
    key reads (``decision_read``: the counts, the rules' version, the new card's last
    minutes) and writes (``reserve``: the attempt and the card counted), rolled back."""
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    now = 1_800_000_000_000_000
    minute = velocity.minute_of(now)
    key = velocity.digest("ip", "198.51.100.7")
    per_minute = max(1, attempts // 1440)
    # Card i was last tried in minute ``minute - i % 1440``: each minute's distinct cards.
    cards_in = collections.Counter(i % 1440 for i in range(attempts))
    async with db.write() as s:
        await s.execute(
            insert(FraudVelocityBucket),
            [
                {
                    "account_id": "a",
                    "livemode": False,
                    "key": key,
                    "minute": minute - m,
                    "attempts": per_minute,
                    "declines": per_minute // 2,
                    "settled": per_minute,
                    "cards": cards_in[m],
                }
                for m in range(1440)
            ],
        )
        cards = [
            {
                "account_id": "a",
                "livemode": False,
                "key": key,
                "card": f"{i:064x}",
                "minute": minute - i % 1440,
            }
            for i in range(attempts)
        ]
        for i in range(0, len(cards), 5000):
            await s.execute(insert(FraudVelocityCard), cards[i : i + 5000])
    if backend == "postgres":
        async with db.write() as s:
            await s.execute(text("ANALYZE"))
    took, took_cpu, decided, cpu, server = [], [], [], [], []
    async with db.read() as s:
        facts = await velocity.counts(s, "a", False, {"ip": key}, now)
        assert facts["distinct_cards_per_ip_daily"] == attempts, facts
        for _ in range(40):
            t0, c0 = time.perf_counter(), time.process_time()
            await velocity.counts(s, "a", False, {"ip": key}, now)
            took.append((time.perf_counter() - t0) * 1000)
            took_cpu.append((time.process_time() - c0) * 1000)
        if backend == "postgres":  # the server's own time for the read (EXPLAIN ANALYZE)
            read = velocity._read(1, 0, 0, parts=("b",))
            params = velocity._params("a", False, [key], now)
            explain = driver.Statement("EXPLAIN (ANALYZE, FORMAT JSON) " + read.sql)
            for _ in range(10):
                plan = await driver.fetch(s, explain, params)
                server.append(float(plan[0][0][0]["Execution Time"]))
    keys = {"card_fingerprint": "f" * 64, "ip": key}
    for _ in range(40):
        async with db.write() as s:
            await driver.fetch(s, _FIRST, {})  # the BEGIN before the decision, as above
            t0, c0 = time.perf_counter(), time.process_time()
            # As the confirm: on PostgreSQL the call reserves too (migrations 0036, 0037).
            read = await velocity.locked_decision_read(
                s, "a", False, keys, now, (), (), is_sqlite=db.is_sqlite, reserve=True
            )
            if read.reserved is None:
                await velocity.reserve(
                    s,
                    "a",
                    False,
                    keys,
                    keys["card_fingerprint"],
                    now_us=now,
                    is_sqlite=db.is_sqlite,
                    prune=read.stale,
                    previous=read.cards,
                )
            decided.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            await s.rollback()
    await db.dispose()
    on_server = f", the server's execution p50 {_pct(server, 50):.3f} ms" if server else ""
    print(
        f"velocity of one key after {attempts:,} attempts with distinct cards in a day "
        f"(1,440 minute rows) on {backend}: the read p50 {_pct(took, 50):.3f} ms, "
        f"p99 {_pct(took, 99):.3f} ms (CPU p50 {_pct(took_cpu, 50):.3f} ms{on_server}); "
        f"a decision's read + write of that key p50 "
        f"{_pct(decided, 50):.3f} ms, p99 {_pct(decided, 99):.3f} ms "
        f"(CPU p50 {_pct(cpu, 50):.3f} ms)"
    )


def _event_loop() -> tuple[str, Any]:
    """The event loop ``paymux serve`` runs on (its own choice: cli.py), and the function that
    runs a coroutine on it: a decision is timed on the loop that makes it."""
    loop, _ = _event_loop_and_parser()
    if loop == "uvloop":
        import uvloop

        return loop, uvloop.run
    return loop, asyncio.run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20000)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--screen-payments", type=int, default=3000)
    parser.add_argument("--backends", default="sqlite", help="sqlite,postgres")
    parser.add_argument("--skip-flood", action="store_true", help="no 100,000-card read")
    parser.add_argument("--flood-only", action="store_true", help="the 100,000-card read only")
    args = parser.parse_args()
    backends = args.backends.split(",")
    loop, run = _event_loop()
    print(f"event loop: {loop} (as paymux serve's)")
    if not args.flood_only:
        bench_evaluator(args.rules, args.payments)
    with databases(backends, prefix="paymux-fraud-") as dbs:
        for backend in backends:
            if not args.flood_only:
                url = dbs.url(backend, "fraud_screen")
                run(bench_screen(url, backend, args.rules, args.screen_payments))
            if args.skip_flood:
                continue
            for attempts in (10_000, 100_000):
                url = dbs.url(backend, f"fraud_flood_{attempts}")
                run(bench_velocity_read(url, backend, attempts))


if __name__ == "__main__":
    main()
