"""Checkout Sessions over HTTP (SQLite and PostgreSQL): the /v1 API in Stripe's shape, and
the hosted page's own endpoints driven as its script drives them (the browser runs are in
tests/browser/). Tokens come from the sandbox's token endpoint, as its card form gets them.
Expected values are stated literally (Stripe's documented behaviour, the sandbox's cards)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx

from conftest import Api
from support.sandbox_pages import answer_challenge, challenge_form

SUCCESS = "https://shop.example/thanks?session={CHECKOUT_SESSION_ID}"
CANCEL = "https://shop.example/cart"
GENERIC_DECLINE_MESSAGE = "Your card was declined. Please try again or use another payment method."


def token(api: Api, number: str) -> str:
    r = httpx.post(f"{api.server.url}/sandbox/v1/tokens", timeout=10, json={
        "number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def session(api: Api, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mode": "payment",
        "success_url": SUCCESS,
        "cancel_url": CANCEL,
        "line_items": [
            {"price_data": {"currency": "usd", "unit_amount": 1500,
                            "product_data": {"name": "T-shirt"}}, "quantity": 2},
        ],
    }
    body.update(extra)
    return api.ok("POST", "/v1/checkout/sessions", body)


def pay(api: Api, cs: dict[str, Any], number: str) -> httpx.Response:
    return httpx.post(
        f"{cs['url']}/confirm", json={"payment_method": token(api, number)},
        headers={"origin": api.server.url}, timeout=30)


def events_of(api: Api, kind: str) -> list[dict[str, Any]]:
    return list(api.ok("GET", "/v1/events", params={"type": kind, "limit": 100})["data"])


def session_rows(api: Api) -> int:
    return int(api.server.sql("select count(*) from checkout_sessions where account_id = :a",
                              a=api.account_id)[0][0])


def test_a_payment_session_has_stripes_shape_and_its_payment_intent(api: Api) -> None:
    before = int(time.time())
    cs = session(api, metadata={"order": "1001"}, client_reference_id="cart-7")
    assert cs["object"] == "checkout.session"
    assert re.fullmatch(r"cs_test_[A-Za-z0-9]{30}", cs["id"]), cs["id"]
    assert (cs["mode"], cs["status"], cs["payment_status"]) == ("payment", "open", "unpaid")
    assert (cs["amount_subtotal"], cs["amount_total"], cs["currency"]) == (3000, 3000, "usd")
    assert cs["url"] == f"{api.server.url}/c/pay/{cs['id']}"
    assert (cs["success_url"], cs["cancel_url"]) == (SUCCESS, CANCEL)
    assert cs["metadata"] == {"order": "1001"} and cs["client_reference_id"] == "cart-7"
    assert cs["payment_method_types"] == ["card"] and cs["livemode"] is False
    assert cs["setup_intent"] is None
    # 24 hours by default (Stripe's), from creation.
    assert before + 86400 <= cs["expires_at"] <= int(time.time()) + 86400
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["amount"], pi["currency"], pi["status"]) == (3000, "usd", "requires_payment_method")
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}") == cs
    items = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}/line_items")
    assert items["object"] == "list" and items["has_more"] is False
    [item] = items["data"]
    assert item["object"] == "item" and item["id"].startswith("li_")
    assert (item["description"], item["quantity"], item["amount_total"]) == ("T-shirt", 2, 3000)
    assert (item["price"]["unit_amount"], item["price"]["type"]) == (1500, "one_time")


def test_a_catalog_price_is_sold_with_its_products_name(api: Api) -> None:
    product = api.ok("POST", "/v1/products", {"name": "Mug"})
    price = api.ok("POST", "/v1/prices",
                   {"product": product["id"], "currency": "eur", "unit_amount": 900})
    cs = session(api, line_items=[{"price": price["id"], "quantity": 3}])
    assert (cs["amount_total"], cs["currency"]) == (2700, "eur")
    [item] = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}/line_items")["data"]
    assert (item["description"], item["price"]["id"], item["amount_subtotal"]) == (
        "Mug", price["id"], 2700)


def test_line_items_page_in_their_order(api: Api) -> None:
    lines = [{"price_data": {"currency": "usd", "unit_amount": 100 * (n + 1),
                             "product_data": {"name": f"item {n}"}}} for n in range(3)]
    cs = session(api, line_items=lines)
    assert cs["amount_total"] == 600
    path = f"/v1/checkout/sessions/{cs['id']}/line_items"
    first = api.ok("GET", path, params={"limit": 2})
    assert [i["description"] for i in first["data"]] == ["item 0", "item 1"]
    assert first["has_more"] is True
    rest = api.ok("GET", path, params={"starting_after": first["data"][1]["id"]})
    assert [i["description"] for i in rest["data"]] == ["item 2"] and rest["has_more"] is False


def test_bad_input_is_refused_with_its_code_and_param_and_writes_nothing(api: Api) -> None:
    now = int(time.time())
    one = {"price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "A"}}}
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"mode": None}, 400, "parameter_missing", "mode"),
        ({"mode": "subscription"}, 400, "parameter_invalid", "mode"),
        ({"success_url": None}, 400, "parameter_missing", "success_url"),
        ({"success_url": "javascript:alert(1)"}, 400, "parameter_invalid", "success_url"),
        ({"expires_at": now + 60}, 400, "parameter_invalid", "expires_at"),
        ({"expires_at": now + 25 * 3600}, 400, "parameter_invalid", "expires_at"),
        ({"customer_email": "a@example.com", "customer": "cus_x"}, 400, "parameter_invalid",
         "customer_email"),
        ({"line_items": []}, 400, "parameter_missing", "line_items"),
        ({"line_items": [{"price": "price_nope"}]}, 404, "resource_missing",
         "line_items[0][price]"),
        ({"line_items": [one, {"price_data": {"currency": "eur", "unit_amount": 500,
                                              "product_data": {"name": "B"}}}]},
         400, "currency_mismatch", "line_items"),
        ({"line_items": [{"price_data": {"currency": "usd", "unit_amount": 500,
                                         "product_data": {"name": "C"},
                                         "recurring": {"interval": "month"}}}]},
         400, "parameter_invalid", "line_items[0][price_data][recurring]"),
        ({"line_items": [{"price_data": {"currency": "zzz", "unit_amount": 500,
                                         "product_data": {"name": "D"}}}]},
         400, "currency_unknown", "line_items[0][price_data][currency]"),
        ({"line_items": [one, {**one, "quantity": 0}]}, 400, "parameter_invalid",
         "line_items[1][quantity]"),
        ({"line_items": [{"price_data": {"currency": "usd", "unit_amount": 500,
                                         "product": "prod_x", "product_data": {"name": "E"}}}]},
         400, "parameter_invalid", "line_items[0][price_data][product_data]"),
        ({"line_items": [{"price_data": {"currency": "usd", "unit_amount": 99_999_999,
                                         "product_data": {"name": "F"}}, "quantity": 999_999}]},
         400, "amount_too_large", "line_items"),
        ({"mode": "setup"}, 400, "parameter_invalid", "line_items"),
    ]
    base: dict[str, Any] = {"mode": "payment", "success_url": SUCCESS, "line_items": [one]}
    for change, status, code, param in cases:
        body = {k: v for k, v in {**base, **change}.items() if v is not None}
        r = api.post("/v1/checkout/sessions", body)
        assert r.status_code == status, (change, r.text)
        error = r.json()["error"]
        assert (error["code"], error["param"]) == (code, param), (change, error)
    assert session_rows(api) == 0
    assert api.counts()["payment_intents"] == 0


def test_paying_on_the_page_completes_the_session_once(api: Api) -> None:
    cs = session(api)
    page = httpx.get(cs["url"], timeout=10)
    assert page.status_code == 200
    assert 'id="card-frame"' in page.text and 'src="/sandbox/elements"' in page.text
    r = pay(api, cs, "4242424242424242")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "complete",
                        "redirect_url": f"https://shop.example/thanks?session={cs['id']}"}
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"], done["url"]) == ("complete", "paid", None)
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 3000)
    completed = [e["data"]["object"]["id"] for e in events_of(api, "checkout.session.completed")]
    assert completed == [cs["id"]]
    assert len(api.charges(cs["payment_intent"])) == 1
    # The page now sends the payer to the success URL; paying again is refused.
    again = httpx.get(cs["url"], timeout=10)
    assert again.status_code == 303
    assert again.headers["location"] == f"https://shop.example/thanks?session={cs['id']}"
    # A second tab (or a page whose answer was lost) posting again is told it is paid, and
    # nothing is charged again.
    twice = pay(api, cs, "4242424242424242")
    assert twice.status_code == 200, twice.text
    assert twice.json() == {"status": "complete",
                            "redirect_url": f"https://shop.example/thanks?session={cs['id']}"}
    assert len(api.charges(cs["payment_intent"])) == 1


def test_a_decline_shows_the_taxonomys_message_and_the_payer_can_retry(api: Api) -> None:
    cs = session(api)
    r = pay(api, cs, "4000000000000002")
    assert r.status_code == 402
    assert r.json() == {"status": "failed", "code": "card_declined",
                        "message": GENERIC_DECLINE_MESSAGE, "action": "retry"}
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    assert events_of(api, "checkout.session.completed") == []
    r = pay(api, cs, "4000000000009995")
    assert r.status_code == 402
    assert r.json()["message"] == "Your card has insufficient funds. Please use another payment method."
    assert r.json()["action"] == "use_another_method"
    assert pay(api, cs, "4242424242424242").json()["status"] == "complete"


def test_3ds_passed_on_the_challenge_page_completes_on_return(api: Api) -> None:
    cs = session(api)
    r = pay(api, cs, "4000000000003220")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "requires_action"
    assert "/sandbox/3ds/" in answer["redirect_url"]
    back = answer_challenge(answer["redirect_url"], "complete")
    assert back.status_code == 303
    assert back.headers["location"].startswith(cs["url"] + "?")
    page = httpx.get(back.headers["location"], timeout=10)
    # Not a redirect: the challenge form's CSP (form-action) would stop one to another
    # origin; a page that moves on by itself, with a link.
    assert page.status_code == 200
    success = f"https://shop.example/thanks?session={cs['id']}"
    assert f'<meta http-equiv="refresh" content="0;url={success}">' in page.text
    assert f'<a id="continue" href="{success}">' in page.text
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "paid")


def test_3ds_failed_leaves_the_session_open_with_a_message(api: Api) -> None:
    cs = session(api)
    answer = pay(api, cs, "4000000000003220").json()
    back = answer_challenge(answer["redirect_url"], "fail")
    page = httpx.get(back.headers["location"], timeout=10)
    assert page.status_code == 200
    assert "The card&#39;s authentication failed." in page.text
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"


def test_the_gateways_webhook_alone_completes_the_session(api: Api) -> None:
    """The payer authenticates but never comes back: the sandbox's webhook settles the
    intent, and the session completes in the same transaction."""
    cs = session(api)
    answer = pay(api, cs, "4000000000003220").json()
    action, token_, _ = challenge_form(answer["redirect_url"])
    r = httpx.post(action, data={"token": token_, "outcome": "complete"}, timeout=10)
    assert r.status_code == 303  # not followed: the page never sees the payer again
    done = api.wait_for(f"/v1/checkout/sessions/{cs['id']}", "status", "complete")
    assert done["payment_status"] == "paid"
    completed = [e["data"]["object"]["id"] for e in events_of(api, "checkout.session.completed")]
    assert completed == [cs["id"]]


def test_manual_capture_completes_when_authorized(api: Api) -> None:
    cs = session(api, payment_intent_data={"capture_method": "manual"})
    assert pay(api, cs, "4242424242424242").json()["status"] == "complete"
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "unpaid")
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["status"], pi["amount_capturable"]) == ("requires_capture", 3000)


def test_expire_cancels_the_intent_then_the_session(api: Api) -> None:
    cs = session(api)
    expired = api.ok("POST", f"/v1/checkout/sessions/{cs['id']}/expire")
    assert (expired["status"], expired["url"], expired["payment_status"]) == (
        "expired", None, "unpaid")
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["status"], pi["cancellation_reason"]) == ("canceled", "abandoned")
    assert [e["data"]["object"]["id"] for e in events_of(api, "checkout.session.expired")] == [
        cs["id"]]
    again = api.post(f"/v1/checkout/sessions/{cs['id']}/expire")
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "checkout_session_unexpected_state"
    page = httpx.get(cs["url"], timeout=10)
    assert page.status_code == 410 and 'id="expired"' in page.text
    refused = pay(api, cs, "4242424242424242")
    assert refused.status_code == 400
    assert refused.json()["code"] == "checkout_session_unexpected_state"


def test_a_complete_session_cannot_expire(api: Api) -> None:
    cs = session(api)
    assert pay(api, cs, "4242424242424242").json()["status"] == "complete"
    r = api.post(f"/v1/checkout/sessions/{cs['id']}/expire")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "checkout_session_unexpected_state"
    assert api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")["status"] == "succeeded"


def test_the_sweep_expires_a_session_past_expires_at(api: Api) -> None:
    cs = session(api, expires_at=int(time.time()) + 3600)
    # Its time comes (the row moved back: the sweep reads expires_us).
    api.server.sql("update checkout_sessions set expires_us = :t where id = :i",
                   t=(int(time.time()) - 5) * 1_000_000, i=cs["id"])
    assert httpx.get(cs["url"], timeout=10).status_code == 410  # before the sweep, too
    done = api.wait_for(f"/v1/checkout/sessions/{cs['id']}", "status", "expired")
    assert done["url"] is None
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert pi["status"] == "canceled"


def test_setup_mode_saves_the_card_for_a_new_customer(api: Api) -> None:
    cs = api.ok("POST", "/v1/checkout/sessions", {
        "mode": "setup", "success_url": SUCCESS, "customer_email": "saver@example.com",
        "currency": "usd"})
    assert (cs["mode"], cs["payment_status"], cs["amount_total"]) == (
        "setup", "no_payment_required", None)
    assert cs["payment_intent"] is None and cs["setup_intent"].startswith("seti_")
    assert cs["customer"].startswith("cus_")
    r = pay(api, cs, "4242424242424242")
    assert r.json()["status"] == "complete", r.text
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "no_payment_required")
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    assert si["status"] == "succeeded"
    pm = api.ok("GET", f"/v1/payment_methods/{si['payment_method']}")
    assert (pm["customer"], pm["card"]["last4"]) == (cs["customer"], "4242")
    customer = api.ok("GET", f"/v1/customers/{cs['customer']}")
    assert customer["email"] == "saver@example.com"


def test_list_filters_and_pages(api: Api) -> None:
    a = session(api, customer_email="a@example.com")
    b = session(api)
    c = session(api)
    assert pay(api, c, "4242424242424242").json()["status"] == "complete"
    listed = api.ok("GET", "/v1/checkout/sessions")
    assert [s["id"] for s in listed["data"]] == [c["id"], b["id"], a["id"]]
    opened = api.ok("GET", "/v1/checkout/sessions", params={"status": "open"})
    assert [s["id"] for s in opened["data"]] == [b["id"], a["id"]]
    by_pi = api.ok("GET", "/v1/checkout/sessions", params={"payment_intent": c["payment_intent"]})
    assert [s["id"] for s in by_pi["data"]] == [c["id"]]
    by_email = api.ok("GET", "/v1/checkout/sessions",
                      params={"customer_details[email]": "a@example.com"})
    assert [s["id"] for s in by_email["data"]] == [a["id"]]
    first = api.ok("GET", "/v1/checkout/sessions", params={"limit": 1})
    assert first["has_more"] is True and [s["id"] for s in first["data"]] == [c["id"]]


def test_a_retried_create_returns_the_same_session_and_payment(api: Api) -> None:
    key = f"cs-{uuid.uuid4()}"
    body = {"mode": "payment", "success_url": SUCCESS, "line_items": [
        {"price_data": {"currency": "usd", "unit_amount": 700, "product_data": {"name": "X"}}}]}
    one = api.post("/v1/checkout/sessions", body, headers={"idempotency-key": key})
    two = api.post("/v1/checkout/sessions", body, headers={"idempotency-key": key})
    assert one.status_code == two.status_code == 200
    assert one.json()["id"] == two.json()["id"]
    assert session_rows(api) == 1 and api.counts()["payment_intents"] == 1


def test_another_accounts_session_is_not_found(api: Api) -> None:
    cs = session(api)
    other = Api(api.server)
    try:
        r = other.get(f"/v1/checkout/sessions/{cs['id']}")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "resource_missing"
        assert other.post(f"/v1/checkout/sessions/{cs['id']}/expire").status_code == 404
    finally:
        other.close()


def test_the_page_refuses_another_origin_and_non_json(api: Api) -> None:
    cs = session(api)
    r = httpx.post(f"{cs['url']}/confirm", json={"payment_method": "tok_visa"},
                   headers={"origin": "https://evil.example"}, timeout=10)
    assert r.status_code == 403
    r = httpx.post(f"{cs['url']}/confirm", data={"payment_method": "tok_visa"}, timeout=10)
    assert r.status_code == 415
    assert httpx.get(f"{api.server.url}/c/pay/cs_test_nope", timeout=10).status_code == 404
    assert api.charges(cs["payment_intent"]) == []


def test_a_crash_between_the_payment_and_the_session_row_resumes_the_same_payment(
    api: Api,
) -> None:
    """The session row's insert fails after its PaymentIntent was made (a database trigger
    stands in for the crash); the retry with the same Idempotency-Key makes the session
    with that same PaymentIntent, never a second one."""
    marker = f"crash-{uuid.uuid4().hex[:12]}"
    postgres = api.server.settings.database_url.startswith("postgresql")
    if postgres:
        api.server.sql(
            "create or replace function h3_checkout_crash() returns trigger as $$ begin "
            f"if new.client_reference_id = '{marker}' then raise exception 'crash'; end if; "
            "return new; end $$ language plpgsql")
        api.server.sql("create trigger h3_checkout_crash before insert on checkout_sessions "
                       "for each row execute function h3_checkout_crash()")
    else:
        api.server.sql("create trigger h3_checkout_crash before insert on checkout_sessions "
                       f"when new.client_reference_id = '{marker}' "
                       "begin select raise(abort, 'crash'); end")
    key = f"crash-{uuid.uuid4()}"
    body = {"mode": "payment", "success_url": SUCCESS, "client_reference_id": marker,
            "line_items": [{"price_data": {"currency": "usd", "unit_amount": 1200,
                                           "product_data": {"name": "Lamp"}}}]}
    try:
        first = api.post("/v1/checkout/sessions", body, headers={"idempotency-key": key})
        assert first.status_code >= 500, first.text
        assert session_rows(api) == 0
        made = api.server.sql("select id, amount from payment_intents where account_id = :a",
                              a=api.account_id)
        assert [tuple(r)[1] for r in made] == [1200]  # the payment was made, then the crash
    finally:
        api.server.sql("drop trigger h3_checkout_crash" + (" on checkout_sessions"
                                                            if postgres else ""))
    second = api.post("/v1/checkout/sessions", body, headers={"idempotency-key": key})
    assert second.status_code == 200, second.text
    cs = second.json()
    assert cs["payment_intent"] == made[0][0]
    assert session_rows(api) == 1 and api.counts()["payment_intents"] == 1
    assert pay(api, cs, "4242424242424242").json()["status"] == "complete"
    assert len(api.charges(cs["payment_intent"])) == 1


def test_a_session_routed_to_a_gateway_without_a_form_here_takes_no_card(api: Api) -> None:
    """A session whose payment was moved to PayPal (the row moved, as routing would have
    sent it) has no PayPal order for the buttons to approve (nor a PayPal connection here):
    the page shows no card form and refuses the page's confirm."""
    cs = session(api)
    api.server.sql("update payment_intents set gateway = 'paypal' where id = :i",
                   i=cs["payment_intent"])
    page = httpx.get(cs["url"], timeout=10)
    assert page.status_code == 200
    assert 'id="pay-elsewhere"' in page.text and "<iframe" not in page.text
    assert "<script" not in page.text
    r = httpx.post(f"{cs['url']}/confirm", json={"payment_method": "tok_visa"}, timeout=10)
    assert r.status_code == 400
    assert r.json()["code"] == "checkout_session_unexpected_state"


