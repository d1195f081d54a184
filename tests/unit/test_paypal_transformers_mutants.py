"""Edge cases of paymux.gateways.paypal.transformers found by mutation testing.

Each test pins a behaviour that a surviving mutmut mutant showed no other unit test checked:
the whole result of a capture, an authorization and a refund in each status PayPal documents
(Payments v2), the decline read from ``processor_response`` and ``status_details``, the refund
and capture request bodies, and the Vault v3 setup token (until now only covered through the
connector). Expected values are written out from PayPal's documented shapes.
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
    PaymentUpdate,
    SetupRequest,
    SetupResult,
)
from paymux.gateways.paypal import transformers as pp
from paymux.money import Money

USD_10 = {"currency_code": "USD", "value": "10.00"}


# -- requests ---------------------------------------------------------------------------------
def test_capture_and_refund_request_bodies() -> None:
    assert pp.capture_request(Money(1050, "USD")) == {
        "amount": {"currency_code": "USD", "value": "10.50"},
        "final_capture": True,
    }
    assert pp.refund_request(Money(400, "EUR"), "re_ours_1") == {
        "amount": {"currency_code": "EUR", "value": "4.00"},
        "custom_id": "re_ours_1",
    }
    assert pp.refund_request(None, None) == {}  # the rest of the capture, untagged


def test_setup_token_request_for_the_wallet() -> None:
    request = SetupRequest(
        payment_method_token="paypal",
        customer_token="cust_9",
        reference="seti_o",
        return_url="https://shop.example/back",
    )
    assert pp.setup_token_request(request) == {
        "payment_source": {
            "paypal": {
                "usage_type": "MERCHANT",
                "experience_context": {
                    "return_url": "https://shop.example/back",
                    "cancel_url": "https://shop.example/back",
                },
            }
        },
        "customer": {"id": "cust_9"},
    }
    bare = SetupRequest(payment_method_token="paypal", customer_token="c", reference="s")
    context = pp.setup_token_request(bare)["payment_source"]["paypal"]["experience_context"]
    assert context == {"return_url": "", "cancel_url": ""}


def test_setup_pending_result_with_and_without_an_approve_link() -> None:
    token = {
        "id": "5C991763VB2781612",
        "status": "PAYER_ACTION_REQUIRED",
        "links": [
            {"rel": "self", "href": "https://api-m.paypal.com/v3/vault/setup-tokens/5C99"},
            {"rel": "approve", "href": "https://www.paypal.com/agreements/approve?token=5C99"},
        ],
    }
    assert pp.setup_pending_result(token) == SetupResult(
        status=GatewayStatus.REQUIRES_ACTION,
        reference="5C991763VB2781612",
        next_action={
            "type": "redirect_to_url",
            "redirect_to_url": {"url": "https://www.paypal.com/agreements/approve?token=5C99"},
        },
        raw={"id": "5C991763VB2781612", "status": "PAYER_ACTION_REQUIRED"},
    )
    assert pp.setup_pending_result({"status": "CREATED"}) == SetupResult(
        status=GatewayStatus.PROCESSING,
        reference=None,
        raw={"id": None, "status": "CREATED"},
    )


# -- captures ---------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"])
def test_a_capture_that_moved_money(status: str) -> None:
    capture = {"id": "CAP_1", "status": status, "amount": USD_10}
    assert pp.capture_result(capture, failed_reference="AUTH_1") == GatewayResult(
        status=GatewayStatus.SUCCEEDED,
        reference="CAP_1",
        amount_authorized=1000,
        amount_captured=1000,
        raw={"id": "CAP_1", "status": status, "object": "capture"},
    )


def test_a_pending_capture_without_an_amount_takes_the_requested_one() -> None:
    got = pp.capture_result({"id": "CAP_2", "status": "PENDING"}, requested=700)
    assert got == GatewayResult(
        status=GatewayStatus.PROCESSING,
        reference="CAP_2",
        amount_authorized=700,
        amount_captured=0,
        raw={"id": "CAP_2", "status": "PENDING", "object": "capture"},
    )
    assert pp.capture_result({"id": "CAP_3", "status": "PENDING"}).amount_authorized == 0


def test_a_declined_capture_keeps_the_failed_reference_and_reads_the_processor() -> None:
    capture = {
        "id": "CAP_4",
        "status": "DECLINED",
        "amount": USD_10,
        "processor_response": {"response_code": "5400", "avs_code": "Y"},
        "status_details": {"reason": "DECLINED_BY_RISK_FRAUD_FILTERS"},
    }
    assert pp.capture_result(capture, failed_reference="ORDER_1") == GatewayResult(
        status=GatewayStatus.FAILED,
        reference="ORDER_1",
        amount_authorized=0,
        amount_captured=0,
        decline=Decline("5400", "PayPal: declined (DECLINED_BY_RISK_FRAUD_FILTERS)"),
        raw={"id": "CAP_4", "status": "DECLINED", "object": "capture"},
    )


def test_a_failed_capture_without_details_or_with_an_approved_code() -> None:
    capture = {"id": "CAP_5", "status": "FAILED", "processor_response": {"response_code": "0000"}}
    got = pp.capture_result(capture)
    assert (got.reference, got.decline) == ("CAP_5", Decline("FAILED", "PayPal: failed"))


# -- authorizations ---------------------------------------------------------------------------
def test_a_created_authorization_holds_its_amount() -> None:
    authorization = {"id": "AUTH_1", "status": "CREATED", "amount": USD_10}
    assert pp.authorization_result(authorization, failed_reference="ORDER_1") == GatewayResult(
        status=GatewayStatus.REQUIRES_CAPTURE,
        reference="AUTH_1",
        amount_authorized=1000,
        amount_captured=0,
        raw={"id": "AUTH_1", "status": "CREATED", "object": "authorization"},
    )
    no_amount = {"id": "AUTH_2", "status": "CREATED"}
    assert pp.authorization_result(no_amount, requested=900).amount_authorized == 900
    assert pp.authorization_result(no_amount).amount_authorized == 0


@pytest.mark.parametrize(
    ("status", "ours"),
    [
        ("PENDING", GatewayStatus.PROCESSING),
        ("CAPTURED", GatewayStatus.SUCCEEDED),
        ("PARTIALLY_CAPTURED", GatewayStatus.SUCCEEDED),
        ("VOIDED", GatewayStatus.CANCELED),
    ],
)
def test_an_authorization_in_another_status_holds_nothing(status: str, ours: GatewayStatus) -> None:
    authorization = {"id": "AUTH_3", "status": status, "amount": USD_10}
    assert pp.authorization_result(authorization, failed_reference="ORDER_1") == GatewayResult(
        status=ours,
        reference="AUTH_3",
        raw={"id": "AUTH_3", "status": status, "object": "authorization"},
    )


def test_a_denied_authorization() -> None:
    authorization = {
        "id": "AUTH_4",
        "status": "DENIED",
        "amount": USD_10,
        "processor_response": {"response_code": "9500"},
    }
    assert pp.authorization_result(authorization, failed_reference="ORDER_2") == GatewayResult(
        status=GatewayStatus.FAILED,
        reference="ORDER_2",
        decline=Decline("9500", "PayPal: denied"),
        raw={"id": "AUTH_4", "status": "DENIED", "object": "authorization"},
    )
    alone = pp.authorization_result(dict(authorization, processor_response=None))
    assert (alone.reference, alone.decline) == ("AUTH_4", Decline("DENIED", "PayPal: denied"))


def test_an_authorization_captured_already() -> None:
    authorization = {"id": "AUTH_5", "status": "CAPTURED", "amount": USD_10}
    assert pp.captured_authorization_result(authorization) == GatewayResult(
        status=GatewayStatus.SUCCEEDED,
        reference="AUTH_5",
        amount_authorized=1000,
        amount_captured=1000,
        raw={"id": "AUTH_5", "status": "CAPTURED", "object": "authorization"},
    )
    placeholder = {"id": "AUTH_6", "status": "CAPTURED", "amount": {"value": "string"}}
    got = pp.captured_authorization_result(placeholder)
    assert (got.amount_authorized, got.amount_captured) == (0, 0)


# -- refunds ----------------------------------------------------------------------------------
def refund(status: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "REF_1",
        "status": status,
        "amount": {"currency_code": "USD", "value": "4.00"},
        "note_to_payer": "Sorry",
        "links": [
            {"rel": "self", "href": "https://api-m.paypal.com/v2/payments/refunds/REF_1"},
            {"rel": "up", "href": "https://api-m.paypal.com/v2/payments/captures/CAP_1"},
        ],
    }
    data.update(fields)
    return data


def test_a_failed_refund_says_why() -> None:
    got = pp.refund_result(
        refund("FAILED", status_details={"reason": "ECHECK"}, custom_id="re_ours_1")
    )
    assert got == GatewayRefund(
        status="failed",
        reference="REF_1",
        amount=400,
        failure_reason="ECHECK",
        payment_reference="CAP_1",
        our_id="re_ours_1",
        reason="Sorry",
    )


def test_a_reason_is_only_a_failure_reason_when_the_refund_failed() -> None:
    got = pp.refund_result(refund("PENDING", status_details={"reason": "ECHECK"}))
    assert (got.status, got.failure_reason) == ("pending", None)
    failed = pp.refund_result(refund("FAILED"))
    assert (failed.status, failed.failure_reason) == ("failed", None)


def test_a_refund_without_an_amount_takes_the_requested_one() -> None:
    got = pp.refund_result(refund("COMPLETED", amount=None), requested=250)
    assert got.amount == 250
    assert pp.refund_result(refund("COMPLETED", amount=None)).amount == 0


def test_a_custom_id_that_is_not_our_refund_id_is_not_ours() -> None:
    assert pp.refund_result(refund("COMPLETED", custom_id="order-77")).our_id is None
    assert pp.refund_result(refund("COMPLETED")).our_id is None
    given = pp.refund_result(refund("COMPLETED", custom_id="re_x"), our_id="re_given")
    assert given.our_id == "re_given"


# -- orders -----------------------------------------------------------------------------------
def test_open_request_for_each_intent() -> None:
    assert pp.open_request(Money(1000, "USD"), "pi_ours_1", True) == {
        "intent": "CAPTURE",
        "purchase_units": [{"amount": USD_10, "custom_id": "pi_ours_1"}],
    }
    assert pp.open_request(Money(1000, "USD"), "pi_ours_1", False)["intent"] == "AUTHORIZE"


def test_vault_order_request_with_a_stored_card() -> None:
    request = AuthorizeRequest(
        amount=Money(1000, "USD"),
        payment_method_token="card:8kk8451t",
        capture=False,
        reference="pi_ours_1",
    )
    assert pp.vault_order_request(request, "card", "8kk8451t") == {
        "intent": "AUTHORIZE",
        "purchase_units": [{"amount": USD_10, "custom_id": "pi_ours_1"}],
        "payment_source": {
            "card": {
                "vault_id": "8kk8451t",
                "stored_credential": {
                    "payment_initiator": "CUSTOMER",
                    "payment_type": "UNSCHEDULED",
                    "usage": "SUBSEQUENT",
                },
            }
        },
    }
    off = AuthorizeRequest(
        amount=Money(1000, "USD"),
        payment_method_token="card:8kk8451t",
        capture=True,
        reference="pi_ours_1",
        off_session=True,
    )
    body = pp.vault_order_request(off, "card", "8kk8451t")
    assert body["intent"] == "CAPTURE"
    assert body["payment_source"]["card"]["stored_credential"]["payment_initiator"] == "MERCHANT"


def order(status: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "ORDER_1",
        "intent": "CAPTURE",
        "status": status,
        "purchase_units": [{"amount": USD_10, "custom_id": "pi_ours_1"}],
    }
    data.update(fields)
    return data


def with_payments(status: str, **payments: Any) -> dict[str, Any]:
    return order(
        status, purchase_units=[{"amount": USD_10, "custom_id": "pi_1", "payments": payments}]
    )


def test_an_order_with_no_payment_is_mapped_by_its_status() -> None:
    assert pp.order_result(order("CREATED")) == GatewayResult(
        status=GatewayStatus.OPEN,
        reference="ORDER_1",
        raw={"id": "ORDER_1", "status": "CREATED", "object": "order"},
    )
    done = pp.order_result(order("COMPLETED"))
    assert (done.status, done.amount_captured) == (GatewayStatus.SUCCEEDED, 1000)
    held = pp.order_result(order("COMPLETED", intent="AUTHORIZE"))
    assert (held.status, held.amount_authorized, held.amount_captured) == (
        GatewayStatus.REQUIRES_CAPTURE,
        1000,
        0,
    )
    forced = pp.order_result(order("COMPLETED", intent="CAPTURE"), capture=False)
    assert forced.status is GatewayStatus.REQUIRES_CAPTURE
    bare = order("COMPLETED", purchase_units=[{"custom_id": "pi_1"}])
    assert pp.order_result(bare, requested=300).amount_captured == 300
    assert pp.order_result(bare).amount_captured == 0


def test_an_order_waiting_for_the_payer_links_to_the_approval() -> None:
    links = [
        {"rel": "self", "href": "https://api-m.paypal.com/v2/checkout/orders/ORDER_1"},
        {"rel": "payer-action", "href": "https://www.paypal.com/checkoutnow?token=ORDER_1"},
    ]
    got = pp.order_result(order("PAYER_ACTION_REQUIRED", links=links))
    assert (got.status, got.next_action) == (
        GatewayStatus.REQUIRES_ACTION,
        {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": "https://www.paypal.com/checkoutnow?token=ORDER_1"},
        },
    )


def test_the_newest_capture_decides_and_a_refused_one_names_the_order() -> None:
    first = {"id": "CAP_1", "status": "DECLINED"}
    newest = {"id": "CAP_2", "status": "DECLINED", "processor_response": {"response_code": "5120"}}
    got = pp.order_result(with_payments("COMPLETED", captures=[first, newest]), requested=1000)
    assert got == GatewayResult(
        status=GatewayStatus.FAILED,
        reference="ORDER_1",
        decline=Decline("5120", "PayPal: declined"),
        raw={"id": "CAP_2", "status": "DECLINED", "object": "capture"},
    )
    pending = {"id": "CAP_3", "status": "PENDING"}
    late = pp.order_result(
        with_payments("COMPLETED", captures=[first, newest, pending]), requested=600
    )
    assert (late.status, late.reference, late.amount_authorized) == (
        GatewayStatus.PROCESSING,
        "CAP_3",
        600,
    )


def test_the_newest_authorization_decides_for_an_authorize_order() -> None:
    old = {"id": "AUTH_1", "status": "VOIDED"}
    denied = {"id": "AUTH_2", "status": "DENIED"}
    got = pp.order_result(
        with_payments("COMPLETED", authorizations=[old, denied]), capture=False, requested=1000
    )
    assert (got.status, got.reference) == (GatewayStatus.FAILED, "ORDER_1")
    held = {"id": "AUTH_3", "status": "CREATED"}
    fresh = pp.order_result(with_payments("COMPLETED", authorizations=[held]), requested=800)
    assert (fresh.status, fresh.reference, fresh.amount_authorized) == (
        GatewayStatus.REQUIRES_CAPTURE,
        "AUTH_3",
        800,
    )
    # an AUTHORIZE order captured later: its capture decides only when asked for captures
    captured = with_payments(
        "COMPLETED",
        authorizations=[{"id": "AUTH_4", "status": "CAPTURED"}],
        captures=[{"id": "CAP_9", "status": "COMPLETED"}],
    )
    assert pp.order_result(captured, capture=False).reference == "AUTH_4"
    assert pp.order_result(captured, capture=True, requested=500).reference == "CAP_9"


# -- cancel -----------------------------------------------------------------------------------
def test_cancel_plan_of_an_order_without_payments_is_canceled() -> None:
    assert pp.order_cancel_plan(order("APPROVED")) == GatewayResult(
        status=GatewayStatus.CANCELED,
        reference="ORDER_1",
        raw={"id": "ORDER_1", "status": "APPROVED", "object": "order"},
    )


def test_cancel_plan_of_a_voided_authorization_is_canceled() -> None:
    voided = {"id": "AUTH_1", "status": "VOIDED"}
    assert pp.order_cancel_plan(with_payments("COMPLETED", authorizations=[voided])) == (
        GatewayResult(
            status=GatewayStatus.CANCELED,
            reference="AUTH_1",
            raw={"id": "AUTH_1", "status": "VOIDED", "object": "authorization"},
        )
    )


def test_cancel_plan_of_a_captured_authorization_succeeded() -> None:
    captured = {"id": "AUTH_2", "status": "PARTIALLY_CAPTURED", "amount": USD_10}
    got = pp.order_cancel_plan(with_payments("COMPLETED", authorizations=[captured]))
    assert isinstance(got, GatewayResult)
    assert (got.status, got.reference, got.amount_captured) == (
        GatewayStatus.SUCCEEDED,
        "AUTH_2",
        1000,
    )


# -- errors -----------------------------------------------------------------------------------
def test_api_error_of_an_oauth_style_body() -> None:
    body = {"error": "invalid_client", "error_description": "Client Authentication failed"}
    assert pp.api_error(401, body) == pp.ApiError(
        401, "invalid_client", "invalid_client", "Client Authentication failed", None
    )
    assert pp.api_error(401, {"error": "invalid_client"}).message == "invalid_client"


def test_api_error_of_a_body_that_is_not_json_or_has_empty_details() -> None:
    assert pp.api_error(502, "<html>Bad Gateway</html>", "dbg1") == pp.ApiError(
        502, "HTTP_502", "HTTP_502", "HTTP_502", "dbg1"
    )
    body = {"name": "UNPROCESSABLE_ENTITY", "details": [], "debug_id": "f00d"}
    assert pp.api_error(422, body) == pp.ApiError(
        422, "UNPROCESSABLE_ENTITY", "UNPROCESSABLE_ENTITY", "UNPROCESSABLE_ENTITY", "f00d"
    )


# -- payment methods --------------------------------------------------------------------------
VISA = {
    "name": "Firstname Lastname",
    "last_digits": "7704",
    "brand": "VISA",
    "type": "CREDIT",
    "expiry": "2030-11",
}


def test_card_details_from_a_vaulted_card() -> None:
    vault = {"id": "8kk8451t", "payment_source": {"card": VISA}}
    assert pp.card_details_from_vault(vault) == CardDetails(
        token="card:8kk8451t",
        type="card",
        brand="visa",
        last4="7704",
        exp_month=11,
        exp_year=2030,
        funding="credit",
    )
    assert pp.card_details_from_vault(vault, setup=True).token == "8kk8451t"


def test_card_fields_that_are_missing_or_malformed() -> None:
    odd = {"last_digits": "x704", "expiry": "2030-ab"}
    assert pp.card_details_from_vault({"id": "t1", "payment_source": {"card": odd}}) == (
        CardDetails(token="card:t1", type="card")
    )
    long_digits = {"last_digits": "41111", "expiry": "11/2030"}
    got = pp.card_details_from_vault({"id": "t2", "payment_source": {"card": long_digits}})
    assert (got.last4, got.exp_month, got.exp_year) == ("1111", None, None)


def test_a_vaulted_wallet_and_a_venmo_account() -> None:
    wallet = {"id": "w1", "payment_source": {"paypal": {"email_address": "buyer@example.com"}}}
    assert pp.card_details_from_vault(wallet) == CardDetails(
        token="paypal:w1", type="paypal", brand="paypal"
    )
    venmo = {"id": "v1", "payment_source": {"venmo": {"user_name": "buyer"}}}
    assert pp.card_details_from_vault(venmo) == CardDetails(
        token="venmo:v1", type="venmo", brand="venmo"
    )


def test_a_token_with_several_sources_is_read_as_its_first_kind() -> None:
    # kinds in the order paypal, venmo, card: the venmo account, not the card behind it
    both = {"id": "v2", "payment_source": {"card": VISA, "venmo": {"user_name": "b"}}}
    assert pp.card_details_from_vault(both) == CardDetails(
        token="venmo:v2", type="venmo", brand="venmo"
    )
    wallet_card = {"id": "w2", "payment_source": {"card": VISA, "paypal": {}}}
    assert pp.card_details_from_vault(wallet_card) == CardDetails(
        token="paypal:w2", type="paypal", brand="paypal"
    )


def test_a_token_of_an_unknown_kind_or_none_is_a_wallet() -> None:
    apple = {"id": "a1", "payment_source": {"apple_pay": {"card": VISA}}}
    assert pp.card_details_from_vault(apple) == CardDetails(
        token="paypal:a1", type="paypal", brand="paypal"
    )
    assert pp.card_details_from_vault({"id": "n1"}) == CardDetails(
        token="paypal:n1", type="paypal", brand="paypal"
    )


def test_card_details_from_an_approved_order() -> None:
    by_card = {"id": "ORDER_7", "payment_source": {"card": VISA}}
    assert pp.card_details_from_order(by_card) == CardDetails(
        token="ORDER_7",
        type="card",
        brand="visa",
        last4="7704",
        exp_month=11,
        exp_year=2030,
        funding="credit",
    )
    by_venmo = {"id": "ORDER_8", "payment_source": {"venmo": {}}}
    assert pp.card_details_from_order(by_venmo) == CardDetails(
        token="ORDER_8", type="venmo", brand="venmo"
    )
    assert pp.card_details_from_order({"id": "ORDER_9"}) == CardDetails(
        token="ORDER_9", type="paypal", brand="paypal"
    )


# -- small readers ----------------------------------------------------------------------------
def test_an_unknown_status_names_the_enum_and_the_value() -> None:
    with pytest.raises(pp.UnknownStatus) as raised:
        pp.capture_result({"id": "CAP_1", "status": "TELEPORTED"})
    assert str(raised.value) == "paypal: unknown CaptureStatus 'TELEPORTED'"


def test_request_id_fits_paypal_s_108_characters() -> None:
    key = "k" * 108
    assert pp.request_id(key) == key
    longer = "k" * 109
    digest = hashlib.sha256(longer.encode()).hexdigest()
    assert pp.request_id(longer) == "pmx-" + digest


def test_purchase_unit_description_and_descriptor_are_cut_to_paypal_s_limits() -> None:
    request = AuthorizeRequest(
        amount=Money(1000, "USD"),
        payment_method_token="paypal:w1",
        capture=True,
        reference="pi_ours_1",
        description="d" * 200,
        statement_descriptor="s" * 30,
    )
    (unit,) = pp.vault_order_request(request, "paypal", "w1")["purchase_units"]
    assert unit == {
        "amount": USD_10,
        "custom_id": "pi_ours_1",
        "description": "d" * 127,  # Orders v2 purchase_unit.description maxLength
        "soft_descriptor": "s" * 22,  # soft_descriptor maxLength
    }


def test_split_vault_token() -> None:
    assert pp.split_vault_token("card:8kk8451t") == ("card", "8kk8451t")
    assert pp.split_vault_token("card:a:b") == ("card", "a:b")
    assert pp.split_vault_token("5O190127TN364715T") is None
    with pytest.raises(ValueError) as raised:
        pp.split_vault_token("bank:1")
    assert str(raised.value) == "not a PayPal payment method token: 'bank:1'"


def test_payer_action_skips_links_that_are_not_objects() -> None:
    links = ["https://example.invalid", {"rel": "approve", "href": "https://paypal.example/a"}]
    got = pp.order_result(order("PAYER_ACTION_REQUIRED", links=links))
    assert got.next_action == {
        "type": "redirect_to_url",
        "redirect_to_url": {"url": "https://paypal.example/a"},
    }


def test_order_readers_with_odd_shapes() -> None:
    assert pp.order_wants_capture({"intent": "AUTHORIZE"}) is False
    assert pp.order_wants_capture({"intent": "CAPTURE"}) is True
    assert pp.order_currency(order("CREATED")) == "USD"
    assert pp.order_currency(order("CREATED", purchase_units=[])) is None
    assert pp.order_currency(order("CREATED", purchase_units={"0": {}})) is None
    assert pp.order_currency(order("CREATED", purchase_units=[{"amount": "10.00"}])) is None
    assert pp.order_currency(order("CREATED", purchase_units=[{"amount": {}}])) is None


def test_related_order_id() -> None:
    capture = {"id": "CAP_1", "supplementary_data": {"related_ids": {"order_id": "ORDER_1"}}}
    assert pp.related_order_id(capture) == "ORDER_1"
    assert pp.related_order_id({"supplementary_data": "x"}) is None
    assert pp.related_order_id({"supplementary_data": {"related_ids": "x"}}) is None
    assert pp.related_order_id({"supplementary_data": {"related_ids": {}}}) is None


def test_order_refund_skips_units_that_are_not_objects() -> None:
    refund = {"id": "REF_1", "custom_id": "re_1"}
    got = pp.order_refund(
        order("COMPLETED", purchase_units=["x", {"payments": {"refunds": [refund]}}]), "re_1"
    )
    assert got == refund


def test_the_capture_of_a_refund_is_its_up_link() -> None:
    def with_up(href: Any) -> dict[str, Any]:
        return {"id": "REF_1", "status": "COMPLETED", "links": ["x", {"rel": "up", "href": href}]}

    trailing = "https://api-m.paypal.com/v2/payments/captures/CAP_1X/"
    assert pp.refund_result(with_up(trailing)).payment_reference == "CAP_1X"
    assert pp.refund_result(with_up(None)).payment_reference is None
    other = "https://api-m.paypal.com/v2/payments/authorizations/AUTH_1"
    assert pp.refund_result(with_up(other)).payment_reference is None


# -- webhooks ---------------------------------------------------------------------------------
def webhook(event_type: str, resource: Any) -> InboundEvent:
    payload = {"id": "WH-1", "event_type": event_type, "resource": resource}
    return InboundEvent("paypal", "WH-1", event_type, payload)


def test_a_denied_capture_event_without_a_status_is_declined() -> None:
    got = pp.interpret_event(
        webhook("PAYMENT.CAPTURE.DENIED", {"id": "CAP_1", "custom_id": "pi_1"})
    )
    assert isinstance(got, PaymentUpdate)
    assert (got.reference, got.result.status, got.result.raw["status"]) == (
        "pi_1",
        GatewayStatus.FAILED,
        "DECLINED",
    )
    said = pp.interpret_event(webhook("PAYMENT.CAPTURE.DENIED", {"id": "C", "status": "FAILED"}))
    assert isinstance(said, PaymentUpdate) and said.result.raw["status"] == "FAILED"
    with pytest.raises(pp.UnknownStatus):  # only DENIED implies its status
        pp.interpret_event(webhook("PAYMENT.CAPTURE.PENDING", {"id": "C2"}))


def test_an_event_whose_resource_is_not_an_object_is_ignored() -> None:
    assert pp.interpret_event(webhook("PAYMENT.CAPTURE.COMPLETED", "CAP_1")) is None


def test_a_dispute_with_the_fallbacks() -> None:
    dispute = {"id": "PP-D-1", "status": "OPEN", "dispute_amount": "x"}
    assert pp.dispute_update(dispute) == DisputeUpdate(
        reference="PP-D-1",
        payment_reference=None,
        amount=0,
        currency="",
        reason=None,
        status="needs_response",
    )


def test_a_resolved_dispute_without_an_outcome_is_unknown() -> None:
    dispute = {
        "dispute_id": "PP-D-2",
        "status": "RESOLVED",
        "dispute_outcome": {"outcome_code": "NONE"},
    }
    with pytest.raises(pp.UnknownStatus) as raised:
        pp.dispute_update(dispute)
    assert str(raised.value) == "paypal: a resolved dispute without an outcome"


def test_an_order_paid_with_a_wallet_is_the_wallet_whatever_else_it_names() -> None:
    # an order's payment_source is read as it is (no narrowing to one kind, unlike a token)
    for source in ({"card": VISA, "paypal": {}}, {"venmo": {}, "paypal": {}}):
        assert pp.card_details_from_order({"id": "ORDER_5", "payment_source": source}) == (
            CardDetails(token="ORDER_5", type="paypal", brand="paypal")
        )


def test_an_authorize_order_with_only_captures_is_read_by_its_newest_capture() -> None:
    first = {"id": "CAP_1", "status": "COMPLETED", "amount": USD_10}
    second = {"id": "CAP_0", "status": "COMPLETED", "amount": USD_10}
    newest = {"id": "CAP_2", "status": "DECLINED", "processor_response": {"response_code": "5120"}}
    got = pp.order_result(
        with_payments("COMPLETED", captures=[first, second, newest]), capture=False, requested=1000
    )
    assert got == GatewayResult(
        status=GatewayStatus.FAILED,
        reference="ORDER_1",
        decline=Decline("5120", "PayPal: declined"),
        raw={"id": "CAP_2", "status": "DECLINED", "object": "capture"},
    )
    pending = {"id": "CAP_3", "status": "PENDING"}
    late = pp.order_result(
        with_payments("COMPLETED", captures=[first, pending]), capture=False, requested=600
    )
    assert (late.status, late.reference, late.amount_authorized) == (
        GatewayStatus.PROCESSING,
        "CAP_3",
        600,
    )
