"""Metadata can be updated on any object in any state, as Stripe allows (issue 9), through
stripe-python on a real server (SQLite and PostgreSQL).

Every object type paymux has that carries metadata is driven into a terminal state (a
succeeded, canceled or refunded payment, a lost dispute, a canceled subscription, a void
invoice, ...) and its metadata is then set, changed and removed (``""`` removes a key), as on
Stripe. Disputes are opened and closed by Stripe itself: signed ``charge.dispute.*`` webhooks
from localstripe's side arrive at ``/webhooks/stripe`` (a payment through the Stripe connector
against localstripe); ``stripe.Dispute.modify`` then sets the dispute's metadata, which the
dispute object shows and a ``charge.dispute.updated`` event records, as Stripe's do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import stripe

from conftest import RunningServer
from support.keys import random_token
from support.pgcluster import PgCluster
from support.sandboxes import LocalStripe
from support.stripe_server import localstripe_server

WEBHOOK_SECRET = random_token("whsec_", 32)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stripe_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
    localstripe: LocalStripe,
) -> Iterator[RunningServer]:
    yield from localstripe_server(
        request.param, tmp_path_factory, pg_cluster, localstripe,
        name="metadata", webhook_secret=WEBHOOK_SECRET, default_gateway="sandbox",
    )


@pytest.fixture
def key(stripe_server: RunningServer) -> str:
    return stripe_server.new_key()[1]


@pytest.fixture
def sdk(stripe_server: RunningServer, key: str) -> stripe.StripeClient:
    return stripe.StripeClient(api_key=key, base_addresses={"api": stripe_server.url},
                               max_network_retries=0)


def until(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def post_stripe_event(server: RunningServer, event: dict[str, Any]) -> None:
    """A webhook from Stripe, signed with the endpoint's secret as Stripe signs it."""
    body = json.dumps(event)
    t = int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{t}.{body}", WEBHOOK_SECRET)
    r = httpx.post(f"{server.url}/webhooks/stripe", content=body.encode(), timeout=10,
                   headers={"stripe-signature": f"t={t},v1={signature}"})
    assert r.status_code == 200, r.text


def walk_metadata(update: Callable[[dict[str, str]], Any], state: Callable[[Any], Any],
                  expected_state: Any, before: dict[str, str] | None = None) -> None:
    """Set, change and remove metadata on an object in its terminal state, which stays
    (``before``: the metadata it had)."""
    first = update({"order_id": "6735", "note": "kept"})
    assert first.metadata.to_dict() == {**(before or {}), "order_id": "6735", "note": "kept"}
    assert state(first) == expected_state
    second = update({"order_id": "", "shipped": "yes"})
    assert second.metadata.to_dict() == {**(before or {}), "note": "kept", "shipped": "yes"}
    assert state(second) == expected_state


def test_a_lost_dispute_takes_metadata_with_stripe_python(
    sdk: stripe.StripeClient, stripe_server: RunningServer, key: str
) -> None:
    pi = sdk.v1.payment_intents.create(params={
        "amount": 2500, "currency": "usd", "gateway": "stripe",
        "payment_method": "pm_card_visa", "confirm": True})
    assert pi.status == "succeeded"
    reference = pi["gateway_reference"]
    stripe_dispute = {"id": f"dp_{pi.id}", "object": "dispute", "amount": 2500,
                      "currency": "usd", "payment_intent": reference, "reason": "fraudulent",
                      "status": "needs_response", "charge": "ch_x", "created": int(time.time())}
    post_stripe_event(stripe_server, {
        "id": f"evt_dp_{pi.id}", "object": "event", "type": "charge.dispute.created",
        "created": int(time.time()), "data": {"object": stripe_dispute}})
    until("the dispute", lambda: bool(
        sdk.v1.disputes.list(params={"payment_intent": pi.id}).data))
    dispute = sdk.v1.disputes.list(params={"payment_intent": pi.id}).data[0]
    assert isinstance(dispute, stripe.Dispute)
    assert (dispute.status, dispute.metadata.to_dict()) == ("needs_response", {})

    # Open: metadata through the client's update.
    opened = sdk.v1.disputes.update(dispute.id, params={"metadata": {"case": "A-1"}})
    assert (opened.status, opened.metadata.to_dict()) == ("needs_response", {"case": "A-1"})

    post_stripe_event(stripe_server, {
        "id": f"evt_dpc_{pi.id}", "object": "event", "type": "charge.dispute.closed",
        "created": int(time.time()),
        "data": {"object": dict(stripe_dispute, status="lost")}})
    until("the dispute to be lost", lambda: sdk.v1.disputes.retrieve(dispute.id).status == "lost")
    walk_metadata(lambda m: sdk.v1.disputes.update(dispute.id, params={"metadata": m}),
                  lambda d: d.status, "lost", before={"case": "A-1"})
    got = sdk.v1.disputes.retrieve(dispute.id)
    assert got.metadata.to_dict() == {"case": "A-1", "note": "kept", "shipped": "yes"}
    # The classic style too: stripe.Dispute.modify, with the global base pointed at paymux.
    saved = (stripe.api_key, stripe.api_base, stripe.max_network_retries)
    stripe.api_key, stripe.api_base, stripe.max_network_retries = (
        key, stripe_server.url, 0)
    try:
        modified = stripe.Dispute.modify(dispute.id, metadata={"case": ""})
    finally:
        stripe.api_key, stripe.api_base, stripe.max_network_retries = saved
    assert isinstance(modified, stripe.Dispute)
    assert modified.metadata.to_dict() == {"note": "kept", "shipped": "yes"}

    updates = [e for e in sdk.v1.events.list(params={"type": "charge.dispute.updated"}).data
               if e.data.object.id == dispute.id]
    # Newest first: the last metadata change, with what it replaced (the changed keys
    # only, as Stripe's previous_attributes shows a metadata change).
    assert updates[0].data.object.metadata.to_dict() == {"note": "kept", "shipped": "yes"}
    assert updates[0].data.previous_attributes.to_dict() == {"metadata": {"case": "A-1"}}
    # The same metadata again changes nothing and records nothing.
    same = sdk.v1.disputes.update(dispute.id, params={"metadata": {"note": "kept"}})
    assert same.metadata.to_dict() == {"note": "kept", "shipped": "yes"}
    again = [e for e in sdk.v1.events.list(params={"type": "charge.dispute.updated"}).data
             if e.data.object.id == dispute.id]
    assert len(again) == len(updates)

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        sdk.v1.disputes.update("dp_nope", params={"metadata": {"a": "b"}})
    assert (unknown.value.http_status, unknown.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError) as evidence:
        sdk.v1.disputes.update(dispute.id, params={"evidence": {"product_description": "x"}})
    assert (evidence.value.code, evidence.value.param) == ("parameter_unknown", "evidence")