def test_the_page_refuses_an_eleventh_card(api: Api) -> None:
    """A card tester holding the URL gets ten tries, then a 429 that charges nothing."""
    cs = session(api)
    for _ in range(10):
        assert pay(api, cs, "4000000000000002").status_code == 402
    r = pay(api, cs, "4242424242424242")
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited"
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert pi["amount_received"] == 0


def test_setup_mode_with_3ds_completes_when_the_payer_returns(api: Api) -> None:
    cs = api.ok("POST", "/v1/checkout/sessions", {
        "mode": "setup", "success_url": SUCCESS, "customer_email": "3ds-saver@example.com"})
    answer = pay(api, cs, "4000002500003155").json()  # authentication required on setup
    assert answer["status"] == "requires_action", answer
    back = answer_challenge(answer["redirect_url"], "complete")
    assert back.status_code == 303
    assert back.headers["location"].startswith(cs["url"] + "?")
    assert "setup_intent=" in back.headers["location"]
    page = httpx.get(back.headers["location"], timeout=10)
    assert page.status_code == 200 and 'id="continue"' in page.text
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "no_payment_required")
    assert api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")["status"] == "succeeded"


# -- the page takes a fresh single-use token only (review r6, H1) -------------------------
def confirm_with(api: Api, cs: dict[str, Any], ref: str) -> httpx.Response:
    return httpx.post(f"{cs['url']}/confirm", json={"payment_method": ref},
                      headers={"origin": api.server.url}, timeout=30)


