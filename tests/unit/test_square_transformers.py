"""The Square connector's pure parts, fed Square's own JSON shapes (api.json examples): amounts
and currencies, every Payment and PaymentRefund status, every mapped error code, webhook
events, request parameters, idempotency keys and Square's webhook signature (with the test
vector of square-python-sdk's webhooks_helper)."""

from __future__ import annotations

import asyncio
import copy
import json
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from square.types.error_code import ErrorCode
from square.utils.webhooks_helper import verify_signature as sdk_verify_signature

from paymux.config import Settings
from paymux.domain.errors import DECLINE_CODES as OUR_DECLINE_CODES
from paymux.domain.errors import ERRORS, GATEWAY_CODES, ErrorType, card_error
from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    Decline,
    DisputeUpdate,
    GatewayInvalidRequest,
    GatewayStatus,
    GatewayUnavailable,
    InboundEvent,
    PaymentUpdate,
    RefundUpdate,
    WebhookVerificationError,
)
from paymux.gateways.connectors import connectors
from paymux.gateways.square import SquareGateway, transformers, webhooks
from paymux.gateways.square.transformers import ErrorKind
from paymux.money import CURRENCIES, Money, get_currency

connectors()  # registers each connector's code rows, as a running paymux has them

PI = "pi_ours0000000000000000000001"


def _literal_values(tp: Any) -> set[str]:
    values: set[str] = set()
    for arg in typing.get_args(tp):
        values |= _literal_values(arg) if typing.get_args(arg) else {arg}
    return {v for v in values if isinstance(v, str)}


SQUARE_ERROR_CODES = _literal_values(ErrorCode)
SQUARE_ROWS = {code: row for (gw, code), row in GATEWAY_CODES.items() if gw == "square"}


# -- Square JSON (from api.json's examples) ----------------------------------------------------
def payment(status: str = "APPROVED", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY",
        "amount_money": {"amount": 555, "currency": "USD"},
        "approved_money": {"amount": 555, "currency": "USD"},
        "total_money": {"amount": 555, "currency": "USD"},
        "capabilities": ["EDIT_AMOUNT_UP", "EDIT_AMOUNT_DOWN", "EDIT_TIP_AMOUNT_UP"],
        "card_details": {
            "status": {"APPROVED": "AUTHORIZED", "COMPLETED": "CAPTURED",
                       "CANCELED": "VOIDED"}.get(status, status),
            "card": {"card_brand": "VISA", "last_4": "1111", "exp_month": 11, "exp_year": 2022,
                     "card_type": "DEBIT", "prepaid_type": "NOT_PREPAID",
                     "fingerprint": "sq-1-Hxim77tbdcbGejOejnoAklBVJed2YFLTmirfl8Q5XZzObTc8qY"},
            "entry_method": "KEYED",
        },
        "created_at": "2021-10-13T19:34:33.524Z",
        "delay_action": "CANCEL",
        "delay_duration": "PT168H",
        "location_id": "L88917AVBK2S5",
        "reference_id": PI,
        "risk_evaluation": {"created_at": "2021-10-13T21:14:30.423Z", "risk_level": "NORMAL"},
        "source_type": "CARD",
        "status": status,
        "version_token": "56pRkL3slrzet2iQrTp9n0bdJVYTB9YEWdTNjQfZOPV6o",
    }
    data.update(fields)
    return data


def refund(status: str = "PENDING", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "R2B3Z8WMVt3EAmzYWLZvz7Y69EbZY_KlWP8IC1557ddwc9QWTKrCVU6m0JXDz15R2Qym5eQfR",
        "amount_money": {"amount": 1000, "currency": "USD"},
        "created_at": "2021-10-13T21:23:19.116Z",
        "location_id": "L88917AVBK2S5",
        "payment_id": "R2B3Z8WMVt3EAmzYWLZvz7Y69EbZY",
        "reason": "Example",
        "status": status,
    }
    data.update(fields)
    return data


def event(event_type: str, data_type: str, obj: dict[str, Any]) -> InboundEvent:
    payload = {
        "merchant_id": "6SSW7HV8K2ST5",
        "type": event_type,
        "event_id": "13b867cf-db3d-4b1c-90b6-2f32a9d78124",
        "created_at": "2020-02-06T21:27:34.308Z",
        "data": {"type": data_type, "id": obj.get("id"), "object": {data_type: obj}},
    }
    return InboundEvent("square", payload["event_id"], event_type, payload)


def request(**fields: Any) -> AuthorizeRequest:
    values: dict[str, Any] = {
        "amount": Money(2000, "USD"),
        "payment_method_token": "cnon:card-nonce-ok",
        "capture": False,
        "reference": PI,
    }
    values.update(fields)
    return AuthorizeRequest(**values)


# -- amounts and currencies ----------------------------------------------------------------------
@pytest.mark.parametrize(("amount", "currency"), [(1234, "USD"), (1, "CAD"), (999, "GBP"),
                                                  (5000, "AUD"), (4200, "EUR"), (500, "JPY")])
def test_amounts_go_to_square_in_the_smallest_denomination_unchanged(
    amount: int, currency: str
) -> None:
    money = Money(amount, currency)
    assert transformers.amount_problem(money) is None
    assert transformers.to_square(money) == {"amount": amount, "currency": currency}
    assert transformers.from_square(transformers.to_square(money)) == amount


def test_yen_is_zero_decimal_at_square_as_in_iso() -> None:
    assert transformers.to_square(Money(500, "JPY"))["amount"] == 500  # 500 yen, not 5


def test_square_s_units_are_iso_4217_s_minor_units_and_none_is_three_decimal() -> None:
    for code, exponent in transformers.SQUARE_CURRENCIES.items():
        assert get_currency(code).exponent == exponent
        assert exponent != 3
    three_decimal = {c.code for c in CURRENCIES.values() if c.exponent == 3}
    assert three_decimal and not three_decimal & set(transformers.SQUARE_CURRENCIES)


