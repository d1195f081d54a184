"""Reports for the dashboard's home page: what the payments and billing tables add up to over a
period, in one mode (test or live), for one account. Read-only, one read transaction each.

Definitions (the dashboard shows them as stated here):

- A payment belongs to the period by its ``created`` time, ``[start, end)``, in UTC buckets.
- **Succeeded**: status ``succeeded``. **Volume**: the sum of their ``amount_received``, per
  currency (minor units; currencies are never added together).
- **Failed**: any other status with a ``last_payment_error`` (a decline, a fraud block, an
  authentication failure). **Success rate**: succeeded / (succeeded + failed); payments that
  were never tried (no error, not succeeded) do not count either way.
- **Declines by reason**: failed payments grouped by the error taxonomy's ``decline_code``,
  or its ``code`` when there is none (``expired_card``, ``incorrect_cvc``).
- **Refunds**: succeeded refunds created in the period; **disputes**: disputes opened in it.
- **MRR**: for subscriptions ``active`` or ``past_due``, each per-unit recurring item's
  ``unit_amount x quantity`` as a monthly amount (a year is 12 months, a week 52/12 of a
  month, a day 365/12), summed per currency and rounded half-even to a minor unit at the end.
  Tiered and metered prices and discounts are left out (their amount depends on usage).
- **Active subscriptions**: status ``active``, ``past_due`` or ``trialing`` now.
- **Churn**: subscriptions that ended (``ended_at``) in the period, over those live at its
  start (started before it, not ended before it, never ``incomplete_expired``).
- **Failed renewals in dunning**: open renewal invoices (``subscription_cycle``) with at least
  one failed payment attempt, and what they still owe, per currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.services.context import Context
from paymux.storage.models import (
    Dispute,
    Invoice,
    PaymentIntent,
    Price,
    Refund,
    Subscription,
    SubscriptionItem,
)

__all__ = [
    "DAY_US",
    "BillingReport",
    "CurrencyTotal",
    "PaymentsReport",
    "Period",
    "ReportsService",
    "VolumeSeries",
]

DAY_US = 86_400 * 1_000_000
_MRR_STATUSES = ("active", "past_due")
_ACTIVE_STATUSES = ("active", "past_due", "trialing")
# Months per one interval of each recurring interval.
_MONTHS: dict[str, Fraction] = {
    "month": Fraction(1),
    "year": Fraction(12),
    "week": Fraction(12, 52),
    "day": Fraction(12, 365),
}


@dataclass(frozen=True)
class Period:
    """``[start_us, end_us)`` cut into buckets of ``bucket_us`` from ``start_us``."""

    start_us: int
    end_us: int
    bucket_us: int = DAY_US

    @classmethod
    def last_days(cls, days: int, now_us: int) -> Period:
        """The ``days`` UTC days ending with today's (today included, to its midnight)."""
        if days < 1:
            raise ValueError("a period has at least one day")
        end = (now_us // DAY_US + 1) * DAY_US
        return cls(end - days * DAY_US, end, DAY_US)

    @property
    def buckets(self) -> list[int]:
        """Each bucket's start."""
        return list(range(self.start_us, self.end_us, self.bucket_us))


@dataclass(frozen=True)
class VolumeSeries:
    """One currency's succeeded payments per bucket: ``volume`` (minor units) and ``count``."""

    currency: str
    volume: list[int]
    count: list[int]


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    count: int
    amount: int


@dataclass(frozen=True)
class PaymentsReport:
    period: Period
    livemode: bool
    series: list[VolumeSeries]  # by currency, alphabetical
    succeeded: int
    failed: int
    declines: list[tuple[str, int]]  # (reason, count), most first, then by reason
    refunds: list[CurrencyTotal]
    disputes: list[CurrencyTotal]

    @property
    def success_rate(self) -> Fraction | None:
        """succeeded / (succeeded + failed); None when nothing was tried."""
        tried = self.succeeded + self.failed
        return Fraction(self.succeeded, tried) if tried else None


@dataclass(frozen=True)
class BillingReport:
    livemode: bool
    mrr: list[CurrencyTotal]  # count: subscriptions contributing
    active_subscriptions: int
    churned: int
    live_at_start: int
    dunning: list[CurrencyTotal]  # count: invoices; amount: still owed

    @property
    def churn_rate(self) -> Fraction | None:
        return Fraction(self.churned, self.live_at_start) if self.live_at_start else None


def _round_half_even(value: Fraction) -> int:
    return round(value)  # Fraction.__round__ rounds half to even


class ReportsService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def payments(self, account_id: str, livemode: bool, period: Period) -> PaymentsReport:
        async with self.ctx.db.read() as s:
            series = await self._volume(s, account_id, livemode, period)
            declines = await self._declines(s, account_id, livemode, period)
            refunds = await self._totals(
                s, Refund, account_id, livemode, period, succeeded_only=True
            )
            disputes = await self._totals(s, Dispute, account_id, livemode, period)
        succeeded = sum(sum(v.count) for v in series)
        failed = sum(c for _, c in declines)
        return PaymentsReport(
            period, livemode, series, succeeded, failed, declines, refunds, disputes
        )

    async def _volume(
        self, s: AsyncSession, account_id: str, livemode: bool, period: Period
    ) -> list[VolumeSeries]:
        pi = PaymentIntent
        bucket = ((pi.created_us - period.start_us) // period.bucket_us).label("bucket")
        rows = await s.execute(
            select(pi.currency, bucket, func.count(), func.sum(pi.amount_received))
            .where(  # an index-only scan of ix_payment_intents_volume (0029) on PostgreSQL
                pi.account_id == account_id,
                pi.livemode == livemode,
                pi.status == "succeeded",
                pi.created_us >= period.start_us,
                pi.created_us < period.end_us,
            )
            .group_by(pi.currency, bucket)
        )
        n = len(period.buckets)
        by_currency: dict[str, VolumeSeries] = {}
        for currency, b, count, amount in rows:
            cur = str(currency).lower()
            series = by_currency.setdefault(cur, VolumeSeries(cur, [0] * n, [0] * n))
            series.volume[int(b)] += int(amount or 0)
            series.count[int(b)] += int(count)
        return [by_currency[c] for c in sorted(by_currency)]

    async def _declines(
        self, s: AsyncSession, account_id: str, livemode: bool, period: Period
    ) -> list[tuple[str, int]]:
        pi = PaymentIntent
        code = pi.last_payment_error["code"].as_string()
        reason = func.coalesce(pi.last_payment_error["decline_code"].as_string(), code)
        rows = await s.execute(
            select(reason, func.count())
            .where(
                pi.account_id == account_id,
                pi.livemode == livemode,
                pi.created_us >= period.start_us,
                pi.created_us < period.end_us,
                # SQL NULL first: the partial index of failed payments (migration 0029)
                pi.last_payment_error.is_not(None),
                pi.status != "succeeded",
                code.is_not(None),
            )
            .group_by(reason)
        )
        return sorted(((str(r), int(c)) for r, c in rows), key=lambda x: (-x[1], x[0]))

    async def _totals(
        self,
        s: AsyncSession,
        model: type[Refund] | type[Dispute],
        account_id: str,
        livemode: bool,
        period: Period,
        *,
        succeeded_only: bool = False,
    ) -> list[CurrencyTotal]:
        q = (
            select(model.currency, func.count(), func.sum(model.amount))
            .where(
                model.account_id == account_id,
                model.created_us >= period.start_us,
                model.created_us < period.end_us,
                model.livemode == livemode,
            )
            .group_by(model.currency)
        )
        if succeeded_only:
            q = q.where(model.status == "succeeded")
        rows = await s.execute(q)
        totals = [CurrencyTotal(str(c).lower(), int(n), int(a or 0)) for c, n, a in rows]
        return sorted(totals, key=lambda t: t.currency)

    async def billing(self, account_id: str, livemode: bool, period: Period) -> BillingReport:
        sub, item, price, inv = Subscription, SubscriptionItem, Price, Invoice
        mode = and_(sub.account_id == account_id, sub.livemode == livemode)
        async with self.ctx.db.read() as s:
            rows = await s.execute(
                select(
                    price.currency,
                    price.recurring_interval,
                    price.recurring_interval_count,
                    func.sum(price.unit_amount * item.quantity),
                    func.count(func.distinct(sub.id)),
                )
                .join(item, item.subscription_id == sub.id)
                .join(price, price.id == item.price_id)
                .where(
                    mode,
                    sub.status.in_(_MRR_STATUSES),
                    price.billing_scheme == "per_unit",
                    price.type == "recurring",
                    or_(
                        price.recurring_usage_type.is_(None),
                        price.recurring_usage_type == "licensed",
                    ),
                    price.unit_amount.is_not(None),
                )
                .group_by(price.currency, price.recurring_interval, price.recurring_interval_count)
            )
            monthly: dict[str, Fraction] = {}
            for currency, interval, interval_count, amount, _ in rows:
                months = _MONTHS[str(interval)] * int(interval_count or 1)
                cur = str(currency).lower()
                monthly[cur] = monthly.get(cur, Fraction(0)) + Fraction(int(amount or 0)) / months
            contributing = await s.execute(
                select(price.currency, func.count(func.distinct(sub.id)))
                .join(item, item.subscription_id == sub.id)
                .join(price, price.id == item.price_id)
                .where(mode, sub.status.in_(_MRR_STATUSES), price.type == "recurring")
                .group_by(price.currency)
            )
            counts = {str(c).lower(): int(n) for c, n in contributing}
            active = await s.scalar(
                select(func.count()).where(mode, sub.status.in_(_ACTIVE_STATUSES))
            )
            churned = await s.scalar(
                select(func.count()).where(
                    mode,
                    sub.status != "incomplete_expired",
                    sub.ended_at_us >= period.start_us,
                    sub.ended_at_us < period.end_us,
                )
            )
            live_at_start = await s.scalar(
                select(func.count()).where(
                    mode,
                    sub.status != "incomplete_expired",
                    sub.start_date_us < period.start_us,
                    or_(sub.ended_at_us.is_(None), sub.ended_at_us >= period.start_us),
                )
            )
            dunning_rows = await s.execute(
                select(inv.currency, func.count(), func.sum(inv.amount_remaining))
                .where(
                    inv.account_id == account_id,
                    inv.livemode == livemode,
                    inv.status == "open",
                    inv.billing_reason == "subscription_cycle",
                    inv.attempt_count >= 1,
                )
                .group_by(inv.currency)
            )
            dunning = sorted(
                (CurrencyTotal(str(c).lower(), int(n), int(a or 0)) for c, n, a in dunning_rows),
                key=lambda t: t.currency,
            )
        mrr = [
            CurrencyTotal(c, counts.get(c, 0), _round_half_even(monthly[c]))
            for c in sorted(monthly)
        ]
        return BillingReport(
            livemode, mrr, int(active or 0), int(churned or 0), int(live_at_start or 0), dunning
        )
