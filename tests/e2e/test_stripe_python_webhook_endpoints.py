"""stripe-python (``StripeClient.v1``) drives the resources the other stripe-python suites
leave out, on a real server (SQLite and PostgreSQL) pointed at by its base address only, with
``max_network_retries=0``:

- webhook endpoints: create, retrieve, update, list with auto-pagination, delete; a delivery
  to a merchant's endpoint on 127.0.0.1 verified by ``stripe.Webhook.construct_event`` (the
  endpoint made with ``signature_scheme=stripe``, paymux's one extra parameter: its default
  is Standard Webhooks) and turned into the SDK's ``stripe.Event``;
- customer balance transactions: create, retrieve, list;
- credit notes: retrieve, list, lines, void; invoice items: retrieve, list, update, delete;
  subscription items: create, list, delete; products, coupons, tax rates and test clocks:
  retrieve, list, delete where Stripe has it.

Expectations are Stripe's documented behaviour, stated literally.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe

from conftest import RunningServer, free_port, make_settings, migrated_database_url
from paymux.security.envelope import generate_key_entry
from support.pgcluster import PgCluster
from support.webhook_receiver import Receiver


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hooks_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"sdk-hooks-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"sdk_hooks_{request.param}")
    running = RunningServer(make_settings(
        url, tmp, free_port(), encryption_keys=generate_key_entry("k1"),
        webhook_retry_schedule=",".join(["0.2"] * 8), webhook_retry_jitter=0.0,
        webhook_poll_interval=0.05)).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def sdk(hooks_server: RunningServer) -> stripe.StripeClient:
    _, key = hooks_server.new_key()
    return stripe.StripeClient(api_key=key, base_addresses={"api": hooks_server.url},
                               max_network_retries=0)


def until(what: str, check: object, timeout: float = 15.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_webhook_endpoints_with_the_client_and_a_delivery_verified_by_construct_event(
    sdk: stripe.StripeClient,
) -> None:
    with Receiver() as rx:
        endpoint = sdk.v1.webhook_endpoints.create(params={
            "url": rx.url, "enabled_events": ["customer.created", "payment_intent.succeeded"],
            "description": "orders", "metadata": {"team": "shop"},
            "signature_scheme": "stripe"})  # type: ignore[typeddict-unknown-key]
        assert isinstance(endpoint, stripe.WebhookEndpoint)
        assert endpoint.id.startswith("we_")
        assert (endpoint.object, endpoint.url, endpoint.status) == (
            "webhook_endpoint", rx.url, "enabled")
        assert list(endpoint.enabled_events) == ["customer.created", "payment_intent.succeeded"]
        assert endpoint.secret is not None and endpoint.secret.startswith("whsec_")
        assert endpoint.metadata.to_dict() == {"team": "shop"}

        customer = sdk.v1.customers.create(params={"email": "hook@example.com"})
        until("the delivery", lambda: len(rx.requests()) >= 1)
        request = rx.requests()[0]
        event = stripe.Webhook.construct_event(
            request.body.decode(), request.headers["stripe-signature"], endpoint.secret)
        assert isinstance(event, stripe.Event)
        assert (event.type, event.data.object.id) == ("customer.created", customer.id)
        assert isinstance(event.data.object, stripe.Customer)
        assert sdk.v1.events.retrieve(event.id).type == "customer.created"
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(
                request.body.decode(), request.headers["stripe-signature"], "whsec_wrong")

        got = sdk.v1.webhook_endpoints.retrieve(endpoint.id)
        assert (got.id, got.url, got.description) == (endpoint.id, rx.url, "orders")
        assert "secret" not in got  # shown once, at creation, as on Stripe
        updated = sdk.v1.webhook_endpoints.update(endpoint.id, params={
            "disabled": True, "enabled_events": ["*"], "metadata": {"team": ""}})
        assert (updated.status, list(updated.enabled_events)) == ("disabled", ["*"])
        assert updated.metadata.to_dict() == {}

        for i in range(3):
            sdk.v1.webhook_endpoints.create(params={
                "url": f"{rx.url}?n={i}", "enabled_events": ["*"]})
        seen = [e.id for e in sdk.v1.webhook_endpoints.list(
            params={"limit": 2}).auto_paging_iter()]
        assert len(seen) == 4 and len(set(seen)) == 4 and endpoint.id in seen

        deleted = sdk.v1.webhook_endpoints.delete(endpoint.id)
        assert (deleted.id, deleted.deleted) == (endpoint.id, True)
        with pytest.raises(stripe.InvalidRequestError) as gone:
            sdk.v1.webhook_endpoints.retrieve(endpoint.id)
        assert (gone.value.http_status, gone.value.code) == (404, "resource_missing")
        with pytest.raises(stripe.InvalidRequestError) as bad:
            sdk.v1.webhook_endpoints.create(params={
                "url": rx.url, "enabled_events": ["no.such_event"]})
        assert (bad.value.http_status, bad.value.param) == (400, "enabled_events")


def test_customer_balance_transactions_with_the_client(sdk: stripe.StripeClient) -> None:
    customer = sdk.v1.customers.create(params={"email": "balance@example.com"})
    credit = sdk.v1.customers.balance_transactions.create(
        customer.id, params={"amount": -500, "currency": "usd", "description": "goodwill"},
        options={"idempotency_key": f"py-{uuid.uuid4()}"})
    assert isinstance(credit, stripe.CustomerBalanceTransaction)
    assert (credit.object, credit.amount, credit.currency, credit.ending_balance) == (
        "customer_balance_transaction", -500, "usd", -500)
    debit = sdk.v1.customers.balance_transactions.create(
        customer.id, params={"amount": 200, "currency": "usd"})
    assert debit.ending_balance == -300
    got = sdk.v1.customers.balance_transactions.retrieve(customer.id, credit.id)
    assert (got.id, got.description) == (credit.id, "goodwill")
    listed = [t.id for t in sdk.v1.customers.balance_transactions.list(
        customer.id, params={"limit": 1}).auto_paging_iter()]
    assert listed == [debit.id, credit.id]
    assert sdk.v1.customers.retrieve(customer.id).balance == -300


def test_billing_objects_retrieve_list_and_delete_with_the_client(
    sdk: stripe.StripeClient,
) -> None:
    v1 = sdk.v1
    customer = v1.customers.create(params={"email": "bill@example.com"})
    pm = v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    product = v1.products.create(params={"name": "Plan"})
    assert v1.products.retrieve(product.id).name == "Plan"
    assert product.id in [p.id for p in v1.products.list().auto_paging_iter()]
    price = v1.prices.create(params={"product": product.id, "unit_amount": 1000,
                                     "currency": "usd", "recurring": {"interval": "month"}})
    extra = v1.prices.create(params={"product": product.id, "unit_amount": 250,
                                     "currency": "usd", "recurring": {"interval": "month"}})
    coupon = v1.coupons.create(params={"amount_off": 100, "currency": "usd",
                                       "duration": "once"})
    assert v1.coupons.retrieve(coupon.id).amount_off == 100
    assert coupon.id in [c.id for c in v1.coupons.list().auto_paging_iter()]
    rate = v1.tax_rates.create(params={"display_name": "VAT", "percentage": 10,
                                       "inclusive": False})
    assert rate.id in [r.id for r in v1.tax_rates.list().auto_paging_iter()]

    # Subscription items: add one, list them, delete it.
    sub = v1.subscriptions.create(params={"customer": customer.id, "items": [
        {"price": price.id}], "default_payment_method": pm.id})
    added = v1.subscription_items.create(params={
        "subscription": sub.id, "price": extra.id, "quantity": 2,
        "proration_behavior": "none"})
    assert (added.object, added.quantity, added.price.id) == ("subscription_item", 2, extra.id)
    items = v1.subscription_items.list(params={"subscription": sub.id})
    assert {i.price.id for i in items.data} == {price.id, extra.id}
    removed = v1.subscription_items.delete(added.id, params={"proration_behavior": "none"})
    assert (removed.id, removed.deleted) == (added.id, True)
    assert [i.price.id for i in v1.subscription_items.list(
        params={"subscription": sub.id}).data] == [price.id]

    # Invoice items: retrieve, list, update, delete (while pending).
    item = v1.invoice_items.create(params={"customer": customer.id, "amount": 700,
                                           "currency": "usd", "description": "setup"})
    assert v1.invoice_items.retrieve(item.id).amount == 700
    changed = v1.invoice_items.update(item.id, params={"description": "set-up fee"})
    assert changed.description == "set-up fee"
    assert item.id in [i.id for i in v1.invoice_items.list(
        params={"customer": customer.id}).auto_paging_iter()]
    gone = v1.invoice_items.delete(item.id)
    assert (gone.id, gone.deleted) == (item.id, True)

    # Credit notes on the subscription's paid invoice: retrieve, list, lines, void.
    invoice = v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.status == "paid"
    note = v1.credit_notes.create(params={"invoice": invoice.id, "amount": 300,
                                          "reason": "order_change"})
    assert (note.object, note.amount, note.status) == ("credit_note", 300, "issued")
    assert v1.credit_notes.retrieve(note.id).invoice == invoice.id
    assert [n.id for n in v1.credit_notes.list(params={"invoice": invoice.id}).data] == [note.id]
    lines = v1.credit_notes.line_items.list(note.id)  # an amount-only note: no lines
    assert (lines.object, lines.url, lines.has_more) == (
        "list", f"/v1/credit_notes/{note.id}/lines", False)

    v1.invoice_items.create(params={"customer": customer.id, "amount": 400, "currency": "usd"})
    draft = v1.invoices.create(params={"customer": customer.id,
                                       "pending_invoice_items_behavior": "include",
                                       "collection_method": "send_invoice",
                                       "days_until_due": 30})
    open_invoice = v1.invoices.finalize_invoice(draft.id)
    assert open_invoice.status == "open"
    open_note = v1.credit_notes.create(params={"invoice": draft.id, "amount": 50})
    voided = v1.credit_notes.void_credit_note(open_note.id)
    assert voided.status == "void"

    # Test clocks: list, delete.
    clock = v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time())})
    assert clock.id in [c.id for c in v1.test_helpers.test_clocks.list().auto_paging_iter()]
    deleted = v1.test_helpers.test_clocks.delete(clock.id)
    assert (deleted.id, deleted.deleted) == (clock.id, True)
