"""The Stripe connector's pure parts, fed Stripe's own JSON shapes (API reference, spec3.yaml):
every PaymentIntent status, refunds, webhook events, request parameters, declines, and webhook
signatures made by stripe-python's own signing helper."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
import stripe

from paymux.domain.errors import GATEWAY_CODES
from paymux.gateways.base import (
    AuthorizeRequest,
    Decline,
    DisputeUpdate,
    GatewayStatus,
    InboundEvent,
    PaymentUpdate,
    RefundUpdate,
    WebhookVerificationError,
)
from paymux.gateways.connectors import connectors
from paymux.gateways.stripe import StripeGateway, transformers
from paymux.money import Money
from support import stripe_docs

connectors()  # registers each connector's code rows, as a running paymux has them

PI_ID = "pi_3OqQ2bLkdIwHu7ix0y1Zp0Xa"
SECRET = "pi_3OqQ2bLkdIwHu7ix0y1Zp0Xa_secret_gW2XGqE5bDh9r1NqzR8Lr4xYp"


# -- Stripe JSON ----------------------------------------------------------------------------
def payment_intent(status: str, **fields: Any) -> dict[str, Any]:
    """A PaymentIntent as the API returns it (and as a webhook's data.object carries it)."""
    pi: dict[str, Any] = {
        "id": PI_ID,
        "object": "payment_intent",
        "amount": 1000,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": SECRET,
        "confirmation_method": "automatic",
        "created": 1711000000,
        "currency": "usd",
        "customer": None,
        "description": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": {"paymux_id": "pi_ours_1"},
        "next_action": None,
        "payment_method": "pm_1OqQ2aLkdIwHu7ixq2a9m8Kx",
        "payment_method_types": ["card"],
        "setup_future_usage": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
    }
    pi.update(fields)
    return pi


def card_error(
    code: str = "card_declined",
    decline_code: str | None = None,
    message: str = "Your card was declined.",
) -> dict[str, Any]:
    """An ``error`` object of type card_error (also the shape of ``last_payment_error``)."""
    error: dict[str, Any] = {
        "type": "card_error",
        "code": code,
        "doc_url": f"https://stripe.com/docs/error-codes/{code}",
        "message": message,
        "param": None,
        "payment_method": {
            "id": "pm_1OqQ2aLkdIwHu7ixq2a9m8Kx",
            "object": "payment_method",
            "type": "card",
            "card": {"brand": "visa", "last4": "0002"},
        },
    }
    if decline_code:
        error["decline_code"] = decline_code
    return error


def refund(status: str = "succeeded", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "re_3OqQ2bLkdIwHu7ix0b9K1zQe",
        "object": "refund",
        "amount": 400,
        "balance_transaction": "txn_3OqQ2bLkdIwHu7ix0vKt7lJ0",
        "charge": "ch_3OqQ2bLkdIwHu7ix0l6c1c2E",
        "created": 1711000100,
        "currency": "usd",
        "metadata": {"paymux_id": "re_ours_1"},
        "payment_intent": PI_ID,
        "reason": "requested_by_customer",
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }
    data.update(fields)
    return data


def event(
    type_: str, obj: dict[str, Any], event_id: str = "evt_1OqQ2cLkdIwHu7ixrV2kX9aa"
) -> InboundEvent:
    payload = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1711000200,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_9xQk2LdPn3", "idempotency_key": "pi_ours_1:authorize:1"},
        "type": type_,
    }
    return InboundEvent("stripe", event_id, type_, payload)


# -- payment_result: every PaymentIntent status ------------------------------------------------
def test_requires_payment_method_after_a_decline_is_failed_with_the_decline_code() -> None:
    pi = payment_intent(
        "requires_payment_method",
        payment_method=None,
        last_payment_error=card_error(
            "card_declined", "insufficient_funds", "Your card has insufficient funds."
        ),
    )
    result = transformers.payment_result(pi)
    assert result.status is GatewayStatus.FAILED
    assert result.reference == PI_ID
    assert result.decline == Decline("insufficient_funds", "Your card has insufficient funds.")
    assert (result.amount_authorized, result.amount_captured) == (0, 0)
    assert result.next_action is None


