"""Every sandbox test card, end to end: tokenized on the sandbox's hosted endpoint (or named by
its ``pm_card_*`` token) and confirmed through paymux's API, on SQLite and PostgreSQL.

Each card number and each magic token is its own test id and must give its documented outcome
(PROTOCOLS.md's card table) with the error object the taxonomy promises.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer
from paymux.gateways.sandbox.cards import MAGIC_TOKENS, TEST_CARDS, Scenario, TestCard
from support.sandbox_pages import answer_challenge as submit_challenge
from support.sandbox_pages import challenge_form

AMOUNT = 2000

# code, decline_code, action, retryable: what paymux must answer for each declining card.
DECLINES: dict[str, tuple[str, str, str, bool]] = {
    "4000000000000002": ("card_declined", "generic_decline", "retry", True),
    "4000000000009995": ("card_declined", "insufficient_funds", "use_another_method", True),
    "4000000000009987": ("card_declined", "lost_card", "use_another_method", False),
    "4000000000009979": ("card_declined", "stolen_card", "use_another_method", False),
    "4000000000000069": ("expired_card", "expired_card", "update_card", False),
    "4000000000000127": ("incorrect_cvc", "incorrect_cvc", "update_card", False),
    "4000000000000036": ("incorrect_zip", "incorrect_zip", "update_card", False),
    "4000000000000119": ("processing_error", "processing_error", "retry", True),
    "4000000000000341": ("card_declined", "generic_decline", "retry", True),
    "4100000000000019": ("card_declined", "fraudulent", "use_another_method", False),
    "4000000000004954": ("card_declined", "fraudulent", "use_another_method", False),
}
THREE_DS = {Scenario.THREEDS_ALWAYS, Scenario.THREEDS_UNLESS_SETUP, Scenario.THREEDS_THEN_DECLINE}


def test_the_expected_outcome_table_covers_every_declining_card() -> None:
    declining = {
        n
        for n, card in TEST_CARDS.items()
        if card.scenario
        in (Scenario.DECLINE, Scenario.DECLINE_ON_CHARGE, Scenario.BLOCKED, Scenario.PROCESSING_ERROR)
    }
    assert declining == set(DECLINES)
    assert set(MAGIC_TOKENS.values()) <= set(TEST_CARDS)


# -- helpers ----------------------------------------------------------------------------------
def tokenize_response(server: RunningServer, number: str, **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "number": number,
        "exp_month": 12,
        "exp_year": time.gmtime().tm_year + 3,
        "cvc": "1234" if number.startswith(("34", "37")) else "123",
        "postal_code": "94107",
        **fields,
    }
    return httpx.post(f"{server.url}/sandbox/v1/tokens", json=body, timeout=10)


def tokenize(server: RunningServer, number: str) -> str:
    r = tokenize_response(server, number)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "token" and data["id"].startswith("pm_")
    card = TEST_CARDS[number]
    assert data["card"]["brand"] == card.brand and data["card"]["last4"] == number[-4:]
    assert "number" not in data["card"] and number not in r.text
    return str(data["id"])


def create(api: Api, **params: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/payment_intents", {"amount": AMOUNT, "currency": "usd", **params})


def confirm(api: Api, pi_id: str, **params: Any) -> httpx.Response:
    return api.post(f"/v1/payment_intents/{pi_id}/confirm", params)


def assert_card_error(
    r: httpx.Response, expected: tuple[str, str, str, bool], gateway_code: str
) -> dict[str, Any]:
    assert r.status_code == 402, r.text
    error: dict[str, Any] = r.json()["error"]
    code, decline_code, action, retryable = expected
    assert error["type"] == "card_error"
    assert error["code"] == code
    assert error["decline_code"] == decline_code
    assert error["action"] == action
    assert error["retryable"] is retryable
    assert error["gateway"] == "sandbox" and error["gateway_code"] == gateway_code
    assert error["message"] and error["user_message"]
    assert error["request_id"] == r.headers["request-id"]
    return error


def event_types(api: Api, object_id: str) -> list[str]:
    events = api.ok("GET", "/v1/events", params={"object_id": object_id, "limit": 100})["data"]
    return [e["type"] for e in events]


def answer_challenge(pi: dict[str, Any], outcome: str) -> None:
    assert pi["status"] == "requires_action"
    assert pi["next_action"]["type"] == "redirect_to_url"
    url = pi["next_action"]["redirect_to_url"]["url"]
    assert url.startswith("http://127.0.0.1:") and "/sandbox/3ds/" in url
    _, _, page = challenge_form(url)
    assert page.status_code == 200 and "Complete authentication" in page.text
    done = submit_challenge(url, outcome)
    assert done.status_code == 200
    assert ("Authentication complete" if outcome == "complete" else "Authentication failed") in (
        done.text
    )


@dataclass
class AuthorizeSpy:
    calls: list[tuple[str, str]]


@pytest.fixture
def authorize_spy(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuthorizeSpy]:
    """Records (idempotency key, reference) of every authorize the sandbox processor receives.

    The server runs in this process, so its sandbox processor can be wrapped directly.
    """
    app: Any = api.server._server.config.app
    gateway = app.state.paymux.ctx.gateways.sandbox()
    assert gateway is not None
    processor = gateway.processor
    spy = AuthorizeSpy([])
    original = processor.authorize

    def authorize(key: str, request: dict[str, Any]) -> Any:
        spy.calls.append((key, str(request["reference"])))
        return original(key, request)

    monkeypatch.setattr(processor, "authorize", authorize)
    yield spy


# -- the outcome of one card --------------------------------------------------------------------
def check_outcome(api: Api, payment_method: str, card: TestCard, spy: AuthorizeSpy) -> None:
    pi = create(api, metadata={"card": card.number[-4:]})
    r = confirm(api, pi["id"], payment_method=payment_method)
    scenario = card.scenario

    if scenario in (Scenario.SUCCEED, Scenario.REFUND_PENDING, Scenario.REFUND_FAILS):
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["status"] == "succeeded"
        assert done["amount_received"] == AMOUNT and done["last_payment_error"] is None
        assert done["risk_level"] == card.risk_level
        pm = api.ok("GET", f"/v1/payment_methods/{done['payment_method']}")
        assert pm["card"]["brand"] == card.brand and pm["card"]["last4"] == card.number[-4:]
        assert pm["card"]["funding"] == card.funding
        charges = api.charges(pi["id"])
        assert [c["status"] for c in charges] == ["succeeded"]
        assert charges[0]["amount_captured"] == AMOUNT
        assert event_types(api, pi["id"]) == ["payment_intent.succeeded", "payment_intent.created"]
        if scenario is Scenario.REFUND_PENDING:
            check_pending_refund(api, pi["id"])
        elif scenario is Scenario.REFUND_FAILS:
            check_failing_refund(api, pi["id"])
        return

    if scenario in THREE_DS:
        assert r.status_code == 200, r.text
        action = r.json()
        assert action["status"] == "requires_action" and action["amount_received"] == 0
        assert [c["status"] for c in api.charges(pi["id"])] == ["requires_action"]
        answer_challenge(action, "complete")
        if scenario is Scenario.THREEDS_THEN_DECLINE:
            after = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status",
                                 "requires_payment_method")
            assert after["last_payment_error"]["code"] == "card_declined"
            assert after["last_payment_error"]["decline_code"] == "insufficient_funds"
            assert after["payment_method"] is None and after["amount_received"] == 0
            assert [c["status"] for c in api.charges(pi["id"])] == ["failed"]
        else:
            after = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
            assert after["amount_received"] == AMOUNT and after["next_action"] is None
            assert [c["status"] for c in api.charges(pi["id"])] == ["succeeded"]
            assert "payment_intent.requires_action" in event_types(api, pi["id"])
        return

    expected = DECLINES[card.number]
    error = assert_card_error(r, expected, card.decline_code or "")
    assert error["payment_intent"]["id"] == pi["id"]
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["status"] == "requires_payment_method" and after["amount_received"] == 0
    assert after["last_payment_error"]["code"] == expected[0]
    assert after["last_payment_error"]["decline_code"] == expected[1]
    assert after["payment_method"] is None
    assert event_types(api, pi["id"]) == ["payment_intent.payment_failed", "payment_intent.created"]
    if scenario is Scenario.PROCESSING_ERROR:
        # Transient: retried with the SAME gateway key, never stored by the sandbox, no charge.
        mine = [key for key, reference in spy.calls if reference == pi["id"]]
        retries = api.server.settings.gateway_retries
        assert len(mine) == retries + 1 > 1
        assert set(mine) == {f"{pi['id']}:authorize:1"}
        assert api.charges(pi["id"]) == []
    else:
        assert [c["status"] for c in api.charges(pi["id"])] == ["failed"]
        if scenario is Scenario.BLOCKED:
            assert after["risk_level"] == card.risk_level == "highest"


def check_pending_refund(api: Api, pi_id: str) -> None:
    refund = api.ok("POST", "/v1/refunds", {"payment_intent": pi_id})
    assert refund["status"] == "pending" and refund["amount"] == AMOUNT
    assert api.ok("GET", f"/v1/payment_intents/{pi_id}")["amount_refunded"] == 0
    done = api.wait_for(f"/v1/refunds/{refund['id']}", "status", "succeeded")
    assert done["failure_reason"] is None
    assert api.ok("GET", f"/v1/payment_intents/{pi_id}")["amount_refunded"] == AMOUNT
    assert "refund.updated" in event_types(api, refund["id"])


def check_failing_refund(api: Api, pi_id: str) -> None:
    refund = api.ok("POST", "/v1/refunds", {"payment_intent": pi_id})
    assert refund["status"] == "succeeded"
    assert api.ok("GET", f"/v1/payment_intents/{pi_id}")["amount_refunded"] == AMOUNT
    failed = api.wait_for(f"/v1/refunds/{refund['id']}", "status", "failed")
    assert failed["failure_reason"] == "expired_or_canceled_card"
    assert api.ok("GET", f"/v1/payment_intents/{pi_id}")["amount_refunded"] == 0
    assert "refund.failed" in event_types(api, refund["id"])


def card_id(number: str) -> str:
    return f"{number}-{TEST_CARDS[number].scenario}"


@pytest.mark.parametrize("number", list(TEST_CARDS), ids=card_id)
def test_each_test_card_number_tokenized_on_the_hosted_endpoint_gives_its_outcome(
    api: Api, authorize_spy: AuthorizeSpy, number: str
) -> None:
    token = tokenize(api.server, number)
    check_outcome(api, token, TEST_CARDS[number], authorize_spy)


@pytest.mark.parametrize("token", list(MAGIC_TOKENS))
def test_each_magic_token_confirmed_directly_gives_its_outcome(
    api: Api, authorize_spy: AuthorizeSpy, token: str
) -> None:
    check_outcome(api, token, TEST_CARDS[MAGIC_TOKENS[token]], authorize_spy)


# -- 3-D Secure -------------------------------------------------------------------------------
@pytest.mark.parametrize("number", ["4000002760003184", "4000000000003220", "4000002500003155"])
def test_failing_the_3ds_challenge_leaves_the_intent_needing_another_method(
    api: Api, number: str
) -> None:
    pi = create(api, confirm=True, payment_method=tokenize(api.server, number))
    answer_challenge(pi, "fail")
    after = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "requires_payment_method")
    error = after["last_payment_error"]
    assert error["type"] == "card_error"
    assert error["code"] == "payment_intent_authentication_failure"
    assert error["action"] == "use_another_method" and error["gateway_code"] == "authentication_failed"
    assert after["payment_method"] is None and after["amount_received"] == 0
    assert [c["status"] for c in api.charges(pi["id"])] == ["failed"]
    assert "payment_intent.payment_failed" in event_types(api, pi["id"])


@pytest.mark.parametrize(
    "payment_method",
    ["4000002500003155", "pm_card_authenticationRequiredOnSetup", "4000002760003184",
     "pm_card_authenticationRequired"],
)
def test_an_off_session_payment_on_a_card_that_needs_3ds_is_authentication_required(
    api: Api, payment_method: str
) -> None:
    if payment_method.isdigit():
        payment_method = tokenize(api.server, payment_method)
    r = api.post("/v1/payment_intents", {"amount": AMOUNT, "currency": "usd", "confirm": True,
                                         "off_session": True, "payment_method": payment_method})
    error = assert_card_error(
        r, ("authentication_required", "authentication_required", "authenticate", False),
        "authentication_required",
    )
    failed = api.ok("GET", f"/v1/payment_intents/{error['payment_intent']['id']}")
    assert failed["status"] == "requires_payment_method"
    assert failed["last_payment_error"]["code"] == "authentication_required"
    assert [(c["status"], c["decline_code"]) for c in api.charges(failed["id"])] == [
        ("failed", "authentication_required")
    ]


def test_a_card_set_up_for_off_session_use_is_then_charged_off_session_without_3ds(
    api: Api,
) -> None:
    token = tokenize(api.server, "4000002500003155")
    first = create(api, confirm=True, payment_method=token, setup_future_usage="off_session")
    answer_challenge(first, "complete")
    done = api.wait_for(f"/v1/payment_intents/{first['id']}", "status", "succeeded")
    later = create(api, amount=1500, confirm=True, off_session=True,
                   payment_method=done["payment_method"])
    assert later["status"] == "succeeded" and later["amount_received"] == 1500
    assert later["next_action"] is None


# -- customers: attaching versus charging -------------------------------------------------------
def new_customer(api: Api) -> dict[str, Any]:
    return api.ok("POST", "/v1/customers", {"email": "payer@example.com"})


def test_a_card_that_fails_only_on_charge_attaches_then_declines(api: Api) -> None:
    customer = new_customer(api)
    token = tokenize(api.server, "4000000000000341")
    pm = api.ok("POST", f"/v1/payment_methods/{token}/attach", {"customer": customer["id"]})
    assert pm["customer"] == customer["id"] and pm["card"]["last4"] == "0341"
    listed = api.ok("GET", f"/v1/customers/{customer['id']}/payment_methods")["data"]
    assert [p["id"] for p in listed] == [pm["id"]]
    r = api.post("/v1/payment_intents", {"amount": AMOUNT, "currency": "usd", "confirm": True,
                                         "customer": customer["id"], "payment_method": pm["id"]})
    error = assert_card_error(r, DECLINES["4000000000000341"], "generic_decline")
    pi = api.ok("GET", f"/v1/payment_intents/{error['payment_intent']['id']}")
    assert pi["status"] == "requires_payment_method" and pi["customer"] == customer["id"]
    assert [c["status"] for c in api.charges(pi["id"])] == ["failed"]
    # Still attached: the decline was the charge's, not the card's.
    again = api.ok("GET", f"/v1/payment_methods/{pm['id']}")
    assert again["customer"] == customer["id"]


def test_a_generic_decline_card_cannot_even_be_attached(api: Api) -> None:
    customer = new_customer(api)
    token = tokenize(api.server, "4000000000000002")
    r = api.post(f"/v1/payment_methods/{token}/attach", {"customer": customer["id"]})
    assert_card_error(r, DECLINES["4000000000000002"], "generic_decline")
    assert api.ok("GET", f"/v1/customers/{customer['id']}/payment_methods")["data"] == []
    events = api.ok("GET", "/v1/events", params={"type": "payment_method.attached"})["data"]
    assert events == []


# -- tokenization errors (the sandbox's hosted endpoint) ------------------------------------------
def test_a_luhn_invalid_number_is_refused_at_tokenization(server: RunningServer) -> None:
    r = tokenize_response(server, "4242424242424241")
    assert r.status_code == 402
    error = r.json()["error"]
    assert error["type"] == "card_error"
    assert error["code"] == "incorrect_number" and error["param"] == "number"
    assert "4242424242424241" not in r.text


def test_an_expired_card_is_refused_at_tokenization(server: RunningServer) -> None:
    now = time.gmtime()
    past = (now.tm_year - 1, 12) if now.tm_mon == 1 else (now.tm_year, now.tm_mon - 1)
    r = tokenize_response(server, "4242424242424242", exp_year=past[0], exp_month=past[1])
    assert r.status_code == 402
    error = r.json()["error"]
    assert error["type"] == "card_error"
    assert error["code"] == "expired_card" and error["param"] == "exp_year"


def test_a_card_expiring_this_month_still_tokenizes(server: RunningServer) -> None:
    now = time.gmtime()
    r = tokenize_response(server, "4242424242424242", exp_year=now.tm_year, exp_month=now.tm_mon)
    assert r.status_code == 200, r.text
    assert r.json()["card"]["exp_month"] == now.tm_mon


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"cvc": "12"}, "incorrect_cvc", "cvc"),
        ({"exp_month": 13}, "invalid_expiry_month", "exp_month"),
        ({"number": "4242"}, "incorrect_number", "number"),
    ],
    ids=["short-cvc", "month-13", "too-short"],
)
def test_other_malformed_card_details_are_refused_at_tokenization(
    server: RunningServer, fields: dict[str, Any], code: str, param: str
) -> None:
    fields = {"number": "4242424242424242", **fields}
    r = tokenize_response(server, **fields)
    assert r.status_code == 402
    assert r.json()["error"]["code"] == code and r.json()["error"]["param"] == param


# -- test tokens are Stripe's: tok_*, a fresh payment method per use, one fingerprint --------
TOK_TWINS = {
    "tok_visa": "4242424242424242",
    "tok_visa_debit": "4000056655665556",
    "tok_mastercard": "5555555555554444",
    "tok_amex": "378282246310005",
    "tok_discover": "6011111111111117",
    "tok_chargeDeclined": "4000000000000002",
    "tok_chargeDeclinedInsufficientFunds": "4000000000009995",
    "tok_chargeDeclinedLostCard": "4000000000009987",
    "tok_chargeDeclinedStolenCard": "4000000000009979",
    "tok_chargeDeclinedExpiredCard": "4000000000000069",
    "tok_chargeDeclinedIncorrectCvc": "4000000000000127",
    "tok_chargeDeclinedProcessingError": "4000000000000119",
    "tok_chargeDeclinedFraudulent": "4100000000000019",
    "tok_chargeCustomerFail": "4000000000000341",
    "tok_radarBlock": "4100000000000019",
    "tok_riskLevelHighest": "4000000000004954",
    "tok_riskLevelElevated": "4000000000009235",
}


def test_stripes_documented_tok_tokens_name_the_same_cards_as_their_pm_card_twins() -> None:
    for token, number in TOK_TWINS.items():
        assert MAGIC_TOKENS.get(token) == number, token
        assert MAGIC_TOKENS.get("pm_card_" + token.removeprefix("tok_")) == number, token


@pytest.mark.parametrize(
    ("token", "expected"),
    [("tok_visa", None), ("tok_chargeDeclined", DECLINES["4000000000000002"]),
     ("tok_chargeDeclinedInsufficientFunds", DECLINES["4000000000009995"])],
)
def test_a_tok_token_confirms_like_its_card(
    api: Api, token: str, expected: tuple[str, str, str, bool] | None
) -> None:
    pi = create(api)
    r = confirm(api, pi["id"], payment_method=token)
    if expected is None:
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        pm = api.ok("GET", f"/v1/payment_methods/{r.json()['payment_method']}")
        assert (pm["card"]["brand"], pm["card"]["last4"]) == ("visa", "4242")
    else:
        assert_card_error(r, expected, expected[1])


def test_a_test_token_saved_to_a_customer_leaves_it_free_for_every_other_payment(
    api: Api,
) -> None:
    first = api.ok("POST", "/v1/customers", {"email": "first@example.com"})
    saved = api.ok("POST", "/v1/payment_methods/pm_card_visa/attach", {"customer": first["id"]})
    assert saved["customer"] == first["id"]
    assert saved["gateway_token"] != "pm_card_visa"  # a payment method of its own
    for token in ("pm_card_visa", "pm_card_visa", "tok_visa"):
        r = confirm(api, create(api)["id"], payment_method=token)
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        assert r.json()["payment_method"] != saved["id"]
    second = api.ok("POST", "/v1/customers", {"email": "second@example.com"})
    other = api.ok("POST", "/v1/payment_methods/pm_card_visa/attach", {"customer": second["id"]})
    assert other["customer"] == second["id"] and other["id"] != saved["id"]
    assert api.ok("GET", f"/v1/payment_methods/{saved['id']}")["customer"] == first["id"]
    # The saved one still charges its customer.
    r = confirm(api, create(api, customer=first["id"])["id"], payment_method=saved["id"])
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text


def fingerprint_of(api: Api, payment_method: str) -> str:
    r = confirm(api, create(api)["id"], payment_method=payment_method)
    assert r.status_code == 200, r.text
    pm = api.ok("GET", f"/v1/payment_methods/{r.json()['payment_method']}")
    fingerprint: str = pm["card"]["fingerprint"]
    assert fingerprint
    return fingerprint


def test_a_card_number_has_one_fingerprint_per_account_however_it_came_in(
    server: RunningServer,
) -> None:
    a, b = Api(server), Api(server)
    try:
        form = fingerprint_of(a, tokenize(server, "4242424242424242"))
        assert fingerprint_of(a, "pm_card_visa") == form
        assert fingerprint_of(a, "tok_visa") == form
        assert fingerprint_of(a, tokenize(server, "4242424242424242")) == form
        assert fingerprint_of(a, "pm_card_mastercard") != form
        other_account = fingerprint_of(b, tokenize(server, "4242424242424242"))
        assert other_account != form
        assert fingerprint_of(b, "pm_card_visa") == other_account
    finally:
        a.close()
        b.close()


# -- setup_future_usage saves the card on success ------------------------------------------
def attach_jobs(api: Api) -> int:
    rows = api.server.sql(
        "select count(*) from jobs where kind = 'attach_payment_method' and account_id = :a",
        a=api.account_id,
    )
    return int(rows[0][0])


@pytest.mark.parametrize("usage", ["off_session", "on_session"])
def test_setup_future_usage_attaches_the_payment_method_to_the_customer_on_success(
    api: Api, usage: str
) -> None:
    customer = api.ok("POST", "/v1/customers", {"email": "saver@example.com"})
    pi = create(api, customer=customer["id"], setup_future_usage=usage)
    r = confirm(api, pi["id"], payment_method="pm_card_visa")
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    pm_id = r.json()["payment_method"]
    # Saved with the payment's success, as on Stripe: no wait for a job.
    pm = api.ok("GET", f"/v1/payment_methods/{pm_id}")
    assert pm["customer"] == customer["id"]
    assert pm["card"]["last4"] == "4242"
    listed = api.ok("GET", f"/v1/customers/{customer['id']}/payment_methods")["data"]
    assert [m["id"] for m in listed] == [pm_id]
    assert "payment_method.attached" in event_types(api, pm_id)
    # Saved, it pays the customer's next payment, off session too.
    again = create(api, customer=customer["id"])
    r = confirm(api, again["id"], payment_method=pm_id, off_session=True)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text


def test_setup_future_usage_saves_the_card_when_success_arrives_by_webhook(api: Api) -> None:
    customer = api.ok("POST", "/v1/customers", {})
    pi = create(api, customer=customer["id"], setup_future_usage="off_session")
    r = confirm(api, pi["id"], payment_method="pm_card_threeDSecure2Required")
    assert r.status_code == 200 and r.json()["status"] == "requires_action", r.text
    pm_id = r.json()["payment_method"]
    assert api.ok("GET", f"/v1/payment_methods/{pm_id}")["customer"] is None
    answer_challenge(r.json(), "complete")
    api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    # The webhook's transaction that settles the payment saves the card too.
    assert api.ok("GET", f"/v1/payment_methods/{pm_id}")["customer"] == customer["id"]


def sandbox_token(server: RunningServer, token: str) -> dict[str, Any]:
    """The sandbox processor's own record of a token, read straight from its SQLite file."""
    db = sqlite3.connect(f"file:{server.settings.sandbox_db}?mode=ro", uri=True)
    try:
        row = db.execute("select data from objects where id = ?", (token,)).fetchone()
    finally:
        db.close()
    assert row is not None, f"the sandbox has no token {token}"
    data: dict[str, Any] = json.loads(row[0])
    return data


