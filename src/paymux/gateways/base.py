"""The Gateway Protocol every connector implements (sandbox now; Stripe, PayPal, Square next).

Declines are data: a call that reached the processor and was refused returns a
``GatewayResult`` whose ``decline`` is set. Outages and bugs are exceptions, one tree::

    GatewayError                      root; carries the provider's request id if any
      GatewayUnavailable              network error, timeout, 5xx: the outcome is unknown,
                                      retry with the SAME idempotency key
        GatewayUnreachable            the connection was never made: nothing was sent
      GatewayRateLimited              429; ``retry_after`` seconds when the provider said
      GatewayInvalidRequest           4xx other than a decline: our bug or configuration
      WebhookVerificationError        an inbound webhook failed verification (``reason``)

Every mutating call takes an idempotency key derived from our own object id and step, so a
retry of the same step can never charge twice. Gateways never import storage or api.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from paymux.domain.attempts import ProviderStatus
from paymux.money import Money

__all__ = [
    "THREE_D_SECURE_OPTIONS",
    "AuthorizeRequest",
    "CardDetails",
    "CredentialsCheck",
    "Decline",
    "DisputeUpdate",
    "Gateway",
    "GatewayError",
    "GatewayInvalidRequest",
    "GatewayRateLimited",
    "GatewayRefund",
    "GatewayResult",
    "GatewayStatus",
    "GatewayUnavailable",
    "GatewayUnreachable",
    "InboundEvent",
    "OpenedPayment",
    "PaymentUpdate",
    "RefundUpdate",
    "SetupRequest",
    "SetupResult",
    "SetupUpdate",
    "ThreeDSecure",
    "ThreeDSecureOption",
    "WebhookVerificationError",
    "card_bin",
]


# The statuses every connector maps its provider's to: the domain's own enum.
GatewayStatus = ProviderStatus


@dataclass(frozen=True, slots=True)
class Decline:
    """A refusal by the processor or issuer, in the gateway's own words."""

    gateway_code: str
    message: str


@dataclass(frozen=True, slots=True)
class CardDetails:
    """What a gateway tells us about a tokenized card. Never a number or a CVC."""

    token: str
    type: str = "card"
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    fingerprint: str | None = None
    country: str | None = None
    funding: str | None = None
    # The BIN (the number's first 6 digits; PCI DSS lets it be kept with the last 4) where
    # the gateway says it (the sandbox, Square, PayPal; never Stripe).
    bin: str | None = None
    # The checks the gateway made when it tokenized or saved the card (Stripe's
    # ``card.checks``): ``pass``, ``fail``, ``unavailable``, ``unchecked``; None: not said.
    cvc_check: str | None = None
    address_line1_check: str | None = None
    address_zip_check: str | None = None


def card_bin(value: Any) -> str | None:
    """A gateway's BIN, kept only as the first 6 digits (never more of the number): None
    for anything that isn't at least 6 digits."""
    text = str(value).strip() if value is not None else ""
    return text[:6] if len(text) >= 6 and text[:6].isdigit() else None


# ``payment_method_options[card][request_three_d_secure]`` (Stripe's values): ``automatic``
# (only where the card or the regulation requires it), ``any`` (ask the issuer, which may
# still let it through frictionless), ``challenge`` (ask for a challenge).
ThreeDSecureOption = str
THREE_D_SECURE_OPTIONS = ("automatic", "any", "challenge")


# Which 3-D Secure results (Stripe's words) move fraud liability to the issuer: an
# authenticated payment, and an attempt the issuer acknowledged (the card schemes' rules); an
# exemption, a failure or no support leaves it with the merchant; unknown: None.
LIABILITY_SHIFT = {
    "authenticated": True,
    "attempt_acknowledged": True,
    "exempted": False,
    "failed": False,
    "not_supported": False,
    "processing_error": False,
}