@pytest.mark.parametrize(
    ("error", "gateway_code"),
    [
        (card_error("card_declined"), "generic_decline"),
        (card_error("card_declined", "generic_decline"), "generic_decline"),
        (card_error("expired_card", "expired_card"), "expired_card"),
        (card_error("incorrect_cvc", "incorrect_cvc"), "incorrect_cvc"),
        (card_error("incorrect_number"), "incorrect_number"),
        (card_error("processing_error", "processing_error"), "processing_error"),
        (
            card_error("authentication_required", "authentication_required"),
            "authentication_required",
        ),
        (
            {
                "type": "invalid_request_error",
                "code": "payment_intent_authentication_failure",
                "message": "The provided PaymentMethod has failed authentication.",
            },
            "payment_intent_authentication_failure",
        ),
    ],
)
def test_last_payment_error_codes_become_the_decline(
    error: dict[str, Any], gateway_code: str
) -> None:
    result = transformers.payment_result(
        payment_intent("requires_payment_method", last_payment_error=error)
    )
    assert result.decline is not None and result.decline.gateway_code == gateway_code
    assert ("stripe", gateway_code) in GATEWAY_CODES


def test_requires_action_passes_next_action_through_with_the_client_secret() -> None:
    next_action = {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {
            "type": "three_d_secure_redirect",
            "stripe_js": "https://hooks.stripe.com/redirect/authenticate/src_1OqQ2b?client_secret=src_client_secret_x",
            "source": "src_1OqQ2bLkdIwHu7ixvS4yT5Lk",
        },
    }
    pi = payment_intent("requires_action", next_action=copy.deepcopy(next_action))
    result = transformers.payment_result(pi)
    assert result.status is GatewayStatus.REQUIRES_ACTION
    assert result.next_action == {**next_action, "client_secret": SECRET}
    assert (result.amount_authorized, result.amount_captured, result.decline) == (0, 0, None)
    assert pi["next_action"] == next_action, "the Stripe object itself is not modified"


def test_requires_action_with_a_redirect() -> None:
    redirect = {
        "type": "redirect_to_url",
        "redirect_to_url": {
            "url": "https://hooks.stripe.com/3d_secure_2/hosted?x=1",
            "return_url": "https://shop.example/return",
        },
    }
    result = transformers.payment_result(payment_intent("requires_action", next_action=redirect))
    assert result.next_action is not None
    assert result.next_action["redirect_to_url"]["url"].startswith("https://hooks.stripe.com/")
    assert result.next_action["client_secret"] == SECRET


def test_requires_capture_reports_the_amount_capturable() -> None:
    pi = payment_intent(
        "requires_capture",
        capture_method="manual",
        amount_capturable=1000,
        latest_charge="ch_3OqQ2bLkdIwHu7ix0l6c1c2E",
    )
    result = transformers.payment_result(pi)
    assert result.status is GatewayStatus.REQUIRES_CAPTURE
    assert (result.amount_authorized, result.amount_captured) == (1000, 0)


def test_requires_capture_of_part_of_the_amount() -> None:
    """With an incremental or partial authorization, amount_capturable is what counts."""
    pi = payment_intent("requires_capture", capture_method="manual", amount_capturable=750)
    assert transformers.payment_result(pi).amount_authorized == 750


def test_succeeded_after_a_partial_capture_reports_what_was_captured() -> None:
    pi = payment_intent(
        "succeeded",
        capture_method="manual",
        amount=1000,
        amount_received=600,
        amount_capturable=0,
        latest_charge="ch_3OqQ2bLkdIwHu7ix0l6c1c2E",
    )
    result = transformers.payment_result(pi)
    assert result.status is GatewayStatus.SUCCEEDED
    assert result.amount_captured == 600
    assert result.decline is None and result.next_action is None


def test_succeeded_in_full() -> None:
    result = transformers.payment_result(payment_intent("succeeded", amount_received=1000))
    assert (result.status, result.amount_captured) == (GatewayStatus.SUCCEEDED, 1000)
    assert result.reference == PI_ID
    assert result.raw == {"id": PI_ID, "status": "succeeded"}, "raw keeps no card data"


def test_canceled() -> None:
    pi = payment_intent(
        "canceled",
        canceled_at=1711000300,
        cancellation_reason="requested_by_customer",
        capture_method="manual",
    )
    result = transformers.payment_result(pi)
    assert result.status is GatewayStatus.CANCELED
    assert (result.amount_authorized, result.amount_captured, result.decline) == (0, 0, None)


