"""Edge cases of paymux.domain.errors and paymux.domain.events found by mutation testing.

Each test pins a behaviour that a surviving mutmut mutant showed no other unit test checked:
a gateway's code table (registered at import by the connectors, so no test had called it
itself), the fallback row for an unmapped code, an unknown decline code, the card field of a
card error, and ``previous_attributes`` for nested values. Expected values are written out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paymux.domain import events
from paymux.domain.errors import (
    GATEWAY_CODES,
    Action,
    ErrorType,
    GatewayCode,
    PaymuxError,
    card_error,
    map_gateway_code,
    register_gateway_codes,
)

GW = "unit_test_gateway"  # gateway names no connector uses
GW2 = "unit_test_gateway_2"


@pytest.fixture(autouse=True)
def _no_test_rows_left() -> Iterator[None]:
    yield
    register_gateway_codes(GW, [])
    register_gateway_codes(GW2, [])


def rows_of(gateway: str) -> dict[tuple[str, str], GatewayCode]:
    return {key: row for key, row in GATEWAY_CODES.items() if key[0] == gateway}


# -- register_gateway_codes ---------------------------------------------------------------------
def test_registered_rows_are_the_gateway_s_table() -> None:
    register_gateway_codes(
        GW, [("R01", "card_declined", "do_not_honor"), ("R02", "expired_card", None)]
    )
    assert rows_of(GW) == {
        (GW, "R01"): GatewayCode(GW, "R01", "card_declined", "do_not_honor"),
        (GW, "R02"): GatewayCode(GW, "R02", "expired_card", None),
    }
    assert map_gateway_code(GW, "R02") == GatewayCode(GW, "R02", "expired_card", None)


def test_registering_again_replaces_only_that_gateway_s_rows() -> None:
    register_gateway_codes(GW2, [("R01", "expired_card", None)])
    others = {key: row for key, row in GATEWAY_CODES.items() if key[0] != GW}
    assert others[(GW2, "R01")] == GatewayCode(GW2, "R01", "expired_card", None)
    register_gateway_codes(GW, [("R01", "card_declined", "do_not_honor")])
    register_gateway_codes(GW, [("R03", "incorrect_cvc", None)])
    assert rows_of(GW) == {(GW, "R03"): GatewayCode(GW, "R03", "incorrect_cvc", None)}
    assert {key: row for key, row in GATEWAY_CODES.items() if key[0] != GW} == others
    register_gateway_codes(GW, [])
    assert rows_of(GW) == {}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [("R01", "card_declined", None), ("R09", "no_such_code", None)],
            "unit_test_gateway code 'R09': 'no_such_code' is not an error code",
        ),
        (
            [("R01", "card_declined", "no_such_decline")],
            "unit_test_gateway code 'R01': 'no_such_decline' is not a decline code",
        ),
        (
            [("R01", "card_declined", None), ("R01", "expired_card", None)],
            "unit_test_gateway code 'R01' has two rows",
        ),
    ],
)
def test_a_bad_table_is_refused_and_changes_nothing(
    rows: list[tuple[str, str, str | None]], message: str
) -> None:
    register_gateway_codes(GW, [("R00", "card_declined", "generic_decline")])
    before = dict(GATEWAY_CODES)
    with pytest.raises(ValueError) as raised:
        register_gateway_codes(GW, rows)
    assert str(raised.value) == message
    assert GATEWAY_CODES == before


def test_an_unmapped_code_is_a_generic_decline_that_names_the_gateway_s_code() -> None:
    assert map_gateway_code(GW, "Z99") == GatewayCode(GW, "Z99", "card_declined", "generic_decline")


# -- PaymuxError ------------------------------------------------------------------------------
def test_the_exception_carries_the_message_as_its_argument() -> None:
    error = PaymuxError.of("card_declined", "No money.")
    assert error.args == ("No money.",)
    assert str(error) == "card_declined: No money."


def test_an_unknown_decline_code_keeps_the_error_code_s_advice() -> None:
    error = PaymuxError.of("expired_card", decline_code="not_a_known_decline_code")
    assert error.decline_code == "not_a_known_decline_code"
    assert (error.user_message, error.action, error.retryable) == (
        "Your card has expired. Please update your card details or use another card.",
        Action.UPDATE_CARD,
        False,
    )


def test_to_dict_names_the_action() -> None:
    body = PaymuxError.of("incorrect_cvc").to_dict()
    assert body["action"] == "update_card"
    assert body["type"] == "card_error"
    assert PaymuxError.of("card_declined").type is ErrorType.CARD_ERROR


def test_card_error_names_the_card_field_unless_given_one() -> None:
    register_gateway_codes(GW, [("CVV", "incorrect_cvc", None), ("DNH", "card_declined", None)])
    assert card_error(GW, "CVV").param == "cvc"
    assert card_error(GW, "CVV", param="payment_method_data[card][cvc]").param == (
        "payment_method_data[card][cvc]"
    )
    assert card_error(GW, "DNH").param is None  # a decline is about no one field


# -- events -----------------------------------------------------------------------------------
def test_t_builds_a_catalog_row() -> None:
    assert events._t("thing.happened", "thing", "A thing happened.") == events.EventType(
        type="thing.happened", object="thing", description="A thing happened."
    )


def test_catalog_rows_keep_their_fields() -> None:
    row = events.EVENT_CATALOG["payment_intent.succeeded"]
    assert (row.type, row.object, row.description) == (
        "payment_intent.succeeded",
        "payment_intent",
        "The payment succeeded.",
    )


def test_is_known() -> None:
    assert events.is_known("payment_intent.succeeded") is True
    assert events.is_known("customer.subscription.created") is True
    assert events.is_known("payment_intent.exploded") is False
    assert events.is_known("*") is False


def test_a_field_the_old_snapshot_lacked_does_not_stop_the_comparison() -> None:
    before = {"amount": 1000, "currency": "usd"}
    after = {"new_field": "x", "amount": 1500, "currency": "usd"}
    assert events.changed_attributes(before, after) == {"amount": 1000}


def test_a_field_that_became_a_hash_has_its_old_value() -> None:
    before = {"shipping": None, "description": "a"}
    after = {"shipping": {"name": "Jenny Rosen"}, "description": "a"}
    assert events.changed_attributes(before, after) == {"shipping": None}


def test_a_changed_hash_other_than_metadata_is_sent_whole() -> None:
    # Stripe sends a changed nested hash whole in previous_attributes; only metadata by key
    before = {"address": {"city": "Berlin", "line1": "Unter den Linden 1"}}
    after = {"address": {"city": "Paris", "line1": "Unter den Linden 1"}}
    assert events.changed_attributes(before, after) == {
        "address": {"city": "Berlin", "line1": "Unter den Linden 1"}
    }
    meta_before = {"metadata": {"order": "1", "keep": "k"}}
    meta_after = {"metadata": {"order": "2", "keep": "k", "new": "n"}}
    assert events.changed_attributes(meta_before, meta_after) == {
        "metadata": {"order": "1", "new": None}
    }
