"""SetupIntents on the sandbox gateway, over HTTP (SQLite and PostgreSQL): save a card for a
customer without a charge, then charge it off-session."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import Api
from support.sandbox_pages import answer_challenge


def customer(api: Api) -> str:
    return str(api.ok("POST", "/v1/customers", {"email": "saver@example.com"})["id"])


def events_of(api: Api, kind: str) -> list[dict[str, Any]]:
    return list(api.ok("GET", "/v1/events", params={"type": kind, "limit": 100})["data"])


def charge_off_session(api: Api, cus: str, pm: str) -> httpx.Response:
    return api.post(
        "/v1/payment_intents",
        {
            "amount": 1500,
            "currency": "usd",
            "customer": cus,
            "payment_method": pm,
            "off_session": True,
            "confirm": True,
        },
    )


def test_create_then_confirm_saves_the_card_for_the_customer(api: Api) -> None:
    cus = customer(api)
    seti = api.ok("POST", "/v1/setup_intents", {"customer": cus})
    assert seti["object"] == "setup_intent"
    assert seti["status"] == "requires_payment_method"
    assert seti["usage"] == "off_session"
    assert seti["client_secret"].startswith(seti["id"] + "_secret_")
    assert seti["id"].startswith("seti_")
    done = api.ok(
        "POST", f"/v1/setup_intents/{seti['id']}/confirm", {"payment_method": "pm_card_visa"}
    )
    assert done["status"] == "succeeded"
    assert done["next_action"] is None
    pm = api.ok("GET", f"/v1/payment_methods/{done['payment_method']}")
    assert pm["customer"] == cus
    assert pm["card"]["last4"] == "4242"
    listed = api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"]
    assert [m["id"] for m in listed] == [pm["id"]]
    succeeded = [e["data"]["object"]["id"] for e in events_of(api, "setup_intent.succeeded")]
    assert succeeded == [seti["id"]]
    attached = [e["data"]["object"]["id"] for e in events_of(api, "payment_method.attached")]
    assert attached == [pm["id"]]
    # Confirming again is refused: it has succeeded.
    again = api.post(f"/v1/setup_intents/{seti['id']}/confirm", {})
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "setup_intent_unexpected_state"


def test_the_saved_card_pays_off_session_without_any_action(api: Api) -> None:
    cus = customer(api)
    seti = api.ok(
        "POST",
        "/v1/setup_intents",
        {"customer": cus, "payment_method": "pm_card_visa", "confirm": True},
    )
    assert seti["status"] == "succeeded"
    r = charge_off_session(api, cus, seti["payment_method"])
    assert r.status_code == 200, r.text
    pi = r.json()
    assert pi["status"] == "succeeded"
    assert pi["amount_received"] == 1500
    assert pi["next_action"] is None


def test_a_decline_returns_to_requires_payment_method_with_the_error(api: Api) -> None:
    cus = customer(api)
    seti = api.ok("POST", "/v1/setup_intents", {"customer": cus})
    r = api.post(
        f"/v1/setup_intents/{seti['id']}/confirm",
        {"payment_method": "pm_card_chargeDeclinedInsufficientFunds"},
    )
    assert r.status_code == 402
    error = r.json()["error"]
    assert error["type"] == "card_error"
    assert error["code"] == "card_declined"
    assert error["decline_code"] == "insufficient_funds"
    assert error["setup_intent"]["status"] == "requires_payment_method"
    now = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert now["status"] == "requires_payment_method"
    assert now["payment_method"] is None
    assert now["last_setup_error"]["decline_code"] == "insufficient_funds"
    assert api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"] == []
    failed = [e["data"]["object"]["id"] for e in events_of(api, "setup_intent.setup_failed")]
    assert failed == [seti["id"]]
    # Another card then succeeds on the same intent.
    done = api.ok(
        "POST", f"/v1/setup_intents/{seti['id']}/confirm", {"payment_method": "pm_card_visa"}
    )
    assert done["status"] == "succeeded"
    assert done["last_setup_error"] is None


def test_three_d_secure_on_setup_then_off_session_payments_need_nothing(api: Api) -> None:
    cus = customer(api)
    seti = api.ok(
        "POST",
        "/v1/setup_intents",
        {
            "customer": cus,
            "payment_method": "pm_card_authenticationRequiredOnSetup",
            "confirm": True,
            "return_url": "https://shop.example/saved",
        },
    )
    assert seti["status"] == "requires_action"
    action = seti["next_action"]
    assert action["type"] == "redirect_to_url"
    assert action["redirect_to_url"]["return_url"] == "https://shop.example/saved"
    pending = api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"]
    assert pending == []  # nothing is saved for the customer until the payer authenticates
    page = answer_challenge(action["redirect_to_url"]["url"], "complete")
    assert page.status_code == 303
    assert page.headers["location"].startswith("https://shop.example/saved?setup_intent=")
    done = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert done["status"] == "succeeded"
    assert done["next_action"] is None
    assert [e["data"]["object"]["id"] for e in events_of(api, "setup_intent.requires_action")] == [
        seti["id"]
    ]
    # This card asks for authentication unless it was set up: off-session now just pays.
    r = charge_off_session(api, cus, done["payment_method"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"


def test_an_always_authenticate_card_still_needs_the_payer_after_its_setup(api: Api) -> None:
    """pm_card_threeDSecure2Required asks for 3-D Secure on every payment (as on Stripe):
    saving it authenticates once, and an off-session payment is still refused."""
    cus = customer(api)
    seti = api.ok(
        "POST",
        "/v1/setup_intents",
        {"customer": cus, "payment_method": "pm_card_threeDSecure2Required", "confirm": True},
    )
    answer_challenge(seti["next_action"]["redirect_to_url"]["url"], "complete")
    done = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert done["status"] == "succeeded"
    r = charge_off_session(api, cus, done["payment_method"])
    assert r.status_code == 402
    assert r.json()["error"]["code"] == "authentication_required"


def test_without_a_setup_the_same_card_is_refused_off_session(api: Api) -> None:
    """The control for the test above: the card does need authentication off-session."""
    cus = customer(api)
    pm = api.ok("POST", "/v1/payment_methods/pm_card_authenticationRequiredOnSetup/attach",
                {"customer": cus})
    r = charge_off_session(api, cus, pm["id"])
    assert r.status_code == 402
    assert r.json()["error"]["code"] == "authentication_required"


def test_a_failed_authentication_saves_nothing(api: Api) -> None:
    cus = customer(api)
    seti = api.ok(
        "POST",
        "/v1/setup_intents",
        {"customer": cus, "payment_method": "pm_card_threeDSecure2Required", "confirm": True},
    )
    assert seti["status"] == "requires_action"
    answer_challenge(seti["next_action"]["redirect_to_url"]["url"], "fail")
    now = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert now["status"] == "requires_payment_method"
    assert now["last_setup_error"]["gateway_code"] == "authentication_failed"
    assert api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"] == []


def test_cancel_and_what_a_canceled_intent_refuses(api: Api) -> None:
    cus = customer(api)
    seti = api.ok("POST", "/v1/setup_intents", {"customer": cus, "payment_method": "pm_card_visa"})
    assert seti["status"] == "requires_confirmation"
    canceled = api.ok(
        "POST", f"/v1/setup_intents/{seti['id']}/cancel",
        {"cancellation_reason": "requested_by_customer"},
    )
    assert canceled["status"] == "canceled"
    assert canceled["cancellation_reason"] == "requested_by_customer"
    r = api.post(f"/v1/setup_intents/{seti['id']}/confirm", {})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "setup_intent_unexpected_state"
    assert api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"] == []
    assert [e["data"]["object"]["id"] for e in events_of(api, "setup_intent.canceled")] == [
        seti["id"]
    ]


def test_update_list_and_another_account_sees_none_of_it(api: Api, server: Any) -> None:
    cus = customer(api)
    other_cus = customer(api)
    seti = api.ok("POST", "/v1/setup_intents", {"customer": cus, "metadata": {"a": "1"}})
    updated = api.ok(
        "POST", f"/v1/setup_intents/{seti['id']}",
        {"metadata": {"b": "2"}, "payment_method": "pm_card_mastercard"},
    )
    assert updated["metadata"] == {"a": "1", "b": "2"}
    assert updated["status"] == "requires_confirmation"
    api.ok("POST", "/v1/setup_intents", {"customer": other_cus})
    mine = api.ok("GET", "/v1/setup_intents", params={"customer": cus})
    assert mine["object"] == "list"
    assert [s["id"] for s in mine["data"]] == [seti["id"]]
    assert len(api.ok("GET", "/v1/setup_intents")["data"]) == 2
    stranger = Api(server)
    try:
        for method, path in (
            ("GET", f"/v1/setup_intents/{seti['id']}"),
            ("POST", f"/v1/setup_intents/{seti['id']}/confirm"),
            ("POST", f"/v1/setup_intents/{seti['id']}/cancel"),
        ):
            r = stranger.http.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["code"] == "resource_missing"
        assert stranger.ok("GET", "/v1/setup_intents")["data"] == []
    finally:
        stranger.close()


def test_invoice_settings_default_payment_method(api: Api) -> None:
    cus = customer(api)
    seti = api.ok(
        "POST", "/v1/setup_intents",
        {"customer": cus, "payment_method": "pm_card_visa", "confirm": True},
    )
    pm = seti["payment_method"]
    c = api.ok("POST", f"/v1/customers/{cus}", data={
        "invoice_settings[default_payment_method]": pm})
    assert c["invoice_settings"]["default_payment_method"] == pm
    assert c["default_payment_method"] == pm  # the top-level field users rely on, kept
    assert api.ok("GET", f"/v1/customers/{cus}")["invoice_settings"]["default_payment_method"] == pm
    cleared = api.ok("POST", f"/v1/customers/{cus}", data={
        "invoice_settings[default_payment_method]": ""})
    assert cleared["invoice_settings"]["default_payment_method"] is None
    stranger_pm = api.ok("POST", "/v1/payment_methods/pm_card_visa/attach",
                         {"customer": customer(api)})["id"]
    r = api.post(f"/v1/customers/{cus}",
                 {"invoice_settings": {"default_payment_method": stranger_pm}})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "invoice_settings[default_payment_method]"


def test_confirm_without_a_customer_or_card_is_a_clear_400(api: Api) -> None:
    seti = api.ok("POST", "/v1/setup_intents", {})
    r = api.post(f"/v1/setup_intents/{seti['id']}/confirm", {"payment_method": "pm_card_visa"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "customer"
    seti = api.ok("POST", "/v1/setup_intents", {"customer": customer(api)})
    r = api.post(f"/v1/setup_intents/{seti['id']}/confirm", {})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "payment_method"
    r = api.post("/v1/setup_intents", {"usage": "sometimes"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "usage"


def test_a_lost_answer_is_asked_again_with_the_same_key_no_second_vault_entry(api: Api) -> None:
    cus = customer(api)
    seti = api.ok("POST", "/v1/setup_intents", {"customer": cus, "payment_method": "pm_card_visa"})
    # The sandbox processes the setup, then the answer is lost (every retry of it too).
    api.sandbox("POST", "/_control/faults",
                {"operation": "setup", "mode": "lose_response", "count": 10})
    key = {"Idempotency-Key": f"confirm-{seti['id']}"}
    r = api.post(f"/v1/setup_intents/{seti['id']}/confirm", {}, headers=key)
    assert r.status_code >= 500, r.text
    rows = api.server.sql("select pending, attempts from setup_intents where id = :i", i=seti["id"])
    assert [tuple(row) for row in rows] == [(True, 1)]
    httpx.delete(f"{api.server.url}/sandbox/_control/faults", timeout=10)
    again = api.post(f"/v1/setup_intents/{seti['id']}/confirm", {}, headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "succeeded"
    rows = api.server.sql("select pending, attempts from setup_intents where id = :i", i=seti["id"])
    assert [tuple(row) for row in rows] == [(False, 1)]
    attached = [e for e in events_of(api, "payment_method.attached")]
    assert len(attached) == 1