def test_processing() -> None:
    result = transformers.payment_result(payment_intent("processing"))
    assert result.status is GatewayStatus.PROCESSING
    assert (result.amount_authorized, result.amount_captured, result.decline) == (0, 0, None)


def test_requires_confirmation_is_open_never_tried() -> None:
    result = transformers.payment_result(payment_intent("requires_confirmation"))
    assert result.status is GatewayStatus.OPEN


def test_requires_payment_method_without_an_error_is_open_never_tried() -> None:
    # An opened PaymentIntent nobody confirmed: recovery may confirm it, it is no decline.
    result = transformers.payment_result(payment_intent("requires_payment_method"))
    assert result.status is GatewayStatus.OPEN and result.decline is None


def test_every_documented_payment_intent_status_is_mapped() -> None:
    documented = [
        "canceled",
        "processing",
        "requires_action",
        "requires_capture",
        "requires_confirmation",
        "requires_payment_method",
        "succeeded",
    ]
    for status in documented:
        assert transformers.payment_result(payment_intent(status)).reference == PI_ID


# -- refund_result ----------------------------------------------------------------------------
def test_refund_pending() -> None:
    result = transformers.refund_result(refund("pending"))
    assert result.status == "pending"
    assert (result.reference, result.amount) == ("re_3OqQ2bLkdIwHu7ix0b9K1zQe", 400)
    assert (result.payment_reference, result.our_id) == (PI_ID, "re_ours_1")
    assert result.reason == "requested_by_customer" and result.failure_reason is None


def test_refund_succeeded() -> None:
    result = transformers.refund_result(refund("succeeded"))
    assert (result.status, result.amount, result.our_id) == ("succeeded", 400, "re_ours_1")


def test_refund_failed_keeps_the_failure_reason() -> None:
    data = refund(
        "failed",
        failure_reason="expired_or_canceled_card",
        failure_balance_transaction="txn_3OqQ2bLkdIwHu7ix0fail",
    )
    result = transformers.refund_result(data)
    assert (result.status, result.failure_reason) == ("failed", "expired_or_canceled_card")


def test_refund_requires_action_is_pending_for_us() -> None:
    assert transformers.refund_result(refund("requires_action")).status == "pending"


def test_refund_canceled() -> None:
    assert transformers.refund_result(refund("canceled")).status == "canceled"


def test_refund_with_an_expanded_payment_intent_and_no_metadata() -> None:
    data = refund("succeeded", payment_intent=payment_intent("succeeded"), metadata={}, reason=None)
    result = transformers.refund_result(data)
    assert (result.payment_reference, result.our_id, result.reason) == (PI_ID, None, None)


# -- interpret_event --------------------------------------------------------------------------
def _payment_update(type_: str, pi: dict[str, Any]) -> PaymentUpdate:
    update = transformers.interpret_event(event(type_, pi))
    assert isinstance(update, PaymentUpdate)
    assert update.reference == "pi_ours_1", "our id comes from the metadata"
    assert update.result.reference == PI_ID
    return update


def test_payment_intent_succeeded() -> None:
    update = _payment_update(
        "payment_intent.succeeded", payment_intent("succeeded", amount_received=1000)
    )
    assert (update.result.status, update.result.amount_captured) == (GatewayStatus.SUCCEEDED, 1000)


def test_payment_intent_payment_failed() -> None:
    pi = payment_intent(
        "requires_payment_method", last_payment_error=card_error("card_declined", "lost_card")
    )
    update = _payment_update("payment_intent.payment_failed", pi)
    assert update.result.status is GatewayStatus.FAILED
    assert update.result.decline is not None
    assert update.result.decline.gateway_code == "lost_card"


def test_payment_intent_requires_action() -> None:
    pi = payment_intent(
        "requires_action",
        next_action={
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect"},
        },
    )
    update = _payment_update("payment_intent.requires_action", pi)
    assert update.result.status is GatewayStatus.REQUIRES_ACTION
    assert update.result.next_action is not None
    assert update.result.next_action["client_secret"] == SECRET


def test_payment_intent_canceled() -> None:
    pi = payment_intent("canceled", cancellation_reason="abandoned")
    assert _payment_update("payment_intent.canceled", pi).result.status is GatewayStatus.CANCELED