def test_the_page_refuses_another_payers_payment_method_id(api: Api) -> None:
    first = session(api)
    assert pay(api, first, "4242424242424242").json()["status"] == "complete"
    pm_id = api.ok("GET", f"/v1/payment_intents/{first['payment_intent']}")["payment_method"]
    assert pm_id.startswith("pm_")
    second = session(api)
    r = confirm_with(api, second, pm_id)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "parameter_invalid"
    assert api.charges(second["payment_intent"]) == []
    assert api.ok("GET", f"/v1/checkout/sessions/{second['id']}")["status"] == "open"


def test_the_page_refuses_source_bank_account_and_intent_ids(api: Api) -> None:
    cs = session(api)
    other = session(api)
    for ref in ("src_1AbCdEf", "ba_1AbCdEf", other["payment_intent"]):
        r = confirm_with(api, cs, ref)
        assert (r.status_code, r.json()["code"]) == (400, "parameter_invalid"), r.text
    assert api.charges(cs["payment_intent"]) == []


def test_the_page_refuses_a_token_that_already_paid(api: Api) -> None:
    tok = token(api, "4242424242424242")
    first = session(api)
    assert confirm_with(api, first, tok).json()["status"] == "complete"
    second = session(api)
    r = confirm_with(api, second, tok)
    assert r.status_code in (400, 404), r.text
    assert r.json()["status"] == "failed"
    assert api.charges(second["payment_intent"]) == []
    assert api.ok("GET", f"/v1/checkout/sessions/{second['id']}")["status"] == "open"