def no_attach_job_pending(api: Api) -> None:
    """Wait until no attach job of any test on this server is queued or running: an earlier
    test's job (its success came by webhook, its attach is still queued) would otherwise take
    the sandbox's injected attach faults, which are the server's, not an account's."""
    deadline = time.monotonic() + 15
    while api.server.sql(
        "select id from jobs where kind = 'attach_payment_method' "
        "and status in ('queued', 'running')"
    ) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_card_saved_with_the_payment_is_the_customers_at_once_even_when_the_gateway_is_down(
    api: Api,
) -> None:
    """The sandbox refuses the attach (5xx) for the first job run: the payment still succeeds,
    the card is the customer's from the answer on (another customer can't pay with it), and
    the job retries the gateway's side until the provider holds the card for the customer."""
    customer = api.ok("POST", "/v1/customers", {"email": "first@example.com"})
    other = api.ok("POST", "/v1/customers", {"email": "second@example.com"})
    # Each job run makes the call and its inline retries (gateway_retries = 3): 4 calls fail.
    no_attach_job_pending(api)
    fail = {"operation": "attach", "mode": "server_error", "count": 4}
    assert api.sandbox("POST", "/_control/faults", fail)
    try:
        pi = create(api, customer=customer["id"], setup_future_usage="off_session")
        r = confirm(api, pi["id"], payment_method="pm_card_visa")
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        pm_id = r.json()["payment_method"]
        assert api.ok("GET", f"/v1/payment_methods/{pm_id}")["customer"] == customer["id"]
        listed = api.ok("GET", f"/v1/customers/{customer['id']}/payment_methods")["data"]
        assert [m["id"] for m in listed] == [pm_id]
        stolen = confirm(api, create(api, customer=other["id"])["id"], payment_method=pm_id)
        assert stolen.status_code == 400, stolen.text
        assert stolen.json()["error"]["code"] == "payment_method_unexpected_state"
        # The gateway's side: the job failed once, then went through on its retry.
        deadline = time.monotonic() + 15
        while True:
            rows = api.server.sql(
                "select status, attempts, last_error from jobs "
                "where kind = 'attach_payment_method' and account_id = :a",
                a=api.account_id,
            )
            assert len(rows) == 1
            if rows[0][0] == "done" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        status, attempts, last_error = rows[0]
        assert (status, attempts) == ("done", 2), rows
        assert last_error
    finally:
        api.sandbox("DELETE", "/_control/faults")
    (token,) = api.server.sql("select token from payment_methods where id = :p", p=pm_id)[0]
    gateway_customer = sandbox_token(api.server, token)["customer"]
    refs = api.server.sql("select gateway_refs from customers where id = :c", c=customer["id"])
    assert gateway_customer is not None and gateway_customer in str(refs[0][0])
    # Exactly one attached event: the job did not announce the card a second time.
    assert event_types(api, pm_id).count("payment_method.attached") == 1
    # And the saved card pays the customer's next payment, off session.
    r = confirm(api, create(api, customer=customer["id"])["id"], payment_method=pm_id,
                off_session=True)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text


