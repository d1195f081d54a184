"""Stripe's decline and error codes onto ours.

Each row: (the Stripe code, our code in ``ERRORS``, our decline code in ``DECLINE_CODES`` or
None). ``spec.py``'s ``CONNECTOR`` registers them into ``paymux.domain.errors`` (see
``register_gateway_codes``); ``docs/errors.md`` lists them.
"""

from __future__ import annotations

__all__ = ["ROWS"]

# Stripe: every decline code on docs.stripe.com/declines/codes, then the error codes on
# docs.stripe.com/error-codes that are card errors. A Stripe synonym maps onto our one decline
# code (invalid_cvc -> incorrect_cvc); the Stripe code itself stays in ``gateway_code``.
ROWS: list[tuple[str, str, str | None]] = [
    ("approve_with_id", "card_declined", "approve_with_id"),
    ("authentication_not_handled", "authentication_required", "authentication_required"),
    ("authentication_required", "authentication_required", "authentication_required"),
    ("call_issuer", "card_declined", "call_issuer"),
    ("card_not_supported", "card_declined", "card_not_supported"),
    ("card_velocity_exceeded", "card_declined", "card_velocity_exceeded"),
    ("currency_not_supported", "card_declined", "currency_not_supported"),
    ("do_not_honor", "card_declined", "do_not_honor"),
    ("do_not_try_again", "card_declined", "do_not_try_again"),
    ("duplicate_transaction", "card_declined", "duplicate_transaction"),
    ("expired_card", "expired_card", "expired_card"),
    ("fraudulent", "card_declined", "fraudulent"),
    ("generic_decline", "card_declined", "generic_decline"),
    ("incorrect_address", "card_declined", "incorrect_address"),
    ("incorrect_cvc", "incorrect_cvc", "incorrect_cvc"),
    ("incorrect_number", "incorrect_number", "incorrect_number"),
    ("incorrect_pin", "card_declined", "incorrect_pin"),
    ("incorrect_zip", "incorrect_zip", "incorrect_zip"),
    ("insufficient_funds", "card_declined", "insufficient_funds"),
    ("invalid_account", "card_declined", "invalid_account"),
    ("invalid_amount", "card_declined", "invalid_amount"),
    ("invalid_cvc", "incorrect_cvc", "incorrect_cvc"),
    ("invalid_expiry_month", "card_declined", "invalid_expiry_month"),
    ("invalid_expiry_year", "card_declined", "invalid_expiry_year"),
    ("invalid_number", "incorrect_number", "incorrect_number"),
    ("invalid_pin", "card_declined", "incorrect_pin"),
    ("issuer_not_available", "card_declined", "issuer_not_available"),
    ("lost_card", "card_declined", "lost_card"),
    ("merchant_blacklist", "card_declined", "merchant_blacklist"),
    ("mobile_device_authentication_required", "authentication_required", "authentication_required"),
    ("new_account_information_available", "card_declined", "new_account_information_available"),
    ("no_action_taken", "card_declined", "no_action_taken"),
    ("not_permitted", "card_declined", "not_permitted"),
    ("offline_pin_required", "card_declined", "offline_pin_required"),
    ("online_or_offline_pin_required", "card_declined", "online_or_offline_pin_required"),
    ("pickup_card", "card_declined", "pickup_card"),
    ("pin_try_exceeded", "card_declined", "pin_try_exceeded"),
    ("processing_error", "processing_error", "processing_error"),
    ("reenter_transaction", "card_declined", "reenter_transaction"),
    ("restricted_card", "card_declined", "restricted_card"),
    ("revocation_of_all_authorizations", "card_declined", "revocation_of_all_authorizations"),
    ("revocation_of_authorization", "card_declined", "revocation_of_authorization"),
    ("security_violation", "card_declined", "security_violation"),
    ("service_not_allowed", "card_declined", "service_not_allowed"),
    ("stolen_card", "card_declined", "stolen_card"),
    ("stop_payment_order", "card_declined", "stop_payment_order"),
    ("testmode_decline", "card_declined", "testmode_decline"),
    ("transaction_not_allowed", "card_declined", "transaction_not_allowed"),
    ("try_again_later", "card_declined", "try_again_later"),
    ("withdrawal_count_limit_exceeded", "card_declined", "withdrawal_count_limit_exceeded"),
    # Error codes (error.code) that are not also decline codes.
    ("card_declined", "card_declined", "generic_decline"),
    ("card_decline_rate_limit_exceeded", "card_declined", "card_decline_rate_limit_exceeded"),
    ("payment_intent_authentication_failure", "payment_intent_authentication_failure", None),
    ("rate_limit", "rate_limit", None),
]