@pytest.mark.parametrize("currency", ["KWD", "BHD", "CHF", "SEK", "MXN", "BRL"])
def test_currencies_square_does_not_process_are_refused(currency: str) -> None:
    gateway = SquareGateway("EAAAtest", http_client=httpx.AsyncClient())
    assert not gateway.supports_currency(currency)
    assert not gateway.supports_currency(currency.lower())
    problem = transformers.amount_problem(Money(1000, currency))
    assert problem and currency in problem
    with pytest.raises(ValueError):
        transformers.to_square(Money(1000, currency))


def test_the_six_square_currencies_are_supported_in_any_case() -> None:
    gateway = SquareGateway("EAAAtest", http_client=httpx.AsyncClient())
    for code in ("usd", "CAD", "gbp", "AUD", "eur", "JPY"):
        assert gateway.supports_currency(code)


# -- statuses -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "expected", "authorized", "captured"),
    [
        ("APPROVED", GatewayStatus.REQUIRES_CAPTURE, 555, 0),
        ("PENDING", GatewayStatus.PROCESSING, 0, 0),
        ("COMPLETED", GatewayStatus.SUCCEEDED, 555, 555),
        ("CANCELED", GatewayStatus.CANCELED, 0, 0),
        ("FAILED", GatewayStatus.FAILED, 0, 0),
    ],
)
def test_every_square_payment_status_is_mapped(
    status: str, expected: GatewayStatus, authorized: int, captured: int
) -> None:
    result = transformers.payment_result(payment(status))
    assert result.status is expected
    assert (result.amount_authorized, result.amount_captured) == (authorized, captured)
    assert result.reference == "bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY"
    assert (result.decline is not None) == (status == "FAILED")
    assert result.risk_level == "normal"


def test_the_payment_status_table_covers_every_status_square_documents() -> None:
    assert {s.value for s in transformers.PaymentStatus} == {
        "APPROVED", "PENDING", "COMPLETED", "CANCELED", "FAILED"}
    assert {s.value for s in transformers.RefundStatus} == {
        "PENDING", "COMPLETED", "REJECTED", "FAILED"}


def test_an_unknown_payment_status_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError):
        transformers.payment_result(payment("SOMETHING_NEW"))


def test_a_completed_payment_counts_the_amount_without_the_tip() -> None:
    done = payment("COMPLETED", amount_money={"amount": 1000, "currency": "USD"},
                   tip_money={"amount": 100, "currency": "USD"},
                   total_money={"amount": 1100, "currency": "USD"})
    assert transformers.payment_result(done).amount_captured == 1000


def test_a_failed_payment_carries_the_card_error_as_its_decline() -> None:
    failed = payment("FAILED")
    failed["card_details"]["errors"] = [
        {"category": "PAYMENT_METHOD_ERROR", "code": "CVV_FAILURE",
         "detail": "Authorization error: 'CVV_FAILURE'"}]
    decline = transformers.payment_result(failed).decline
    assert decline is not None
    assert (decline.gateway_code, decline.message) == (
        "CVV_FAILURE", "Authorization error: 'CVV_FAILURE'")


@pytest.mark.parametrize(("level", "ours"), [("NORMAL", "normal"), ("MODERATE", "elevated"),
                                             ("HIGH", "highest"), ("PENDING", None)])
def test_square_s_risk_levels_become_ours(level: str, ours: str | None) -> None:
    result = transformers.payment_result(payment(risk_evaluation={"risk_level": level}))
    assert result.risk_level == ours


@pytest.mark.parametrize(
    ("status", "ours", "failure"),
    [("PENDING", "pending", None), ("COMPLETED", "succeeded", None),
     ("REJECTED", "failed", "declined"), ("FAILED", "failed", "unknown")],
)
def test_every_square_refund_status_is_mapped(status: str, ours: str, failure: str | None) -> None:
    result = transformers.refund_result(refund(status))
    assert (result.status, result.failure_reason) == (ours, failure)
    assert result.amount == 1000
    assert result.payment_reference == "R2B3Z8WMVt3EAmzYWLZvz7Y69EbZY"


# -- errors -----------------------------------------------------------------------------------
def test_every_square_row_names_a_code_square_documents() -> None:
    assert SQUARE_ROWS
    assert set(SQUARE_ROWS) <= SQUARE_ERROR_CODES, set(SQUARE_ROWS) - SQUARE_ERROR_CODES


@pytest.mark.parametrize("code", sorted(SQUARE_ROWS))
def test_every_mapped_square_code_gives_a_paymux_error_with_advice(code: str) -> None:
    row = SQUARE_ROWS[code]
    assert row.code in ERRORS
    assert row.decline_code is None or row.decline_code in OUR_DECLINE_CODES
    error = card_error("square", code, f"Authorization error: '{code}'")
    assert (error.code, error.decline_code) == (row.code, row.decline_code)
    assert (error.gateway, error.gateway_code) == ("square", code)
    assert error.message == f"Authorization error: '{code}'"
    if ERRORS[row.code].type is ErrorType.CARD_ERROR:
        assert error.http_status == 402 and error.user_message and error.action.value != "none"


@pytest.mark.parametrize(
    ("code", "ours", "decline_code"),
    [
        ("GENERIC_DECLINE", "card_declined", "generic_decline"),
        ("CVV_FAILURE", "incorrect_cvc", "incorrect_cvc"),
        ("ADDRESS_VERIFICATION_FAILURE", "incorrect_zip", "incorrect_zip"),
        ("INVALID_EXPIRATION", "card_declined", "invalid_expiry_date"),
        ("INSUFFICIENT_FUNDS", "card_declined", "insufficient_funds"),
        ("CARD_EXPIRED", "expired_card", "expired_card"),
        ("CARD_DECLINED_VERIFICATION_REQUIRED", "authentication_required",
         "authentication_required"),
        ("INVALID_ACCOUNT", "card_declined", "invalid_account"),
        ("CARD_DECLINED_CALL_ISSUER", "card_declined", "call_issuer"),
        ("ALLOWABLE_PIN_TRIES_EXCEEDED", "card_declined", "pin_try_exceeded"),
        ("PAN_FAILURE", "incorrect_number", "incorrect_number"),
        ("TRANSACTION_LIMIT", "card_declined", "card_velocity_exceeded"),
        ("RATE_LIMITED", "rate_limit", None),
    ],
)
def test_the_main_square_codes_map_as_documented(
    code: str, ours: str, decline_code: str | None
) -> None:
    row = SQUARE_ROWS[code]
    assert (row.code, row.decline_code) == (ours, decline_code)


