"""One error taxonomy for every API error and every card error on every gateway.

Three tables live here:

- ``ERRORS``: our error codes. Each has a type, an HTTP status, a developer message, a
  message safe to show a payer, the advice (``action``) and whether retrying can help.
- ``DECLINE_CODES``: the reasons behind ``card_declined``, with their own payer message and
  advice (a lost card must not be retried; a generic decline may be).
- ``GATEWAY_CODES``: each gateway's own codes mapped onto ours. The rows are the connectors'
  own (``paymux/gateways/<name>/errors.py``, a plugin's wherever it lives): discovering a
  connector (``paymux.gateways.connectors.connectors()``, which ``build_registry`` calls)
  registers them with ``register_gateway_codes``. Until then the table is empty and
  ``map_gateway_code`` answers every code as a generic decline.

``docs/errors.md`` is rendered from these tables, with every connector's rows (``make docs``:
``python -m paymux.gateways.errors_doc``) and a test fails when the two differ.

Exceptions: ``PaymuxError`` is the one root for errors that reach an API caller; it carries
the whole error object. Declines from gateways are *data* (``Decline``), turned into a
``PaymuxError`` only at the edge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "CARD_ERROR_PARAMS",
    "DECLINE_CODES",
    "ERRORS",
    "GATEWAY_CODES",
    "Action",
    "DeclineSpec",
    "ErrorSpec",
    "ErrorType",
    "GatewayCode",
    "GatewayCodeRow",
    "PaymuxError",
    "card_error",
    "map_gateway_code",
    "register_gateway_codes",
]


class ErrorType(StrEnum):
    CARD_ERROR = "card_error"
    INVALID_REQUEST_ERROR = "invalid_request_error"
    IDEMPOTENCY_ERROR = "idempotency_error"
    AUTHENTICATION_ERROR = "authentication_error"
    RATE_LIMIT_ERROR = "rate_limit_error"
    API_ERROR = "api_error"
    GATEWAY_ERROR = "gateway_error"


class Action(StrEnum):
    RETRY = "retry"
    USE_ANOTHER_METHOD = "use_another_method"
    UPDATE_CARD = "update_card"
    RETRY_LATER = "retry_later"
    CONTACT_ISSUER = "contact_issuer"
    AUTHENTICATE = "authenticate"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: str
    type: ErrorType
    http_status: int
    message: str
    user_message: str | None = None
    action: Action = Action.NONE
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class DeclineSpec:
    decline_code: str
    description: str
    user_message: str
    action: Action
    retryable: bool


_GENERIC_CARD_MSG = "Your card was declined. Please try again or use another payment method."
_INVALID = ErrorType.INVALID_REQUEST_ERROR

_ERROR_LIST = [
    # Card errors: HTTP 402, shown to payers.
    ErrorSpec(
        "card_declined",
        ErrorType.CARD_ERROR,
        402,
        "The card was declined.",
        _GENERIC_CARD_MSG,
        Action.RETRY,
        True,
    ),
    ErrorSpec(
        "expired_card",
        ErrorType.CARD_ERROR,
        402,
        "The card has expired.",
        "Your card has expired. Please update your card details or use another card.",
        Action.UPDATE_CARD,
        False,
    ),
    ErrorSpec(
        "incorrect_cvc",
        ErrorType.CARD_ERROR,
        402,
        "The card's security code is incorrect.",
        "Your card's security code is incorrect. Please check it and try again.",
        Action.UPDATE_CARD,
        False,
    ),
    ErrorSpec(
        "incorrect_number",
        ErrorType.CARD_ERROR,
        402,
        "The card number is incorrect.",
        "Your card number is incorrect. Please check it and try again.",
        Action.UPDATE_CARD,
        False,
    ),
    ErrorSpec(
        "incorrect_zip",
        ErrorType.CARD_ERROR,
        402,
        "The card's postal code failed validation.",
        "Your postal code does not match your card. Please check it and try again.",
        Action.UPDATE_CARD,
        False,
    ),
    ErrorSpec(
        "processing_error",
        ErrorType.CARD_ERROR,
        402,
        "An error occurred while processing the card; paymux retried with the same "
        "gateway idempotency key and gave up.",
        "We could not process your card right now. Please try again in a moment.",
        Action.RETRY,
        True,
    ),
    ErrorSpec(
        "authentication_required",
        ErrorType.CARD_ERROR,
        402,
        "The card requires authentication (3-D Secure) and the payment was off-session "
        "or the authentication failed.",
        "Your bank needs you to confirm this payment. Please authenticate and try again.",
        Action.AUTHENTICATE,
        False,
    ),
    ErrorSpec(
        "payment_intent_authentication_failure",
        ErrorType.CARD_ERROR,
        402,
        "3-D Secure authentication failed; the payment method was detached from the "
        "payment intent.",
        "We could not verify your card. Please try again or use another payment method.",
        Action.USE_ANOTHER_METHOD,
        True,
    ),
    # Invalid requests: HTTP 400 (404 for unknown objects).
    ErrorSpec("parameter_missing", _INVALID, 400, "A required parameter is missing."),
    ErrorSpec("parameter_invalid", _INVALID, 400, "A parameter has an invalid value."),
    ErrorSpec("parameter_unknown", _INVALID, 400, "The request has an unknown parameter."),
    ErrorSpec("parameters_exclusive", _INVALID, 400, "Two parameters cannot be used together."),
    ErrorSpec(
        "card_number_not_allowed",
        _INVALID,
        400,
        "A value that looks like a card number was sent. paymux never accepts card "
        "numbers: tokenize the card in the browser with the gateway's own components "
        "and send the token.",
    ),
    ErrorSpec(
        "amount_invalid",
        _INVALID,
        400,
        "The amount must be a positive integer in the currency's minor unit.",
    ),
    ErrorSpec(
        "amount_too_small",
        _INVALID,
        400,
        "The amount is below the minimum charge amount for the currency.",
    ),
    ErrorSpec(
        "amount_too_large",
        _INVALID,
        400,
        "The amount is above the maximum charge amount for the currency.",
    ),
    ErrorSpec(
        "amount_too_precise",
        _INVALID,
        400,
        "The decimal amount has more digits than the currency's minor unit allows.",
    ),
    ErrorSpec("currency_unknown", _INVALID, 400, "The currency is not an ISO 4217 currency."),
    ErrorSpec("currency_mismatch", _INVALID, 400, "The amounts are in different currencies."),
    ErrorSpec(
        "currency_not_supported", _INVALID, 400, "The gateway does not support this currency."
    ),
    ErrorSpec(
        "payment_intent_unexpected_state",
        _INVALID,
        400,
        "The payment intent is not in a state that allows this operation.",
    ),
    ErrorSpec(
        "setup_intent_unexpected_state",
        _INVALID,
        400,
        "The setup intent is not in a state that allows this operation.",
    ),
    ErrorSpec(
        "payment_intent_update_unsupported",
        _INVALID,
        400,
        "The gateway cannot change this of a payment it has already opened; cancel the "
        "PaymentIntent and create a new one.",
    ),
    ErrorSpec(
        "amount_to_capture_too_large",
        _INVALID,
        400,
        "The amount to capture is more than the amount capturable.",
    ),
    ErrorSpec(
        "charge_already_refunded", _INVALID, 400, "The payment has already been refunded in full."
    ),
    ErrorSpec(
        "refund_amount_too_large",
        _INVALID,
        400,
        "The refund amount is more than what remains to refund on the payment.",
    ),
    ErrorSpec(
        "payment_method_unexpected_state",
        _INVALID,
        400,
        "The payment method cannot be used this way (e.g. attached to another customer).",
    ),
    ErrorSpec(
        "payment_method_unknown",
        _INVALID,
        400,
        "The gateway does not know this payment method token.",
    ),
    ErrorSpec(
        "customer_required",
        _INVALID,
        400,
        "This operation needs a customer with the payment method attached.",
    ),
    ErrorSpec("gateway_unknown", _INVALID, 400, "No such gateway is configured."),
    ErrorSpec(
        "capability_not_supported",
        _INVALID,
        400,
        "The gateway this object goes through does not support this operation (its connector "
        "does not declare the capability, e.g. partial_capture or manual_capture).",
    ),
    ErrorSpec(
        "connection_in_use",
        _INVALID,
        409,
        "Payments or payment methods were made through this connection: disable it instead.",
    ),
    ErrorSpec(
        "connection_read_only",
        _INVALID,
        400,
        "This connection comes from the server's environment variables: change them there.",
    ),
    ErrorSpec(
        "encryption_not_configured",
        ErrorType.API_ERROR,
        400,
        "Storing gateway credentials needs PAYMUX_ENCRYPTION_KEYS on the server.",
    ),
    ErrorSpec(
        "job_unexpected_state",
        _INVALID,
        400,
        "The job is not in a state that allows this operation (only a dead job can be retried).",
    ),
    # Billing's state tables (billing/rules/states.py).
    ErrorSpec(
        "subscription_unexpected_state",
        _INVALID,
        400,
        "The subscription is not in a status that allows this operation.",
    ),
    ErrorSpec(
        "checkout_session_unexpected_state",
        _INVALID,
        400,
        "The checkout session is not in a status that allows this operation "
        "(open -> complete | expired).",
    ),
    ErrorSpec(
        "invoice_unexpected_state",
        _INVALID,
        400,
        "The invoice is not in a status that allows this operation "
        "(draft -> open -> paid | void | uncollectible).",
    ),
    ErrorSpec(
        "job_not_retryable",
        _INVALID,
        400,
        "Jobs of this kind are not retried as jobs; the message says what to do instead "
        "(a dead apply_webhook job: replay its webhook event).",
    ),
    ErrorSpec(
        "job_dedupe_conflict",
        _INVALID,
        409,
        "Another job with the same dedupe key is queued or running and does this work; "
        "the dead job was left as it is.",
    ),
    ErrorSpec("resource_missing", _INVALID, 404, "No such object."),
    # The billing catalog (billing/catalog.py).
    ErrorSpec(
        "resource_already_exists",
        _INVALID,
        400,
        "An object with this id already exists (a coupon's id is the merchant's own).",
    ),
    ErrorSpec(
        "resource_in_use",
        _INVALID,
        400,
        "Other objects use this one (a product with prices): archive it instead.",
    ),
    ErrorSpec(
        "coupon_expired",
        _INVALID,
        400,
        "The coupon can no longer be redeemed (its redeem_by passed, it reached its "
        "max_redemptions, or it was deleted).",
    ),
    ErrorSpec(
        "promotion_code_invalid",
        _INVALID,
        400,
        "The promotion code cannot be redeemed (inactive, expired, used up, or restricted "
        "to another customer).",
    ),
    ErrorSpec("url_invalid", _INVALID, 404, "Unrecognized request URL."),
    ErrorSpec("request_too_large", _INVALID, 413, "The request body is too large."),
    ErrorSpec(
        "body_too_deep",
        _INVALID,
        400,
        "The JSON body nests arrays and objects too deep, or a form or query parameter's "
        "name nests brackets too deep (32 levels at most).",
    ),
    ErrorSpec(
        "api_version_invalid",
        _INVALID,
        400,
        "The Stripe-Version header is not a Stripe API version (YYYY-MM-DD, optionally with "
        "its release name: 2025-03-31.basil), or names one Stripe never released "
        "(2099-01-01), as Stripe answers. paymux accepts every real version up to its own "
        "and answers in its one shape.",
    ),
    ErrorSpec(
        "credentials_in_query",
        _INVALID,
        400,
        "A credential (an API key, the admin key, a webhook secret or a bearer token) was "
        "sent in the query string, where logs and browser history keep it. Send keys only "
        "in the Authorization header.",
    ),
    # Idempotency.
    ErrorSpec(
        "idempotency_key_mismatch",
        ErrorType.IDEMPOTENCY_ERROR,
        400,
        "This Idempotency-Key was used with different parameters; keys are for "
        "retrying the same request.",
    ),
    ErrorSpec(
        "idempotency_key_in_use",
        ErrorType.IDEMPOTENCY_ERROR,
        409,
        "A request with this Idempotency-Key is still being processed; retry later.",
        action=Action.RETRY_LATER,
        retryable=True,
    ),
    # Authentication. Stripe answers a missing, unknown or expired key (and a publishable key
    # where a secret one is needed) 401 ``invalid_request_error``; the SDKs raise
    # AuthenticationError for the 401 whatever the type. paymux's codes are its own (Stripe
    # sends none): they stay as they were before the type followed Stripe's.
    ErrorSpec(
        "api_key_missing",
        _INVALID,
        401,
        "You did not provide an API key. You need to provide your API key in the "
        "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
        "YOUR_SECRET_KEY') or HTTP Basic auth with the key as the username and no password "
        "(e.g. 'curl -u sk_test_...:').",
    ),
    ErrorSpec(
        "api_key_invalid",
        _INVALID,
        401,
        "Invalid API Key provided: the key (shown masked, as sk_test_****abcd: its kind, "
        "mode and last 4 characters) is not one of this server's keys, or was revoked.",
    ),
    ErrorSpec(
        "api_key_expired",
        _INVALID,
        401,
        "Expired API Key provided: it was rolled and its grace period is over. Use the key "
        "it was rolled to.",
    ),
    ErrorSpec(
        "publishable_key_not_allowed",
        _INVALID,
        401,
        "This API call cannot be made with a publishable API key: a publishable key only "
        "retrieves and confirms a PaymentIntent with its client_secret. Use a secret key.",
    ),
    ErrorSpec(
        "api_key_permission_denied",
        _INVALID,
        403,
        "The restricted API key does not have the permission this endpoint needs; the "
        "message names it (resource and read or write).",
    ),
    ErrorSpec(
        "account_invalid",
        _INVALID,
        403,
        "The Stripe-Account header names an account the key does not belong to. paymux has "
        "no connected accounts: send the key's own account id, or no Stripe-Account header.",
    ),
    ErrorSpec(
        "tls_required",
        _INVALID,
        403,
        "A live-mode key was sent over plain HTTP: live-mode API requests must be made over "
        "HTTPS (directly, or through a proxy named in PAYMUX_TRUSTED_PROXIES that sends "
        "X-Forwarded-Proto: https). The key was not checked; treat it as exposed and roll it.",
    ),
    ErrorSpec(
        "payment_intent_invalid_parameter",
        _INVALID,
        400,
        "The client_secret provided does not match the client_secret associated with the "
        "PaymentIntent.",
    ),
    ErrorSpec(
        "parameter_not_allowed",
        _INVALID,
        400,
        "This parameter cannot be sent with this kind of API key (a publishable key "
        "confirms with payment_method, return_url and client_secret only).",
    ),
    ErrorSpec(
        "api_key_unexpected_state",
        _INVALID,
        400,
        "The API key is revoked, expired or already rolled; roll the key it was rolled to.",
    ),
    # Rate limits.
    ErrorSpec(
        "rate_limit",
        ErrorType.RATE_LIMIT_ERROR,
        429,
        "Too many requests to the gateway; paymux queued the operation and retries it later.",
        "Please wait a moment and try again.",
        Action.RETRY_LATER,
        True,
    ),
    ErrorSpec(
        "method_not_allowed",
        _INVALID,
        405,
        "This HTTP method is not allowed on this URL; the Allow header lists those that are.",
    ),
    ErrorSpec(
        "rate_limited",
        ErrorType.RATE_LIMIT_ERROR,
        429,
        "Too many requests with this API key (PAYMUX_RATE_LIMIT_REQUESTS per "
        "PAYMUX_RATE_LIMIT_WINDOW_SECONDS), or without a valid key from this address "
        "(PAYMUX_RATE_LIMIT_UNAUTHENTICATED_*); retry after the Retry-After seconds.",
        action=Action.RETRY_LATER,
        retryable=True,
    ),
    # Gateway and our own failures.
    ErrorSpec(
        "gateway_unavailable",
        ErrorType.GATEWAY_ERROR,
        503,
        "The gateway could not be reached or answered with an error; paymux will "
        "settle the operation when it answers. Nothing is kept for the Idempotency-Key: "
        "retry with the same key.",
        "We could not reach the payment processor. Please try again in a moment.",
        Action.RETRY_LATER,
        True,
    ),
    ErrorSpec(
        "gateway_invalid_request",
        ErrorType.GATEWAY_ERROR,
        502,
        "The gateway rejected the request paymux sent (a paymux bug or a gateway "
        "configuration problem).",
    ),
    ErrorSpec(
        "api_error",
        ErrorType.API_ERROR,
        500,
        "An internal error occurred.",
        action=Action.RETRY_LATER,
        retryable=True,
    ),
    ErrorSpec(
        "service_unavailable",
        ErrorType.API_ERROR,
        503,
        "paymux cannot reach its database right now; the request may not have been "
        "processed. Retry after the Retry-After seconds (webhook deliveries are refused "
        "so the provider delivers them again).",
        action=Action.RETRY_LATER,
        retryable=True,
    ),
]
ERRORS: dict[str, ErrorSpec] = {spec.code: spec for spec in _ERROR_LIST}

_R, _U, _N, _C = Action.RETRY, Action.USE_ANOTHER_METHOD, Action.UPDATE_CARD, Action.CONTACT_ISSUER
_CALL_BANK_MSG = "Your card was declined. Please contact your bank or use another card."
_OTHER_METHOD_MSG = "Your card was declined. Please use another payment method."
_PIN_MSG = "Your card needs its PIN for this payment. Please enter your PIN or use another card."
_EXPIRY_MSG = "Your card's expiration date is incorrect. Please check it and try again."
_DECLINE_LIST = [
    DeclineSpec(
        "generic_decline",
        "The card was declined for an unknown reason.",
        _GENERIC_CARD_MSG,
        _R,
        True,
    ),
    DeclineSpec(
        "do_not_honor", "The issuer declined without giving a reason.", _GENERIC_CARD_MSG, _C, True
    ),
    DeclineSpec(
        "insufficient_funds",
        "The card has insufficient funds.",
        "Your card has insufficient funds. Please use another payment method.",
        _U,
        True,
    ),
    DeclineSpec("lost_card", "The card was reported lost.", _GENERIC_CARD_MSG, _U, False),
    DeclineSpec("stolen_card", "The card was reported stolen.", _GENERIC_CARD_MSG, _U, False),
    DeclineSpec(
        "fraudulent", "The payment was declined as suspected fraud.", _GENERIC_CARD_MSG, _U, False
    ),
    DeclineSpec(
        "pickup_card",
        "The card cannot be used (the issuer asked to retain it).",
        _GENERIC_CARD_MSG,
        _U,
        False,
    ),
    DeclineSpec(
        "restricted_card", "The card cannot be used for this payment.", _GENERIC_CARD_MSG, _U, False
    ),
    DeclineSpec(
        "security_violation",
        "The issuer flagged a security violation.",
        _GENERIC_CARD_MSG,
        _U,
        False,
    ),
    DeclineSpec(
        "merchant_blacklist", "The payment matched a block list.", _GENERIC_CARD_MSG, _U, False
    ),
    DeclineSpec(
        "card_velocity_exceeded",
        "The card's balance or credit limit was exceeded.",
        "Your card was declined. Please contact your bank or use another card.",
        _C,
        True,
    ),
    DeclineSpec(
        "withdrawal_count_limit_exceeded",
        "The card's transaction limit was reached.",
        "Your card was declined. Please contact your bank or use another card.",
        _C,
        True,
    ),
    DeclineSpec(
        "card_not_supported",
        "The card does not support this kind of purchase.",
        "Your card does not support this purchase. Please use another card.",
        _U,
        False,
    ),
    DeclineSpec(
        "currency_not_supported",
        "The card does not support this currency.",
        "Your card does not support this currency. Please use another card.",
        _U,
        False,
    ),
    DeclineSpec(
        "transaction_not_allowed",
        "The card does not allow this transaction.",
        "Your card was declined. Please contact your bank or use another card.",
        _C,
        False,
    ),
    DeclineSpec(
        "invalid_account",
        "The card or its account is invalid.",
        "Your card was declined. Please use another payment method.",
        _U,
        False,
    ),
    DeclineSpec(
        "new_account_information_available",
        "The card has new details.",
        "Please update your card details and try again.",
        _N,
        False,
    ),
    DeclineSpec(
        "try_again_later",
        "The issuer asked to retry later.",
        "Please try again in a moment.",
        Action.RETRY_LATER,
        True,
    ),
    DeclineSpec(
        "issuer_not_available",
        "The issuer could not be reached.",
        "Please try again in a moment.",
        Action.RETRY_LATER,
        True,
    ),
    DeclineSpec(
        "expired_card",
        "The card has expired.",
        "Your card has expired. Please update your card details or use another card.",
        _N,
        False,
    ),
    DeclineSpec(
        "incorrect_cvc",
        "The security code is incorrect.",
        "Your card's security code is incorrect. Please check it and try again.",
        _N,
        False,
    ),
    DeclineSpec(
        "incorrect_zip",
        "The postal code is incorrect.",
        "Your postal code does not match your card. Please check it and try again.",
        _N,
        False,
    ),
    DeclineSpec(
        "processing_error",
        "An error occurred while processing the card.",
        "We could not process your card right now. Please try again in a moment.",
        _R,
        True,
    ),
    DeclineSpec(
        "authentication_required",
        "The issuer requires 3-D Secure authentication.",
        "Your bank needs you to confirm this payment. Please authenticate and try again.",
        Action.AUTHENTICATE,
        False,
    ),
    # The rest of Stripe's documented decline codes (docs.stripe.com/declines/codes), and
    # Stripe's card_decline_rate_limit_exceeded error code.
    DeclineSpec(
        "approve_with_id",
        "The issuer could not authorize the payment.",
        _GENERIC_CARD_MSG,
        _R,
        True,
    ),
    DeclineSpec(
        "call_issuer",
        "The issuer declined for an unknown reason and asks the cardholder to call.",
        _CALL_BANK_MSG,
        _C,
        True,
    ),
    DeclineSpec(
        "no_action_taken",
        "The issuer declined for an unknown reason.",
        _CALL_BANK_MSG,
        _C,
        True,
    ),
    DeclineSpec(
        "do_not_try_again",
        "The issuer declined and asks not to retry the card.",
        _OTHER_METHOD_MSG,
        _U,
        False,
    ),
    DeclineSpec(
        "not_permitted",
        "The issuer does not permit this payment.",
        _CALL_BANK_MSG,
        _C,
        False,
    ),
    DeclineSpec(
        "service_not_allowed",
        "The issuer does not allow this kind of service on the card.",
        _CALL_BANK_MSG,
        _C,
        False,
    ),
    DeclineSpec(
        "invalid_amount",
        "The amount is invalid or above what the issuer allows.",
        _CALL_BANK_MSG,
        _C,
        False,
    ),
    DeclineSpec(
        "duplicate_transaction",
        "An identical payment with the same card was made moments ago.",
        "This looks like a payment you just made. Please check whether it went through "
        "before trying again.",
        Action.RETRY_LATER,
        False,
    ),
    DeclineSpec(
        "reenter_transaction",
        "The issuer could not process the payment and asks to send it again.",
        "Please try again in a moment.",
        Action.RETRY_LATER,
        True,
    ),
    DeclineSpec(
        "revocation_of_all_authorizations",
        "The cardholder revoked every authorization for this merchant.",
        _OTHER_METHOD_MSG,
        _U,
        False,
    ),
    DeclineSpec(
        "revocation_of_authorization",
        "The cardholder revoked the authorization for this payment.",
        _OTHER_METHOD_MSG,
        _U,
        False,
    ),
    DeclineSpec(
        "stop_payment_order",
        "The cardholder told the issuer to stop this payment.",
        _OTHER_METHOD_MSG,
        _U,
        False,
    ),
    DeclineSpec(
        "pin_try_exceeded",
        "Too many incorrect PIN entries.",
        _OTHER_METHOD_MSG,
        _U,
        False,
    ),
    DeclineSpec(
        "incorrect_pin",
        "The PIN is incorrect (card-present payments).",
        "The PIN you entered is incorrect. Please try again.",
        _R,
        True,
    ),
    DeclineSpec(
        "offline_pin_required",
        "The card requires its PIN on a card reader (card-present payments).",
        _PIN_MSG,
        Action.AUTHENTICATE,
        False,
    ),
    DeclineSpec(
        "online_or_offline_pin_required",
        "The card requires its PIN (card-present payments).",
        _PIN_MSG,
        Action.AUTHENTICATE,
        False,
    ),
    DeclineSpec(
        "incorrect_number",
        "The card number is incorrect.",
        "Your card number is incorrect. Please check it and try again.",
        _N,
        False,
    ),
    DeclineSpec(
        "invalid_expiry_month",
        "The expiration month is invalid.",
        _EXPIRY_MSG,
        _N,
        False,
    ),
    DeclineSpec(
        "invalid_expiry_year",
        "The expiration year is invalid.",
        _EXPIRY_MSG,
        _N,
        False,
    ),
    DeclineSpec(
        "incorrect_address",
        "The billing address does not match the card.",
        "Your billing address does not match your card. Please check it and try again.",
        _N,
        False,
    ),
    DeclineSpec(
        "testmode_decline",
        "A test card number was used for a live payment.",
        "This card cannot be used for real payments. Please use another card.",
        _U,
        False,
    ),
    DeclineSpec(
        "card_decline_rate_limit_exceeded",
        "The card was declined too many times in the last 24 hours.",
        "This card has been declined too many times. Please use another payment method "
        "or try again tomorrow.",
        _U,
        False,
    ),
    # Square reports a bad expiration date without saying which part (INVALID_EXPIRATION,
    # BAD_EXPIRATION, EXPIRATION_FAILURE).
    DeclineSpec(
        "invalid_expiry_date",
        "The expiration date is invalid, missing or in the past.",
        _EXPIRY_MSG,
        _N,
        False,
    ),
]
DECLINE_CODES: dict[str, DeclineSpec] = {d.decline_code: d for d in _DECLINE_LIST}


@dataclass(frozen=True, slots=True)
class GatewayCode:
    """One row of a gateway's code table: the gateway's code onto our code and decline code."""

    gateway: str
    gateway_code: str
    code: str
    decline_code: str | None = None


# One row of a gateway's code table as a connector declares it: (the gateway's code, our code,
# our decline code or None).
GatewayCodeRow = tuple[str, str, str | None]

# Filled by the connectors (paymux.gateways.connectors registers each one's rows when it
# discovers it); changed in place, so a module that imported it sees every registration.
GATEWAY_CODES: dict[tuple[str, str], GatewayCode] = {}


def register_gateway_codes(gateway: str, rows: Iterable[GatewayCodeRow]) -> None:
    """Make ``rows`` the code table of ``gateway``, replacing any it had (no rows: remove it).

    Raises ValueError, changing nothing, for a row whose code is not in ``ERRORS``, whose
    decline code is not in ``DECLINE_CODES``, or whose gateway code another row has already.
    """
    table: dict[tuple[str, str], GatewayCode] = {}
    for gateway_code, code, decline_code in rows:
        if code not in ERRORS:
            raise ValueError(f"{gateway} code {gateway_code!r}: {code!r} is not an error code")
        if decline_code is not None and decline_code not in DECLINE_CODES:
            raise ValueError(
                f"{gateway} code {gateway_code!r}: {decline_code!r} is not a decline code"
            )
        if (gateway, gateway_code) in table:
            raise ValueError(f"{gateway} code {gateway_code!r} has two rows")
        table[(gateway, gateway_code)] = GatewayCode(gateway, gateway_code, code, decline_code)
    for key in [key for key in GATEWAY_CODES if key[0] == gateway]:
        del GATEWAY_CODES[key]
    GATEWAY_CODES.update(table)


def map_gateway_code(gateway: str, gateway_code: str) -> GatewayCode:
    """Our code for a gateway's code; an unmapped code is a generic decline (and says so)."""
    row = GATEWAY_CODES.get((gateway, gateway_code))
    if row is not None:
        return row
    return GatewayCode(gateway, gateway_code, "card_declined", "generic_decline")


