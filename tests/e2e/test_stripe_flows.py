"""Payments through paymux's API with the Stripe connector against localstripe, whose signed
webhooks arrive at paymux's /webhooks/stripe over real HTTP on 127.0.0.1."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest

from conftest import Api, RunningServer
from support.pgcluster import PgCluster
from support.processes import wait_until
from support.sandboxes import LocalStripe
from support.stripe_server import localstripe_server

WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stripe_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
    localstripe: LocalStripe,
) -> Iterator[RunningServer]:
    yield from localstripe_server(
        request.param, tmp_path_factory, pg_cluster, localstripe,
        name="stripe", webhook_secret=WEBHOOK_SECRET, default_gateway="stripe", routes="JPY=sandbox",
    )


@pytest.fixture
def sapi(stripe_server: RunningServer) -> Iterator[Api]:
    client = Api(stripe_server)
    try:
        yield client
    finally:
        client.close()


def create(api: Api, **params: object) -> dict:
    return api.ok("POST", "/v1/payment_intents",
                  {"amount": 2000, "currency": "usd", "gateway": "stripe", **params})


def handled_events(api: Api, gateway_reference: str, *types: str) -> list[tuple[str, str]]:
    """(type, status) of the Stripe events stored about a payment (its Stripe id in the
    payload), once each of ``types`` has arrived and the worker has handled every one of
    them (none still just received; an event's mark commits with its job's done)."""

    def rows() -> list[tuple[str, str]]:
        return [(str(r[0]), str(r[1])) for r in api.server.sql(
            "select type, status from webhook_inbox where gateway = 'stripe' and payload like :p",
            p=f"%{gateway_reference}%")]

    def handled() -> bool:
        found = rows()
        return {t for t, _ in found} >= set(types) and all(s != "received" for _, s in found)

    wait_until(f"{', '.join(types)} about {gateway_reference} handled", handled, timeout=30,
               interval=0.05)
    return rows()


def test_create_answers_what_stripe_js_needs(sapi: Api) -> None:
    pi = create(sapi)
    assert pi["gateway"] == "stripe" and pi["gateway_reference"].startswith("pi_")
    assert pi["client"]["publishable_key"] == "pk_test_paymux"
    assert pi["client"]["client_secret"].startswith(pi["gateway_reference"] + "_secret")


def test_a_payment_succeeds_and_stripe_s_webhook_is_applied_once(sapi: Api) -> None:
    pi = create(sapi)
    done = sapi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                   {"payment_method": "pm_card_visa"})
    assert done["status"] == "succeeded" and done["amount_received"] == 2000
    pm = sapi.ok("GET", f"/v1/payment_methods/{done['payment_method']}")
    assert pm["card"]["last4"] == "4242" and pm["gateway"] == "stripe"
    deadline = time.monotonic() + 30
    rows: list = []
    while time.monotonic() < deadline:
        rows = [tuple(r) for r in sapi.server.sql(
            "select type, status from webhook_inbox where gateway = 'stripe' and payload like :p",
            p=f"%{pi['gateway_reference']}%")]
        if ("payment_intent.succeeded", "applied") in rows:
            break
        time.sleep(0.1)
    # The webhook was stored and applied (not left waiting, not dead) ...
    assert ("payment_intent.succeeded", "applied") in rows, rows
    assert rows.count(("payment_intent.succeeded", "applied")) == 1
    # ... and, the confirm having recorded the success first, it emitted nothing more.
    succeeded = sapi.ok("GET", "/v1/events", params={"object_id": pi["id"],
                                                     "type": "payment_intent.succeeded"})
    assert len(succeeded["data"]) == 1


def test_a_decline_at_charge_time_is_a_402_with_stripe_s_code(sapi: Api) -> None:
    pi = create(sapi)
    r = sapi.post(f"/v1/payment_intents/{pi['id']}/confirm",
                  {"payment_method": "pm_card_chargeCustomerFail"})
    assert r.status_code == 402
    error = r.json()["error"]
    assert error["type"] == "card_error" and error["gateway"] == "stripe"
    assert error["code"] == "card_declined"
    after = sapi.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["status"] == "requires_payment_method"


def test_three_d_secure_is_passed_through_and_completed_by_webhook(
    sapi: Api, localstripe: LocalStripe
) -> None:
    import stripe

    client = stripe.StripeClient("sk_test_paymux", base_addresses={"api": localstripe.url})
    card = client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4000002760003184", "exp_month": 12,
                                 "exp_year": 2034, "cvc": "123"}})
    pi = create(sapi)
    challenged = sapi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                         {"payment_method": card.id})
    assert challenged["status"] == "requires_action"
    assert challenged["next_action"]["type"] == "use_stripe_sdk"
    localstripe.authenticate(pi["gateway_reference"], pi["client"]["client_secret"], True)
    done = sapi.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    assert done["amount_received"] == 2000


def test_manual_capture_then_partial_and_full_refunds(sapi: Api) -> None:
    pi = create(sapi, capture_method="manual", amount=5000)
    held = sapi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                   {"payment_method": "pm_card_visa"})
    assert held["status"] == "requires_capture" and held["amount_capturable"] == 5000
    done = sapi.ok("POST", f"/v1/payment_intents/{pi['id']}/capture")
    assert done["status"] == "succeeded"
    part = sapi.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1500})
    assert part["status"] == "succeeded" and part["gateway_reference"].startswith("re_")
    rest = sapi.ok("POST", "/v1/refunds", {"payment_intent": pi["id"]})
    assert rest["amount"] == 3500
    after = sapi.wait_for(f"/v1/payment_intents/{pi['id']}", "amount_refunded", 5000)
    assert after["amount_refunded"] == 5000
    # Stripe's webhooks about the payment (localstripe sends payment_intent.succeeded a second
    # after the capture, and nothing for refunds) handled: they must not count the refunds
    # twice.
    handled = handled_events(sapi, pi["gateway_reference"], "payment_intent.succeeded")
    assert {s for _, s in handled} <= {"applied", "stale"}, handled
    assert sapi.ok("GET", f"/v1/payment_intents/{pi['id']}")["amount_refunded"] == 5000
    refunds = sapi.ok("GET", "/v1/refunds", params={"payment_intent": pi["id"]})["data"]
    assert sorted(r["amount"] for r in refunds) == [1500, 3500]


def test_a_saved_card_is_charged_off_session(sapi: Api) -> None:
    customer = sapi.ok("POST", "/v1/customers", {"email": "off@example.com"})
    saved = sapi.ok("POST", "/v1/payment_methods/pm_card_visa/attach",
                    {"customer": customer["id"], "gateway": "stripe"})
    pi = sapi.ok("POST", "/v1/payment_intents", {
        "amount": 1200, "currency": "usd", "gateway": "stripe", "customer": customer["id"],
        "payment_method": saved["id"], "confirm": True, "off_session": True})
    assert pi["status"] == "succeeded"


def test_routing_picks_the_gateway_by_currency_unless_one_is_named(sapi: Api) -> None:
    yen = sapi.ok("POST", "/v1/payment_intents", {"amount": 500, "currency": "jpy"})
    assert yen["gateway"] == "sandbox"
    dollars = sapi.ok("POST", "/v1/payment_intents", {"amount": 500, "currency": "usd"})
    assert dollars["gateway"] == "stripe"
    named = sapi.ok("POST", "/v1/payment_intents",
                    {"amount": 500, "currency": "jpy", "gateway": "stripe"})
    assert named["gateway"] == "stripe"
    r = sapi.post("/v1/payment_intents", {"amount": 500, "currency": "usd", "gateway": "nope"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "gateway_unknown"
    r = sapi.post("/v1/payment_intents", {"amount": 1001, "currency": "kwd", "gateway": "stripe"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "amount"


def _post_stripe_event(server: RunningServer, event: dict) -> int:
    import json

    import httpx
    import stripe

    body = json.dumps(event)
    t = int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{t}.{body}", WEBHOOK_SECRET)
    response = httpx.post(f"{server.url}/webhooks/stripe", content=body.encode(),
                          headers={"stripe-signature": f"t={t},v1={signature}"})
    return response.status_code


def test_a_refund_made_in_stripe_s_dashboard_updates_our_records(
    sapi: Api, localstripe: LocalStripe
) -> None:
    import stripe

    pi = create(sapi, amount=4000)
    sapi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "pm_card_visa"})
    # Nobody here asked for this refund: someone clicked "Refund" at Stripe.
    client = stripe.StripeClient("sk_test_paymux", base_addresses={"api": localstripe.url})
    outside = client.v1.refunds.create(params={"payment_intent": pi["gateway_reference"],
                                               "amount": 1500})
    event = {"id": f"evt_dash_{outside.id}", "object": "event", "type": "refund.created",
             "created": int(time.time()), "data": {"object": outside.to_dict()}}
    assert _post_stripe_event(sapi.server, event) == 200
    after = sapi.wait_for(f"/v1/payment_intents/{pi['id']}", "amount_refunded", 1500)
    refunds = sapi.ok("GET", "/v1/refunds", params={"payment_intent": pi["id"]})["data"]
    assert [(r["amount"], r["status"], r["gateway_reference"]) for r in refunds] == [
        (1500, "succeeded", outside.id)]
    assert after["status"] == "succeeded"
    assert _post_stripe_event(sapi.server, event) == 200  # redelivered: counted once
    # The redelivery stored nothing new, and every event about the payment (this one, and
    # localstripe's payment_intent.succeeded from the confirm) is handled.
    handled = handled_events(sapi, pi["gateway_reference"], "refund.created",
                             "payment_intent.succeeded")
    assert [s for t, s in handled if t == "refund.created"] == ["applied"], handled
    assert sapi.ok("GET", f"/v1/payment_intents/{pi['id']}")["amount_refunded"] == 1500


def test_a_dispute_opened_at_stripe_is_recorded_on_the_payment(sapi: Api) -> None:
    pi = create(sapi, amount=2500)
    sapi.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "pm_card_visa"})
    dispute = {"id": f"dp_{pi['id']}", "object": "dispute", "amount": 2500, "currency": "usd",
               "payment_intent": pi["gateway_reference"], "reason": "fraudulent",
               "status": "needs_response", "charge": "ch_x", "created": int(time.time())}
    created = {"id": f"evt_dp_{pi['id']}", "object": "event", "type": "charge.dispute.created",
               "created": int(time.time()), "data": {"object": dispute}}
    assert _post_stripe_event(sapi.server, created) == 200
    deadline = time.monotonic() + 30
    while not (found := sapi.ok("GET", "/v1/disputes",
                                params={"payment_intent": pi["id"]})["data"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (found[0]["amount"], found[0]["reason"], found[0]["status"]) == (
        2500, "fraudulent", "needs_response")
    closed = dict(created, id=f"evt_dpc_{pi['id']}", type="charge.dispute.closed",
                  data={"object": dict(dispute, status="lost")})
    assert _post_stripe_event(sapi.server, closed) == 200
    deadline = time.monotonic() + 30
    while sapi.ok("GET", "/v1/disputes", params={"payment_intent": pi["id"]})["data"][0][
            "status"] != "lost":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    types = [e["type"] for e in sapi.ok("GET", "/v1/events",
                                         params={"object_id": found[0]["id"]})["data"]]
    assert sorted(types) == ["charge.dispute.created", "charge.dispute.updated"]
