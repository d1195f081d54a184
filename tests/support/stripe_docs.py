"""Stripe's documented codes, as the tests' independent reference for the Stripe error table.

``DECLINE_CODES``: the card decline codes on https://docs.stripe.com/declines/codes (the values
of ``error.decline_code`` / ``last_payment_error.decline_code``).
``CARD_ERROR_CODES``: the codes on https://docs.stripe.com/error-codes that a card payment can
fail with (the value of ``error.code``; several are also decline codes).
"""

from __future__ import annotations

__all__ = ["CARD_ERROR_CODES", "DECLINE_CODES", "HARD_DECLINES", "RETRY_LATER_DECLINES"]

DECLINE_CODES = (
    "approve_with_id",
    "authentication_not_handled",
    "authentication_required",
    "call_issuer",
    "card_not_supported",
    "card_velocity_exceeded",
    "currency_not_supported",
    "do_not_honor",
    "do_not_try_again",
    "duplicate_transaction",
    "expired_card",
    "fraudulent",
    "generic_decline",
    "incorrect_address",
    "incorrect_cvc",
    "incorrect_number",
    "incorrect_pin",
    "incorrect_zip",
    "insufficient_funds",
    "invalid_account",
    "invalid_amount",
    "invalid_cvc",
    "invalid_expiry_month",
    "invalid_expiry_year",
    "invalid_number",
    "invalid_pin",
    "issuer_not_available",
    "lost_card",
    "merchant_blacklist",
    "mobile_device_authentication_required",
    "new_account_information_available",
    "no_action_taken",
    "not_permitted",
    "offline_pin_required",
    "online_or_offline_pin_required",
    "pickup_card",
    "pin_try_exceeded",
    "processing_error",
    "reenter_transaction",
    "restricted_card",
    "revocation_of_all_authorizations",
    "revocation_of_authorization",
    "security_violation",
    "service_not_allowed",
    "stolen_card",
    "stop_payment_order",
    "testmode_decline",
    "transaction_not_allowed",
    "try_again_later",
    "withdrawal_count_limit_exceeded",
)

CARD_ERROR_CODES = (
    "authentication_required",
    "card_decline_rate_limit_exceeded",
    "card_declined",
    "expired_card",
    "incorrect_cvc",
    "incorrect_number",
    "incorrect_zip",
    "invalid_cvc",
    "invalid_expiry_month",
    "invalid_expiry_year",
    "invalid_number",
    "payment_intent_authentication_failure",
    "processing_error",
    "rate_limit",
)

# Declines that must never be retried with the same card.
HARD_DECLINES = (
    "do_not_try_again",
    "fraudulent",
    "lost_card",
    "merchant_blacklist",
    "pickup_card",
    "pin_try_exceeded",
    "restricted_card",
    "revocation_of_all_authorizations",
    "revocation_of_authorization",
    "security_violation",
    "stolen_card",
    "stop_payment_order",
    "testmode_decline",
)

# Declines where the issuer could not answer: retry the same card a little later.
RETRY_LATER_DECLINES = ("issuer_not_available", "reenter_transaction", "try_again_later")