def test_payment_intent_amount_capturable_updated() -> None:
    pi = payment_intent("requires_capture", capture_method="manual", amount_capturable=1000)
    update = _payment_update("payment_intent.amount_capturable_updated", pi)
    assert update.result.status is GatewayStatus.REQUIRES_CAPTURE
    assert update.result.amount_authorized == 1000


def test_payment_intent_processing() -> None:
    update = _payment_update("payment_intent.processing", payment_intent("processing"))
    assert update.result.status is GatewayStatus.PROCESSING


def test_a_payment_intent_paymux_did_not_create_has_no_reference_of_ours() -> None:
    update = transformers.interpret_event(
        event("payment_intent.succeeded", payment_intent("succeeded", metadata={}))
    )
    assert isinstance(update, PaymentUpdate) and update.reference is None


def test_charge_refunded_reports_the_newest_refund() -> None:
    older = refund(
        "succeeded",
        id="re_older",
        amount=100,
        created=1711000100,
        metadata={"paymux_id": "re_ours_old"},
    )
    newer = refund(
        "pending",
        id="re_newer",
        amount=300,
        created=1711000500,
        metadata={"paymux_id": "re_ours_new"},
        payment_intent=None,
    )
    charge = {
        "id": "ch_3OqQ2bLkdIwHu7ix0l6c1c2E",
        "object": "charge",
        "amount": 1000,
        "amount_captured": 1000,
        "amount_refunded": 400,
        "captured": True,
        "currency": "usd",
        "paid": True,
        "payment_intent": PI_ID,
        "refunded": False,
        "status": "succeeded",
        "refunds": {
            "object": "list",
            "data": [newer, older],
            "has_more": False,
            "total_count": 2,
            "url": "/v1/charges/ch_3OqQ2bLkdIwHu7ix0l6c1c2E/refunds",
        },
    }
    update = transformers.interpret_event(event("charge.refunded", charge))
    assert isinstance(update, RefundUpdate)
    assert (update.refund.reference, update.refund.amount) == ("re_newer", 300)
    assert update.refund.our_id == "re_ours_new"
    assert update.refund.payment_reference == PI_ID, "taken from the charge"
    assert update.refund.status == "pending"


def test_charge_refunded_without_the_refunds_list_is_left_to_the_refund_events() -> None:
    """Since API version 2022-11-15 a Charge no longer embeds ``refunds``: refund.* carry it."""
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 1000,
        "amount_refunded": 1000,
        "payment_intent": PI_ID,
        "refunded": True,
        "status": "succeeded",
    }
    assert transformers.interpret_event(event("charge.refunded", charge)) is None


@pytest.mark.parametrize(
    "type_", ["charge.refund.updated", "refund.created", "refund.updated", "refund.failed"]
)
def test_refund_events(type_: str) -> None:
    status = "failed" if type_ == "refund.failed" else "succeeded"
    update = transformers.interpret_event(
        event(type_, refund(status, failure_reason="declined" if status == "failed" else None))
    )
    assert isinstance(update, RefundUpdate)
    assert (update.refund.status, update.refund.our_id) == (status, "re_ours_1")
    assert update.refund.payment_reference == PI_ID