@dataclass(slots=True)
class PaymuxError(Exception):
    """An error that reaches an API caller, with the whole error object.

    Build it with ``PaymuxError.of(code, ...)``: type, status, advice and the payer's message
    come from ``ERRORS`` (and ``DECLINE_CODES`` for a decline code).
    """

    code: str
    type: ErrorType
    http_status: int
    message: str
    param: str | None = None
    decline_code: str | None = None
    user_message: str | None = None
    action: Action = Action.NONE
    retryable: bool = False
    gateway: str | None = None
    gateway_code: str | None = None
    request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @classmethod
    def of(
        cls,
        code: str,
        message: str | None = None,
        *,
        param: str | None = None,
        decline_code: str | None = None,
        gateway: str | None = None,
        gateway_code: str | None = None,
        **extra: Any,
    ) -> PaymuxError:
        spec = ERRORS[code]
        user_message, action, retryable = spec.user_message, spec.action, spec.retryable
        if decline_code is not None and decline_code in DECLINE_CODES:
            decline = DECLINE_CODES[decline_code]
            user_message, action, retryable = (
                decline.user_message,
                decline.action,
                decline.retryable,
            )
        return cls(
            code=code,
            type=spec.type,
            http_status=spec.http_status,
            message=message or spec.message,
            param=param,
            decline_code=decline_code,
            user_message=user_message,
            action=action,
            retryable=retryable,
            gateway=gateway,
            gateway_code=gateway_code,
            extra=extra,
        )

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": str(self.type),
            "code": self.code,
            "decline_code": self.decline_code,
            "param": self.param,
            "message": self.message,
            "user_message": self.user_message,
            "action": str(self.action),
            "retryable": self.retryable,
            "gateway": self.gateway,
            "gateway_code": self.gateway_code,
            "request_id": self.request_id,
        }
        body.update(self.extra)
        return body


# The card field a card error is about, as Stripe names it in ``param``.
CARD_ERROR_PARAMS = {
    "incorrect_cvc": "cvc",
    "invalid_cvc": "cvc",
    "expired_card": "exp_month",
    "invalid_expiry_month": "exp_month",
    "invalid_expiry_year": "exp_year",
    "incorrect_number": "number",
    "invalid_number": "number",
}


def card_error(
    gateway: str, gateway_code: str, message: str | None = None, *, param: str | None = None
) -> PaymuxError:
    """The PaymuxError for a gateway's decline code, through the gateway's code table."""
    row = map_gateway_code(gateway, gateway_code)
    return PaymuxError.of(
        row.code,
        message,
        param=param or CARD_ERROR_PARAMS.get(row.code),
        decline_code=row.decline_code,
        gateway=gateway,
        gateway_code=gateway_code,
    )
