"""One-time payments through the HTTP API on a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

from conftest import Api
from support.sandbox_pages import answer_challenge


def create(api: Api, **params: object) -> dict:
    body = {"amount": 2000, "currency": "usd", **params}
    return api.ok("POST", "/v1/payment_intents", body)


def test_a_visa_payment_succeeds_and_writes_its_events(api: Api) -> None:
    pi = create(api)
    assert pi["status"] == "requires_payment_method"
    assert pi["client"]["gateway"] == "sandbox"
    done = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                  {"payment_method": "pm_card_visa"})
    assert done["status"] == "succeeded"
    assert done["amount_received"] == 2000
    assert done["payment_method"].startswith("pm_") and done["payment_method"] != "pm_card_visa"
    pm = api.ok("GET", f"/v1/payment_methods/{done['payment_method']}")
    assert pm["card"]["brand"] == "visa" and pm["card"]["last4"] == "4242"
    events = api.ok("GET", "/v1/events", params={"object_id": pi["id"]})["data"]
    assert {e["type"] for e in events} == {"payment_intent.created", "payment_intent.succeeded"}
    assert len(api.charges(pi["id"])) == 1


def test_a_declined_card_returns_402_with_the_error_object(api: Api) -> None:
    pi = create(api)
    r = api.post(f"/v1/payment_intents/{pi['id']}/confirm",
                 {"payment_method": "pm_card_chargeDeclinedInsufficientFunds"})
    assert r.status_code == 402
    error = r.json()["error"]
    assert error["type"] == "card_error"
    assert error["code"] == "card_declined"
    assert error["decline_code"] == "insufficient_funds"
    assert error["action"] == "use_another_method"
    assert error["gateway"] == "sandbox" and error["gateway_code"] == "insufficient_funds"
    assert error["user_message"] and error["request_id"] == r.headers["request-id"]
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["status"] == "requires_payment_method"
    assert after["last_payment_error"]["code"] == "card_declined"
    retry = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                   {"payment_method": "pm_card_visa"})
    assert retry["status"] == "succeeded"


def test_manual_capture_of_less_than_authorized_releases_the_rest(api: Api) -> None:
    pi = create(api, amount=10000, capture_method="manual")
    held = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                  {"payment_method": "pm_card_mastercard"})
    assert held["status"] == "requires_capture" and held["amount_capturable"] == 10000
    done = api.ok("POST", f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 7500})
    assert done["status"] == "succeeded"
    assert done["amount_received"] == 7500 and done["amount_capturable"] == 0


def test_partial_refunds_add_up_and_an_over_refund_changes_nothing(api: Api) -> None:
    pi = create(api, amount=5000, confirm=True, payment_method="pm_card_visa")
    assert pi["status"] == "succeeded"
    r1 = api.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 2000,
                                        "reason": "requested_by_customer"})
    assert r1["status"] == "succeeded"
    api.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 2500})
    before = api.counts()
    r = api.post("/v1/refunds", {"payment_intent": pi["id"], "amount": 501})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "refund_amount_too_large"
    assert r.json()["error"]["param"] == "amount"
    assert api.counts() == before
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["amount_refunded"] == 4500
    last = api.ok("POST", "/v1/refunds", {"payment_intent": pi["id"]})
    assert last["amount"] == 500
    r = api.post("/v1/refunds", {"payment_intent": pi["id"]})
    assert r.json()["error"]["code"] == "charge_already_refunded"


def test_three_d_secure_challenge_approved_moves_the_intent_on(api: Api) -> None:
    import httpx

    pi = create(api, confirm=True, payment_method="pm_card_threeDSecure2Required")
    assert pi["status"] == "requires_action"
    url = pi["next_action"]["redirect_to_url"]["url"]
    page = httpx.get(url)
    assert "Complete authentication" in page.text
    answer_challenge(url, "complete")
    done = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    assert done["amount_received"] == 2000
