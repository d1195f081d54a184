"""``paymux demo billing``: a year of one monthly subscription on a test clock, in seconds.

Why a library tour and not HTTP calls: the demo must run anywhere with nothing listening, on a
throwaway SQLite database, like ``paymux demo``; it drives the same services the API routes
call. The app's wall clock follows the test clock (a :class:`_FollowClock`), so that meter
events sent "now" carry the clock's time and fall into the subscription's periods, as they
would for a merchant reporting usage live.

The script (amounts in USD cents, chosen so that every discount and tax is exact):

- 2026-01-01: a customer on a test clock, ``pm_card_visa`` saved as default; prices Basic 1000
  and Pro 2500 a month, and API calls at 1 cent each, metered (a ``sum`` meter); a 14-day
  trial, a 20 % coupon for 3 months, a 10 % exclusive tax rate. The trial's invoice is 0.
- each month, on the 1st, the period's usage is sent as meter events (billed in arrears on
  the next renewal, the 15th);
- 2026-03-01, half-way through the 28-day period Feb 15 - Mar 15: upgrade Basic -> Pro with
  prorations (-500 unused Basic, +1250 remaining Pro, on the Mar 15 invoice);
- 2026-07-01: the saved card is replaced by one that declines every charge
  (``pm_card_chargeCustomerFail``); the Jul 15 renewal fails, so does dunning's retry on Jul 16,
  then a new card set as the subscription's default pays the open invoice at once (3 attempts).
- the clock is advanced to 2027-01-01: 13 invoices (the trial's and 12 renewals).
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from paymux.money import Money

__all__ = ["USAGE", "run_billing_demo"]

_US = 1_000_000
# API calls reported in each paid period (1 cent each), in order: Jan 15 - Feb 15 first.
# Multiples of 50 so that 20 % off then 10 % tax stay whole cents.
USAGE = (1200, 1500, 900, 2100, 1800, 1350, 2400, 1650, 1950, 2250, 3000)


def _ts(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp())


def _date(seconds: int | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


class _FollowClock:
    """The app's wall clock, moved by the demo to the test clock's frozen time."""

    def __init__(self, seconds: int) -> None:
        self._now = seconds * _US

    def now_us(self) -> int:
        return self._now

    def set(self, seconds: int) -> None:
        self._now = seconds * _US


@dataclass
class _Totals:
    invoices: int = 0
    paid: int = 0
    billed: int = 0
    collected: int = 0
    failed_attempts: int = 0


def _money(amount: int, currency: str) -> str:
    return Money(amount, currency.upper()).format()


def invoice_table(invoice: dict[str, Any]) -> Table:
    """One invoice: its lines with their periods and amounts, then discount, tax, total."""
    cur = invoice["currency"]
    title = (
        f"Invoice {invoice['number']}  {_date(invoice['period_start'])} -> "
        f"{_date(invoice['period_end'])}  {invoice['status']}, "
        f"attempts {invoice['attempt_count']}"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("line")
    table.add_column("period")
    table.add_column("amount", justify="right")
    lines = sorted(
        invoice["lines"]["data"],
        key=lambda line: (line["period"]["start"], line["amount"] >= 0, line["description"]),
    )
    for line in lines:
        period = f"{_date(line['period']['start'])} -> {_date(line['period']['end'])}"
        table.add_row(str(line["description"]), period, _money(int(line["amount"]), cur))
    discount = sum(int(d["amount"]) for d in invoice.get("total_discount_amounts") or [])
    tax = int(invoice.get("tax") or 0)
    table.add_section()
    table.add_row("subtotal", "", _money(int(invoice["subtotal"]), cur))
    table.add_row("discount", "", _money(-discount, cur))
    table.add_row("tax", "", _money(tax, cur))
    table.add_row("total", "", _money(int(invoice["total"]), cur))
    table.add_row("paid", "", _money(int(invoice["amount_paid"]), cur))
    return table


async def run_billing_demo(console: Console) -> None:
    """Set up a temporary database, run the year, print the invoices and a summary."""
    from paymux.billing.meter_ingest import single_event
    from paymux.billing.meters import MeterParams
    from paymux.billing.subscriptions import SubscriptionParams, UpdateParams
    from paymux.config import Settings
    from paymux.jobs.worker import Worker
    from paymux.root import Paymux
    from paymux.services.customers import CustomerParams
    from paymux.storage.migrate import upgrade

    start = _ts(2026, 1, 1)
    wall = _FollowClock(start)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'demo.db'}"
        await asyncio.to_thread(upgrade, url)
        settings = Settings(
            database_url=url, sandbox_db=str(Path(tmp) / "sandbox.db"), run_worker=False
        )
        app = Paymux(settings, clock=wall)
        try:
            account = (await app.accounts.create_key()).account_id
            worker = Worker(app)

            async def advance(to: int) -> None:
                """POST advance, then run the queue until the clock is ready."""
                await app.clocks.advance(account, clock_id, to)
                wall.set(to)
                for _ in range(100):
                    await worker.run_once()
                    if (await app.clocks.retrieve(account, clock_id))["status"] == "ready":
                        return
                raise RuntimeError(f"test clock {clock_id} did not get ready")

            clock_id = (await app.clocks.create(account, start, "a year of billing"))["id"]
            customer = (
                await app.customers.create(
                    account, CustomerParams(email="ada@example.com", test_clock=clock_id)
                )
            )["id"]
            card = (await app.customers.attach(account, "pm_card_visa", customer))["id"]
            await app.customers.update(
                account, customer, CustomerParams(default_payment_method=card)
            )

            async def plan(name: str, amount: int, **recurring: Any) -> str:
                product = await app.catalog.create_product(account, {"name": name})
                price = await app.catalog.create_price(
                    account,
                    {
                        "product": product["id"],
                        # The proration lines are described by the price's nickname.
                        "nickname": name,
                        "unit_amount": amount,
                        "currency": "usd",
                        "recurring": {"interval": "month", **recurring},
                    },
                )
                return str(price["id"])

            meter = await app.meters.create(
                account, MeterParams(display_name="API calls", event_name="api_call", formula="sum")
            )
            basic = await plan("Basic", 1000)
            pro = await plan("Pro", 2500)
            calls = await plan("API calls", 1, usage_type="metered", meter=meter["id"])
            coupon = await app.catalog.create_coupon(
                account,
                {
                    "id": "LAUNCH20",
                    "percent_off": 20,
                    "duration": "repeating",
                    "duration_in_months": 3,
                },
            )
            tax = await app.catalog.create_tax_rate(
                account, {"display_name": "VAT", "percentage": 10, "inclusive": False}
            )
            sub = await app.subscriptions.create(
                account,
                SubscriptionParams(
                    customer=customer,
                    items=[{"price": basic}, {"price": calls}],
                    trial_period_days=14,
                    coupon=coupon["id"],
                    default_tax_rates=[tax["id"]],
                ),
            )
            sub_id = sub["id"]
            for month, used in zip(range(2, 14), (*USAGE, 0), strict=True):
                year, mon = 2026 + (month - 1) // 12, (month - 1) % 12 + 1
                await advance(_ts(year, mon, 1))  # mid-period: report the usage
                if used:
                    event = single_event(
                        "api_call",
                        {"stripe_customer_id": customer, "value": str(used)},
                        f"usage-{year}-{mon}",
                        None,
                    )
                    await app.meters.record_events(account, [event])
                if (year, mon) == (2026, 3):
                    items = (await app.subscriptions.retrieve(account, sub_id))["items"]["data"]
                    item = next(i for i in items if i["price"]["id"] == basic)
                    await app.subscriptions.update(
                        account,
                        sub_id,
                        UpdateParams(
                            items=[{"id": item["id"], "price": pro}],
                            proration_behavior="create_prorations",
                        ),
                    )
                if (year, mon) == (2026, 7):
                    failing = await app.customers.attach(
                        account, "pm_card_chargeCustomerFail", customer
                    )
                    await app.subscriptions.update(
                        account, sub_id, UpdateParams(default_payment_method=failing["id"])
                    )
                if month == 13:
                    break
                await advance(_ts(year, mon, 15, 1))  # the renewal
                if (year, mon) == (2026, 7):
                    await advance(_ts(2026, 7, 16, 1))  # dunning's first retry fails too
                    fresh = await app.customers.attach(account, "pm_card_visa", customer)
                    await app.subscriptions.update(
                        account, sub_id, UpdateParams(default_payment_method=fresh["id"])
                    )
            found, after = [], None
            while True:
                page, more = await app.invoices.list_page(
                    account, limit=100, subscription=sub_id, starting_after=after
                )
                found += page
                if not more:
                    break
                after = page[-1]["id"]
            found.sort(key=lambda i: (i["period_start"], i["created"], i["number"] or ""))
            totals = _Totals()
            for invoice in found:
                console.print(invoice_table(invoice))
                totals.invoices += 1
                totals.paid += invoice["status"] == "paid"
                totals.billed += int(invoice["total"])
                totals.collected += int(invoice["amount_paid"])
                totals.failed_attempts += max(0, int(invoice["attempt_count"]) - 1)
            final = await app.subscriptions.retrieve(account, sub_id)
            console.print(
                f"{totals.invoices} invoices, {totals.paid} paid; billed "
                f"{_money(totals.billed, 'usd')}, collected {_money(totals.collected, 'usd')}; "
                f"{totals.failed_attempts} failed attempts recovered by dunning; "
                f"subscription {final['status']}"
            )
        finally:
            await app.close()
