"""Edge cases of paymux.gateways.sandbox.transformers found by mutation testing.

Each test pins a behaviour that a surviving mutmut mutant showed no other unit test checked:
the whole authorize body, every field of a charge, refund and setup attempt as the sandbox
processor (gateways/sandbox/processor.py) writes them, and the fallbacks when a field is
missing. Expected values are written out, never computed by the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    Decline,
    GatewayRefund,
    GatewayResult,
    GatewayStatus,
    SetupResult,
    ThreeDSecure,
)
from paymux.gateways.sandbox import transformers
from paymux.money import Money

CARD = {
    "brand": "visa",
    "last4": "4242",
    "exp_month": 12,
    "exp_year": 2034,
    "fingerprint": "fp_9f2c",
    "country": "US",
    "funding": "credit",
    "scenario": "succeed",
}
CARD_DETAILS = CardDetails(
    token="tok_1",
    type="card",
    brand="visa",
    last4="4242",
    exp_month=12,
    exp_year=2034,
    fingerprint="fp_9f2c",
    country="US",
    funding="credit",
)


def test_authorize_body_is_the_whole_request() -> None:
    request = AuthorizeRequest(
        amount=Money(1999, "EUR"),
        payment_method_token="tok_1",
        capture=False,
        reference="pi_ours_1",
        customer_token="cus_1",
        off_session=True,
        setup_future_usage="off_session",
        return_url="https://shop.example/back",
        request_three_d_secure="challenge",
        network_transaction_id="ntx_first",
    )
    assert transformers.authorize_body(request) == {
        "amount": 1999,
        "currency": "eur",
        "token": "tok_1",
        "capture": False,
        "reference": "pi_ours_1",
        "customer": "cus_1",
        "off_session": True,
        "setup_future_usage": "off_session",
        "return_url": "https://shop.example/back",
        "request_three_d_secure": "challenge",
        "network_transaction_id": "ntx_first",
    }


def charge(status: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "ch_1",
        "object": "charge",
        "reference": "pi_ours_1",
        "amount": 1000,
        "currency": "usd",
        "status": status,
        "amount_authorized": 1000,
        "amount_captured": 0,
        "risk_level": "normal",
        "decline_code": None,
        "message": None,
        "next_action": None,
    }
    data.update(fields)
    return data


def test_a_held_charge() -> None:
    data = charge("requires_capture", risk_level="elevated")
    assert transformers.charge_result(data) == GatewayResult(
        status=GatewayStatus.REQUIRES_CAPTURE,
        reference="ch_1",
        amount_authorized=1000,
        amount_captured=0,
        decline=None,
        next_action=None,
        risk_level="elevated",
        raw=data,
    )


def test_a_captured_charge() -> None:
    data = charge("succeeded", amount_captured=1000)
    got = transformers.charge_result(data)
    assert (got.status, got.amount_authorized, got.amount_captured) == (
        GatewayStatus.SUCCEEDED,
        1000,
        1000,
    )
    assert got.decline is None
    assert got.raw is data


def test_missing_amounts_are_zero() -> None:
    data = charge("processing", amount_authorized=None, amount_captured=None)
    got = transformers.charge_result(data)
    assert (got.status, got.amount_authorized, got.amount_captured) == (
        GatewayStatus.PROCESSING,
        0,
        0,
    )


@pytest.mark.parametrize(
    ("status", "ours"),
    [
        ("requires_action", GatewayStatus.REQUIRES_ACTION),
        ("canceled", GatewayStatus.CANCELED),
    ],
)
def test_nothing_is_authorized_before_the_payer_acts_or_after_a_cancel(
    status: str, ours: GatewayStatus
) -> None:
    action = {"type": "redirect_to_url", "redirect_to_url": {"url": "http://127.0.0.1/3ds"}}
    got = transformers.charge_result(charge(status, next_action=action))
    assert (got.status, got.amount_authorized, got.decline) == (ours, 0, None)
    assert got.next_action == action


def test_a_declined_charge_carries_its_code_and_message() -> None:
    data = charge(
        "failed",
        amount_authorized=1000,  # whatever it says, a failed charge authorized nothing
        decline_code="insufficient_funds",
        message="Your card has insufficient funds.",
    )
    got = transformers.charge_result(data)
    assert got.status is GatewayStatus.FAILED
    assert got.amount_authorized == 0
    assert got.decline == Decline("insufficient_funds", "Your card has insufficient funds.")


def test_a_decline_without_code_or_message_is_generic() -> None:
    # the shape of a transient processing error has no id; one with nothing at all:
    got = transformers.charge_result({"object": "charge", "status": "failed"})
    assert got == GatewayResult(
        status=GatewayStatus.FAILED,
        reference=None,
        decline=Decline("generic_decline", "Your card was declined."),
        raw={"object": "charge", "status": "failed"},
    )


# The challenge's outcome as the processor writes it on a challenged charge
# (processor._complete_3ds: Stripe's payment_method_details.card.three_d_secure shape).
AUTHENTICATED = {
    "authentication_flow": "challenge",
    "result": "authenticated",
    "result_reason": None,
    "version": "2.2.0",
}
REJECTED = {
    "authentication_flow": "challenge",
    "result": "failed",
    "result_reason": "rejected",
    "version": "2.2.0",
}


def test_a_challenged_and_approved_charge_carries_its_3ds_outcome_and_network_id() -> None:
    # the processor's _approve sets network_transaction_id "ntx_" + the charge id's tail
    data = charge("requires_capture", three_d_secure=AUTHENTICATED, network_transaction_id="ntx_1")
    assert transformers.charge_result(data) == GatewayResult(
        status=GatewayStatus.REQUIRES_CAPTURE,
        reference="ch_1",
        amount_authorized=1000,
        amount_captured=0,
        risk_level="normal",
        raw=data,
        three_d_secure=ThreeDSecure(
            result="authenticated",
            authentication_flow="challenge",
            version="2.2.0",
            liability_shift=True,  # an authenticated challenge moves liability to the issuer
        ),
        network_transaction_id="ntx_1",
    )


def test_a_charge_without_a_challenge_or_network_id_has_neither() -> None:
    got = transformers.charge_result(charge("succeeded", three_d_secure=None))
    assert (got.three_d_secure, got.network_transaction_id) == (None, None)


def test_three_d_secure_reads_a_failed_challenge_and_nothing_as_none() -> None:
    assert transformers.three_d_secure(REJECTED) == ThreeDSecure(
        result="failed",
        authentication_flow="challenge",
        result_reason="rejected",
        version="2.2.0",
        liability_shift=False,  # a failed challenge leaves liability with the merchant
    )
    assert transformers.three_d_secure(None) is None


def test_refund_result_reads_every_field() -> None:
    data = {
        "id": "re_1",
        "object": "refund",
        "reference": "pi_ours_1",
        "charge": "ch_1",
        "amount": 400,
        "reason": "requested_by_customer",
        "status": "failed",
        "failure_reason": "expired_or_canceled_card",
        "our_id": "re_ours_1",
    }
    assert transformers.refund_result(data) == GatewayRefund(
        status="failed",
        reference="re_1",
        amount=400,
        failure_reason="expired_or_canceled_card",
        payment_reference="ch_1",
        our_id="re_ours_1",
        reason="requested_by_customer",
    )


def test_card_details_reads_every_field() -> None:
    assert transformers.card_details({"id": "tok_1", "object": "token", "card": CARD}) == (
        CARD_DETAILS
    )
    assert transformers.card_details({"id": "tok_2", "card": None}) == CardDetails(token="tok_2")


def test_card_details_reads_the_bin_and_the_checks_made_at_tokenization() -> None:
    # processor._card_json of test card 4000000000000010 (address line 1 and postal code
    # checks fail, the CVC passes), tokenized with a postal code
    card = dict(
        CARD,
        last4="0010",
        bin="400000",
        checks={
            "cvc_check": "pass",
            "address_line1_check": "fail",
            "address_postal_code_check": "fail",
        },
    )
    assert transformers.card_details({"id": "tok_1", "card": card}) == CardDetails(
        token="tok_1",
        brand="visa",
        last4="0010",
        exp_month=12,
        exp_year=2034,
        fingerprint="fp_9f2c",
        country="US",
        funding="credit",
        bin="400000",
        cvc_check="pass",
        address_line1_check="fail",
        address_zip_check="fail",
    )


def test_card_details_without_checks_has_none() -> None:
    # a token whose card has no checks at all (written before checks were recorded)
    got = transformers.card_details({"id": "tok_1", "card": dict(CARD, bin="424242")})
    assert (got.bin, got.cvc_check, got.address_line1_check, got.address_zip_check) == (
        "424242",
        None,
        None,
        None,
    )


def setup(status: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "seti_1",
        "object": "setup_attempt",
        "reference": "seti_ours_1",
        "token": "tok_1",
        "customer": "cus_1",
        "usage": "off_session",
        "card": CARD,
        "decline_code": None,
        "message": None,
        "next_action": None,
        "status": status,
    }
    data.update(fields)
    return data


def test_a_setup_that_succeeded_carries_the_card_it_saved() -> None:
    data = setup("succeeded")
    assert transformers.setup_result(data) == SetupResult(
        status=GatewayStatus.SUCCEEDED, reference="seti_1", card=CARD_DETAILS, raw=data
    )


def test_a_setup_that_succeeded_without_a_token_or_card() -> None:
    assert transformers.setup_result(setup("succeeded", token=None)).card is None
    got = transformers.setup_result(setup("succeeded", card=None))
    assert got.card == CardDetails(token="tok_1")


def test_a_failed_setup_carries_the_decline_and_no_card() -> None:
    data = setup("failed", decline_code="do_not_honor", message="The issuer said no.")
    assert transformers.setup_result(data) == SetupResult(
        status=GatewayStatus.FAILED,
        reference="seti_1",
        decline=Decline("do_not_honor", "The issuer said no."),
        raw=data,
    )
    bare = {"object": "setup_attempt", "status": "failed"}
    assert transformers.setup_result(bare).decline == Decline(
        "generic_decline", "Your card was declined."
    )


def test_a_setup_waiting_for_the_payer_passes_the_action_only_then() -> None:
    action = {"type": "redirect_to_url", "redirect_to_url": {"url": "http://127.0.0.1/3ds"}}
    waiting = transformers.setup_result(setup("requires_action", next_action=action))
    assert (waiting.status, waiting.next_action, waiting.card, waiting.decline) == (
        GatewayStatus.REQUIRES_ACTION,
        action,
        None,
        None,
    )
    canceled = transformers.setup_result(setup("canceled", next_action=action))
    assert (canceled.status, canceled.next_action, canceled.card, canceled.decline) == (
        GatewayStatus.CANCELED,
        None,
        None,
        None,
    )