@pytest.mark.parametrize("code", sorted(transformers.DECLINE_CODES))
def test_a_declining_code_is_a_decline_even_outside_the_payment_method_category(
    code: str,
) -> None:
    body = {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": code, "detail": "x"}]}
    assert transformers.classify_error(400, body) is ErrorKind.DECLINE


def test_outages_and_rate_limits_are_never_declines() -> None:
    assert "TEMPORARY_ERROR" not in transformers.DECLINE_CODES
    assert "RATE_LIMITED" not in transformers.DECLINE_CODES


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"errors": [{"category": "PAYMENT_METHOD_ERROR", "code": "GENERIC_DECLINE"}]},
         ErrorKind.DECLINE),
        (402, {"errors": [{"category": "PAYMENT_METHOD_ERROR", "code": "SOMETHING_NEW"}]},
         ErrorKind.DECLINE),
        (429, {"errors": [{"category": "RATE_LIMIT_ERROR", "code": "RATE_LIMITED"}]},
         ErrorKind.RATE_LIMITED),
        (429, "Too Many Requests", ErrorKind.RATE_LIMITED),
        (500, {"errors": [{"category": "API_ERROR", "code": "INTERNAL_SERVER_ERROR"}]},
         ErrorKind.UNAVAILABLE),
        (503, "<html>upstream down</html>", ErrorKind.UNAVAILABLE),
        (409, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "CONFLICT"}]},
         ErrorKind.UNAVAILABLE),
        (400, {"errors": [{"category": "API_ERROR", "code": "TEMPORARY_ERROR"}]},
         ErrorKind.UNAVAILABLE),
        (200, "not json", ErrorKind.UNAVAILABLE),
        (None, None, ErrorKind.UNAVAILABLE),
        (400, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "VALUE_TOO_LONG",
                           "field": "idempotency_key"}]}, ErrorKind.INVALID),
        (401, {"errors": [{"category": "AUTHENTICATION_ERROR", "code": "UNAUTHORIZED"}]},
         ErrorKind.INVALID),
        (404, {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "NOT_FOUND"}]},
         ErrorKind.INVALID),
        (400, {"errors": [{"category": "REFUND_ERROR", "code": "REFUND_DECLINED"}]},
         ErrorKind.REFUND_ERROR),
    ],
)
def test_error_answers_are_sorted_into_declines_outages_and_our_bugs(
    status: int | None, body: Any, kind: ErrorKind
) -> None:
    assert transformers.classify_error(status, body) is kind


def test_a_declined_payment_answer_keeps_square_s_failed_payment_id() -> None:
    body = {
        "errors": [
            {"code": "INSUFFICIENT_FUNDS", "category": "PAYMENT_METHOD_ERROR",
             "detail": "Gift card does not have sufficient balance for requested amount."},
            {"code": "GIFT_CARD_AVAILABLE_AMOUNT", "detail": "4494",
             "category": "PAYMENT_METHOD_ERROR"},
        ],
        "payment": payment("FAILED", id="failedPaymentZY"),
    }
    result = transformers.declined_result(body)
    assert result.status is GatewayStatus.FAILED and result.reference == "failedPaymentZY"
    assert result.decline is not None and result.decline.gateway_code == "INSUFFICIENT_FUNDS"


def test_a_decline_without_a_payment_or_a_known_code_is_a_generic_decline() -> None:
    result = transformers.declined_result({"errors": []})
    assert result.reference is None
    assert result.decline is not None and result.decline.gateway_code == "GENERIC_DECLINE"


def test_an_error_summary_names_square_s_code_and_field() -> None:
    code, message = transformers.error_summary(
        {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "VALUE_TOO_LONG",
                     "detail": "Too long", "field": "reference_id"}]})
    assert code == "VALUE_TOO_LONG" and "reference_id" in message
    assert transformers.error_summary("<html>")[0] == "api_error"


def test_a_refused_refund_is_a_failed_refund_with_square_s_code() -> None:
    body = {"errors": [{"category": "REFUND_ERROR", "code": "REFUND_DECLINED"}]}
    result = transformers.refund_error_result(body, Money(700, "USD"))
    assert (result.status, result.amount, result.failure_reason) == (
        "failed", 700, "refund_declined")


# -- requests ----------------------------------------------------------------------------------
def test_a_delayed_capture_payment_is_created_with_autocomplete_false() -> None:
    params = transformers.create_payment_params(
        request(description="Order 42", statement_descriptor="ORDER-42-LONG-DESCRIPTOR"),
        location_id="L88917AVBK2S5", idempotency_key=f"{PI}:authorize:1")
    assert params == {
        "source_id": "cnon:card-nonce-ok",
        "idempotency_key": f"{PI}:authorize:1",
        "amount_money": {"amount": 2000, "currency": "USD"},
        "autocomplete": False,
        "reference_id": PI,
        "location_id": "L88917AVBK2S5",
        "note": "Order 42",
        "statement_description_identifier": "ORDER-42-LONG-DESCRI",
    }


def test_a_card_on_file_is_charged_with_its_customer() -> None:
    params = transformers.create_payment_params(
        request(payment_method_token="ccof:uIbfJXhXETSP197M3GB", customer_token="VDKXEEKPJN48",
                capture=True, off_session=True),
        location_id=None, idempotency_key=f"{PI}:authorize:2")
    assert params["source_id"] == "ccof:uIbfJXhXETSP197M3GB"
    assert params["customer_id"] == "VDKXEEKPJN48"
    assert params["autocomplete"] is True and "location_id" not in params


