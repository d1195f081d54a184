"""Edge cases of paymux.gateways.square.transformers found by mutation testing.

Each test pins a behaviour that a surviving mutmut mutant showed no other unit test checked:
the 45-character idempotency key limit at its edges, Square's field length limits, the keys
of an UpdatePayment, which error of several is the decline, the status codes that mean an
outage, the fallbacks when Square's JSON leaves a field out, and which of several payments or
refunds is ours. Expected values are written out from Square's documented shapes (api.json:
CreatePayment reference_id <= 40, note <= 500, RefundPayment reason <= 192, idempotency keys
<= 45), never computed by the code under test.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    Decline,
    DisputeUpdate,
    GatewayRefund,
    GatewayResult,
    GatewayStatus,
    InboundEvent,
)
from paymux.gateways.square import transformers as sq
from paymux.money import Money


# -- idempotency keys ---------------------------------------------------------------------------
def test_a_key_of_exactly_45_characters_is_sent_as_it_is() -> None:
    key = "pi_" + "a" * 42
    assert len(key) == 45
    assert sq.square_idempotency_key(key) == key


def test_an_empty_key_is_hashed() -> None:
    # SHA-256 of the empty string starts e3b0c44298fc1c14 (FIPS 180-4 test vector)
    assert sq.square_idempotency_key("") == "~e3b0c44298fc1c14"


def test_a_long_key_keeps_28_readable_characters_without_tildes() -> None:
    key = "pi_~~12345678901234567890123456789:authorize:1"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    assert sq.square_idempotency_key(key) == "pi_1234567890123456789012345~" + digest


# -- amounts ---------------------------------------------------------------------------------
def test_an_unsupported_currency_names_the_ones_square_takes() -> None:
    expected = (
        "Square processes only AUD, CAD, EUR, GBP, JPY, USD (the seller's own currency), not CHF."
    )
    assert sq.amount_problem(Money(100, "CHF")) == expected
    with pytest.raises(ValueError) as raised:
        sq.to_square(Money(100, "CHF"))
    assert str(raised.value) == expected


def test_from_square_of_nothing_is_zero() -> None:
    assert sq.from_square(None) == 0
    assert sq.from_square({"amount": 0, "currency": "USD"}) == 0
    assert sq.from_square({"currency": "USD"}) == 0


# -- requests --------------------------------------------------------------------------------
def test_create_payment_cuts_reference_and_note_to_square_s_limits() -> None:
    request = AuthorizeRequest(
        amount=Money(1000, "USD"),
        payment_method_token="cnon:card-nonce-ok",
        capture=True,
        reference="r" * 45,
        description="n" * 600,
    )
    params = sq.create_payment_params(request, location_id=None, idempotency_key="k1")
    assert params["reference_id"] == "r" * 40
    assert params["note"] == "n" * 500


def test_update_and_restore_name_the_step_and_the_version_read() -> None:
    payment = {"id": "pay_1", "status": "APPROVED", "version_token": "v7"}
    assert sq.update_amount_params(payment, Money(600, "USD"), idempotency_key="pi_1:capture") == {
        "payment_id": "pay_1",
        "idempotency_key": "pi_1:capture:amount:v7",
        "payment": {"amount_money": {"amount": 600, "currency": "USD"}, "version_token": "v7"},
    }
    assert sq.restore_amount_params(
        {"id": "pay_1"}, Money(1000, "USD"), idempotency_key="pi_1:capture"
    ) == {
        "payment_id": "pay_1",
        "idempotency_key": "pi_1:capture:restore",
        "payment": {"amount_money": {"amount": 1000, "currency": "USD"}},
    }


def test_refund_params_without_a_reason_and_with_a_long_one() -> None:
    assert sq.refund_params(
        "pay_1", Money(400, "USD"), None, idempotency_key="re_1:refund", our_id="re_1"
    ) == {
        "idempotency_key": "re_1:refund",
        "amount_money": {"amount": 400, "currency": "USD"},
        "payment_id": "pay_1",
        "reason": "refund [paymux re_1]",
    }
    long = sq.refund_params("pay_1", Money(1, "USD"), "x" * 300, idempotency_key="k", our_id=None)
    assert long["reason"] == "x" * 192


# -- declines ---------------------------------------------------------------------------------
def test_the_payment_method_error_wins_over_an_earlier_error() -> None:
    errors = [
        {"category": "INVALID_REQUEST_ERROR", "code": "CARD_DECLINED", "detail": "first"},
        {"category": "PAYMENT_METHOD_ERROR", "code": "GIFT_CARD_AVAILABLE_AMOUNT", "detail": "gc"},
    ]
    assert sq.decline_from_errors(errors) == Decline("GIFT_CARD_AVAILABLE_AMOUNT", "gc")


def test_without_the_category_the_first_declining_code_is_the_decline() -> None:
    errors = [
        {"category": "INVALID_REQUEST_ERROR", "code": "INVALID_VALUE", "detail": "not this"},
        {"code": "CVV_FAILURE", "detail": "CVV wrong."},
        {"code": "CARD_DECLINED", "detail": "later"},
    ]
    assert sq.decline_from_errors(errors) == Decline("CVV_FAILURE", "CVV wrong.")


def test_decline_defaults() -> None:
    assert sq.decline_from_errors([]) == Decline("GENERIC_DECLINE", "The card was declined.")
    assert sq.decline_from_errors([{"category": "PAYMENT_METHOD_ERROR"}]) == Decline(
        "GENERIC_DECLINE", "The card was declined."
    )


def test_a_declined_answer_that_is_not_json_is_a_generic_decline() -> None:
    assert sq.declined_result("Bad Gateway") == GatewayResult(
        status=GatewayStatus.FAILED,
        reference=None,
        decline=Decline("GENERIC_DECLINE", "The card was declined."),
        raw={"id": None, "status": "FAILED"},
    )


def test_a_refused_completion_keeps_the_held_payment_in_raw() -> None:
    body = {"errors": [{"category": "PAYMENT_METHOD_ERROR", "code": "CARD_DECLINED"}]}
    assert sq.refused_capture_result("pay_1", body) == GatewayResult(
        status=GatewayStatus.FAILED,
        reference="pay_1",
        decline=Decline("CARD_DECLINED", "The card was declined."),
        raw={"id": "pay_1", "status": "APPROVED", "refused": "complete"},
    )


# -- payments -------------------------------------------------------------------------------
def test_an_approved_payment_without_amount_money_holds_its_approved_money() -> None:
    payment = {
        "id": "pay_1",
        "status": "APPROVED",
        "approved_money": {"amount": 800, "currency": "USD"},
        "risk_evaluation": {"risk_level": "MODERATE"},
    }
    assert sq.payment_result(payment) == GatewayResult(
        status=GatewayStatus.REQUIRES_CAPTURE,
        reference="pay_1",
        amount_authorized=800,
        risk_level="elevated",
        raw={"id": "pay_1", "status": "APPROVED"},
    )
    both = dict(payment, amount_money={"amount": 1000, "currency": "USD"})
    assert sq.payment_result(both).amount_authorized == 1000


def test_a_payment_without_a_risk_evaluation_has_no_risk_level() -> None:
    got = sq.payment_result({"id": "pay_2", "status": "COMPLETED"})
    assert (got.risk_level, got.amount_captured, got.raw) == (
        None,
        0,
        {"id": "pay_2", "status": "COMPLETED"},
    )


def test_pick_lookup_takes_the_newest_and_breaks_ties_by_id() -> None:
    def pay(pay_id: str, created_at: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {"id": pay_id, "reference_id": "pi_1"}
        if created_at is not None:
            data["created_at"] = created_at
        return data

    got = sq.pick_lookup([pay("pay_Z", None), pay("pay_A", "2024-03-21T10:00:00.000Z")], "pi_1")
    assert got is not None and got["id"] == "pay_A"  # no created_at: the oldest
    for order in (["pay_A", "pay_B"], ["pay_B", "pay_A"]):
        tie = sq.pick_lookup([pay(i, "2024-03-21T10:00:00.000Z") for i in order], "pi_1")
        assert tie is not None and tie["id"] == "pay_B"


@pytest.mark.parametrize(
    ("refunds", "picked"),
    [
        (
            [
                {"id": "r_Z", "reason": "a [paymux re_1]", "created_at": "2024-03-21T10:00:00Z"},
                {"id": "r_A", "reason": "b [paymux re_1]", "created_at": "2024-03-22T10:00:00Z"},
            ],
            "r_A",
        ),
        (
            [
                {"id": "r_A", "reason": "[paymux re_1]", "created_at": "2024-03-21T10:00:00Z"},
                {"id": "r_B", "reason": "[paymux re_1]", "created_at": "2024-03-21T10:00:00Z"},
            ],
            "r_B",
        ),
        (
            [
                {"id": "r_B", "reason": "[paymux re_1]", "created_at": "2024-03-21T10:00:00Z"},
                {"id": "r_A", "reason": "[paymux re_1]", "created_at": "2024-03-21T10:00:00Z"},
                {"id": "r_C", "reason": None, "created_at": "2024-03-23T10:00:00Z"},
                {"id": "r_D", "reason": "[paymux re_2]", "created_at": "2024-03-23T10:00:00Z"},
            ],
            "r_B",
        ),
        (
            [
                {"id": "r_Z", "reason": "[paymux re_1]"},
                {"id": "r_A", "reason": "[paymux re_1]", "created_at": "2024-03-21T10:00:00Z"},
            ],
            "r_A",
        ),
    ],
)
def test_pick_refund_takes_our_newest(refunds: list[dict[str, Any]], picked: str) -> None:
    got = sq.pick_refund(refunds, "re_1")
    assert got is not None and got["id"] == picked


def test_capture_plan_limits() -> None:
    held = {
        "id": "pay_1",
        "status": "APPROVED",
        "amount_money": {"amount": 1000, "currency": "USD"},
    }
    assert sq.capture_plan(held, Money(1000, "USD")) == "complete"
    with pytest.raises(ValueError) as too_large:
        sq.capture_plan(held, Money(1001, "USD"))
    assert too_large.value.args == ("amount_to_capture_too_large",)
    with pytest.raises(ValueError) as partial:
        sq.capture_plan(held, Money(999, "USD"))
    assert partial.value.args == ("partial_capture_not_supported",)
    editable = dict(held, capabilities=["EDIT_AMOUNT_UP", "EDIT_AMOUNT_DOWN"])
    assert sq.capture_plan(editable, Money(999, "USD")) == "update_then_complete"


# -- refunds ----------------------------------------------------------------------------------
def test_a_refund_without_a_status_is_pending() -> None:
    got = sq.refund_result({"id": "r_1", "payment_id": "pay_1"})
    assert got == GatewayRefund(
        status="pending", reference="r_1", amount=0, payment_reference="pay_1"
    )


def test_a_refused_refund_without_errors_is_a_refund_error() -> None:
    assert sq.refund_error_result({}, Money(300, "USD")) == GatewayRefund(
        status="failed", reference=None, amount=300, failure_reason="refund_error"
    )


# -- cards ------------------------------------------------------------------------------------
def test_card_details_of_an_unknown_brand_and_of_no_brand() -> None:
    card = {"id": "ccof:1", "card_brand": "SOME_NEW_BRAND", "last_4": "1111", "card_type": "DEBIT"}
    assert sq.card_details(card) == CardDetails(
        token="ccof:1", type="card", brand="unknown", last4="1111", funding="debit"
    )
    assert sq.card_details({"id": "ccof:2"}) == CardDetails(token="ccof:2", type="card")


# -- errors -----------------------------------------------------------------------------------
INVALID = {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "BAD_REQUEST"}]}


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"errors": [{"code": "RATE_LIMITED"}]}, sq.ErrorKind.RATE_LIMITED),
        (
            400,
            {"errors": [{"category": "RATE_LIMIT_ERROR", "code": "X"}]},
            sq.ErrorKind.RATE_LIMITED,
        ),
        (500, INVALID, sq.ErrorKind.UNAVAILABLE),
        (408, INVALID, sq.ErrorKind.UNAVAILABLE),
        (409, INVALID, sq.ErrorKind.UNAVAILABLE),
        (410, INVALID, sq.ErrorKind.INVALID),
        (499, INVALID, sq.ErrorKind.INVALID),
    ],
)
def test_classify_error_edges(status: int, body: Any, kind: sq.ErrorKind) -> None:
    assert sq.classify_error(status, body) == kind


def test_error_summary_fallbacks() -> None:
    assert sq.error_summary({}) == ("api_error", "Square answered with an error and no error list.")
    assert sq.error_summary({"errors": [{"category": "API_ERROR"}]}) == ("api_error", "api_error")
    assert sq.error_summary({"errors": [{"code": "INVALID_VALUE"}]}) == (
        "INVALID_VALUE",
        "INVALID_VALUE",
    )
    assert sq.error_summary({"errors": [{"code": "INVALID_VALUE", "detail": "Bad."}]}) == (
        "INVALID_VALUE",
        "Bad.",
    )


# -- webhooks -------------------------------------------------------------------------------
def test_a_dispute_named_by_dispute_id_without_money_or_reason() -> None:
    assert sq.dispute_update({"dispute_id": "dp_1", "state": "WON"}) == DisputeUpdate(
        reference="dp_1", payment_reference=None, amount=0, currency="", reason=None, status="won"
    )


def event(event_type: str, obj: dict[str, Any]) -> InboundEvent:
    payload = {"type": event_type, "event_id": "ev_1", "data": {"id": "x", "object": obj}}
    return InboundEvent("square", "ev_1", event_type, payload)


@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        ("refund.created", {"payment": {"id": "pay_1", "status": "COMPLETED"}}),
        ("dispute.created", {"refund": {"id": "r_1", "status": "COMPLETED"}}),
        ("payment.updated", {"refund": {"id": "r_1", "status": "COMPLETED"}}),
        ("payment.updated", {"dispute": {"id": "dp_1", "state": "WON"}}),
    ],
)
def test_an_event_whose_object_does_not_match_its_type_is_ignored(
    event_type: str, obj: dict[str, Any]
) -> None:
    assert sq.interpret_event(event(event_type, obj)) is None
