"""Edge cases of paymux.gateways.stripe.transformers found by mutation testing.

Each test pins a behaviour that a surviving mutmut mutant showed no other unit test checked:
Stripe's units for ISK and MGA on every path (docs.stripe.com/currencies), the exact request
bodies, which of several candidates a lookup picks, the fallbacks when Stripe's JSON leaves a
field out, and SetupIntents (until now only covered through the connector). Expected values are
written out from Stripe's documented shapes, never computed by the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    Decline,
    DisputeUpdate,
    GatewayRefund,
    GatewayStatus,
    InboundEvent,
    RefundUpdate,
    SetupRequest,
    SetupResult,
)
from paymux.gateways.stripe import transformers
from paymux.money import Money

PI_ID = "pi_3OqQ2bLkdIwHu7ix0y1Zp0Xa"
SECRET = "pi_3OqQ2bLkdIwHu7ix0y1Zp0Xa_secret_gW2XGqE5bDh9r1NqzR8Lr4xYp"
SETI_ID = "seti_1OqQ3aLkdIwHu7ixR4nT8mQv"
SETI_SECRET = "seti_1OqQ3aLkdIwHu7ixR4nT8mQv_secret_PqW2mZ8xN4vB6cD0"


def payment_intent(status: str, **fields: Any) -> dict[str, Any]:
    pi: dict[str, Any] = {
        "id": PI_ID,
        "object": "payment_intent",
        "amount": 1000,
        "amount_capturable": 0,
        "amount_received": 0,
        "capture_method": "automatic",
        "client_secret": SECRET,
        "created": 1711000000,
        "currency": "usd",
        "last_payment_error": None,
        "metadata": {"paymux_id": "pi_ours_1"},
        "next_action": None,
        "status": status,
    }
    pi.update(fields)
    return pi


def event(type_: str, obj: dict[str, Any]) -> InboundEvent:
    payload = {
        "id": "evt_1OqQ2cLkdIwHu7ixrV2kX9aa",
        "object": "event",
        "data": {"object": obj},
        "type": type_,
    }
    return InboundEvent("stripe", "evt_1OqQ2cLkdIwHu7ixrV2kX9aa", type_, payload)


def _request(**fields: Any) -> AuthorizeRequest:
    values: dict[str, Any] = {
        "amount": Money(1999, "EUR"),
        "payment_method_token": "pm_card_visa",
        "capture": True,
        "reference": "pi_ours_1",
    }
    values.update(fields)
    return AuthorizeRequest(**values)


# -- units: ISO 4217 minor units <-> Stripe's units ---------------------------------------------
@pytest.mark.parametrize(
    ("money", "stripe_amount"),
    [
        (Money(1999, "USD"), 1999),
        (Money(25, "ISK"), 2500),  # ISO: 0 decimals; Stripe: hundredths of a krona
        (Money(12300, "MGA"), 123),  # ISO: 2 decimals; Stripe: zero-decimal
        (Money(1250, "KWD"), 1250),
    ],
)
def test_to_stripe_is_an_exact_integer(money: Money, stripe_amount: int) -> None:
    got = transformers.to_stripe(money)
    assert got == stripe_amount
    assert type(got) is int  # never a float on the wire


@pytest.mark.parametrize(
    ("value", "currency", "ours"),
    [
        (1999, "usd", 1999),
        (2500, "isk", 25),  # as Stripe sends it: lower case
        (2500, "ISK", 25),
        (123, "mga", 12300),
        (None, "usd", 0),
        (700, None, 700),  # no currency known: taken as it is
    ],
)
def test_from_stripe_is_an_exact_integer(value: Any, currency: str | None, ours: int) -> None:
    got = transformers.from_stripe(value, currency)
    assert got == ours
    assert type(got) is int


@pytest.mark.parametrize(
    ("money", "problem"),
    [
        (Money(1005, "USD"), None),
        (Money(7, "ISK"), None),
        (Money(12300, "MGA"), None),
        (Money(12345, "MGA"), "Stripe takes MGA in whole units; 12345 minor units isn't."),
        (Money(1000, "KWD"), None),
        (Money(1250, "BHD"), None),
        (Money(1005, "KWD"), "Stripe needs KWD amounts that end in 0 (got 1005)."),
        (Money(1001, "OMR"), "Stripe needs OMR amounts that end in 0 (got 1001)."),
    ],
)
def test_amount_problem(money: Money, problem: str | None) -> None:
    assert transformers.amount_problem(money) == problem


# -- request bodies -----------------------------------------------------------------------------
def test_open_params_is_the_whole_body() -> None:
    assert transformers.open_params(Money(25, "ISK"), "pi_ours_1", True) == {
        "amount": 2500,
        "currency": "isk",
        "capture_method": "automatic",
        "payment_method_types": ["card"],
        "metadata": {"paymux_id": "pi_ours_1"},
    }
    assert transformers.open_params(Money(1999, "EUR"), "pi_ours_2", False, "pi_ours_2:open") == {
        "amount": 1999,
        "currency": "eur",
        "capture_method": "manual",
        "payment_method_types": ["card"],
        "metadata": {"paymux_id": "pi_ours_2", "paymux_key": "pi_ours_2:open"},
    }


def test_update_then_confirm_off_session_with_a_customer() -> None:
    update, confirm = transformers.update_then_confirm_params(
        _request(
            customer_token="cus_PqR2",
            off_session=True,
            setup_future_usage="off_session",
            return_url="https://shop.example/return",
        )
    )
    assert update == {"payment_method": "pm_card_visa", "customer": "cus_PqR2"}
    assert confirm == {"off_session": True, "return_url": "https://shop.example/return"}


def test_update_then_confirm_on_session_saving_the_card() -> None:
    update, confirm = transformers.update_then_confirm_params(
        _request(customer_token="cus_PqR2", setup_future_usage="on_session"), "pi_ours_1:a:1"
    )
    assert update == {
        "payment_method": "pm_card_visa",
        "metadata": {"paymux_key": "pi_ours_1:a:1"},
        "customer": "cus_PqR2",
        "setup_future_usage": "on_session",  # an update param at Stripe, not a confirm one
    }
    assert confirm == {}


# -- payment_result --------------------------------------------------------------------------
def test_amounts_of_a_payment_in_isk_come_back_in_iso_units() -> None:
    held = transformers.payment_result(
        payment_intent("requires_capture", amount=250000, amount_capturable=250000, currency="isk")
    )
    assert (held.amount_authorized, held.amount_captured) == (2500, 0)
    paid = transformers.payment_result(
        payment_intent("succeeded", amount=250000, amount_received=250000, currency="isk")
    )
    assert (paid.amount_authorized, paid.amount_captured) == (2500, 2500)
    # a succeeded PaymentIntent whose amount_received is missing: its amount was taken
    bare = transformers.payment_result(
        payment_intent("succeeded", amount=250000, amount_received=None, currency="isk")
    )
    assert (bare.amount_authorized, bare.amount_captured) == (2500, 2500)


def test_a_held_payment_without_amount_capturable_holds_its_amount() -> None:
    result = transformers.payment_result(
        payment_intent("requires_capture", amount=1500, amount_capturable=None)
    )
    assert result.status is GatewayStatus.REQUIRES_CAPTURE
    assert (result.amount_authorized, result.amount_captured) == (1500, 0)


def test_a_partly_captured_payment_authorized_what_it_received() -> None:
    # Stripe: capturing 600 of a 1000 hold succeeds with amount_received 600; the rest is released
    result = transformers.payment_result(
        payment_intent("succeeded", amount=1000, amount_received=600)
    )
    assert (result.amount_authorized, result.amount_captured) == (600, 600)


def test_next_action_is_only_passed_on_while_the_payer_must_act() -> None:
    redirect = {"type": "redirect_to_url", "redirect_to_url": {"url": "https://hooks.example/3ds"}}
    result = transformers.payment_result(payment_intent("processing", next_action=redirect))
    assert result.status is GatewayStatus.PROCESSING
    assert result.next_action is None


# -- refunds ------------------------------------------------------------------------------------
def test_refund_result_without_a_status_is_pending_and_in_iso_units() -> None:
    got = transformers.refund_result(
        {"id": "re_1", "object": "refund", "amount": 50000, "currency": "isk", "status": None}
    )
    assert got == GatewayRefund(status="pending", reference="re_1", amount=500)
    waiting = transformers.refund_result(
        {
            "id": "re_2",
            "object": "refund",
            "amount": 300,
            "currency": "usd",
            "status": "requires_action",
        }
    )
    assert waiting.status == "pending"


# -- picking among candidates -------------------------------------------------------------------
def _pi(pi_id: str, created: int | None) -> dict[str, Any]:
    pi = payment_intent("succeeded", id=pi_id, metadata={"paymux_id": "pi_ours_1"})
    if created is None:
        del pi["created"]
    else:
        pi["created"] = created
    return pi


def test_lookup_takes_the_newest_by_created_not_by_id_or_order() -> None:
    newer, older = _pi("pi_A", 200), _pi("pi_Z", 100)
    found = transformers.pick_lookup([older, newer], "pi_ours_1", "pi_ours_1:authorize:1")
    assert found is not None and found["id"] == "pi_A"


def test_lookup_counts_a_missing_created_as_oldest() -> None:
    found = transformers.pick_lookup(
        [_pi("pi_Z", None), _pi("pi_A", 1)], "pi_ours_1", "pi_ours_1:authorize:1"
    )
    assert found is not None and found["id"] == "pi_A"


def test_lookup_breaks_a_tie_on_created_by_id_whatever_the_order() -> None:
    for order in (["pi_A", "pi_B"], ["pi_B", "pi_A"]):
        found = transformers.pick_lookup(
            [_pi(i, 100) for i in order], "pi_ours_1", "pi_ours_1:authorize:1"
        )
        assert found is not None and found["id"] == "pi_B"


def _re(re_id: str, created: int | None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": re_id, "object": "refund", "metadata": {"paymux_id": "re_o"}}
    if created is not None:
        data["created"] = created
    return data


@pytest.mark.parametrize(
    ("refunds", "picked"),
    [
        ([_re("re_Z", 100), _re("re_A", 200)], "re_A"),  # newest, whatever the ids
        ([_re("re_A", 200), _re("re_Z", 100)], "re_A"),
        ([_re("re_Z", None), _re("re_A", 1)], "re_A"),  # no created: the oldest
        ([_re("re_B", 100), _re("re_A", 100)], "re_B"),  # a tie: the larger id
        ([_re("re_A", 100), _re("re_B", 100)], "re_B"),
    ],
)
def test_pick_refund_takes_the_newest_of_ours(refunds: list[dict[str, Any]], picked: str) -> None:
    found = transformers.pick_refund(refunds, "re_o")
    assert found is not None and found["id"] == picked


# -- card_details -----------------------------------------------------------------------------
def test_card_details_reads_stripe_s_payment_method() -> None:
    pm = {
        "id": "pm_1OqQ2aLkdIwHu7ixq2a9m8Kx",
        "object": "payment_method",
        "type": "card",
        "card": {
            "brand": "visa",
            "country": "US",
            "exp_month": 8,
            "exp_year": 2030,
            "fingerprint": "Xt5EWLLDS7FJjR1c",
            "funding": "credit",
            "last4": "4242",
        },
        "customer": "cus_PqR2",
    }
    assert transformers.card_details(pm) == CardDetails(
        token="pm_1OqQ2aLkdIwHu7ixq2a9m8Kx",
        type="card",
        brand="visa",
        last4="4242",
        exp_month=8,
        exp_year=2030,
        fingerprint="Xt5EWLLDS7FJjR1c",
        country="US",
        funding="credit",
    )


def test_card_details_of_a_method_without_a_card() -> None:
    assert transformers.card_details({"id": "pm_2", "type": "us_bank_account"}) == CardDetails(
        token="pm_2", type="us_bank_account"
    )
    assert transformers.card_details({"id": "pm_3", "type": None, "card": None}) == CardDetails(
        token="pm_3", type="card"
    )


# -- interpret_event: only the right object for the right type ----------------------------------
def test_a_refund_event_whose_object_is_not_a_refund_is_ignored() -> None:
    charge = {"id": "ch_1", "object": "charge", "payment_intent": PI_ID, "refunds": {"data": []}}
    assert transformers.interpret_event(event("refund.updated", charge)) is None


def test_another_charge_event_carrying_refunds_is_not_a_refund_update() -> None:
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": PI_ID,
        "refunds": {"data": [_re("re_1", 100)]},
    }
    assert transformers.interpret_event(event("charge.updated", charge)) is None


def test_a_dispute_event_whose_object_is_not_a_dispute_is_ignored() -> None:
    charge = {"id": "ch_1", "object": "charge", "payment_intent": PI_ID, "amount": 1000}
    assert transformers.interpret_event(event("charge.dispute.created", charge)) is None


@pytest.mark.parametrize(
    ("refunds", "newest"),
    [
        ([_re("re_old", 100), _re("re_new", 200)], "re_new"),
        ([_re("re_none", None), _re("re_one", 1)], "re_one"),  # no created: the oldest
    ],
)
def test_charge_refunded_applies_the_newest_refund(
    refunds: list[dict[str, Any]], newest: str
) -> None:
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": PI_ID,
        "refunds": {"data": refunds},
    }
    update = transformers.interpret_event(event("charge.refunded", charge))
    assert isinstance(update, RefundUpdate)
    assert update.refund.reference == newest
    assert update.refund.payment_reference == PI_ID  # taken from the charge


def test_charge_refunded_keeps_the_refund_s_own_payment_intent() -> None:
    refund = dict(_re("re_1", 100), payment_intent="pi_of_the_refund")
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": None,
        "refunds": {"data": [refund]},
    }
    update = transformers.interpret_event(event("charge.refunded", charge))
    assert isinstance(update, RefundUpdate)
    assert update.refund.payment_reference == "pi_of_the_refund"


def test_a_dispute_in_isk_and_one_missing_its_currency_and_status() -> None:
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "amount": 250000,
        "currency": "isk",
        "payment_intent": PI_ID,
        "reason": "fraudulent",
        "status": "warning_needs_response",
    }
    assert transformers.interpret_event(event("charge.dispute.created", dispute)) == DisputeUpdate(
        reference="dp_1",
        payment_reference=PI_ID,
        amount=2500,
        currency="isk",
        reason="fraudulent",
        status="warning_needs_response",
    )
    bare = {"id": "dp_2", "object": "dispute", "amount": 700}
    assert transformers.interpret_event(event("charge.dispute.updated", bare)) == DisputeUpdate(
        reference="dp_2",
        payment_reference=None,
        amount=700,
        currency="",
        reason=None,
        status="needs_response",
    )


# -- SetupIntents -----------------------------------------------------------------------------
SETUP = SetupRequest(payment_method_token="pm_1", customer_token="cus_PqR2", reference="seti_o")


def test_setup_create_and_confirm_params() -> None:
    assert transformers.setup_create_params(SETUP, "seti_o:create") == {
        "customer": "cus_PqR2",
        "usage": "off_session",
        "payment_method_types": ["card"],
        "metadata": {"paymux_id": "seti_o", "paymux_key": "seti_o:create"},
    }
    assert transformers.setup_confirm_params(SETUP) == {"payment_method": "pm_1"}
    back = SetupRequest(
        payment_method_token="pm_1",
        customer_token="cus_PqR2",
        reference="seti_o",
        usage="on_session",
        return_url="https://shop.example/back",
    )
    assert transformers.setup_confirm_params(back) == {
        "payment_method": "pm_1",
        "return_url": "https://shop.example/back",
    }
    assert transformers.setup_create_params(back, "k")["usage"] == "on_session"


def seti(status: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": SETI_ID,
        "object": "setup_intent",
        "client_secret": SETI_SECRET,
        "customer": "cus_PqR2",
        "last_setup_error": None,
        "next_action": None,
        "payment_method": "pm_1",
        "status": status,
        "usage": "off_session",
    }
    data.update(fields)
    return data


CARD = CardDetails(token="pm_1", brand="visa", last4="4242")


def test_setup_result_succeeded_carries_the_card() -> None:
    assert transformers.setup_result(seti("succeeded"), CARD) == SetupResult(
        status=GatewayStatus.SUCCEEDED,
        reference=SETI_ID,
        card=CARD,
        raw={"id": SETI_ID, "status": "succeeded"},
    )


def test_setup_result_failed_carries_the_decline_and_no_card() -> None:
    error = {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "do_not_honor",
        "message": "Your card was declined.",
    }
    assert transformers.setup_result(
        seti("requires_payment_method", last_setup_error=error), CARD
    ) == SetupResult(
        status=GatewayStatus.FAILED,
        reference=SETI_ID,
        decline=Decline("do_not_honor", "Your card was declined."),
        raw={"id": SETI_ID, "status": "requires_payment_method"},
    )


def test_setup_result_never_tried_is_open() -> None:
    assert transformers.setup_result(seti("requires_payment_method"), CARD) == SetupResult(
        status=GatewayStatus.OPEN,
        reference=SETI_ID,
        raw={"id": SETI_ID, "status": "requires_payment_method"},
    )


def test_setup_result_requires_action_passes_the_action_with_its_secret() -> None:
    action = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
    got = transformers.setup_result(seti("requires_action", next_action=action), CARD)
    assert got == SetupResult(
        status=GatewayStatus.REQUIRES_ACTION,
        reference=SETI_ID,
        next_action={**action, "client_secret": SETI_SECRET},
        raw={"id": SETI_ID, "status": "requires_action"},
    )
    assert "client_secret" not in action  # Stripe's dict is not changed
    own = {"type": "redirect_to_url", "client_secret": "kept"}
    kept = transformers.setup_result(seti("requires_action", next_action=own))
    assert kept.next_action == {"type": "redirect_to_url", "client_secret": "kept"}


@pytest.mark.parametrize(
    ("status", "ours"),
    [
        ("processing", GatewayStatus.PROCESSING),
        ("canceled", GatewayStatus.CANCELED),
        ("requires_confirmation", GatewayStatus.OPEN),
    ],
)
def test_setup_result_other_statuses_carry_nothing(status: str, ours: GatewayStatus) -> None:
    action = {"type": "redirect_to_url"}
    error = {"code": "card_declined", "message": "no"}
    got = transformers.setup_result(seti(status, next_action=action, last_setup_error=error), CARD)
    assert got == SetupResult(status=ours, reference=SETI_ID, raw={"id": SETI_ID, "status": status})


# -- a fraud rule's request_3ds, a review's hold (docs.stripe.com/api/payment_intents/confirm:
# payment_method_options.card.request_three_d_secure takes automatic | any | challenge) -------
THREE_DS = {"card": {"request_three_d_secure": "any"}}


def test_confirm_params_ask_for_3ds_when_told() -> None:
    assert transformers.confirm_params(
        _request(request_three_d_secure="any", return_url="https://shop.example/r")
    ) == {
        "payment_method": "pm_card_visa",
        "return_url": "https://shop.example/r",
        "payment_method_options": THREE_DS,
    }
    assert "payment_method_options" not in transformers.confirm_params(_request())


def test_update_then_confirm_holds_an_authorize_only_payment_and_asks_for_3ds() -> None:
    update, confirm = transformers.update_then_confirm_params(
        _request(capture=False, request_three_d_secure="any")
    )
    assert update == {"payment_method": "pm_card_visa", "capture_method": "manual"}
    assert confirm == {"payment_method_options": THREE_DS}