def test_a_buyer_verification_token_is_sent_as_square_s_verification_token() -> None:
    params = transformers.create_payment_params(
        request(verification_token="verf:CA4SEK2NCXhvJTdoSRWfqmBm0y8gAQ"),
        location_id="L88917AVBK2S5", idempotency_key=f"{PI}:authorize:1")
    assert params["verification_token"] == "verf:CA4SEK2NCXhvJTdoSRWfqmBm0y8gAQ"
    without = transformers.create_payment_params(
        request(), location_id="L88917AVBK2S5", idempotency_key=f"{PI}:authorize:1")
    assert "verification_token" not in without


def test_refunds_carry_our_refund_id_in_the_reason_and_it_comes_back() -> None:
    params = transformers.refund_params(
        "R2B3Z8WMVt3EAmzYWLZvz7Y69EbZY", Money(1500, "USD"), "requested_by_customer",
        idempotency_key="re_abc123:refund", our_id="re_abc123")
    assert params["reason"] == "requested_by_customer [paymux re_abc123]"
    assert params["amount_money"] == {"amount": 1500, "currency": "USD"}
    assert params["payment_id"] == "R2B3Z8WMVt3EAmzYWLZvz7Y69EbZY"
    back = transformers.refund_result(refund("COMPLETED", reason=params["reason"]))
    assert (back.our_id, back.reason) == ("re_abc123", "requested_by_customer")
    seller_made = transformers.refund_result(refund("COMPLETED", reason="Broken on arrival"))
    assert (seller_made.our_id, seller_made.reason) == (None, "Broken on arrival")


def test_customers_and_cards_are_created_with_keys_and_references() -> None:
    assert transformers.customer_params("cus_1", "a@example.com", idempotency_key="k") == {
        "idempotency_key": "k", "reference_id": "cus_1", "email_address": "a@example.com"}
    assert "email_address" not in transformers.customer_params("cus_1", None, idempotency_key="k")
    assert transformers.card_params("cnon:x", "CUST1", idempotency_key="k") == {
        "idempotency_key": "k", "source_id": "cnon:x", "card": {"customer_id": "CUST1"}}


def test_a_full_capture_completes_and_a_partial_one_lowers_the_amount_first() -> None:
    approved = payment("APPROVED")
    assert transformers.capture_plan(approved, Money(555, "USD")) == "complete"
    assert transformers.capture_plan(approved, Money(300, "USD")) == "update_then_complete"
    params = transformers.update_amount_params(approved, Money(300, "USD"),
                                               idempotency_key=f"{PI}:capture")
    assert params["payment"] == {"amount_money": {"amount": 300, "currency": "USD"},
                                 "version_token": approved["version_token"]}
    assert params["idempotency_key"] != transformers.square_idempotency_key(f"{PI}:capture")


def test_amount_changes_are_keyed_by_step_and_by_the_version_they_change() -> None:
    approved = payment("APPROVED")
    lower = transformers.update_amount_params(approved, Money(300, "USD"),
                                              idempotency_key=f"{PI}:capture")
    again = transformers.update_amount_params(payment("APPROVED"), Money(300, "USD"),
                                              idempotency_key=f"{PI}:capture")
    assert lower == again  # the same state: the same request, replayed by Square
    after_restore = transformers.update_amount_params(
        payment("APPROVED", version_token="Rk7ZmsCq9PDiPh1O5Fq6a3S1dYkgg2Fa7L0OhdG7lmV2o"),
        Money(300, "USD"), idempotency_key=f"{PI}:capture")
    assert after_restore["idempotency_key"] != lower["idempotency_key"]
    lowered = payment("APPROVED", amount_money={"amount": 300, "currency": "USD"},
                      version_token="q3OqL8i3aHUZyLl3KzR6ULrhxTBrhtTLlTcvVZKCtDV6o")
    restore = transformers.restore_amount_params(lowered, Money(555, "USD"),
                                                 idempotency_key=f"{PI}:capture")
    assert restore["payment_id"] == "bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY"
    assert restore["payment"] == {"amount_money": {"amount": 555, "currency": "USD"},
                                  "version_token": "q3OqL8i3aHUZyLl3KzR6ULrhxTBrhtTLlTcvVZKCtDV6o"}
    keys = {lower["idempotency_key"], after_restore["idempotency_key"],
            restore["idempotency_key"], transformers.square_idempotency_key(f"{PI}:capture")}
    assert len(keys) == 4 and all(len(k) <= 45 for k in keys)


def test_a_refused_completion_is_a_failed_capture_of_a_payment_still_held() -> None:
    body = {"errors": [{"category": "PAYMENT_METHOD_ERROR", "code": "CARD_DECLINED",
                        "detail": "Card declined."}]}
    result = transformers.refused_capture_result("bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY", body)
    assert (result.status, result.reference) == (GatewayStatus.FAILED,
                                                 "bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY")
    assert result.decline == Decline("CARD_DECLINED", "Card declined.")
    assert result.raw["status"] == "APPROVED"


def test_lookup_takes_the_newest_payment_with_our_reference_id() -> None:
    long_ref = "pi_" + "x" * 45  # Square keeps 40 characters of reference_id
    old = payment("FAILED", id="OLD", created_at="2024-05-01T10:00:00.000Z")
    new = payment("APPROVED", id="NEW", created_at="2024-05-01T10:05:00.000Z")
    other = payment("COMPLETED", id="OTHER", reference_id="pi_someone_else",
                    created_at="2024-05-01T10:09:00.000Z")
    picked = transformers.pick_lookup([old, other, new], PI)
    assert picked is not None and picked["id"] == "NEW"
    cut = payment("COMPLETED", id="CUT", reference_id=long_ref[:40])
    found = transformers.pick_lookup([cut], long_ref)
    assert found is not None and found["id"] == "CUT"
    assert transformers.pick_lookup([other], PI) is None