def test_every_other_object_takes_metadata_in_its_terminal_state(
    sdk: stripe.StripeClient,
) -> None:
    v1 = sdk.v1
    status: Callable[[Any], Any] = lambda o: o.status  # noqa: E731
    # Payments: succeeded, canceled, fully refunded; its charge (refunded); its refund.
    paid = v1.payment_intents.create(params={
        "amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    walk_metadata(lambda m: v1.payment_intents.update(paid.id, params={"metadata": m}),
                  status, "succeeded")
    canceled = v1.payment_intents.cancel(
        v1.payment_intents.create(params={"amount": 900, "currency": "usd"}).id)
    walk_metadata(lambda m: v1.payment_intents.update(canceled.id, params={"metadata": m}),
                  status, "canceled")
    # ... and the states on the way: waiting for a card after a decline, for 3-D Secure,
    # for capture.
    declined = v1.payment_intents.create(params={"amount": 700, "currency": "usd"})
    with pytest.raises(stripe.CardError):
        v1.payment_intents.confirm(declined.id, params={"payment_method": "pm_card_chargeDeclined"})
    walk_metadata(lambda m: v1.payment_intents.update(declined.id, params={"metadata": m}),
                  status, "requires_payment_method")
    challenged = v1.payment_intents.create(params={
        "amount": 800, "currency": "usd", "payment_method": "pm_card_threeDSecure2Required",
        "confirm": True, "return_url": "https://shop.example/back"})
    assert challenged.status == "requires_action"
    walk_metadata(lambda m: v1.payment_intents.update(challenged.id, params={"metadata": m}),
                  status, "requires_action")
    held = v1.payment_intents.create(params={
        "amount": 600, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
        "capture_method": "manual"})
    walk_metadata(lambda m: v1.payment_intents.update(held.id, params={"metadata": m}),
                  status, "requires_capture")
    refunded = v1.payment_intents.create(params={
        "amount": 1500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    refund = v1.refunds.create(params={"payment_intent": refunded.id})
    walk_metadata(lambda m: v1.refunds.update(refund.id, params={"metadata": m}),
                  status, "succeeded")
    walk_metadata(lambda m: v1.charges.update(str(refunded.latest_charge), params={"metadata": m}),
                  lambda c: (c.refunded, c.amount_refunded), (True, 1500))

    # A customer and its saved card; a SetupIntent succeeded and one canceled.
    customer = v1.customers.create(params={"email": "walk@example.com"})
    walk_metadata(lambda m: v1.customers.update(customer.id, params={"metadata": m}),
                  lambda c: c.email, "walk@example.com")
    seti = v1.setup_intents.create(params={
        "customer": customer.id, "payment_method": "pm_card_visa", "confirm": True})
    walk_metadata(lambda m: v1.setup_intents.update(seti.id, params={"metadata": m}),
                  status, "succeeded")
    pm_id = str(seti.payment_method)
    walk_metadata(lambda m: v1.payment_methods.update(pm_id, params={"metadata": m}),
                  lambda p: p.customer, customer.id)
    gone = v1.setup_intents.cancel(v1.setup_intents.create(params={"customer": customer.id}).id)
    walk_metadata(lambda m: v1.setup_intents.update(gone.id, params={"metadata": m}),
                  status, "canceled")

    # Billing: an archived product, an inactive price, a coupon and its promotion code made
    # inactive, an inactive tax rate, a subscription item, a canceled subscription, its paid
    # invoice, a credit note on it, and a void invoice.
    product = v1.products.create(params={"name": "Walk plan"})
    price = v1.prices.create(params={"product": product.id, "unit_amount": 1200,
                                     "currency": "usd", "recurring": {"interval": "month"}})
    v1.prices.update(price.id, params={"active": False})
    walk_metadata(lambda m: v1.prices.update(price.id, params={"metadata": m}),
                  lambda p: p.active, False)
    v1.products.update(product.id, params={"active": False})
    walk_metadata(lambda m: v1.products.update(product.id, params={"metadata": m}),
                  lambda p: p.active, False)
    coupon = v1.coupons.create(params={"percent_off": 10, "duration": "once"})
    walk_metadata(lambda m: v1.coupons.update(coupon.id, params={"metadata": m}),
                  lambda c: c.percent_off, 10)
    promo = v1.promotion_codes.create(params={"coupon": coupon.id, "code": f"WALK{pm_id[-6:]}"})
    v1.promotion_codes.update(promo.id, params={"active": False})
    walk_metadata(lambda m: v1.promotion_codes.update(promo.id, params={"metadata": m}),
                  lambda p: p.active, False)
    rate = v1.tax_rates.create(params={"display_name": "VAT", "percentage": 20,
                                       "inclusive": False})
    v1.tax_rates.update(rate.id, params={"active": False})
    walk_metadata(lambda m: v1.tax_rates.update(rate.id, params={"metadata": m}),
                  lambda r: r.active, False)

    live_price = v1.prices.create(params={"product": v1.products.create(
        params={"name": "Walk live"}).id, "unit_amount": 1200, "currency": "usd",
        "recurring": {"interval": "month"}})
    sub = v1.subscriptions.create(params={
        "customer": customer.id, "items": [{"price": live_price.id}],
        "default_payment_method": pm_id})
    assert sub.status == "active"
    invoice_id = str(sub.latest_invoice)
    item_id = sub["items"].data[0].id
    walk_metadata(lambda m: v1.subscription_items.update(item_id, params={"metadata": m}),
                  lambda i: i.price.id, live_price.id)
    v1.subscriptions.cancel(sub.id)
    walk_metadata(lambda m: v1.subscriptions.update(sub.id, params={"metadata": m}),
                  status, "canceled")
    with pytest.raises(stripe.InvalidRequestError) as ended:  # anything more is refused
        v1.subscriptions.update(sub.id, params={"metadata": {"a": "b"},
                                                "cancel_at_period_end": True})
    assert ended.value.code == "subscription_unexpected_state"
    assert "a" not in v1.subscriptions.retrieve(sub.id).metadata

    def updated_events() -> list[str]:
        listed = v1.events.list(params={"type": "customer.subscription.updated", "limit": 100})
        return [e.id for e in listed.data if e.data.object["id"] == sub.id]

    emitted = updated_events()
    assert len(emitted) >= 2  # one per change walk_metadata made (and any before)
    same = v1.subscriptions.update(sub.id, params={"metadata": {"note": "kept"}})  # as it is
    assert same.metadata.to_dict() == {"note": "kept", "shipped": "yes"}
    assert updated_events() == emitted  # nothing changed: no event
    # A description paymux doesn't keep is refused, not dropped.
    for described in (
        lambda: v1.subscriptions.update(sub.id, params={"description": "Gold plan"}),
        lambda: v1.subscriptions.create(params={
            "customer": customer.id, "items": [{"price": live_price.id}],
            "default_payment_method": pm_id, "description": "Gold plan"}),
    ):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            described()
        assert (refused.value.code, refused.value.param) == ("parameter_unknown", "description")
    listed = v1.subscriptions.list(params={"customer": customer.id, "status": "all"})
    assert [x.id for x in listed.data] == [sub.id]
    walk_metadata(lambda m: v1.invoices.update(invoice_id, params={"metadata": m}),
                  status, "paid")
    # A credit note on the paid invoice (its money refunded): issued for good.
    note = v1.credit_notes.create(params={"invoice": invoice_id, "amount": 200})
    walk_metadata(lambda m: v1.credit_notes.update(note.id, params={"metadata": m}),
                  status, "issued")

    v1.invoice_items.create(params={"customer": customer.id, "amount": 700, "currency": "usd"})
    draft = v1.invoices.create(params={"customer": customer.id,
                                       "pending_invoice_items_behavior": "include"})
    v1.invoices.finalize_invoice(draft.id)
    v1.invoices.void_invoice(draft.id)
    walk_metadata(lambda m: v1.invoices.update(draft.id, params={"metadata": m}),
                  status, "void")
