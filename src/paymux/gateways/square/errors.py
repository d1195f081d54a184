"""Square's error codes onto ours.

Each row: (the Square code, our code in ``ERRORS``, our decline code in ``DECLINE_CODES`` or
None). ``spec.py``'s ``CONNECTOR`` registers them into ``paymux.domain.errors`` (see
``register_gateway_codes``); ``docs/errors.md`` lists them.
"""

from __future__ import annotations

__all__ = ["ROWS"]

# Square: the codes of the ErrorCode enum in Square's api.json that CreatePayment and CreateCard
# answer with (developer.squareup.com/docs/payments-api/error-codes), card-present ones
# included. The Square code itself stays in ``gateway_code``. Square reports expired or reused
# Web Payments SDK tokens as errors too: the payer fixes them by entering the card again, so
# they are a retryable generic decline. TEMPORARY_ERROR and RATE_LIMITED arrive as 5xx/429 and
# are retried by paymux; their rows only name them when Square reports them on a payment.
ROWS: list[tuple[str, str, str | None]] = [
    ("GENERIC_DECLINE", "card_declined", "generic_decline"),
    ("CARD_DECLINED", "card_declined", "generic_decline"),
    ("READER_DECLINED", "card_declined", "generic_decline"),
    ("BUYER_REFUSED_PAYMENT", "card_declined", "generic_decline"),
    ("INVALID_FEES", "card_declined", "generic_decline"),
    ("INVALID_ENCRYPTED_CARD", "card_declined", "generic_decline"),
    ("CARD_TOKEN_EXPIRED", "card_declined", "generic_decline"),
    ("CARD_TOKEN_USED", "card_declined", "generic_decline"),
    ("SOURCE_EXPIRED", "card_declined", "generic_decline"),
    ("SOURCE_USED", "card_declined", "generic_decline"),
    ("CVV_FAILURE", "incorrect_cvc", "incorrect_cvc"),
    ("VERIFY_CVV_FAILURE", "incorrect_cvc", "incorrect_cvc"),
    ("ADDRESS_VERIFICATION_FAILURE", "incorrect_zip", "incorrect_zip"),
    ("VERIFY_AVS_FAILURE", "incorrect_zip", "incorrect_zip"),
    ("INVALID_POSTAL_CODE", "incorrect_zip", "incorrect_zip"),
    ("INVALID_EXPIRATION", "card_declined", "invalid_expiry_date"),
    ("INVALID_EXPIRATION_DATE", "card_declined", "invalid_expiry_date"),
    ("INVALID_EXPIRATION_YEAR", "card_declined", "invalid_expiry_year"),
    ("BAD_EXPIRATION", "card_declined", "invalid_expiry_date"),
    ("EXPIRATION_FAILURE", "card_declined", "invalid_expiry_date"),
    ("CARD_EXPIRED", "expired_card", "expired_card"),
    ("INSUFFICIENT_FUNDS", "card_declined", "insufficient_funds"),
    ("GIFT_CARD_AVAILABLE_AMOUNT", "card_declined", "insufficient_funds"),
    ("TRANSACTION_LIMIT", "card_declined", "card_velocity_exceeded"),
    ("CARD_DECLINED_VERIFICATION_REQUIRED", "authentication_required", "authentication_required"),
    ("CARD_DECLINED_CALL_ISSUER", "card_declined", "call_issuer"),
    ("VOICE_FAILURE", "card_declined", "call_issuer"),
    ("INVALID_ACCOUNT", "card_declined", "invalid_account"),
    ("ACCOUNT_UNUSABLE", "card_declined", "invalid_account"),
    ("INVALID_CARD", "card_declined", "invalid_account"),
    ("INVALID_CARD_DATA", "incorrect_number", "incorrect_number"),
    ("PAN_FAILURE", "incorrect_number", "incorrect_number"),
    ("CARD_NOT_SUPPORTED", "card_declined", "card_not_supported"),
    ("UNSUPPORTED_CARD_BRAND", "card_declined", "card_not_supported"),
    ("UNSUPPORTED_ENTRY_METHOD", "card_declined", "card_not_supported"),
    ("MANUALLY_ENTERED_PAYMENT_NOT_SUPPORTED", "card_declined", "card_not_supported"),
    ("CARD_PRESENCE_REQUIRED", "card_declined", "card_not_supported"),
    ("CHIP_INSERTION_REQUIRED", "card_declined", "card_not_supported"),
    ("CARDHOLDER_INSUFFICIENT_PERMISSIONS", "card_declined", "restricted_card"),
    ("CURRENCY_MISMATCH", "card_declined", "currency_not_supported"),
    ("INVALID_PIN", "card_declined", "incorrect_pin"),
    ("MISSING_PIN", "card_declined", "online_or_offline_pin_required"),
    ("APPLE_TTP_PIN_TOKEN", "card_declined", "online_or_offline_pin_required"),
    ("ALLOWABLE_PIN_TRIES_EXCEEDED", "card_declined", "pin_try_exceeded"),
    ("PAYMENT_LIMIT_EXCEEDED", "card_declined", "invalid_amount"),
    ("AMOUNT_TOO_HIGH", "card_declined", "invalid_amount"),
    ("AMOUNT_TOO_LOW", "card_declined", "invalid_amount"),
    ("PAYMENT_AMOUNT_MISMATCH", "card_declined", "invalid_amount"),
    ("INSUFFICIENT_PERMISSIONS", "card_declined", "not_permitted"),
    ("INVALID_LOCATION", "card_declined", "not_permitted"),
    ("INVALID_EMAIL_ADDRESS", "parameter_invalid", None),
    ("INVALID_PHONE_NUMBER", "parameter_invalid", None),
    ("TEMPORARY_ERROR", "processing_error", "processing_error"),
    ("RATE_LIMITED", "rate_limit", None),
]