def test_our_refund_is_picked_by_the_mark_in_its_reason() -> None:
    ours = refund("PENDING", id="R1", reason="duplicate [paymux re_abc123]")
    seller = refund("COMPLETED", id="R2", reason="Broken on arrival")
    other = refund("COMPLETED", id="R3", reason="x [paymux re_zzz999]")
    picked = transformers.pick_refund([seller, ours, other], "re_abc123")
    assert picked is not None and picked["id"] == "R1"
    assert transformers.pick_refund([seller, other], "re_abc123") is None


def test_a_partial_capture_square_cannot_do_is_refused_with_a_clear_code() -> None:
    rigid = payment("APPROVED", capabilities=["EDIT_TIP_AMOUNT_UP"])
    with pytest.raises(ValueError, match="partial_capture_not_supported"):
        transformers.capture_plan(rigid, Money(300, "USD"))
    with pytest.raises(ValueError, match="amount_to_capture_too_large"):
        transformers.capture_plan(payment("APPROVED"), Money(600, "USD"))


@pytest.mark.parametrize("status", ["COMPLETED", "CANCELED", "FAILED", "PENDING"])
def test_a_capture_of_a_payment_no_longer_approved_changes_nothing(status: str) -> None:
    assert transformers.capture_plan(payment(status), Money(555, "USD")) == "done"


def test_a_card_on_file_is_described_in_paymux_s_words() -> None:
    card = {"id": "ccof:uIbfJXhXETSP197M3GB", "card_brand": "AMERICAN_EXPRESS", "last_4": "0005",
            "exp_month": 11, "exp_year": 2030, "card_type": "CREDIT",
            "prepaid_type": "NOT_PREPAID", "fingerprint": "ex-p-cs80EK9Flz7Ls", "enabled": True}
    assert transformers.card_details(card) == CardDetails(
        token="ccof:uIbfJXhXETSP197M3GB", type="card", brand="amex", last4="0005",
        exp_month=11, exp_year=2030, fingerprint="ex-p-cs80EK9Flz7Ls", funding="credit")
    prepaid = transformers.card_details(dict(card, card_type="DEBIT", prepaid_type="PREPAID"))
    assert prepaid.funding == "prepaid"


# -- idempotency keys ----------------------------------------------------------------------------
def test_short_keys_are_sent_to_square_as_they_are() -> None:
    key = "pi_ABCDEFGHIJKLMNOPQRSTUVWX:authorize:1"
    assert transformers.square_idempotency_key(key) == key


@pytest.mark.parametrize("key", [
    "pm_ABCDEFGHIJKLMNOPQRSTUVWX:attach:cus_ABCDEFGHIJKLMNOPQRSTUVWX",
    "cus_ABCDEFGHIJKLMNOPQRSTUVWX:create_customer:square",
    "x" * 300,
    "pi_é" * 20,
])
def test_long_keys_become_45_characters_deterministically(key: str) -> None:
    derived = transformers.square_idempotency_key(key)
    assert len(derived) <= 45 and derived.isascii()
    assert derived == transformers.square_idempotency_key(key)
    assert "~" in derived


def test_derived_keys_differ_per_object_and_step() -> None:
    base = "pm_ABCDEFGHIJKLMNOPQRSTUVWX:attach:cus_ABCDEFGHIJKLMNOPQRSTUV"
    keys = {
        transformers.square_idempotency_key(base + suffix) for suffix in ("WX", "WY", "WZ")
    } | {
        transformers.square_idempotency_key("pi_1:authorize:1"),
        transformers.square_idempotency_key("pi_1:authorize:2"),
        transformers.square_idempotency_key("pi_1:capture"),
        transformers.square_idempotency_key("pi_1:capture", "amount"),
        transformers.square_idempotency_key("pi_1:cancel"),
        transformers.square_idempotency_key("re_1:refund"),
    }
    assert len(keys) == 9
    assert all(len(k) <= 45 for k in keys)


def test_a_hashed_key_never_equals_a_key_sent_as_it_is() -> None:
    long_key = "a" * 60
    derived = transformers.square_idempotency_key(long_key)
    assert transformers.square_idempotency_key(derived) != derived  # "~" forces hashing


# -- webhooks ---------------------------------------------------------------------------------------
PAYMENT_EVENT_CASES = [
    (event_type, square_status, ours)
    for event_type in ("payment.created", "payment.updated")
    for square_status, ours in [
        ("APPROVED", GatewayStatus.REQUIRES_CAPTURE), ("COMPLETED", GatewayStatus.SUCCEEDED),
        ("CANCELED", GatewayStatus.CANCELED), ("FAILED", GatewayStatus.FAILED),
        ("PENDING", GatewayStatus.PROCESSING)]
    if (event_type, square_status) != ("payment.created", "FAILED")  # see the next test
]


@pytest.mark.parametrize(("event_type", "square_status", "ours"), PAYMENT_EVENT_CASES)
def test_payment_events_update_our_payment_by_its_reference_id(
    event_type: str, square_status: str, ours: GatewayStatus
) -> None:
    change = transformers.interpret_event(event(event_type, "payment", payment(square_status)))
    assert isinstance(change, PaymentUpdate)
    assert change.reference == PI
    assert change.result.status is ours
    assert change.result.reference == "bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY"


def test_a_payment_declined_on_creation_is_not_applied_again_from_its_webhook() -> None:
    """CreatePayment answered the decline; the payer may already be paying again on the same
    intent (a new Square payment with the same reference_id) when the event arrives."""
    failed = payment("FAILED")
    assert transformers.interpret_event(event("payment.created", "payment", failed)) is None
    later = transformers.interpret_event(event("payment.updated", "payment", failed))
    assert isinstance(later, PaymentUpdate) and later.result.status is GatewayStatus.FAILED