def wait_for_attach_job(api: Api) -> tuple[str, int]:
    deadline = time.monotonic() + 15
    while True:
        rows = api.server.sql(
            "select status, attempts from jobs "
            "where kind = 'attach_payment_method' and account_id = :a",
            a=api.account_id,
        )
        assert len(rows) == 1
        if rows[0][0] in ("done", "dead") or time.monotonic() > deadline:
            return str(rows[0][0]), int(rows[0][1])
        time.sleep(0.05)


def test_a_card_detached_before_the_gateway_side_of_its_saving_is_not_attached_again(
    api: Api,
) -> None:
    customer = api.ok("POST", "/v1/customers", {})
    no_attach_job_pending(api)
    fail = {"operation": "attach", "mode": "server_error", "count": 4}
    assert api.sandbox("POST", "/_control/faults", fail)
    try:
        pi = create(api, customer=customer["id"], setup_future_usage="off_session")
        r = confirm(api, pi["id"], payment_method="pm_card_visa")
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        pm_id = r.json()["payment_method"]
        detached = api.ok("POST", f"/v1/payment_methods/{pm_id}/detach")
        assert detached["customer"] is None
    finally:
        api.sandbox("DELETE", "/_control/faults")
    assert wait_for_attach_job(api)[0] == "done"
    assert api.ok("GET", f"/v1/payment_methods/{pm_id}")["customer"] is None
    (token,) = api.server.sql("select token from payment_methods where id = :p", p=pm_id)[0]
    assert sandbox_token(api.server, token)["customer"] is None
    assert event_types(api, pm_id).count("payment_method.attached") == 1


def test_a_payment_without_setup_future_usage_or_that_fails_saves_nothing(api: Api) -> None:
    customer = api.ok("POST", "/v1/customers", {})
    plain = confirm(api, create(api, customer=customer["id"])["id"], payment_method="pm_card_visa")
    assert plain.status_code == 200 and plain.json()["status"] == "succeeded"
    declined = confirm(
        api,
        create(api, customer=customer["id"], setup_future_usage="off_session")["id"],
        payment_method="pm_card_chargeDeclined",
    )
    assert declined.status_code == 402
    assert attach_jobs(api) == 0
    assert api.ok("GET", f"/v1/customers/{customer['id']}/payment_methods")["data"] == []
