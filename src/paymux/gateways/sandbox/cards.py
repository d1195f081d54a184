"""The sandbox's test cards: Stripe's test numbers, its ``pm_card_*`` and ``tok_*`` test
tokens, and what each does.

A test token is shared by everyone, as Stripe's are: each use makes a payment method of its
own (the processor mints a fresh token from it), so attaching one use to a customer leaves
every other use free.

A number is only ever used here to pick a scenario at tokenization time; the sandbox keeps
the scenario, brand and last four digits, never the number.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MAGIC_TOKENS", "TEST_CARDS", "Scenario", "TestCard", "brand_of", "card_for_number"]


class Scenario(StrEnum):
    SUCCEED = "succeed"
    DECLINE = "decline"  # declined when charged, and when attached to a customer
    DECLINE_ON_CHARGE = "decline_on_charge"  # attaching succeeds, charging fails
    PROCESSING_ERROR = "processing_error"  # transient: not stored against the idempotency key
    THREEDS_UNLESS_SETUP = "threeds_unless_setup"
    THREEDS_ALWAYS = "threeds_always"
    THREEDS_THEN_DECLINE = "threeds_then_decline"
    BLOCKED = "blocked"
    REFUND_PENDING = "refund_pending"  # refunds stay pending, then succeed by webhook
    REFUND_FAILS = "refund_fails"  # refunds succeed, then fail by webhook


@dataclass(frozen=True, slots=True)
class TestCard:
    __test__ = False  # not a pytest class

    number: str
    brand: str
    scenario: Scenario
    decline_code: str | None = None
    risk_level: str = "normal"
    funding: str = "credit"
    country: str = "US"
    description: str = ""
    # The checks made when the card is tokenized (Stripe's ``card.checks``): a failing CVC
    # or address check, else ``pass`` (the postal code only when one was given; no address
    # line is ever given to the sandbox, so its check is None but on the cards that fail it).
    cvc_check: str = "pass"
    address_line1_check: str | None = None
    address_zip_check: str = "pass"


_CARDS = [
    TestCard("4242424242424242", "visa", Scenario.SUCCEED, description="succeeds"),
    TestCard(
        "4000056655665556",
        "visa",
        Scenario.SUCCEED,
        funding="debit",
        description="succeeds (debit)",
    ),
    TestCard("5555555555554444", "mastercard", Scenario.SUCCEED, description="succeeds"),
    TestCard("378282246310005", "amex", Scenario.SUCCEED, description="succeeds"),
    TestCard("6011111111111117", "discover", Scenario.SUCCEED, description="succeeds"),
    TestCard(
        "4000000000000002",
        "visa",
        Scenario.DECLINE,
        "generic_decline",
        description="card_declined / generic_decline",
    ),
    TestCard(
        "4000000000009995",
        "visa",
        Scenario.DECLINE,
        "insufficient_funds",
        description="card_declined / insufficient_funds",
    ),
    TestCard(
        "4000000000009987",
        "visa",
        Scenario.DECLINE,
        "lost_card",
        description="card_declined / lost_card",
    ),
    TestCard(
        "4000000000009979",
        "visa",
        Scenario.DECLINE,
        "stolen_card",
        description="card_declined / stolen_card",
    ),
    TestCard(
        "4000000000000069", "visa", Scenario.DECLINE, "expired_card", description="expired_card"
    ),
    TestCard(
        "4000000000000127",
        "visa",
        Scenario.DECLINE,
        "incorrect_cvc",
        description="incorrect_cvc (cvc_check fails and is enforced)",
        cvc_check="fail",
    ),
    TestCard(
        "4000000000000036",
        "visa",
        Scenario.DECLINE,
        "incorrect_zip",
        description="incorrect_zip (address_zip_check fails and is enforced)",
        address_zip_check="fail",
    ),
    TestCard(
        "4000000000000101",
        "visa",
        Scenario.SUCCEED,
        description="cvc_check fails, the payment succeeds",
        cvc_check="fail",
    ),
    TestCard(
        "4000000000000010",
        "visa",
        Scenario.SUCCEED,
        description="address_line1_check and address_zip_check fail, the payment succeeds",
        address_line1_check="fail",
        address_zip_check="fail",
    ),
    TestCard(
        "4000000000000028",
        "visa",
        Scenario.SUCCEED,
        description="address_line1_check fails, the payment succeeds",
        address_line1_check="fail",
    ),
    TestCard(
        "4000000000000119",
        "visa",
        Scenario.PROCESSING_ERROR,
        "processing_error",
        description="processing_error (paymux retries, then gives up)",
    ),
    TestCard(
        "4000000000000341",
        "visa",
        Scenario.DECLINE_ON_CHARGE,
        "generic_decline",
        description="attaching to a customer succeeds, charging fails",
    ),
    TestCard(
        "4000002500003155",
        "visa",
        Scenario.THREEDS_UNLESS_SETUP,
        description="3DS required unless set up for off-session use",
    ),
    TestCard(
        "4000002760003184", "visa", Scenario.THREEDS_ALWAYS, description="3DS always required"
    ),
    TestCard(
        "4000000000003220",
        "visa",
        Scenario.THREEDS_ALWAYS,
        description="3DS2 challenge must be completed",
    ),
    TestCard(
        "4000008260003178",
        "visa",
        Scenario.THREEDS_THEN_DECLINE,
        "insufficient_funds",
        description="3DS succeeds, then insufficient_funds",
    ),
    TestCard(
        "4100000000000019",
        "visa",
        Scenario.BLOCKED,
        "fraudulent",
        risk_level="highest",
        description="risk highest, always blocked",
    ),
    TestCard(
        "4000000000004954",
        "visa",
        Scenario.BLOCKED,
        "fraudulent",
        risk_level="highest",
        description="risk highest (blocked)",
    ),
    TestCard(
        "4000000000009235",
        "visa",
        Scenario.SUCCEED,
        risk_level="elevated",
        description="risk elevated, succeeds",
    ),
    TestCard(
        "4000000000007726",
        "visa",
        Scenario.REFUND_PENDING,
        description="succeeds; refunds stay pending, then succeed",
    ),
    TestCard(
        "4000000000005126",
        "visa",
        Scenario.REFUND_FAILS,
        description="succeeds; refunds succeed, then fail",
    ),
]
TEST_CARDS: dict[str, TestCard] = {card.number: card for card in _CARDS}

MAGIC_TOKENS: dict[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_visa_debit": "4000056655665556",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_amex": "378282246310005",
    "pm_card_discover": "6011111111111117",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedIncorrectZip": "4000000000000036",
    "pm_card_cvcCheckFail": "4000000000000101",
    "pm_card_avsFail": "4000000000000010",
    "pm_card_avsLine1Fail": "4000000000000028",
    "pm_card_avsZipFail": "4000000000000036",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_chargeDeclinedFraudulent": "4100000000000019",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_authenticationRequiredOnSetup": "4000002500003155",
    "pm_card_threeDSecureRequired": "4000002760003184",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_threeDSecure2Required": "4000000000003220",
    "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds": "4000008260003178",
    "pm_card_radarBlock": "4100000000000019",
    "pm_card_riskLevelHighest": "4000000000004954",
    "pm_card_riskLevelElevated": "4000000000009235",
    "pm_card_pendingRefund": "4000000000007726",
    "pm_card_refundFail": "4000000000005126",
    # Stripe's older token shortcuts (docs.stripe.com/testing, "Tokens"): the same cards.
    "tok_visa": "4242424242424242",
    "tok_visa_debit": "4000056655665556",
    "tok_mastercard": "5555555555554444",
    "tok_amex": "378282246310005",
    "tok_discover": "6011111111111117",
    "tok_chargeDeclined": "4000000000000002",
    "tok_chargeDeclinedInsufficientFunds": "4000000000009995",
    "tok_chargeDeclinedLostCard": "4000000000009987",
    "tok_chargeDeclinedStolenCard": "4000000000009979",
    "tok_chargeDeclinedExpiredCard": "4000000000000069",
    "tok_chargeDeclinedIncorrectCvc": "4000000000000127",
    "tok_chargeDeclinedProcessingError": "4000000000000119",
    "tok_chargeDeclinedFraudulent": "4100000000000019",
    "tok_chargeCustomerFail": "4000000000000341",
    "tok_radarBlock": "4100000000000019",
    "tok_riskLevelHighest": "4000000000004954",
    "tok_riskLevelElevated": "4000000000009235",
    "tok_cvcCheckFail": "4000000000000101",
    "tok_avsFail": "4000000000000010",
    "tok_avsLine1Fail": "4000000000000028",
    "tok_avsZipFail": "4000000000000036",
}


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    if number.startswith(("6011", "65")):
        return "discover"
    return "unknown"


def card_for_number(number: str) -> TestCard:
    """The test card for a number; any other Luhn-valid number simply succeeds."""
    return TEST_CARDS.get(number) or TestCard(number, brand_of(number), Scenario.SUCCEED)