@pytest.mark.parametrize(
    ("square_status", "ours"),
    [("PENDING", "pending"), ("COMPLETED", "succeeded"), ("REJECTED", "failed"),
     ("FAILED", "failed")],
)
@pytest.mark.parametrize("event_type", ["refund.created", "refund.updated"])
def test_refund_events_update_the_refund_and_name_its_payment(
    event_type: str, square_status: str, ours: str
) -> None:
    change = transformers.interpret_event(
        event(event_type, "refund", refund(square_status, reason="duplicate [paymux re_X1]")))
    assert isinstance(change, RefundUpdate)
    assert change.refund.status == ours
    assert change.refund.payment_reference == "R2B3Z8WMVt3EAmzYWLZvz7Y69EbZY"
    assert change.refund.our_id == "re_X1"


def test_the_spec_s_refund_updated_example_is_understood() -> None:
    example = {
        "created_at": "2020-02-06T22:14:16.421Z",
        "data": {
            "id": "KkAkhdMsgzn59SM8A89WgKwekxLZY_ptNBVqHYxt5gAdfcobBe4u1AZsXhoz06KTtuq9Ls24P",
            "object": {"refund": {
                "amount_money": {"amount": 1000, "currency": "USD"},
                "created_at": "2020-02-06T21:27:41.836Z",
                "id": "KkAkhdMsgzn59SM8A89WgKwekxLZY_ptNBVqHYxt5gAdfcobBe4u1AZsXhoz06KTtuq9Ls24P",
                "location_id": "NAQ1FHV6ZJ8YV", "order_id": "haOyDuHiqtAXMk0d8pDKXpL7Jg4F",
                "payment_id": "KkAkhdMsgzn59SM8A89WgKwekxLZY",
                "processing_fee": [{"amount_money": {"amount": -59, "currency": "USD"},
                                    "effective_at": "2020-02-06T23:27:31.000Z",
                                    "type": "INITIAL"}],
                "status": "COMPLETED", "updated_at": "2020-02-06T22:14:16.381Z", "version": 10}},
            "type": "refund",
        },
        "event_id": "73ecd468-0aba-424f-b862-583d44efe7c8",
        "merchant_id": "6SSW7HV8K2ST5",
        "type": "refund.updated",
    }
    change = transformers.interpret_event(
        InboundEvent("square", example["event_id"], "refund.updated", example))
    assert isinstance(change, RefundUpdate)
    assert (change.refund.status, change.refund.amount) == ("succeeded", 1000)
    assert change.refund.our_id is None and change.refund.reason is None


def test_dispute_events_record_the_chargeback() -> None:
    dispute = {"id": "XDgyFu7yo1E2S5lQGGpYn", "amount_money": {"amount": 2500, "currency": "USD"},
               "reason": "NO_KNOWLEDGE", "state": "EVIDENCE_REQUIRED",
               "disputed_payment": {"payment_id": "APgIq6RX2jM6DKDhMHiC6QEkuaB"}}
    change = transformers.interpret_event(event("dispute.created", "dispute", dispute))
    assert change == DisputeUpdate(reference="XDgyFu7yo1E2S5lQGGpYn",
                                   payment_reference="APgIq6RX2jM6DKDhMHiC6QEkuaB",
                                   amount=2500, currency="USD", reason="no_knowledge",
                                   status="needs_response")
    won = transformers.interpret_event(
        event("dispute.state.changed", "dispute", dict(dispute, state="WON")))
    assert isinstance(won, DisputeUpdate) and won.status == "won"


@pytest.mark.parametrize("event_type", ["customer.created", "card.created", "order.updated",
                                        "payment.deleted"])
def test_other_events_are_not_acted_on(event_type: str) -> None:
    assert transformers.interpret_event(event(event_type, "payment", payment())) is None


# -- webhook signature --------------------------------------------------------------------------------
KEY, URL, BODY = "asdf1234", "https://example.com/webhook", b'{"hello":"world"}'
VECTOR = "2kRE5qRU2tR+tBGlDwMEw2avJ7QM4ikPYD/PJ3bd9Og="
EVENT = json.dumps(event("payment.updated", "payment", payment("COMPLETED")).payload).encode()


def test_the_signature_matches_the_sdk_s_test_vector() -> None:
    assert webhooks.sign(KEY, URL, BODY) == VECTOR
    assert sdk_verify_signature(request_body=BODY.decode(), signature_header=VECTOR,
                                signature_key=KEY, notification_url=URL)


def test_a_signed_event_is_verified_and_parsed() -> None:
    headers = webhooks.signed_headers(KEY, URL, EVENT)
    parsed = webhooks.verify(headers, EVENT, keys=[KEY], url=URL)
    assert parsed["type"] == "payment.updated"


def test_the_test_vector_body_is_signed_but_is_not_a_square_event() -> None:
    with pytest.raises(WebhookVerificationError) as info:
        webhooks.verify({webhooks.SIGNATURE_HEADER: VECTOR}, BODY, keys=[KEY], url=URL)
    assert info.value.reason == "invalid_payload"


