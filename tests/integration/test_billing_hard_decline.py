"""A hard decline of a renewal is never retried, on a test clock (SQLite; paymux in process,
the scripted provider at the connector seam, named ``sandbox`` so that the sandbox's code
table maps its ``lost_card`` onto our decline code).

Only the renewal's own charge is scripted to fail: any later charge of the invoice would
succeed, so a retry that should not happen shows as a paid invoice and a second authorize.
The retry window still runs its course (Stripe's: the subscription stays ``past_due``), and at
its end the configured end (the default: cancel) applies with no charge. That last step runs
the invoice's try (``InvoicesService.retry``), which locks the subscription before the
invoice: the order of the renewal steps (a path taking the invoice first can deadlock with
one on PostgreSQL; tests/integration/test_billing_lock_order.py shows the race)."""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import migrated_database_url
from paymux.gateways.connectors import connectors
from paymux.storage.models import Invoice, Subscription
from support.billing_harness import ok
from support.fake_gateway import Outcome, ScriptedGateway
from support.harness import Harness

DAY = 86_400
T0 = 1_900_000_000  # the clock's start (unix seconds)
TRIAL_END = T0 + 7 * DAY
_IN_RETRY: contextvars.ContextVar[bool] = contextvars.ContextVar("in_retry", default=False)


async def advance(h: Harness, clock_id: str, to: int) -> None:
    await ok(h, f"/v1/test_helpers/test_clocks/{clock_id}/advance", {"frozen_time": to})
    await h.drain()
    ready = await h.get(f"/v1/test_helpers/test_clocks/{clock_id}")
    assert (ready["status"], ready["frozen_time"]) == ("ready", to)


async def trialing(h: Harness) -> tuple[str, str]:
    """(a clock at T0, a subscription of 2,500 a month on it with a 7-day trial, charged to
    a card the provider accepted when it was saved)."""
    clk = (await ok(h, "/v1/test_helpers/test_clocks", {"frozen_time": T0}))["id"]
    cus = await ok(h, "/v1/customers", {"email": "lost@example.com", "test_clock": clk})
    pm = await ok(h, "/v1/payment_methods/tok_visa/attach", {"customer": cus["id"]})
    await ok(
        h, f"/v1/customers/{cus['id']}", {"invoice_settings": {"default_payment_method": pm["id"]}}
    )
    product = await ok(h, "/v1/products", {"name": "Pro"})
    price = await ok(
        h,
        "/v1/prices",
        {
            "product": product["id"],
            "unit_amount": 2500,
            "currency": "usd",
            "recurring": {"interval": "month"},
        },
    )
    sub = await ok(
        h,
        "/v1/subscriptions",
        {"customer": cus["id"], "items": [{"price": price["id"]}], "trial_period_days": 7},
    )
    assert sub["status"] == "trialing"
    return str(clk), str(sub["id"])


def record_retry_locks(h: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The rows (Subscription, Invoice) the invoice's try locks, in order, filled as it runs."""
    locks: list[str] = []
    original = AsyncSession.get

    async def get(self: AsyncSession, entity: Any, ident: Any, **kw: Any) -> Any:
        if _IN_RETRY.get() and kw.get("with_for_update") and entity in (Subscription, Invoice):
            locks.append(entity.__name__)
        return await original(self, entity, ident, **kw)

    real = h.app.invoices.retry

    async def retry(account_id: str, invoice_id: str, *, at_us: int | None = None) -> None:
        token = _IN_RETRY.set(True)
        try:
            await real(account_id, invoice_id, at_us=at_us)
        finally:
            _IN_RETRY.reset(token)

    monkeypatch.setattr(AsyncSession, "get", get)
    monkeypatch.setattr(h.app.invoices, "retry", retry)
    return locks


# ``incorrect_number`` is a hard decline carried as the error's code, with no decline code:
# the end of the window once read only the decline code, and charged the card again.
@pytest.mark.parametrize("code", ["lost_card", "incorrect_number"])
def test_a_hard_decline_is_never_retried_and_the_window_end_cancels_without_a_charge(
    code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connectors()  # the built-in connectors' code tables, the sandbox's among them
    url = migrated_database_url("sqlite", tmp_path, None, f"hard_{code}")

    async def main() -> None:
        async with Harness.open(url, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            clk, sub_id = await trialing(h)
            h.gw.script("authorize", Outcome.decline(code))  # the renewal's charge only
            await advance(h, clk, TRIAL_END + 3600)
            sub = await h.get(f"/v1/subscriptions/{sub_id}")
            invoice = await h.get(f"/v1/invoices/{sub['latest_invoice']}")
            assert sub["status"] == "past_due"
            assert (invoice["status"], invoice["attempt_count"]) == ("open", 1)
            pi = await h.get(f"/v1/payment_intents/{invoice['payment_intent']}")
            error = pi["last_payment_error"]
            assert (error["decline_code"] or error["code"]) == code
            # No retry: the next look is the end of the two-week window, to end it.
            assert invoice["next_payment_attempt"] == TRIAL_END + 14 * DAY
            assert h.gw.calls["authorize"] == 1

            await advance(h, clk, TRIAL_END + 13 * DAY)  # past every soft-decline retry day
            invoice = await h.get(f"/v1/invoices/{invoice['id']}")
            assert (invoice["status"], invoice["attempt_count"]) == ("open", 1)
            assert (await h.get(f"/v1/subscriptions/{sub_id}"))["status"] == "past_due"
            assert h.gw.calls["authorize"] == 1

            locks = record_retry_locks(h, monkeypatch)
            await advance(h, clk, TRIAL_END + 15 * DAY)
            monkeypatch.undo()
            sub = await h.get(f"/v1/subscriptions/{sub_id}")
            assert sub["status"] == "canceled"
            assert sub["cancellation_details"]["reason"] == "payment_failed"
            assert sub["ended_at"] == TRIAL_END + 14 * DAY
            invoice = await h.get(f"/v1/invoices/{invoice['id']}")
            assert (invoice["status"], invoice["attempt_count"]) == ("open", 1)
            assert invoice["next_payment_attempt"] is None
            assert h.gw.calls["authorize"] == 1  # never charged again
            assert locks[:2] == ["Subscription", "Invoice"]

    asyncio.run(main())
