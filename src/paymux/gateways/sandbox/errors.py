"""The sandbox's decline codes onto ours.

Each row: (the sandbox's code, our code in ``ERRORS``, our decline code in ``DECLINE_CODES`` or
None). ``spec.py``'s ``CONNECTOR`` registers them into ``paymux.domain.errors`` (see
``register_gateway_codes``); ``docs/errors.md`` lists them.
"""

from __future__ import annotations

__all__ = ["ROWS"]

# The built-in sandbox speaks Stripe's codes, so its rows are one-to-one.
ROWS: list[tuple[str, str, str | None]] = [
    ("card_declined", "card_declined", "generic_decline"),
    ("generic_decline", "card_declined", "generic_decline"),
    ("do_not_honor", "card_declined", "do_not_honor"),
    ("insufficient_funds", "card_declined", "insufficient_funds"),
    ("lost_card", "card_declined", "lost_card"),
    ("stolen_card", "card_declined", "stolen_card"),
    ("fraudulent", "card_declined", "fraudulent"),
    ("pickup_card", "card_declined", "pickup_card"),
    ("restricted_card", "card_declined", "restricted_card"),
    ("expired_card", "expired_card", "expired_card"),
    ("incorrect_cvc", "incorrect_cvc", "incorrect_cvc"),
    ("incorrect_number", "incorrect_number", None),
    ("incorrect_zip", "incorrect_zip", "incorrect_zip"),
    ("processing_error", "processing_error", "processing_error"),
    ("authentication_required", "authentication_required", "authentication_required"),
    ("authentication_failed", "payment_intent_authentication_failure", None),
    ("rate_limit", "rate_limit", None),
]