def test_the_page_refuses_the_session_customers_saved_card(api: Api) -> None:
    cus = api.ok("POST", "/v1/customers", {"email": "v@example.com"})
    si = api.ok("POST", "/v1/setup_intents", {
        "customer": cus["id"], "confirm": True, "usage": "off_session",
        "payment_method": token(api, "4242424242424242")})
    assert si["status"] == "succeeded"
    cs = session(api, customer=cus["id"])
    saved = api.server.sql("select token from payment_methods where id = :p",
                           p=si["payment_method"])[0][0]
    for ref in (si["payment_method"], saved):
        r = confirm_with(api, cs, ref)
        assert r.status_code in (400, 404), (ref, r.text)
        assert r.json()["status"] == "failed"
    assert api.charges(cs["payment_intent"]) == []
    # A fresh card from the form still pays.
    assert pay(api, cs, "4242424242424242").json()["status"] == "complete"


# -- the sweep queues jobs and repairs (review r6, M1) ------------------------------------
def test_the_sweep_expires_through_a_deduplicated_job_per_session(api: Api) -> None:
    stuck = session(api)
    fine = session(api)
    past = (int(time.time()) - 5) * 1_000_000
    # ``stuck``'s payment is under way (processing): it cannot expire, its job backs off.
    api.server.sql("update payment_intents set status = 'processing' where id = :p",
                   p=stuck["payment_intent"])
    for cs in (stuck, fine):
        api.server.sql("update checkout_sessions set expires_us = :t where id = :i",
                       t=past, i=cs["id"])
    assert api.wait_for(f"/v1/checkout/sessions/{fine['id']}", "status", "expired")
    jobs = api.server.sql(
        "select kind, dedupe_key from jobs where dedupe_key in (:a, :b) order by dedupe_key",
        a=f"cs-expire:{fine['id']}", b=f"cs-expire:{stuck['id']}")
    assert ("expire_checkout_session", f"cs-expire:{fine['id']}") in [tuple(j) for j in jobs]
    assert ("expire_checkout_session", f"cs-expire:{stuck['id']}") in [tuple(j) for j in jobs]
    assert api.ok("GET", f"/v1/checkout/sessions/{stuck['id']}")["status"] == "open"
    # Its job waits for its backoff, queued once (no second job while it waits).
    queued = api.server.sql(
        "select count(*) from jobs where dedupe_key = :k and status in ('queued', 'running')",
        k=f"cs-expire:{stuck['id']}")[0][0]
    assert queued == 1


