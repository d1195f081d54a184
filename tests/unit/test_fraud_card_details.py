"""The card signals each gateway gives before paymux decides (issue 13): the BIN and the CVC
and address checks, read from each provider's documented shape into ``CardDetails``; the
sandbox processor's own tokenization keeps the BIN and the checks, never the number.

Expected values are the documents' own: Stripe's PaymentMethod ``card.checks``, Square's
Card ``bin``, PayPal's ``payment_source.card.bin_details.bin``, and the sandbox's card table
(README "Test cards")."""

from __future__ import annotations

from pathlib import Path

import pytest

from paymux.gateways.base import card_bin
from paymux.gateways.paypal import transformers as paypal
from paymux.gateways.sandbox import transformers as sandbox
from paymux.gateways.sandbox.processor import SandboxProcessor
from paymux.gateways.square import transformers as square
from paymux.gateways.stripe import transformers as stripe


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("424242", "424242"),
        ("45717360", "457173"),  # an 8-digit BIN: the first 6 only
        ("4000056655665556", "400005"),  # a whole number handed over: never more than 6
        (" 510510 ", "510510"),
        ("42424", None),
        ("4242a1", None),
        ("", None),
        (None, None),
        (424242, "424242"),
    ],
)
def test_a_bin_is_kept_as_its_first_6_digits_only(given: object, kept: str | None) -> None:
    assert card_bin(given) == kept


def test_stripe_s_card_checks_are_read_and_it_has_no_bin() -> None:
    pm = {
        "id": "pm_1Q0PsIJvEtkwdCNYMSaVuRz6",
        "object": "payment_method",
        "type": "card",
        "card": {
            "brand": "visa",
            "checks": {
                "address_line1_check": "unchecked",
                "address_postal_code_check": "pass",
                "cvc_check": "fail",
            },
            "country": "US",
            "exp_month": 8,
            "exp_year": 2026,
            "fingerprint": "mToisGZ01V71BCos",
            "funding": "credit",
            "last4": "4242",
        },
    }
    card = stripe.card_details(pm)
    assert (card.cvc_check, card.address_line1_check, card.address_zip_check) == (
        "fail",
        "unchecked",
        "pass",
    )
    assert card.bin is None
    bare = stripe.card_details({"id": "pm_2", "type": "card", "card": {"last4": "4242"}})
    assert (bare.cvc_check, bare.address_line1_check, bare.address_zip_check) == (None,) * 3


def test_square_s_card_bin_is_read() -> None:
    card = square.card_details(
        {
            "id": "ccof:uIbfJXhXETSP197M3GB",
            "card_brand": "VISA",
            "last_4": "1111",
            "exp_month": 11,
            "exp_year": 2028,
            "card_type": "CREDIT",
            "bin": "411111",
        }
    )
    assert (card.bin, card.last4, card.brand) == ("411111", "1111", "visa")
    assert square.card_details({"id": "ccof:2", "card_brand": "VISA"}).bin is None


def test_paypal_s_bin_details_are_read() -> None:
    order = {
        "id": "5O190127TN364715T",
        "payment_source": {
            "card": {
                "name": "Jo Doe",
                "last_digits": "7704",
                "expiry": "2028-02",
                "brand": "VISA",
                "type": "CREDIT",
                "bin_details": {"bin": "45717360", "issuing_bank": "Some Bank"},
            }
        },
    }
    card = paypal.card_details_from_order(order)
    assert (card.bin, card.last4, card.exp_month, card.exp_year) == ("457173", "7704", 2, 2028)
    wallet = paypal.card_details_from_order({"id": "O2", "payment_source": {"paypal": {}}})
    assert wallet.bin is None


@pytest.mark.parametrize(
    ("number", "postal", "expected"),
    [
        ("4242424242424242", "94107", ("424242", "pass", None, "pass")),
        ("4242424242424242", None, ("424242", "pass", None, None)),  # no postal code given
        ("4000000000000101", "94107", ("400000", "fail", None, "pass")),
        ("4000000000000010", "94107", ("400000", "pass", "fail", "fail")),
        ("4000000000000028", "94107", ("400000", "pass", "fail", "pass")),
        ("4000000000000036", "94107", ("400000", "pass", None, "fail")),
        ("4000000000000127", "94107", ("400000", "fail", None, "pass")),
        ("5555555555554444", "94107", ("555555", "pass", None, "pass")),
    ],
)
def test_the_sandbox_tokenizes_with_the_bin_and_the_checks_never_the_number(
    tmp_path: Path, number: str, postal: str | None, expected: tuple[str | None, ...]
) -> None:
    path = tmp_path / "sandbox.db"
    processor = SandboxProcessor(str(path))
    try:
        token = processor.tokenize(number, 12, 2031, postal)
        found = processor.describe(token)
        assert found is not None
        card = sandbox.card_details(found)
        got = (card.bin, card.cvc_check, card.address_line1_check, card.address_zip_check)
        assert got == expected
        assert card.last4 == number[-4:]
    finally:
        processor.close()
    stored = path.read_bytes()
    assert number.encode() not in stored and number[:12].encode() not in stored


def test_the_sandbox_s_check_failing_tokens_are_stripe_s(tmp_path: Path) -> None:
    tokens = {
        "pm_card_cvcCheckFail": ("fail", None, "pass"),
        "pm_card_avsFail": ("pass", "fail", "fail"),
        "pm_card_avsLine1Fail": ("pass", "fail", "pass"),
        "pm_card_avsZipFail": ("pass", None, "fail"),
        "tok_cvcCheckFail": ("fail", None, "pass"),
        "tok_avsFail": ("pass", "fail", "fail"),
        "tok_avsLine1Fail": ("pass", "fail", "pass"),
        "tok_avsZipFail": ("pass", None, "fail"),
    }
    processor = SandboxProcessor(str(tmp_path / "sandbox.db"))
    try:
        for token, checks in tokens.items():
            found = processor.describe(token)
            assert found is not None, token
            card = sandbox.card_details(found)
            got = (card.cvc_check, card.address_line1_check, card.address_zip_check)
            assert got == checks, token
            assert card.bin == "400000", token
    finally:
        processor.close()
