"""The Stripe rows of the error table: every code Stripe documents maps onto ours, with advice."""

from __future__ import annotations

from pathlib import Path

import pytest

from paymux.domain.errors import (
    DECLINE_CODES,
    ERRORS,
    GATEWAY_CODES,
    Action,
    ErrorType,
    card_error,
)
from paymux.gateways.connectors import connectors
from support import stripe_docs

connectors()  # registers each connector's code rows, as a running paymux has them

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "errors.md").read_text()


@pytest.mark.parametrize("code", stripe_docs.DECLINE_CODES)
def test_every_documented_decline_code_maps_to_a_card_error_with_a_decline_code(code: str) -> None:
    row = GATEWAY_CODES[("stripe", code)]
    assert ERRORS[row.code].type is ErrorType.CARD_ERROR
    assert row.decline_code in DECLINE_CODES
    error = card_error("stripe", code, "Stripe's own message, for developers")
    assert error.http_status == 402
    assert error.decline_code == row.decline_code
    assert error.user_message and error.user_message.strip()
    assert error.action is not Action.NONE
    assert (error.gateway, error.gateway_code) == ("stripe", code)
    assert error.message == "Stripe's own message, for developers"


@pytest.mark.parametrize("code", stripe_docs.CARD_ERROR_CODES)
def test_every_card_error_code_maps_to_a_known_code_with_advice(code: str) -> None:
    row = GATEWAY_CODES[("stripe", code)]
    assert row.code in ERRORS
    assert row.decline_code is None or row.decline_code in DECLINE_CODES
    error = card_error("stripe", code)
    assert error.user_message and error.action is not Action.NONE


@pytest.mark.parametrize(
    ("stripe_code", "code", "decline_code"),
    [
        ("card_declined", "card_declined", "generic_decline"),
        ("generic_decline", "card_declined", "generic_decline"),
        ("insufficient_funds", "card_declined", "insufficient_funds"),
        ("expired_card", "expired_card", "expired_card"),
        ("incorrect_cvc", "incorrect_cvc", "incorrect_cvc"),
        ("invalid_cvc", "incorrect_cvc", "incorrect_cvc"),
        ("incorrect_number", "incorrect_number", "incorrect_number"),
        ("invalid_number", "incorrect_number", "incorrect_number"),
        ("incorrect_zip", "incorrect_zip", "incorrect_zip"),
        ("processing_error", "processing_error", "processing_error"),
        ("authentication_required", "authentication_required", "authentication_required"),
        ("authentication_not_handled", "authentication_required", "authentication_required"),
        ("payment_intent_authentication_failure", "payment_intent_authentication_failure", None),
        ("rate_limit", "rate_limit", None),
        ("invalid_pin", "card_declined", "incorrect_pin"),
        ("lost_card", "card_declined", "lost_card"),
        ("card_decline_rate_limit_exceeded", "card_declined", "card_decline_rate_limit_exceeded"),
    ],
)
def test_stripe_codes_land_on_the_matching_code_of_ours(
    stripe_code: str, code: str, decline_code: str | None
) -> None:
    row = GATEWAY_CODES[("stripe", stripe_code)]
    assert (row.code, row.decline_code) == (code, decline_code)


@pytest.mark.parametrize("code", stripe_docs.HARD_DECLINES)
def test_hard_declines_are_never_retried(code: str) -> None:
    error = card_error("stripe", code)
    assert not error.retryable
    assert error.action in (Action.USE_ANOTHER_METHOD, Action.CONTACT_ISSUER)


@pytest.mark.parametrize("code", stripe_docs.RETRY_LATER_DECLINES)
def test_issuer_unavailable_declines_are_retried_later(code: str) -> None:
    error = card_error("stripe", code)
    assert error.retryable and error.action is Action.RETRY_LATER


@pytest.mark.parametrize(
    "code", ["fraudulent", "lost_card", "stolen_card", "merchant_blacklist", "pickup_card"]
)
def test_fraud_related_declines_look_generic_to_the_payer(code: str) -> None:
    """Stripe's advice: tell the payer only that the card was declined."""
    message = (card_error("stripe", code).user_message or "").lower()
    for word in ("lost", "stolen", "fraud", "block"):
        assert word not in message


def test_the_stripe_rows_are_exactly_the_documented_codes() -> None:
    documented = set(stripe_docs.DECLINE_CODES) | set(stripe_docs.CARD_ERROR_CODES)
    ours = {gateway_code for gateway, gateway_code in GATEWAY_CODES if gateway == "stripe"}
    assert ours == documented


@pytest.mark.parametrize(
    "code", sorted(set(stripe_docs.DECLINE_CODES) | set(stripe_docs.CARD_ERROR_CODES))
)
def test_docs_errors_md_has_a_stripe_row_for_each_code(code: str) -> None:
    row = GATEWAY_CODES[("stripe", code)]
    decline = f"`{row.decline_code}`" if row.decline_code else ""
    assert f"| stripe | `{code}` | `{row.code}` | {decline} |" in DOCS


def test_an_undocumented_stripe_code_is_still_a_generic_decline() -> None:
    error = card_error("stripe", "some_future_code")
    assert (error.code, error.decline_code) == ("card_declined", "generic_decline")
    assert error.gateway_code == "some_future_code"
