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
    ThreeDSecure,
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


def test_an_off_session_charge_is_flagged_merchant_initiated() -> None:
    # CreatePayment's customer_details (CustomerDetails.customer_initiated: false) for a card
    # on file charged without the payer; an on-session payment sends no customer_details
    request = AuthorizeRequest(
        amount=Money(1500, "USD"),
        payment_method_token="ccof:uIbfJXhXETSP197M3GB",
        capture=True,
        reference="in_ours_1",
        customer_token="VDKXEEKPJN48QDG3BGGFAK05P8",
        off_session=True,
    )
    assert sq.create_payment_params(request, location_id=None, idempotency_key="in_1:pay") == {
        "source_id": "ccof:uIbfJXhXETSP197M3GB",
        "idempotency_key": "in_1:pay",
        "amount_money": {"amount": 1500, "currency": "USD"},
        "autocomplete": True,
        "reference_id": "in_ours_1",
        "customer_id": "VDKXEEKPJN48QDG3BGGFAK05P8",
        "customer_details": {"customer_initiated": False},
    }


# -- buyer verification (Web Payments SDK verifyBuyer) ----------------------------------------
VERIFICATION_TOKEN = "verf:CA4SEK2NCXhvJTdoSRWfqmBm0y8gAQ"


def on_session(**fields: Any) -> AuthorizeRequest:
    values: dict[str, Any] = {
        "amount": Money(2000, "USD"),
        "payment_method_token": "cnon:card-nonce-ok",
        "capture": False,
        "reference": "pi_ours_1",
    }
    values.update(fields)
    return AuthorizeRequest(**values)


@pytest.mark.parametrize("option", ["any", "challenge"])
def test_3ds_asked_without_a_verification_token_is_refused_before_any_call(option: str) -> None:
    assert sq.verification_missing(on_session(request_three_d_secure=option)) == GatewayResult(
        status=GatewayStatus.FAILED,
        reference=None,
        decline=Decline(
            "CARD_DECLINED_VERIFICATION_REQUIRED",
            "3-D Secure was requested: confirm with a verifyBuyer verification_token.",
        ),
        raw={"id": None, "status": "FAILED"},
    )


@pytest.mark.parametrize(
    "request_",
    [
        # verifyBuyer ran: its token goes with CreatePayment
        on_session(request_three_d_secure="challenge", verification_token=VERIFICATION_TOKEN),
        on_session(request_three_d_secure="any", verification_token=VERIFICATION_TOKEN),
        # merchant-initiated: no buyer to verify, even if an option slipped through
        on_session(request_three_d_secure="any", off_session=True),
        # not asked (the gateway's default, or only where required): Square decides
        on_session(request_three_d_secure="automatic"),
        on_session(),
    ],
)
def test_verification_is_not_missing(request_: AuthorizeRequest) -> None:
    assert sq.verification_missing(request_) is None


HELD = GatewayResult(
    status=GatewayStatus.REQUIRES_CAPTURE,
    reference="pay_1",
    amount_authorized=2000,
    raw={"id": "pay_1", "status": "APPROVED"},
)


@pytest.mark.parametrize(
    ("status", "square_status", "captured"),
    [(GatewayStatus.REQUIRES_CAPTURE, "APPROVED", 0), (GatewayStatus.SUCCEEDED, "COMPLETED", 2000)],
)
def test_a_verified_approved_payment_says_3ds_ran_with_an_unknown_result(
    status: GatewayStatus, square_status: str, captured: int
) -> None:
    # Square's Payment says nothing of the 3-D Secure result (CardPaymentDetails'
    # verification_results are EMV's, in person): it ran, the outcome is unknown
    result = GatewayResult(
        status=status,
        reference="pay_1",
        amount_authorized=2000,
        amount_captured=captured,
        raw={"id": "pay_1", "status": square_status},
    )
    got = sq.with_buyer_verification(on_session(verification_token=VERIFICATION_TOKEN), result)
    assert got == GatewayResult(
        status=status,
        reference="pay_1",
        amount_authorized=2000,
        amount_captured=captured,
        raw={"id": "pay_1", "status": square_status},
        three_d_secure=ThreeDSecure(result=None),
    )


def test_without_a_token_or_an_approval_there_is_no_3ds_outcome() -> None:
    assert sq.with_buyer_verification(on_session(), HELD) == HELD  # no verifyBuyer token
    failed = GatewayResult(
        status=GatewayStatus.FAILED,
        reference="pay_2",
        decline=Decline("CVV_FAILURE", "CVV wrong."),
        raw={"id": "pay_2", "status": "FAILED"},
    )
    verified = on_session(verification_token=VERIFICATION_TOKEN)
    assert sq.with_buyer_verification(verified, failed).three_d_secure is None
    pending = GatewayResult(status=GatewayStatus.PROCESSING, reference="pay_3")
    assert sq.with_buyer_verification(verified, pending).three_d_secure is None


def test_a_card_is_stored_with_the_store_intent_verification_token() -> None:
    # CreateCardRequest.verification_token: verifyBuyer's token (intent STORE), top level
    assert sq.card_params(
        "cnon:card-nonce-ok",
        "VDKXEEKPJN48QDG3BGGFAK05P8",
        idempotency_key="cus_1:card",
        verification_token=VERIFICATION_TOKEN,
    ) == {
        "idempotency_key": "cus_1:card",
        "source_id": "cnon:card-nonce-ok",
        "card": {"customer_id": "VDKXEEKPJN48QDG3BGGFAK05P8"},
        "verification_token": VERIFICATION_TOKEN,
    }


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


def test_card_details_keeps_square_s_bin() -> None:
    # api.json's card.created example (CardCreatedEvent data.object.card)
    card = {
        "billing_address": {
            "address_line_1": "500 Electric Ave",
            "address_line_2": "Suite 600",
            "administrative_district_level_1": "NY",
            "country": "US",
            "locality": "New York",
            "postal_code": "10003",
        },
        "bin": "411111",
        "card_brand": "VISA",
        "card_type": "CREDIT",
        "cardholder_name": "Amelia Earhart",
        "customer_id": "VDKXEEKPJN48QDG3BGGFAK05P8",
        "enabled": True,
        "exp_month": 11,
        "exp_year": 2022,
        "fingerprint": "ex-p-cs80EK9Flz7LsCMv-szbptQ_ssAGrhemzSTsPFgt9nzyE6t7okiLIQc-qw_quqKX4Q",
        "hsa_fsa": False,
        "id": "ccof:uIbfJXhXETSP197M3GB",
        "last_4": "1111",
        "merchant_id": "6SSW7HV8K2ST5",
        "prepaid_type": "NOT_PREPAID",
        "reference_id": "user-id-1",
        "version": 1,
    }
    assert sq.card_details(card) == CardDetails(
        token="ccof:uIbfJXhXETSP197M3GB",
        type="card",
        brand="visa",
        last4="1111",
        exp_month=11,
        exp_year=2022,
        fingerprint="ex-p-cs80EK9Flz7LsCMv-szbptQ_ssAGrhemzSTsPFgt9nzyE6t7okiLIQc-qw_quqKX4Q",
        funding="credit",
        bin="411111",
    )


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
