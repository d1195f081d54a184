"""The error tables: complete, consistent, and the docs rendered from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from paymux.domain.errors import (
    DECLINE_CODES,
    ERRORS,
    GATEWAY_CODES,
    Action,
    ErrorType,
    PaymuxError,
    card_error,
    map_gateway_code,
)
from paymux.domain.errors_doc import render
from paymux.gateways.connectors import connectors
from paymux.gateways.sandbox.cards import TEST_CARDS

connectors()  # registers each connector's code rows, as a running paymux has them

ROOT = Path(__file__).resolve().parents[2]


def test_docs_errors_md_is_rendered_from_the_tables() -> None:
    assert (ROOT / "docs" / "errors.md").read_text() == render(), "run `make docs`"


@pytest.mark.parametrize("code", ["card_declined", "expired_card",
                                  "incorrect_cvc", "incorrect_number", "incorrect_zip",
                                  "processing_error", "authentication_required", "rate_limit"])
def test_the_issue_s_card_codes_are_all_in_the_table(code: str) -> None:
    assert code in ERRORS


def test_insufficient_funds_is_a_decline_code_of_card_declined_as_at_stripe() -> None:
    assert "insufficient_funds" not in ERRORS
    assert "insufficient_funds" in DECLINE_CODES
    funds = card_error("sandbox", "insufficient_funds")
    assert (funds.type, funds.code, funds.decline_code) == (
        "card_error", "card_declined", "insufficient_funds"
    )


@pytest.mark.parametrize("decline", ["generic_decline", "do_not_honor", "lost_card",
                                     "stolen_card", "fraudulent", "pickup_card",
                                     "restricted_card"])
def test_the_issue_s_decline_codes_are_all_in_the_table(decline: str) -> None:
    assert decline in DECLINE_CODES


def test_every_card_error_has_a_message_safe_for_payers() -> None:
    for spec in ERRORS.values():
        if spec.type is ErrorType.CARD_ERROR:
            assert spec.user_message and spec.http_status == 402
    for decline in DECLINE_CODES.values():
        assert decline.user_message


def test_the_advice_follows_what_payers_need() -> None:
    assert PaymuxError.of("card_declined", decline_code="generic_decline").action is Action.RETRY
    funds = card_error("sandbox", "insufficient_funds")
    assert funds.action is Action.USE_ANOTHER_METHOD
    assert card_error("sandbox", "expired_card").action is Action.UPDATE_CARD
    processing = card_error("sandbox", "processing_error")
    assert processing.retryable and processing.action is Action.RETRY
    assert PaymuxError.of("rate_limit").action is Action.RETRY_LATER
    lost = card_error("sandbox", "lost_card")
    assert lost.code == "card_declined" and lost.decline_code == "lost_card"
    assert not lost.retryable and lost.user_message == DECLINE_CODES["lost_card"].user_message


def test_gateway_rows_point_at_known_codes() -> None:
    for row in GATEWAY_CODES.values():
        assert row.code in ERRORS
        assert row.decline_code is None or row.decline_code in DECLINE_CODES


def test_every_sandbox_test_card_decline_code_is_mapped() -> None:
    for card in TEST_CARDS.values():
        if card.decline_code:
            assert ("sandbox", card.decline_code) in GATEWAY_CODES


def test_an_unmapped_gateway_code_is_a_generic_decline_that_keeps_the_gateway_code() -> None:
    row = map_gateway_code("sandbox", "something_new")
    assert (row.code, row.decline_code) == ("card_declined", "generic_decline")
    error = card_error("sandbox", "something_new")
    assert error.gateway_code == "something_new"


def test_the_error_object_has_every_field_of_the_api_contract() -> None:
    body = PaymuxError.of("amount_too_small", param="amount").to_dict()
    assert set(body) >= {"type", "code", "decline_code", "param", "message", "user_message",
                         "action", "retryable", "gateway", "gateway_code", "request_id"}
    assert body["type"] == "invalid_request_error" and body["param"] == "amount"