@pytest.mark.parametrize(
    ("headers", "body", "keys", "url", "reason"),
    [
        ({}, EVENT, [KEY], URL, "missing_signature"),
        ({webhooks.SIGNATURE_HEADER: ""}, EVENT, [KEY], URL, "missing_signature"),
        ({webhooks.SIGNATURE_HEADER: webhooks.sign(KEY, URL, EVENT)}, EVENT + b" ", [KEY], URL,
         "signature_mismatch"),
        ({webhooks.SIGNATURE_HEADER: webhooks.sign(KEY, URL, EVENT)}, EVENT, ["wrong-key"], URL,
         "signature_mismatch"),
        ({webhooks.SIGNATURE_HEADER: webhooks.sign(KEY, URL, EVENT)}, EVENT, [KEY],
         URL + "?x=1", "signature_mismatch"),
        ({webhooks.SIGNATURE_HEADER: webhooks.sign(KEY, URL, EVENT)}, EVENT, [], URL,
         "signature_mismatch"),
        ({webhooks.SIGNATURE_HEADER: "not base64 at all ü"}, EVENT, [KEY], URL,
         "signature_mismatch"),
        ({webhooks.SIGNATURE_HEADER: webhooks.sign(KEY, URL, b"[1]")}, b"[1]", [KEY], URL,
         "invalid_payload"),
        ({webhooks.SIGNATURE_HEADER: webhooks.sign(KEY, URL, b"\xff")}, b"\xff", [KEY], URL,
         "invalid_payload"),
    ],
    ids=["no header", "empty header", "tampered body", "wrong key", "other url", "no key",
         "garbage", "not an event", "not json"],
)
def test_a_delivery_that_fails_verification_is_refused_with_its_reason(
    headers: dict[str, str], body: bytes, keys: list[str], url: str, reason: str
) -> None:
    with pytest.raises(WebhookVerificationError) as info:
        webhooks.verify(headers, body, keys=keys, url=url)
    assert info.value.reason == reason


def test_during_a_key_rotation_either_key_verifies() -> None:
    for key in ("old-key", "new-key"):
        headers = webhooks.signed_headers(key, URL, EVENT)
        assert webhooks.verify(headers, EVENT, keys=["new-key", "old-key"], url=URL)


# -- the gateway object (no network) --------------------------------------------------------------------
def _offline() -> httpx.AsyncClient:
    def refuse(req: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected call to Square: {req.method} {req.url}")

    return httpx.AsyncClient(transport=httpx.MockTransport(refuse))


def test_settings_make_a_gateway_whose_webhook_url_defaults_to_ours(tmp_path: Any) -> None:
    settings = Settings(square_access_token="EAAAsecret", square_location_id="L1",
                        square_application_id="sandbox-sq0idb-app",
                        square_webhook_signature_key="k1, k2", public_url="https://pay.example")
    gateway = SquareGateway.from_settings(settings)
    assert gateway.webhook_url == "https://pay.example/webhooks/square"
    assert gateway.webhook_signature_keys == ["k1", "k2"]
    assert "EAAAsecret" not in repr(gateway)
    assert gateway.browser_params("pi_1") == {
        "gateway": "square", "application_id": "sandbox-sq0idb-app", "location_id": "L1",
        "environment": "sandbox",
        "sdk_url": "https://sandbox.web.squarecdn.com/v1/square.js"}
    live = SquareGateway.from_settings(settings.model_copy(update={
        "square_api_base": "https://connect.squareup.com",
        "square_webhook_url": "https://pay.example/hooks/sq?v=1"}))
    assert live.browser_params("pi_1")["sdk_url"] == "https://web.squarecdn.com/v1/square.js"
    assert live.webhook_url == "https://pay.example/hooks/sq?v=1"


def test_a_web_payments_token_is_described_without_calling_square() -> None:
    async def run() -> None:
        gateway = SquareGateway("EAAAtest", http_client=_offline())
        assert await gateway.describe_payment_method("cnon:card-nonce-ok") == CardDetails(
            token="cnon:card-nonce-ok", type="card")
        assert await gateway.describe_payment_method("pm_card_visa") is None
        assert await gateway.open_payment(Money(100, "USD"), PI, True,
                                          idempotency_key="k") is None
        await gateway.detach_payment_method("cnon:card-nonce-ok", idempotency_key="k")

    asyncio.run(run())


def test_square_publishes_no_key_retention_so_an_hour_is_assumed() -> None:
    assert SquareGateway.idempotency_retention_seconds == 3600


def test_nothing_is_opened_at_square_so_nothing_can_be_updated() -> None:
    async def run() -> None:
        gateway = SquareGateway("EAAAtest", http_client=_offline())
        with pytest.raises(GatewayInvalidRequest) as info:
            await gateway.update_payment("bP9mAsEMYPUGjjGNaNO5ZDVyLhSZY", Money(100, "USD"),
                                         True, idempotency_key="k")
        assert info.value.code == "update_unsupported"

    asyncio.run(run())


class SquareSeam:
    """Square at the HTTP seam: answers by "METHOD path" (a list answers in turn)."""

    def __init__(self, routes: dict[str, Any]) -> None:
        self.routes = routes
        self.sent: list[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.sent.append(req)
        answer = self.routes.get(f"{req.method} {req.url.path}")
        if isinstance(answer, list):
            answer = answer.pop(0)
        if answer is None:
            return httpx.Response(404, json={"errors": [{"category": "INVALID_REQUEST_ERROR",
                                                         "code": "NOT_FOUND", "detail": "Not found"}]})
        return httpx.Response(200, json=answer)

    def gateway(self) -> SquareGateway:
        client = httpx.AsyncClient(transport=httpx.MockTransport(self))
        return SquareGateway("EAAAtest", location_id="L88917AVBK2S5",
                             api_base="https://square.test", http_client=client)


def _drive(seam: SquareSeam, call: Any) -> Any:
    async def go() -> Any:
        gateway = seam.gateway()
        try:
            return await call(gateway)
        finally:
            await gateway._http.aclose()

    return asyncio.run(go())


def test_lookup_lists_recent_payments_newest_first_and_pages_until_ours() -> None:
    foreign = payment("COMPLETED", id="FOREIGN", reference_id="pi_other")
    ours = payment("APPROVED", id="OURS", created_at="2024-05-01T10:05:00.000Z")
    seam = SquareSeam({"GET /v2/payments": [
        {"payments": [foreign], "cursor": "page-2"},
        {"payments": [ours]},
    ]})
    found = _drive(seam, lambda g: g.lookup(PI, f"{PI}:authorize:1"))
    assert found is not None
    assert (found.status, found.reference, found.amount_authorized) == (
        GatewayStatus.REQUIRES_CAPTURE, "OURS", 555)
    first, second = (dict(r.url.params) for r in seam.sent)
    assert (first["sort_order"], first["location_id"], first["limit"]) == (
        "DESC", "L88917AVBK2S5", "100")
    assert "cursor" not in first and second["cursor"] == "page-2"
    begin = datetime.fromisoformat(first["begin_time"].replace("Z", "+00:00"))
    assert timedelta(days=6, hours=23) < datetime.now(UTC) - begin < timedelta(days=7, hours=1)


def test_lookup_of_a_payment_square_never_made_is_none() -> None:
    seam = SquareSeam({"GET /v2/payments": [{"payments": [payment(reference_id="pi_x")]}]})
    assert _drive(seam, lambda g: g.lookup(PI, f"{PI}:authorize:1")) is None
    empty = SquareSeam({"GET /v2/payments": [{}]})
    assert _drive(empty, lambda g: g.lookup(PI, f"{PI}:authorize:1")) is None


def test_a_list_that_repeats_its_cursor_is_unknown_not_none() -> None:
    foreign = payment("COMPLETED", id="FOREIGN", reference_id="pi_other")
    page = {"payments": [foreign], "cursor": "the-same"}
    seam = SquareSeam({"GET /v2/payments": [page, page, page]})
    with pytest.raises(GatewayUnavailable):
        _drive(seam, lambda g: g.lookup(PI, f"{PI}:authorize:1"))
    assert [r.url.params.get("cursor") for r in seam.sent] == [None, "the-same"]


def test_lookup_through_an_outage_is_unavailable() -> None:
    def down(req: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"errors": [{"category": "API_ERROR",
                                                     "code": "SERVICE_UNAVAILABLE"}]})

    async def run() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(down))
        gateway = SquareGateway("EAAAtest", api_base="https://square.test", http_client=client)
        try:
            await gateway.lookup(PI, f"{PI}:authorize:1")
        finally:
            await client.aclose()

    with pytest.raises(GatewayUnavailable):
        asyncio.run(run())


