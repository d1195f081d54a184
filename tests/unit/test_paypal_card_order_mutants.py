"""``card_order_request`` (the order PayPal's card fields pay), found without a unit test by
mutation testing (docs/mutation.md): every mutant of it survived, as no unit test called it.
Expected bodies are written out by hand from PayPal's Orders v2 shape
(``payment_source.card.attributes.verification.method``: SCA_ALWAYS or SCA_WHEN_REQUIRED)."""

from __future__ import annotations

import pytest

from paymux.gateways.paypal import transformers as pp
from paymux.money import Money


def body(intent: str, amount: dict[str, str], reference: str, method: str) -> dict[str, object]:
    return {
        "intent": intent,
        "purchase_units": [{"amount": amount, "custom_id": reference}],
        "payment_source": {"card": {"attributes": {"verification": {"method": method}}}},
    }


def test_a_capture_order_asks_3ds_when_required_by_default() -> None:
    order = pp.card_order_request(Money(2599, "EUR"), "pi_cardfields1", True, None)
    assert order == body(
        "CAPTURE", {"currency_code": "EUR", "value": "25.99"}, "pi_cardfields1", "SCA_WHEN_REQUIRED"
    )


def test_a_manual_capture_order_is_an_authorize_order() -> None:
    order = pp.card_order_request(Money(700, "USD"), "pi_cardfields2", False, None)
    assert order == body(
        "AUTHORIZE",
        {"currency_code": "USD", "value": "7.00"},
        "pi_cardfields2",
        "SCA_WHEN_REQUIRED",
    )


@pytest.mark.parametrize(
    ("option", "method"),
    [
        ("any", "SCA_ALWAYS"),
        ("challenge", "SCA_ALWAYS"),
        ("automatic", "SCA_WHEN_REQUIRED"),
        ("", "SCA_WHEN_REQUIRED"),  # no option: PayPal's default of the fields
        ("sometimes", "SCA_WHEN_REQUIRED"),  # an option PayPal has no method for
    ],
)
def test_the_3ds_option_picks_the_verification_method(option: str, method: str) -> None:
    order = pp.card_order_request(Money(1000, "GBP"), "pi_cardfields3", True, option)
    assert order == body(
        "CAPTURE", {"currency_code": "GBP", "value": "10.00"}, "pi_cardfields3", method
    )
