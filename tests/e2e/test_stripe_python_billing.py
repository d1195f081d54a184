"""stripe-python (``StripeClient.v1``) drives subscriptions, invoices (read) and test clocks
on a real server (SQLite and PostgreSQL), pointed at it by its base address only, with
``max_network_retries=0``. Expectations are Stripe's documented behaviour, stated literally."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import stripe

from conftest import RunningServer


def ts(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp())


@pytest.fixture
def sdk(server: RunningServer) -> stripe.StripeClient:
    _, key = server.new_key()
    return stripe.StripeClient(
        api_key=key, base_addresses={"api": server.url}, max_network_retries=0
    )


def ready(sdk: stripe.StripeClient, clock_id: str) -> stripe.test_helpers.TestClock:
    deadline = time.monotonic() + 30
    while True:
        clock = sdk.v1.test_helpers.test_clocks.retrieve(clock_id)
        if clock.status == "ready":
            return clock
        assert time.monotonic() < deadline, f"clock still {clock.status}"
        time.sleep(0.05)


def test_subscription_lifecycle_on_a_test_clock(sdk: stripe.StripeClient) -> None:
    clock = sdk.v1.test_helpers.test_clocks.create(
        params={"frozen_time": ts(2026, 5, 1), "name": "sdk"}
    )
    assert (clock.object, clock.status) == ("test_helpers.test_clock", "ready")
    customer = sdk.v1.customers.create(params={"test_clock": clock.id})
    pm = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    product = sdk.v1.products.create(params={"name": "SDK plan"})
    price = sdk.v1.prices.create(
        params={
            "product": product.id,
            "unit_amount": 1999,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )
    sub = sdk.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": 2}],
            "default_payment_method": pm.id,
            "metadata": {"plan": "pro"},
        }
    )
    assert isinstance(sub, stripe.Subscription)
    assert (sub.status, sub.metadata["plan"], sub.test_clock) == ("active", "pro", clock.id)
    assert sub["items"].data[0].quantity == 2
    assert sub["items"].data[0].price.id == price.id
    invoice = sdk.v1.invoices.retrieve(sub.latest_invoice)
    assert isinstance(invoice, stripe.Invoice)
    assert (invoice.status, invoice.amount_paid, invoice.total) == ("paid", 3998, 3998)
    assert invoice.lines.data[0].amount == 3998

    sub = sdk.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert (sub.cancel_at_period_end, sub.cancel_at) == (True, ts(2026, 6, 1))
    sub = sdk.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": False})
    assert sub.cancel_at is None

    advanced = sdk.v1.test_helpers.test_clocks.advance(
        clock.id, params={"frozen_time": ts(2026, 7, 2)}
    )
    assert advanced.status in ("advancing", "ready")
    assert ready(sdk, clock.id).frozen_time == ts(2026, 7, 2)
    listed = sdk.v1.invoices.list(params={"subscription": sub.id})
    assert sorted(i.period_start for i in listed.data) == [
        ts(2026, 5, 1),
        ts(2026, 6, 1),
        ts(2026, 7, 1),
    ]
    assert {i.status for i in listed.data} == {"paid"}
    all_ids = [
        i.id
        for i in sdk.v1.invoices.list(
            params={"customer": customer.id, "limit": 1}
        ).auto_paging_iter()
    ]
    assert len(all_ids) == 3

    canceled = sdk.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled"
    assert sdk.v1.subscriptions.retrieve(sub.id).ended_at == ts(2026, 7, 2)
    deleted = sdk.v1.test_helpers.test_clocks.delete(clock.id)
    assert deleted.deleted is True


def test_sdk_errors(sdk: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        sdk.v1.subscriptions.retrieve("sub_nope")
    assert missing.value.http_status == 404
    customer = sdk.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as bad:
        sdk.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": "price_nope"}]}
        )
    assert bad.value.param == "items[0][price]"
    with pytest.raises(stripe.InvalidRequestError):
        sdk.v1.invoices.retrieve("in_nope")