REFUND_ID = "R2B3Z8WMVt3EAmzYWLZvz7Y69EbZY_KlWP8IC1557ddwc9QWTKrCVU6m0JXDz15R2Qym5eQfR"
PAYMENT_ID = "R2B3Z8WMVt3EAmzYWLZvz7Y69EbZY"


def test_a_refund_is_read_by_its_id() -> None:
    seam = SquareSeam({f"GET /v2/refunds/{REFUND_ID}": {"refund": refund(
        "COMPLETED", reason="requested_by_customer [paymux re_abc123]")}})
    found = _drive(seam, lambda g: g.retrieve_refund(REFUND_ID, our_id="re_abc123",
                                                    payment_reference=PAYMENT_ID))
    assert (found.status, found.reference, found.amount, found.our_id) == (
        "succeeded", REFUND_ID, 1000, "re_abc123")
    assert [f"{r.method} {r.url.path}" for r in seam.sent] == [f"GET /v2/refunds/{REFUND_ID}"]


def test_a_refund_without_its_id_is_found_among_the_payment_s_refunds() -> None:
    mine = refund("PENDING", id="R-MINE", reason="duplicate [paymux re_abc123]")
    seller = refund("COMPLETED", id="R-SELLER", reason="Broken")
    seam = SquareSeam({
        f"GET /v2/payments/{PAYMENT_ID}": {"payment": payment(
            "COMPLETED", id=PAYMENT_ID, refund_ids=["R-SELLER", "R-MINE"])},
        "GET /v2/refunds/R-SELLER": {"refund": seller},
        "GET /v2/refunds/R-MINE": {"refund": mine},
    })
    found = _drive(seam, lambda g: g.retrieve_refund(None, our_id="re_abc123",
                                                    payment_reference=PAYMENT_ID))
    assert (found.reference, found.status, found.our_id) == ("R-MINE", "pending", "re_abc123")


def test_a_refund_not_yet_on_the_payment_is_found_in_the_recent_refunds_else_none() -> None:
    mine = refund("PENDING", id="R-MINE", reason="duplicate [paymux re_abc123]")
    elsewhere = refund("PENDING", id="R-ELSE", payment_id="OTHER",
                       reason="duplicate [paymux re_abc123]")
    routes = {f"GET /v2/payments/{PAYMENT_ID}": {"payment": payment("COMPLETED", id=PAYMENT_ID)},
              "GET /v2/refunds": [{"refunds": [elsewhere], "cursor": "c2"}, {"refunds": [mine]}]}
    seam = SquareSeam(routes)
    found = _drive(seam, lambda g: g.retrieve_refund(None, our_id="re_abc123",
                                                    payment_reference=PAYMENT_ID))
    assert found is not None and found.reference == "R-MINE"
    listed = [dict(r.url.params) for r in seam.sent if r.url.path == "/v2/refunds"]
    assert [p.get("cursor") for p in listed] == [None, "c2"]
    assert listed[0]["sort_order"] == "DESC" and listed[0]["location_id"] == "L88917AVBK2S5"
    nothing = SquareSeam({f"GET /v2/payments/{PAYMENT_ID}": {"payment": payment(
        "COMPLETED", id=PAYMENT_ID)}, "GET /v2/refunds": [{}]})
    assert _drive(nothing, lambda g: g.retrieve_refund(None, our_id="re_abc123",
                                                      payment_reference=PAYMENT_ID)) is None


def test_the_gateway_verifies_a_webhook_against_its_notification_url() -> None:
    gateway = SquareGateway("EAAAtest", webhook_signature_keys=[KEY], webhook_url=URL,
                            http_client=_offline())
    body = copy.deepcopy(EVENT)
    verified = asyncio.run(gateway.verify_webhook(webhooks.signed_headers(KEY, URL, body), body))
    assert (verified.gateway, verified.type) == ("square", "payment.updated")
    assert verified.event_id == "13b867cf-db3d-4b1c-90b6-2f32a9d78124"
    assert isinstance(gateway.interpret_event(verified), PaymentUpdate)
