"""PayPal's issues and processor response codes onto ours.

Each row: (the PayPal code, our code in ``ERRORS``, our decline code in ``DECLINE_CODES`` or
None). ``spec.py``'s ``CONNECTOR`` registers them into ``paymux.domain.errors`` (see
``register_gateway_codes``); ``docs/errors.md`` lists them.
"""

from __future__ import annotations

__all__ = ["ROWS"]

# PayPal: the payer-side issues of Orders v2 / Payments v2 422 answers (details[].issue), a
# refused capture or authorization (status DECLINED, FAILED, DENIED when PayPal gives no
# processor code), and the card processor_response.response_code values PayPal documents.
# Other 4xx issues (AUTHORIZATION_EXPIRED, MAX_CAPTURE_AMOUNT_EXCEEDED, DUPLICATE_INVOICE_ID,
# PAYEE_ACCOUNT_RESTRICTED, ...) are the merchant's problem, not the payer's: they are
# answered as gateway_invalid_request with the issue in gateway_code, so they have no row.
_TOO_MANY_DECLINES = "card_decline_rate_limit_exceeded"
ROWS: list[tuple[str, str, str | None]] = [
    ("INSTRUMENT_DECLINED", "card_declined", "generic_decline"),
    ("REDIRECT_PAYER_FOR_ALTERNATE_FUNDING", "card_declined", "generic_decline"),
    ("TRANSACTION_REFUSED", "card_declined", "generic_decline"),
    ("PAYER_ACTION_REQUIRED", "authentication_required", "authentication_required"),
    ("ORDER_NOT_APPROVED", "authentication_required", None),
    ("PAYER_CANNOT_PAY", "card_declined", "transaction_not_allowed"),
    ("PAYER_ACCOUNT_RESTRICTED", "card_declined", "restricted_card"),
    ("PAYER_ACCOUNT_LOCKED_OR_CLOSED", "card_declined", "invalid_account"),
    ("COMPLIANCE_VIOLATION", "card_declined", "transaction_not_allowed"),
    ("TRANSACTION_BLOCKED_BY_PAYEE", "card_declined", "merchant_blacklist"),
    ("TRANSACTION_LIMIT_EXCEEDED", "card_declined", "card_velocity_exceeded"),
    ("MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED", "card_declined", _TOO_MANY_DECLINES),
    ("CARD_EXPIRED", "expired_card", "expired_card"),
    ("CARD_TYPE_NOT_SUPPORTED", "card_declined", "card_not_supported"),
    ("CURRENCY_NOT_SUPPORTED_FOR_CARD_TYPE", "card_declined", "currency_not_supported"),
    ("DECLINED", "card_declined", "generic_decline"),
    ("DENIED", "card_declined", "generic_decline"),
    ("FAILED", "processing_error", "processing_error"),
    ("0500", "card_declined", "do_not_honor"),
    ("5100", "card_declined", "generic_decline"),
    ("5110", "incorrect_cvc", "incorrect_cvc"),
    ("00N7", "incorrect_cvc", "incorrect_cvc"),
    ("5120", "card_declined", "insufficient_funds"),
    ("5140", "card_declined", "invalid_account"),
    ("5150", "card_declined", "pickup_card"),
    ("5170", "incorrect_zip", "incorrect_zip"),
    ("5180", "card_declined", "restricted_card"),
    ("5200", "card_declined", "duplicate_transaction"),
    ("5400", "expired_card", "expired_card"),
    ("5650", "authentication_required", "authentication_required"),
    # paymux's own: PayPal's 3-D Secure result says not to continue (transformers.py
    # authentication_refusal), so the order was never captured or authorized.
    ("PAYMUX_3DS_NOT_AUTHENTICATED", "payment_intent_authentication_failure", None),
    ("5700", "card_declined", "transaction_not_allowed"),
    ("9100", "card_declined", "try_again_later"),
    ("9500", "card_declined", "fraudulent"),
    ("9510", "card_declined", "security_violation"),
    ("9520", "card_declined", "lost_card"),
]