@dataclass(frozen=True, slots=True)
class ThreeDSecure:
    """A payment's 3-D Secure outcome, in Stripe's words (``payment_method_details.card.
    three_d_secure``): ``result`` authenticated | attempt_acknowledged | exempted | failed |
    not_supported | processing_error; ``authentication_flow`` challenge | frictionless;
    ``result_reason`` abandoned | bypassed | canceled | card_not_enrolled |
    network_not_supported | protocol_error | rejected. ``liability_shift`` (paymux's field):
    whether fraud liability moved to the issuer; None where the gateway doesn't say."""

    result: str | None
    authentication_flow: str | None = None
    result_reason: str | None = None
    version: str | None = None
    electronic_commerce_indicator: str | None = None
    transaction_id: str | None = None
    liability_shift: bool | None = None

    @classmethod
    def from_stripe_shape(cls, found: Any) -> ThreeDSecure | None:
        """A ``payment_method_details.card.three_d_secure`` object in Stripe's shape (Stripe's
        charges, and the sandbox, which answers in it); None when none ran."""
        if not isinstance(found, dict):
            return None
        result = found.get("result")
        return cls(
            result=result,
            authentication_flow=found.get("authentication_flow"),
            result_reason=found.get("result_reason"),
            version=found.get("version"),
            electronic_commerce_indicator=found.get("electronic_commerce_indicator"),
            transaction_id=found.get("transaction_id"),
            liability_shift=LIABILITY_SHIFT.get(str(result)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "authentication_flow": self.authentication_flow,
            "electronic_commerce_indicator": self.electronic_commerce_indicator,
            "liability_shift": self.liability_shift,
            "result": self.result,
            "result_reason": self.result_reason,
            "transaction_id": self.transaction_id,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """Authorize (and, for automatic capture, capture) a payment."""

    amount: Money
    payment_method_token: str
    capture: bool
    reference: str  # our payment intent id, stored in the provider's metadata
    customer_token: str | None = None
    off_session: bool = False
    setup_future_usage: str | None = None
    return_url: str | None = None
    statement_descriptor: str | None = None
    description: str | None = None
    gateway_reference: str | None = None  # a payment opened earlier with ``open_payment``
    # A buyer-verification (SCA) token from the provider's browser SDK (Square verifyBuyer).
    verification_token: str | None = None
    # ``payment_method_options[card][request_three_d_secure]`` (``ThreeDSecureOption``), or
    # ``any`` for a fraud rule's request_3ds (fraud/); None: the gateway's default. Never set
    # off session (no payer is there to authenticate).
    request_three_d_secure: ThreeDSecureOption | None = None
    # Off session: the network transaction id of the first (customer-initiated,
    # authenticated) payment with this card, when the gateway returned one; the
    # merchant-initiated charge references it (stored credentials).
    network_transaction_id: str | None = None
    # A merchant-initiated charge under a recurring agreement (an invoice charged off
    # session: billing's renewals and their retries); only with ``off_session``. PayPal
    # flags it ``stored_credential.payment_type`` RECURRING (other off-session charges:
    # UNSCHEDULED); Stripe's ``off_session`` and Square's ``customer_initiated: false`` say
    # merchant-initiated for both (neither takes a recurring flag).
    recurring: bool = False


@dataclass(frozen=True, slots=True)
class OpenedPayment:
    """A provider-side payment created before confirmation, for the browser to confirm."""

    reference: str
    client: dict[str, Any]  # what the provider's browser SDK needs (e.g. a client secret)


@dataclass(frozen=True, slots=True)
class GatewayResult:
    """The processor's view of a payment after a call or a webhook."""

    status: GatewayStatus
    reference: str | None
    amount_authorized: int = 0
    amount_captured: int = 0
    decline: Decline | None = None
    next_action: dict[str, Any] | None = None
    risk_level: str | None = None
    # The gateway's numeric risk score for the payment, 0-100 (Stripe's charge
    # ``outcome.risk_score``), where it gives one.
    risk_score: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # The 3-D Secure outcome when the gateway ran it (None: none ran, or it doesn't say).
    three_d_secure: ThreeDSecure | None = None
    # The card network's id of this transaction (Visa's TID, Mastercard's trace id) when the
    # gateway returns it: later merchant-initiated charges reference it.
    network_transaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class SetupRequest:
    """Save a card at the gateway for later payments, without a charge (Stripe's
    SetupIntent, PayPal's vault setup token, Square's card on file). ``usage`` is
    ``off_session`` (charged later without the payer: authenticate now if the card needs it)
    or ``on_session``."""

    payment_method_token: str
    customer_token: str
    reference: str  # our setup intent id, stored in the provider's metadata where it can be
    usage: str = "off_session"
    return_url: str | None = None
    # A buyer-verification (SCA) token from the provider's browser SDK for storing the card
    # (Square's verifyBuyer with intent STORE), sent with the card's token.
    verification_token: str | None = None


@dataclass(frozen=True, slots=True)
class SetupResult:
    """The gateway's view of a setup. ``SUCCEEDED``: the card is saved for the customer and
    ``card`` is what to charge from now on (its token may differ from the one set up: a vault
    or card-on-file id); ``REQUIRES_ACTION``: the payer must authenticate (``next_action``);
    ``FAILED``: refused (``decline``); ``CANCELED``."""

    status: GatewayStatus
    reference: str | None
    card: CardDetails | None = None
    decline: Decline | None = None
    next_action: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GatewayRefund:
    status: str  # pending | succeeded | failed | canceled
    reference: str | None
    amount: int
    failure_reason: str | None = None
    payment_reference: str | None = None  # the gateway's payment the refund belongs to
    our_id: str | None = None  # our refund id, when we created it (from the metadata)
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentUpdate:
    """A webhook's news about a payment: ``reference`` is our id (from the provider's metadata)
    when known; ``result.reference`` is the gateway's own id."""

    reference: str | None
    result: GatewayResult
    # The event names the payment's charge by id only (Stripe's webhooks: ``latest_charge``
    # an id), so its 3-D Secure result and network transaction id are not in it: paymux
    # reads the payment again (``refresh_intent``, a read-only retrieve with the charge
    # expanded, by the worker, outside any transaction) once the event is applied.
    charge_unread: bool = False


@dataclass(frozen=True, slots=True)
class DisputeUpdate:
    """A chargeback opened or changed at the gateway."""

    reference: str
    payment_reference: str | None
    amount: int
    currency: str
    reason: str | None
    status: str


@dataclass(frozen=True, slots=True)
class RefundUpdate:
    refund: GatewayRefund


@dataclass(frozen=True, slots=True)
class SetupUpdate:
    """A webhook's news that a setup (a SetupIntent) moved at the gateway: ``reference`` is
    our id (from the provider's metadata) when known, ``gateway_reference`` the gateway's;
    ``status`` what the event says. Only a signal: paymux then asks the gateway how the setup
    stands (``retrieve_setup``, which also reads the saved card) and applies that answer, as
    the payer's return does, so a late or out-of-order event can't move it backwards."""

    reference: str | None
    gateway_reference: str | None
    status: GatewayStatus


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """A verified webhook, parsed just enough to route it."""

    gateway: str
    event_id: str
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CredentialsCheck:
    """What ``Gateway.check_credentials`` found. ``ok``: the provider accepted the stored
    credentials. Else ``code``: ``credentials_invalid`` (the provider refused them: 401) or
    ``credentials_forbidden`` (accepted, but without a permission the check needs: 403);
    ``http_status`` and ``request_id`` as the provider answered. Never the credential, nor
    the provider's message (which may echo part of it)."""

    ok: bool
    code: str | None = None
    http_status: int | None = None
    request_id: str | None = None

    @classmethod
    def refused(cls, http_status: int | None, request_id: str | None = None) -> CredentialsCheck:
        code = "credentials_forbidden" if http_status == 403 else "credentials_invalid"
        return cls(ok=False, code=code, http_status=http_status, request_id=request_id)


class GatewayError(Exception):
    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class GatewayUnavailable(GatewayError):
    """The outcome is unknown: the call may or may not have happened."""


class GatewayUnreachable(GatewayUnavailable):
    """The connection to the provider could not be made (refused, no route): the request was
    never sent, so nothing happened there. A connector raises it only when it knows that."""


class GatewayRateLimited(GatewayError):
    def __init__(
        self, message: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.retry_after = retry_after


class GatewayInvalidRequest(GatewayError):
    """The gateway (or the connector, before calling it) refused the request. ``param``:
    the caller's parameter at fault (e.g. ``payment_method``, a PayPal order opened for
    another payment), answered as a 400 naming it rather than as the gateway's error."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "gateway_invalid_request",
        request_id: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.code = code
        self.param = param


class WebhookVerificationError(GatewayError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@runtime_checkable
class Gateway(Protocol):
    """What paymux needs from a payment gateway."""

    name: str
    # How long the provider remembers an idempotency key (seconds). Past it, re-sending a
    # request with the same key could make a second payment: recovery only asks (retrieve,
    # lookup) and never re-sends.
    idempotency_retention_seconds: float
    # Whether ``lookup`` finds every payment made for one of our intents. Where it can't
    # (PayPal has no search of orders), "not found" is no proof that nothing was charged:
    # past the key's retention such an attempt is left for a person, never abandoned.
    lookup_finds_all: bool

    def supports_currency(self, currency: str) -> bool: ...

    def amount_problem(self, amount: Money) -> str | None:
        """Why this gateway can't take ``amount`` exactly in its own units, or None."""
        ...

    async def aclose(self) -> None:
        """Release connections; the gateway is not used afterwards."""
        ...

    async def check_credentials(self) -> CredentialsCheck:
        """Prove the credentials work without moving money or changing anything: one
        read-only call that needs them (Stripe's balance, PayPal's OAuth token, Square's
        locations). A refusal is data (``CredentialsCheck.refused``); an outage raises
        ``GatewayUnavailable`` or ``GatewayRateLimited`` as any call does."""
        ...

    def browser_params(self, reference: str) -> dict[str, Any]:
        """What the gateway's browser component needs to tokenize a card."""
        ...

    def reusable_test_token(self, token: str) -> bool:
        """A test shortcut the provider publishes for everyone (Stripe's ``pm_card_visa``,
        Square's ``cnon:card-nonce-ok``): every account may use it, each use a payment method
        of its own. Any other token belongs to the account that first used it."""
        ...

    async def describe_payment_method(self, token: str) -> CardDetails | None:
        """The card behind a token, or None if the gateway does not know the token."""
        ...

    async def open_payment(
        self, amount: Money, reference: str, capture: bool, *, idempotency_key: str
    ) -> OpenedPayment | None:
        """Create the provider's payment object up front when its browser SDK confirms payments
        (Stripe.js needs a client secret); None for gateways that don't need one."""
        ...

    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> GatewayResult:
        """Confirm a payment with a payment method: the opened one if
        ``request.gateway_reference`` is set, else a new one."""
        ...

    async def capture(
        self, reference: str, amount: Money, *, idempotency_key: str
    ) -> GatewayResult: ...

    async def void(self, reference: str, *, idempotency_key: str) -> GatewayResult: ...

    async def refund(
        self, reference: str, amount: Money, reason: str | None, *, idempotency_key: str
    ) -> GatewayRefund: ...

    async def retrieve(self, reference: str) -> GatewayResult:
        """The provider's current view of the payment ``reference`` names (read-only)."""
        ...

    async def lookup(self, our_reference: str, idempotency_key: str) -> GatewayResult | None:
        """The provider payment made for our intent ``our_reference`` when no reference came
        back (a lost response): found by the provider's record of our id (metadata,
        reference_id, custom_id) or of the key. None if the provider has no such payment.
        Read-only: it never creates or changes anything."""
        ...

    async def retrieve_refund(
        self, reference: str | None, *, our_id: str, payment_reference: str
    ) -> GatewayRefund | None:
        """The provider's view of a refund: by its own ``reference`` when we have it, else by
        our refund id among the refunds of ``payment_reference``. None if there is none."""
        ...

    async def update_payment(
        self, reference: str, amount: Money, capture: bool, *, idempotency_key: str
    ) -> None:
        """Change the amount, currency or capture method of a payment opened with
        ``open_payment`` and not yet confirmed. Raises ``GatewayInvalidRequest`` (code
        ``update_unsupported``) where the provider can't change it."""
        ...

    async def create_customer(
        self, reference: str, email: str | None, *, idempotency_key: str
    ) -> str: ...

    async def attach_payment_method(
        self, token: str, customer_token: str, *, idempotency_key: str
    ) -> CardDetails | Decline: ...

    async def detach_payment_method(self, token: str, *, idempotency_key: str) -> None: ...

    async def setup(self, request: SetupRequest, *, idempotency_key: str) -> SetupResult:
        """Save ``request.payment_method_token`` for ``request.customer_token`` for later
        (off-session) payments without charging it, authenticating the payer first when the
        card needs it (``REQUIRES_ACTION``). A retry with the same key makes no second entry."""
        ...

    async def retrieve_setup(self, reference: str, *, idempotency_key: str) -> SetupResult:
        """The provider's current view of the setup ``reference`` (after the payer came back
        from authenticating). Where the provider needs a second step to make the saved entry
        once the payer approved (PayPal's payment token from its setup token), it is made
        here, under ``idempotency_key``; otherwise this only reads."""
        ...

    async def verify_webhook(self, headers: dict[str, str], body: bytes) -> InboundEvent:
        """Verify an inbound webhook on its raw bytes (headers lower-cased) before parsing it;
        raise WebhookVerificationError with a reason code. May call the provider (PayPal)."""
        ...

    def interpret_event(
        self, event: InboundEvent
    ) -> PaymentUpdate | RefundUpdate | DisputeUpdate | SetupUpdate | None:
        """What a verified event means for our objects; None for types we don't act on."""
        ...