def test_charge_dispute_created_is_a_dispute_update() -> None:
    dispute = {
        "id": "dp_1OqQ2dLkdIwHu7ixw1H1aQ2b",
        "object": "dispute",
        "amount": 1000,
        "balance_transactions": [],
        "charge": "ch_3OqQ2bLkdIwHu7ix0l6c1c2E",
        "created": 1711000600,
        "currency": "usd",
        "evidence": {},
        "evidence_details": {
            "due_by": 1711800000,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": PI_ID,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    update = transformers.interpret_event(event("charge.dispute.created", dispute))
    assert update == DisputeUpdate(
        reference="dp_1OqQ2dLkdIwHu7ixw1H1aQ2b",
        payment_reference=PI_ID,
        amount=1000,
        currency="usd",
        reason="fraudulent",
        status="needs_response",
    )
    closed = transformers.interpret_event(
        event("charge.dispute.closed", dict(dispute, status="lost"))
    )
    assert isinstance(closed, DisputeUpdate) and closed.status == "lost"


@pytest.mark.parametrize(
    ("type_", "obj"),
    [
        ("customer.created", {"id": "cus_1", "object": "customer"}),
        ("payment_intent.created", payment_intent("requires_payment_method")),
        ("invoice.paid", {"id": "in_1", "object": "invoice"}),
        ("payment_intent.succeeded", {"id": "ch_1", "object": "charge"}),
    ],
)
def test_events_we_do_not_act_on_are_none(type_: str, obj: dict[str, Any]) -> None:
    assert transformers.interpret_event(event(type_, obj)) is None


# -- create_params ----------------------------------------------------------------------------
def _request(**fields: Any) -> AuthorizeRequest:
    values: dict[str, Any] = {
        "amount": Money(1999, "EUR"),
        "payment_method_token": "pm_card_visa",
        "capture": True,
        "reference": "pi_ours_1",
    }
    values.update(fields)
    return AuthorizeRequest(**values)


def test_create_params_with_manual_capture() -> None:
    params = transformers.create_params(
        _request(capture=False, description="Order 42", statement_descriptor="ORDER42"),
        confirm=True,
    )
    assert params == {
        "amount": 1999,
        "currency": "eur",
        "capture_method": "manual",
        "payment_method_types": ["card"],
        "metadata": {"paymux_id": "pi_ours_1"},
        "description": "Order 42",
        "statement_descriptor_suffix": "ORDER42",
        "payment_method": "pm_card_visa",
        "confirm": True,
    }


def test_create_params_amount_is_in_minor_units_and_currency_lower_case() -> None:
    params = transformers.create_params(_request(amount=Money(500, "JPY")), confirm=True)
    assert (params["amount"], params["currency"]) == (500, "jpy")
    params = transformers.create_params(_request(amount=Money(1250, "KWD")), confirm=True)
    assert (params["amount"], params["currency"]) == (1250, "kwd")
    assert params["capture_method"] == "automatic"


def test_create_params_off_session_with_a_customer() -> None:
    params = transformers.create_params(
        _request(customer_token="cus_PqR2", off_session=True, setup_future_usage="off_session"),
        confirm=True,
    )
    assert params["customer"] == "cus_PqR2"
    assert params["off_session"] is True
    assert "setup_future_usage" not in params, "an off-session payment is already set up"


def test_create_params_on_session_saving_the_card_for_later() -> None:
    params = transformers.create_params(
        _request(
            customer_token="cus_PqR2",
            setup_future_usage="off_session",
            return_url="https://shop.example/return",
        ),
        confirm=True,
    )
    assert params["setup_future_usage"] == "off_session"
    assert params["return_url"] == "https://shop.example/return"
    assert "off_session" not in params


def test_create_params_without_confirming_sends_no_payment_method() -> None:
    params = transformers.create_params(_request(), confirm=False)
    assert not {"payment_method", "confirm", "off_session", "return_url"} & set(params)


def test_the_call_s_idempotency_key_is_recorded_next_to_our_id() -> None:
    params = transformers.create_params(
        _request(), confirm=True, idempotency_key="pi_ours_1:authorize:2"
    )
    assert params["metadata"] == {"paymux_id": "pi_ours_1", "paymux_key": "pi_ours_1:authorize:2"}
    opened = transformers.open_params(Money(1999, "EUR"), "pi_ours_1", False, "pi_ours_1:open")
    assert opened["metadata"] == {"paymux_id": "pi_ours_1", "paymux_key": "pi_ours_1:open"}
    update, confirm = transformers.update_then_confirm_params(_request(), "pi_ours_1:authorize:1")
    assert update == {
        "payment_method": "pm_card_visa",
        "metadata": {"paymux_key": "pi_ours_1:authorize:1"},  # merged: paymux_id stays
    }
    assert "metadata" not in confirm


def test_update_params_change_amount_currency_and_capture_method() -> None:
    assert transformers.update_params(Money(2500, "ISK"), False) == {
        "amount": 250000,  # Stripe counts ISK in hundredths
        "currency": "isk",
        "capture_method": "manual",
    }
    assert transformers.update_params(Money(700, "USD"), True)["capture_method"] == "automatic"


# -- lookup: which PaymentIntent a lost call made -----------------------------------------------
def test_the_search_query_names_our_id_in_the_metadata_and_escapes_quotes() -> None:
    assert transformers.search_query("pi_ours_1") == "metadata['paymux_id']:'pi_ours_1'"
    assert transformers.search_query("it's\\") == "metadata['paymux_id']:'it\\'s\\\\'"


def _pi(pi_id: str, created: int, **metadata: str) -> dict[str, Any]:
    return payment_intent("succeeded", id=pi_id, created=created, metadata=metadata)


def test_the_payment_intent_that_recorded_this_key_is_the_one() -> None:
    earlier = _pi("pi_A", 100, paymux_id="pi_ours_1", paymux_key="pi_ours_1:authorize:1")
    ours = _pi("pi_B", 200, paymux_id="pi_ours_1", paymux_key="pi_ours_1:authorize:2")
    later = _pi("pi_C", 300, paymux_id="pi_ours_1", paymux_key="pi_ours_1:authorize:3")
    other = _pi("pi_D", 400, paymux_id="pi_other", paymux_key="pi_ours_1:authorize:2")
    found = transformers.pick_lookup(
        [later, earlier, ours, other, ours], "pi_ours_1", "pi_ours_1:authorize:2"
    )
    assert found is not None and found["id"] == "pi_B"


def test_another_attempt_s_payment_intent_is_never_taken_for_this_one() -> None:
    earlier = _pi("pi_A", 100, paymux_id="pi_ours_1", paymux_key="pi_ours_1:authorize:1")
    assert transformers.pick_lookup([earlier], "pi_ours_1", "pi_ours_1:authorize:2") is None
    assert transformers.pick_lookup([], "pi_ours_1", "pi_ours_1:authorize:2") is None


def test_a_payment_intent_made_before_keys_were_recorded_is_taken_newest_first() -> None:
    old = _pi("pi_A", 100, paymux_id="pi_ours_1")
    newer = _pi("pi_B", 200, paymux_id="pi_ours_1")
    keyed_elsewhere = _pi("pi_C", 300, paymux_id="pi_ours_1", paymux_key="pi_ours_1:open")
    found = transformers.pick_lookup(
        [old, keyed_elsewhere, newer], "pi_ours_1", "pi_ours_1:authorize:1"
    )
    assert found is not None and found["id"] == "pi_B"


def test_our_refund_is_picked_by_its_metadata() -> None:
    first = refund("succeeded", id="re_1", created=10, metadata={"paymux_id": "re_ours_a"})
    second = refund("pending", id="re_2", created=20, metadata={"paymux_id": "re_ours_b"})
    foreign = refund("succeeded", id="re_3", created=30, metadata={})
    picked = transformers.pick_refund([first, second, foreign], "re_ours_b")
    assert picked is not None and picked["id"] == "re_2"
    assert transformers.pick_refund([first, foreign], "re_ours_b") is None


# -- decline_from_error -----------------------------------------------------------------------
@pytest.mark.parametrize("code", stripe_docs.DECLINE_CODES)
def test_decline_from_error_for_each_documented_decline_code(code: str) -> None:
    decline = transformers.decline_from_error(
        card_error("card_declined", code, f"Declined: {code}")
    )
    assert decline == Decline(code, f"Declined: {code}")
    assert ("stripe", decline.gateway_code) in GATEWAY_CODES


@pytest.mark.parametrize("code", stripe_docs.CARD_ERROR_CODES)
def test_decline_from_error_for_each_card_error_code_without_a_decline_code(code: str) -> None:
    decline = transformers.decline_from_error(card_error(code, None, "Stripe says no."))
    assert ("stripe", decline.gateway_code) in GATEWAY_CODES
    expected = "generic_decline" if code == "card_declined" else code
    assert decline == Decline(expected, "Stripe says no.")


def test_decline_from_an_empty_error_is_generic() -> None:
    assert transformers.decline_from_error({}) == Decline("generic_decline", "Declined.")


# -- webhook signatures (stripe-python's own signing helper) -----------------------------------
WHSEC = "whsec_4eC39HqLyjWDarjtT1zdp7dc"
WHSEC_NEW = "whsec_Bq3s9nTf1xR2aLm5Kp8uZw0y"
BODY = json.dumps(
    event("payment_intent.succeeded", payment_intent("succeeded", amount_received=1000)).payload
).encode()


def gateway(secrets: list[str]) -> StripeGateway:
    return StripeGateway("sk_test_unit", webhook_secrets=secrets, webhook_tolerance=300)


def stripe_header(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header as stripe-python builds it for tests."""
    return str(stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp))


def refusal(gw: StripeGateway, body: bytes, header: str | None) -> str:
    headers = {} if header is None else {"stripe-signature": header}
    with pytest.raises(WebhookVerificationError) as info:
        gw.verify(headers, body)
    return info.value.reason


def test_stripe_python_s_signing_helper_is_the_scheme_we_verify() -> None:
    t = 1711000200
    header = stripe_header(BODY, WHSEC, t)
    signature = stripe.WebhookSignature._compute_signature(f"{t}.{BODY.decode()}", WHSEC)
    assert header == f"t={t},v1={signature}"


def test_a_header_made_by_stripe_python_verifies() -> None:
    event_ = gateway([WHSEC]).verify({"stripe-signature": stripe_header(BODY, WHSEC)}, BODY)
    assert (event_.gateway, event_.type) == ("stripe", "payment_intent.succeeded")
    assert event_.event_id == "evt_1OqQ2cLkdIwHu7ixrV2kX9aa"
    update = gateway([WHSEC]).interpret_event(event_)
    assert isinstance(update, PaymentUpdate) and update.reference == "pi_ours_1"
    # and stripe-python agrees with itself on the same bytes
    assert stripe.WebhookSignature.verify_header(BODY, stripe_header(BODY, WHSEC), WHSEC, 300)


def test_a_tampered_body_is_refused() -> None:
    header = stripe_header(BODY, WHSEC)
    tampered = BODY.replace(b'"amount": 1000', b'"amount": 1')
    assert tampered != BODY
    assert refusal(gateway([WHSEC]), tampered, header) == "signature_mismatch"


def test_a_wrong_secret_is_refused() -> None:
    header = stripe_header(BODY, "whsec_someone_else")
    assert refusal(gateway([WHSEC]), BODY, header) == "signature_mismatch"


def test_an_old_timestamp_is_refused() -> None:
    header = stripe_header(BODY, WHSEC, int(time.time()) - 301)
    assert refusal(gateway([WHSEC]), BODY, header) == "timestamp_outside_tolerance"
    with pytest.raises(stripe.SignatureVerificationError):  # as stripe-python would
        stripe.WebhookSignature.verify_header(BODY, header, WHSEC, 300)
    recent = stripe_header(BODY, WHSEC, int(time.time()) - 290)
    assert gateway([WHSEC]).verify({"stripe-signature": recent}, BODY).type


def test_a_missing_header_is_refused() -> None:
    assert refusal(gateway([WHSEC]), BODY, None) == "missing_signature"
    assert refusal(gateway([WHSEC]), BODY, "") == "missing_signature"


def test_a_malformed_header_is_refused() -> None:
    assert refusal(gateway([WHSEC]), BODY, "v1=abc") == "malformed_signature"
    t = int(time.time())
    assert refusal(gateway([WHSEC]), BODY, f"t={t},v0=abc") == "malformed_signature"


def test_a_signed_body_that_is_not_an_event_is_refused() -> None:
    body = b"not json"
    assert refusal(gateway([WHSEC]), body, stripe_header(body, WHSEC)) == "invalid_payload"


def test_no_secret_configured_verifies_nothing() -> None:
    assert refusal(gateway([]), BODY, stripe_header(BODY, WHSEC)) == "signature_mismatch"


def test_both_secrets_verify_during_a_rotation() -> None:
    gw = gateway([WHSEC, WHSEC_NEW])
    for secret in (WHSEC, WHSEC_NEW):
        assert gw.verify({"stripe-signature": stripe_header(BODY, secret)}, BODY).type
    # While rolling, Stripe signs with both secrets: one v1 per secret in one header.
    t = int(time.time())
    old = stripe_header(BODY, WHSEC, t)
    new_signature = stripe_header(BODY, WHSEC_NEW, t).split("v1=")[1]
    both = f"{old},v1={new_signature}"
    assert gateway([WHSEC_NEW]).verify({"stripe-signature": both}, BODY).type
    assert gateway([WHSEC]).verify({"stripe-signature": both}, BODY).type
    # after the rotation the old secret's signatures are refused
    assert refusal(gateway([WHSEC_NEW]), BODY, old) == "signature_mismatch"
