"""The dashboard's home-page reports (paymux.services.reports) on SQLite and PostgreSQL.

Rows are written as they stand in the tables (the reports only read them), each with the
reason it is in or out of the figures; the expected figures are stated by hand below them.
Period: three UTC days from DAY0 (a midnight), the last one being "today".
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from conftest import migrated_database_url
from paymux.services.reports import (
    DAY_US,
    CurrencyTotal,
    Period,
    ReportsService,
    VolumeSeries,
)
from paymux.storage.models import (
    Account,
    Customer,
    Dispute,
    Invoice,
    PaymentIntent,
    Price,
    Product,
    Refund,
    Subscription,
    SubscriptionItem,
)
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
DAY0 = 20_600 * DAY_US  # a UTC midnight (2026-05-27)
H = 3_600 * 1_000_000
NOW = DAY0 + 2 * DAY_US + 5 * H
OTHER = "acct_other_reports"


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"rep_{next(_names)}")


def pi(
    acct: str, n: int, at: int, status: str, currency: str = "usd", received: int = 0, **kw: Any
) -> PaymentIntent:
    return PaymentIntent(
        id=f"pi_rep{n}",
        account_id=acct,
        status=status,
        amount=kw.pop("amount", received or 1000),
        currency=currency,
        amount_received=received,
        capture_method="automatic",
        gateway="fake",
        created_us=at,
        updated_us=at,
        **kw,
    )


def payments(acct: str) -> list[Any]:
    declined = {"code": "card_declined", "decline_code": "insufficient_funds", "type": "card_error"}
    return [
        pi(acct, 1, DAY0 + 1 * H, "succeeded", received=1000),
        pi(acct, 2, DAY0 + 5 * H, "succeeded", received=2000, amount=2500),  # partial capture
        pi(acct, 3, DAY0 + DAY_US, "succeeded", "eur", received=700),
        pi(acct, 4, DAY0 + DAY_US + H, "requires_payment_method", last_payment_error=declined),
        pi(acct, 5, DAY0 + 2 * DAY_US, "requires_payment_method", last_payment_error=declined),
        pi(
            acct,
            6,
            DAY0 + 2 * DAY_US + H,
            "requires_payment_method",
            last_payment_error={"code": "expired_card", "decline_code": None},
        ),
        pi(acct, 7, DAY0 + 2 * DAY_US, "requires_payment_method"),  # never tried: neither
        pi(acct, 12, DAY0 + 2 * DAY_US, "canceled", last_payment_error=None),  # neither
        pi(acct, 8, DAY0 + DAY_US, "succeeded", received=9999, livemode=True),  # live mode
        pi(acct, 9, DAY0 - 1, "succeeded", received=5000),  # before the period
        pi(acct, 10, DAY0 + 3 * DAY_US, "succeeded", received=4000),  # at its end: after
        pi(acct, 13, DAY0 + DAY_US, "requires_capture", amount=800),  # not succeeded yet
        pi(OTHER, 11, DAY0 + DAY_US, "succeeded", received=1234),  # another account
        pi(OTHER, 14, DAY0 + DAY_US, "requires_payment_method", last_payment_error=declined),
    ]


def refunds_and_disputes(acct: str) -> list[Any]:
    def refund(n: int, pi_n: int, amount: int, cur: str, status: str, at: int) -> Refund:
        return Refund(
            id=f"re_rep{n}",
            account_id=acct,
            payment_intent_id=f"pi_rep{pi_n}",
            amount=amount,
            currency=cur,
            status=status,
            created_us=at,
            updated_us=at,
        )

    return [
        refund(1, 1, 500, "usd", "succeeded", DAY0 + DAY_US),
        refund(2, 1, 300, "usd", "failed", DAY0 + DAY_US),  # failed: out
        refund(3, 3, 200, "eur", "succeeded", DAY0 + 2 * DAY_US),
        refund(4, 2, 100, "usd", "pending", DAY0 + 2 * DAY_US),  # pending: out
        refund(5, 9, 900, "usd", "succeeded", DAY0 - DAY_US),  # before the period: out
        Dispute(
            id="dp_rep1",
            account_id=acct,
            payment_intent_id="pi_rep2",
            gateway="fake",
            gateway_reference="dp_ref_1",
            amount=2000,
            currency="usd",
            status="needs_response",
            created_us=DAY0 + 2 * DAY_US,
            updated_us=DAY0 + 2 * DAY_US,
        ),
    ]


def billing(acct: str) -> list[Any]:
    rows: list[Any] = [
        Customer(id="cus_rep", account_id=acct, created_us=DAY0, updated_us=DAY0),
        Product(id="prod_rep", account_id=acct, name="Plan", created_us=DAY0, updated_us=DAY0),
    ]

    def price(
        name: str, cur: str, amount: int | None, interval: str, count: int, **kw: Any
    ) -> Price:
        return Price(
            id=f"price_{name}",
            account_id=acct,
            product_id="prod_rep",
            currency=cur,
            type="recurring",
            unit_amount=amount,
            recurring_interval=interval,
            recurring_interval_count=count,
            recurring_usage_type=kw.pop("usage", "licensed"),
            created_us=DAY0,
            updated_us=DAY0,
            **kw,
        )

    rows += [
        price("monthly", "usd", 1000, "month", 1),
        price("yearly", "usd", 12000, "year", 1),
        price("quarterly", "usd", 3000, "month", 3),
        price("weekly", "eur", 100, "week", 1),
        price("metered", "usd", 50, "month", 1, usage="metered"),
        price("tiered", "usd", None, "month", 1, billing_scheme="tiered", tiers_mode="volume"),
    ]

    def sub(
        name: str, status: str, start: int, ended: int | None = None, cur: str = "usd", **kw: Any
    ) -> Subscription:
        return Subscription(
            id=f"sub_{name}",
            account_id=acct,
            customer_id="cus_rep",
            status=status,
            currency=cur,
            billing_cycle_anchor_us=start,
            start_date_us=start,
            current_period_start_us=start,
            current_period_end_us=start + 30 * DAY_US,
            ended_at_us=ended,
            created_us=start,
            updated_us=start,
            **kw,
        )

    items = itertools.count()

    def item(sub_name: str, price_name: str, qty: int) -> SubscriptionItem:
        return SubscriptionItem(
            id=f"si_rep{next(items)}",
            account_id=acct,
            subscription_id=f"sub_{sub_name}",
            price_id=f"price_{price_name}",
            quantity=qty,
            created_us=DAY0,
        )

    before = DAY0 - 10 * DAY_US
    rows += [
        sub("a", "active", before),
        sub("b", "past_due", before),
        sub("c", "trialing", DAY0 + DAY_US),
        sub("d", "canceled", before, ended=DAY0 + DAY_US),  # churned in the period
        sub("e", "active", DAY0 + DAY_US, cur="eur"),
        sub("f", "incomplete_expired", before, ended=DAY0 + DAY_US),  # never live
        sub("g", "active", before, livemode=True),  # live mode
        sub("h", "canceled", before, ended=DAY0 - DAY_US),  # ended before the period
    ]
    rows += [
        item("a", "monthly", 2),  # 2000 a month
        item("a", "yearly", 1),  # 1000 a month
        item("a", "metered", 7),  # metered: out
        item("b", "quarterly", 1),  # 1000 a month
        item("b", "tiered", 3),  # tiered: out
        item("c", "monthly", 5),  # trialing: out of MRR
        item("d", "monthly", 1),  # canceled: out of MRR
        item("e", "weekly", 1),  # 100 x 52 / 12 = 433.33 -> 433
        item("g", "monthly", 9),  # live mode: out
    ]

    def invoice(
        n: int, status: str, reason: str, attempts: int, remaining: int, cur: str = "usd"
    ) -> Invoice:
        return Invoice(
            id=f"in_rep{n}",
            account_id=acct,
            customer_id="cus_rep",
            subscription_id="sub_b",
            status=status,
            currency=cur,
            billing_reason=reason,
            period_start_us=DAY0,
            period_end_us=DAY0 + 30 * DAY_US,
            attempt_count=attempts,
            amount_remaining=remaining,
            hosted_token=f"tok_rep{n}",
            created_us=DAY0,
            updated_us=DAY0,
        )

    rows += [
        invoice(1, "open", "subscription_cycle", 2, 1000),
        invoice(2, "open", "subscription_cycle", 0, 1000),  # not tried yet: out
        invoice(3, "paid", "subscription_cycle", 1, 0),  # paid: out
        invoice(4, "open", "subscription_create", 1, 1000),  # the first invoice: out
        invoice(5, "open", "subscription_cycle", 1, 433, cur="eur"),
    ]
    return rows


async def seed(h: Harness) -> None:
    acct = h.account
    rows = payments(acct) + billing(acct) + refunds_and_disputes(acct)
    # No ORM relationships order the inserts: parents first, one flush per table.
    order = [Customer, Product, Price, PaymentIntent, Refund, Dispute, Subscription]
    order += [SubscriptionItem, Invoice]
    async with h.app.ctx.db.write() as s:
        s.add(Account(id=OTHER, name="other", created_us=DAY0))
        await s.flush()
        for model in order:
            s.add_all([r for r in rows if type(r) is model])
            await s.flush()


def run(db: str, tmp: Path, check: Any) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp) as h:
            await seed(h)
            await check(h, ReportsService(h.app.ctx))

    asyncio.run(main())


def test_last_days_is_whole_utc_days_ending_with_today() -> None:
    p = Period.last_days(3, NOW)
    assert (p.start_us, p.end_us, p.bucket_us) == (DAY0, DAY0 + 3 * DAY_US, DAY_US)
    assert p.buckets == [DAY0, DAY0 + DAY_US, DAY0 + 2 * DAY_US]
    with pytest.raises(ValueError):
        Period.last_days(0, NOW)


def test_payments_report_counts_volume_declines_refunds_and_disputes(
    db: str, tmp_path: Path
) -> None:
    async def check(h: Harness, reports: ReportsService) -> None:
        r = await reports.payments(h.account, False, Period.last_days(3, NOW))
        assert r.series == [
            VolumeSeries("eur", volume=[0, 700, 0], count=[0, 1, 0]),
            VolumeSeries("usd", volume=[3000, 0, 0], count=[2, 0, 0]),
        ]
        assert (r.succeeded, r.failed) == (3, 3)
        assert r.success_rate == Fraction(1, 2)
        assert r.declines == [("insufficient_funds", 2), ("expired_card", 1)]
        assert r.refunds == [CurrencyTotal("eur", 1, 200), CurrencyTotal("usd", 1, 500)]
        assert r.disputes == [CurrencyTotal("usd", 1, 2000)]

    run(db, tmp_path, check)


def test_live_mode_sees_only_live_payments(db: str, tmp_path: Path) -> None:
    async def check(h: Harness, reports: ReportsService) -> None:
        r = await reports.payments(h.account, True, Period.last_days(3, NOW))
        assert r.series == [VolumeSeries("usd", volume=[0, 9999, 0], count=[0, 1, 0])]
        assert (r.succeeded, r.failed, r.declines) == (1, 0, [])
        assert (r.refunds, r.disputes) == ([], [])
        empty = await reports.payments(h.account, True, Period.last_days(1, DAY0 - 5 * DAY_US))
        assert empty.series == [] and empty.success_rate is None

    run(db, tmp_path, check)


def test_billing_report_mrr_active_churn_and_dunning(db: str, tmp_path: Path) -> None:
    async def check(h: Harness, reports: ReportsService) -> None:
        b = await reports.billing(h.account, False, Period.last_days(3, NOW))
        assert b.mrr == [CurrencyTotal("eur", 1, 433), CurrencyTotal("usd", 2, 4000)]
        assert b.active_subscriptions == 4  # a, b, c, e
        assert (b.churned, b.live_at_start) == (1, 3)  # d of a, b, d
        assert b.churn_rate == Fraction(1, 3)
        assert b.dunning == [CurrencyTotal("eur", 1, 433), CurrencyTotal("usd", 1, 1000)]
        live = await reports.billing(h.account, True, Period.last_days(3, NOW))
        assert live.mrr == [CurrencyTotal("usd", 1, 9000)]
        assert (live.active_subscriptions, live.churned, live.dunning) == (1, 0, [])

    run(db, tmp_path, check)