def test_the_sweep_completes_an_open_session_whose_payment_already_succeeded(api: Api) -> None:
    cs = session(api)
    assert pay(api, cs, "4242424242424242").json()["status"] == "complete"
    # The completing reaction lost (played by writing the session back to open).
    api.server.sql("update checkout_sessions set status = 'open', payment_status = 'unpaid', "
                   "completed_us = null where id = :i", i=cs["id"])
    done = api.wait_for(f"/v1/checkout/sessions/{cs['id']}", "status", "complete")
    assert done["payment_status"] == "paid"
    assert len(api.charges(cs["payment_intent"])) == 1


# -- what the page tells a payer (review r6, M3) ------------------------------------------
PAGE_FAILED = "The payment did not go through. Try another card."


def test_a_payment_processing_answers_processing_and_the_page_can_ask_until_it_settles(
    api: Api,
) -> None:
    cs = session(api)
    status_url = f"{cs['url']}/status"
    assert httpx.get(status_url, timeout=10).json() == {"status": "open"}
    # The payment is under way at the gateway (another tab's, its answer not yet back).
    api.server.sql("update payment_intents set status = 'processing' where id = :p",
                   p=cs["payment_intent"])
    r = pay(api, cs, "4242424242424242")
    assert (r.status_code, r.json()) == (200, {"status": "processing"}), r.text
    assert httpx.get(status_url, timeout=10).json() == {"status": "processing"}
    assert api.charges(cs["payment_intent"]) == []
    api.server.sql("update payment_intents set status = 'succeeded' where id = :p",
                   p=cs["payment_intent"])
    assert httpx.get(status_url, timeout=10).json() == {
        "status": "complete", "redirect_url": f"https://shop.example/thanks?session={cs['id']}"}
    assert httpx.get(f"{api.server.url}/c/pay/cs_test_nosuchsession/status",
                     timeout=10).status_code == 404


def test_the_page_never_shows_the_apis_own_message(api: Api) -> None:
    cs = session(api)
    r = confirm_with(api, cs, "src_1AbCdEf")
    assert r.status_code == 400
    assert r.json() == {"status": "failed", "code": "parameter_invalid",
                        "message": PAGE_FAILED, "action": "none"}
    fr = httpx.post(f"{cs['url']}/confirm", json={"payment_method": "src_1AbCdEf"},
                    headers={"origin": api.server.url, "accept-language": "fr-FR"}, timeout=30)
    assert fr.json()["message"] == "Le paiement n'a pas abouti. Essayez une autre carte."
