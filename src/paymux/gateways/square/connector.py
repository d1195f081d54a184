"""The Square connector: the Gateway Protocol over the official ``squareup`` SDK (AsyncSquare).

A thin I/O shell: parameters and answers are mapped by transformers.py, webhook signatures are
checked by webhooks.py. The SDK's own retries are off (``max_retries=0`` on every call):
paymux's one retry policy (gateway_calls) retries with the same idempotency key. This module
translates the SDK's answers into that policy's terms::

    ApiError, PAYMENT_METHOD_ERROR or a declining code   -> a Decline (data, never retried)
    ApiError, REFUND_ERROR (refund only)                 -> a failed GatewayRefund (data)
    ApiError 429 / RATE_LIMITED                          -> GatewayRateLimited(retry_after)
    ApiError 5xx, 408, 409, TEMPORARY_ERROR, non-JSON    -> GatewayUnavailable
    httpx.TransportError (network, timeout)              -> GatewayUnavailable
    any other ApiError (4xx)                             -> GatewayInvalidRequest(code=Square's)

Operations (Square API: what paymux calls it):

- authorize: CreatePayment (``source_id`` = a Web Payments SDK token ``cnon:...`` or a card on
  file ``ccof:...`` with its ``customer_id``; ``autocomplete`` = automatic capture;
  ``reference_id`` = our payment intent id). Square has nothing to open before the browser
  tokenizes, so ``open_payment`` returns None.
- capture: GetPayment, then CompletePayment; a partial capture first lowers the APPROVED
  amount with UpdatePayment (Square completes only in full). If the payment lacks the
  EDIT_AMOUNT_DOWN capability the capture is refused with code
  ``partial_capture_not_supported`` before anything changes. If Square then refuses to
  complete it (a decline, or an invalid request) the amount is put back with a second
  UpdatePayment (its own key, derived from the capture's) so the authorization is left as it
  was; an outage leaves it lowered, which the retry (same key) then completes. A decline of
  CompletePayment is data (a FAILED result with the Decline), as for CreatePayment.
- void: CancelPayment. refund: RefundPayment (full or partial). retrieve: GetPayment.
- lookup (a lost CreatePayment): ListPayments, newest first over the last days, for the
  payment whose ``reference_id`` is our intent id. retrieve_refund: GetPaymentRefund, else
  ours (by the ``[paymux re_...]`` mark in its reason) among the payment's ``refund_ids``
  and then ListPaymentRefunds. Both lists are eventually consistent at Square (seconds).
- update_payment: Square has nothing opened before confirmation, so it is refused
  (``update_unsupported``).
- customers and cards on file: CreateCustomer (``reference_id`` = our customer id), CreateCard
  from a token (attach: the card on file ``ccof:...`` replaces the single-use token),
  DisableCard (detach), RetrieveCard (describe).

CompletePayment and CancelPayment take no idempotency key at Square; they are safe to repeat
because a repeat finds the payment no longer APPROVED (capture reads it first; void treats
Square's DELAYED_TRANSACTION_* answers as "already done" and reads the payment).

Settings: SQUARE_ACCESS_TOKEN, SQUARE_LOCATION_ID, SQUARE_APPLICATION_ID (browser),
SQUARE_WEBHOOK_SIGNATURE_KEY (comma-separated during a rotation), SQUARE_WEBHOOK_URL (exactly
as registered; default ``<public url>/webhooks/square``), SQUARE_API_BASE (tests point it at
Prism or a fake).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, assert_never
from urllib.parse import urlsplit

import httpx
from square import AsyncSquare
from square.core.api_error import ApiError
from square.core.request_options import RequestOptions

from paymux.config import Settings
from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    CredentialsCheck,
    Decline,
    DisputeUpdate,
    GatewayError,
    GatewayInvalidRequest,
    GatewayRateLimited,
    GatewayRefund,
    GatewayResult,
    GatewayStatus,
    GatewayUnavailable,
    InboundEvent,
    OpenedPayment,
    PaymentUpdate,
    RefundUpdate,
    SetupRequest,
    SetupResult,
)
from paymux.gateways.square import transformers, webhooks
from paymux.gateways.square.credentials import SquareCredentials, from_environment
from paymux.gateways.square.transformers import ErrorKind
from paymux.money import Money

__all__ = ["SquareGateway"]

T = TypeVar("T")

log = logging.getLogger(__name__)

# Square publishes no retention period for idempotency keys (its idempotency guide names
# none: https://developer.squareup.com/docs/build-basics/common-api-patterns/idempotency ;
# asked on its forum, Square staff answered "We do not publish a retention period for
# CreatePayment idempotency keys": https://developer.squareup.com/forums/t/28303 ). So a
# conservative hour: past it recovery never re-sends, it asks (lookup finds Square's payment
# by our reference_id, which needs no key).
IDEMPOTENCY_RETENTION_SECONDS = 3600.0
# lookup and retrieve_refund: how far back the lists go, newest first, and how many pages
# (100 each) before giving up with "unknown" rather than claiming there is nothing.
_LIST_WINDOW = timedelta(days=7)
_LIST_PAGES = 50

_NO_RETRIES: RequestOptions = {"max_retries": 0}
_PRODUCTION_HOST = "connect.squareup.com"
_WEB_SDK = {
    "production": "https://web.squarecdn.com/v1/square.js",
    "sandbox": "https://sandbox.web.squarecdn.com/v1/square.js",
}
# Square's answers to completing or canceling a payment that is no longer APPROVED.
_ALREADY_SETTLED = frozenset(
    {
        "DELAYED_TRANSACTION_CANCELED",
        "DELAYED_TRANSACTION_CAPTURED",
        "DELAYED_TRANSACTION_EXPIRED",
        "DELAYED_TRANSACTION_FAILED",
    }
)


class _Answer(Exception):
    """An error answer the caller handles as data (a decline, a refused refund)."""

    def __init__(self, kind: ErrorKind, body: Any) -> None:
        super().__init__(kind.value)
        self.kind = kind
        self.body = body


def _dump(model: Any) -> dict[str, Any]:
    """Square's wire JSON for an SDK model (field aliases such as ``last_4`` kept)."""
    if model is None:
        return {}
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def _retry_after(exc: ApiError) -> float | None:
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    try:
        return float(headers["retry-after"]) if "retry-after" in headers else None
    except ValueError:
        return None


class SquareGateway:
    name = "square"
    idempotency_retention_seconds = IDEMPOTENCY_RETENTION_SECONDS
    lookup_finds_all = True  # ListPayments by reference_id

    def __init__(
        self,
        access_token: str,
        *,
        location_id: str | None = None,
        application_id: str | None = None,
        webhook_signature_keys: list[str] | None = None,
        webhook_url: str | None = None,
        api_base: str = "https://connect.squareupsandbox.com",
        timeout: float = 30.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._client = AsyncSquare(
            base_url=api_base.rstrip("/"),
            token=access_token,
            timeout=timeout,
            httpx_client=self._http,
        )
        self.location_id = location_id
        self.application_id = application_id
        self.webhook_signature_keys = webhook_signature_keys or []
        self.webhook_url = webhook_url or ""
        host = urlsplit(api_base).hostname or ""
        self.environment = "production" if host == _PRODUCTION_HOST else "sandbox"

    @classmethod
    def from_credentials(
        cls, credentials: SquareCredentials, *, webhook_url: str, timeout: float = 30.0
    ) -> SquareGateway:
        """``webhook_url``: where paymux receives this connection's webhooks, the URL Square
        signs unless the credentials name the one registered at Square."""
        keys = credentials.webhook_signature_key
        return cls(
            credentials.access_token.get_secret_value(),
            location_id=credentials.location_id,
            application_id=credentials.application_id,
            webhook_signature_keys=[
                k.strip() for k in (keys.get_secret_value() if keys else "").split(",") if k.strip()
            ],
            webhook_url=credentials.webhook_url or webhook_url,
            api_base=credentials.api_base,
            timeout=timeout,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SquareGateway:
        """The gateway of the SQUARE_* environment variables."""
        credentials = from_environment(settings)
        if credentials is None:
            raise ValueError("square: SQUARE_ACCESS_TOKEN is not set")
        return cls.from_credentials(
            credentials,
            webhook_url=f"{settings.base_url()}/webhooks/square",
            timeout=settings.gateway_timeout,
        )

    def __repr__(self) -> str:  # never the token
        return f"SquareGateway(environment={self.environment!r}, location={self.location_id!r})"

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def check_credentials(self) -> CredentialsCheck:
        """ListLocations (``GET /v2/locations``): read-only and needs the access token.
        Square's 401 (UNAUTHORIZED: a wrong or revoked token) and 403 (FORBIDDEN: a token
        without MERCHANT_PROFILE_READ) are the answer; an outage raises as any call does."""
        try:
            await self._call(lambda: self._client.locations.list(request_options=_NO_RETRIES))
        except GatewayInvalidRequest as exc:
            cause = exc.__cause__
            status = cause.status_code if isinstance(cause, ApiError) else None
            if status in (401, 403):
                return CredentialsCheck.refused(status)
            raise
        return CredentialsCheck(ok=True)

    # -- the seam ---------------------------------------------------------------------------
    async def _call(
        self, fn: Callable[[], Awaitable[T]], *, answers: frozenset[ErrorKind] = frozenset()
    ) -> T:
        try:
            return await fn()
        except ApiError as exc:
            kind = transformers.classify_error(exc.status_code, exc.body)
            if kind in answers:
                raise _Answer(kind, exc.body) from exc
            code, message = transformers.error_summary(exc.body)
            match kind:
                case ErrorKind.RATE_LIMITED:
                    raise GatewayRateLimited(
                        "square: rate limited", retry_after=_retry_after(exc)
                    ) from exc
                case ErrorKind.UNAVAILABLE:
                    raise GatewayUnavailable(f"square: HTTP {exc.status_code} {code}") from exc
                case ErrorKind.DECLINE | ErrorKind.REFUND_ERROR | ErrorKind.INVALID:
                    raise GatewayInvalidRequest(f"square: {message}", code=code) from exc
                case _:
                    assert_never(kind)
        except httpx.TransportError as exc:
            raise GatewayUnavailable(f"square: {type(exc).__name__}") from exc

    # -- Gateway Protocol -------------------------------------------------------------------
    def supports_currency(self, currency: str) -> bool:
        return currency.upper() in transformers.SQUARE_CURRENCIES

    def amount_problem(self, amount: Money) -> str | None:
        return transformers.amount_problem(amount)

    def reusable_test_token(self, token: str) -> bool:
        # Square's sandbox test nonces (developer.squareup.com/docs/devtools/sandbox/payments):
        # cnon:card-nonce-ok and friends; production nonces are single use.
        return self.environment == "sandbox" and token.startswith("cnon:card-nonce-")

    def browser_params(self, reference: str) -> dict[str, Any]:
        """What the Web Payments SDK needs: ``Square.payments(application_id, location_id)``."""
        return {
            "gateway": self.name,
            "application_id": self.application_id,
            "location_id": self.location_id,
            "environment": self.environment,
            "sdk_url": _WEB_SDK[self.environment],
        }

    async def describe_payment_method(self, token: str) -> CardDetails | None:
        if token.startswith("ccof:"):
            try:
                response = await self._call(
                    lambda: self._client.cards.get(token, request_options=_NO_RETRIES)
                )
            except GatewayInvalidRequest:
                return None
            card = _dump(response.card)
            if not card or card.get("enabled") is False:
                return None
            return transformers.card_details(card)
        if token.startswith("cnon:"):
            # A Web Payments SDK token: single use, nothing to look up until it is charged.
            return CardDetails(token=token, type="card")
        return None

    async def open_payment(
        self, amount: Money, reference: str, capture: bool, *, idempotency_key: str
    ) -> OpenedPayment | None:
        return None  # the browser tokenizes first; the payment is created at confirm

    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> GatewayResult:
        refused = transformers.verification_missing(request)
        if refused is not None:
            return refused
        params = transformers.create_payment_params(
            request, location_id=self.location_id, idempotency_key=idempotency_key
        )
        try:
            response = await self._call(
                lambda: self._client.payments.create(**params, request_options=_NO_RETRIES),
                answers=frozenset({ErrorKind.DECLINE}),
            )
        except _Answer as answer:
            return transformers.declined_result(answer.body)
        result = transformers.payment_result(self._payment(response))
        return transformers.with_buyer_verification(request, result)

    @staticmethod
    def _payment(response: Any) -> dict[str, Any]:
        payment = _dump(getattr(response, "payment", None))
        if not payment.get("id") or not payment.get("status"):
            # A 2xx without a payment: the outcome is unknown; settle it later, same key.
            raise GatewayUnavailable("square: the answer has no payment")
        return payment

    async def _get_payment(self, reference: str) -> dict[str, Any]:
        response = await self._call(
            lambda: self._client.payments.get(reference, request_options=_NO_RETRIES)
        )
        return self._payment(response)

    async def update_amount(
        self, payment: dict[str, Any], amount: Money, *, idempotency_key: str
    ) -> dict[str, Any]:
        """Lower an APPROVED payment's amount (UpdatePayment), before a partial capture."""
        params = transformers.update_amount_params(payment, amount, idempotency_key=idempotency_key)
        response = await self._call(
            lambda: self._client.payments.update(**params, request_options=_NO_RETRIES)
        )
        return self._payment(response)

    async def capture(
        self, reference: str, amount: Money, *, idempotency_key: str
    ) -> GatewayResult:
        payment = await self._get_payment(reference)
        try:
            plan = transformers.capture_plan(payment, amount)
        except ValueError as exc:
            code = str(exc)
            raise GatewayInvalidRequest(
                f"square: can't capture {amount.amount} of {reference} ({code}): Square "
                "completes a payment in full unless its amount can be lowered first.",
                code=code,
            ) from None
        if plan == "done":
            return transformers.payment_result(payment)
        if plan == "complete":
            return await self.complete(payment)
        lowered = await self.update_amount(payment, amount, idempotency_key=idempotency_key)
        try:
            result = await self.complete(lowered)
        except GatewayInvalidRequest:
            await self._restore_amount(lowered, payment, idempotency_key)
            raise
        if result.raw.get("refused") == "complete":
            await self._restore_amount(lowered, payment, idempotency_key)
        return result

    async def _restore_amount(
        self, lowered: dict[str, Any], original: dict[str, Any], idempotency_key: str
    ) -> None:
        """Put back the amount a refused partial capture lowered. If that fails too, the
        refusal is still the answer; the payment stays lowered (a capture retry completes
        the lowered amount; a void releases it all)."""
        money = original.get("amount_money") or {}
        amount = Money(int(money.get("amount") or 0), str(money.get("currency") or ""))
        params = transformers.restore_amount_params(
            lowered, amount, idempotency_key=idempotency_key
        )
        try:
            await self._call(
                lambda: self._client.payments.update(**params, request_options=_NO_RETRIES)
            )
        except GatewayError as exc:
            log.warning(
                "square: completing %s was refused and its amount could not be put back to %s"
                " (%s); it stays lowered",
                lowered.get("id"),
                amount.amount,
                type(exc).__name__,
            )

    async def complete(self, payment: dict[str, Any]) -> GatewayResult:
        """Complete (capture) an APPROVED payment at the version read (CompletePayment). A
        decline is a FAILED result (the payment stays APPROVED)."""
        reference = str(payment["id"])
        version = payment.get("version_token")
        try:
            response = await self._call(
                lambda: self._client.payments.complete(
                    reference, version_token=version, request_options=_NO_RETRIES
                ),
                answers=frozenset({ErrorKind.DECLINE}),
            )
        except _Answer as answer:
            return transformers.refused_capture_result(reference, answer.body)
        except GatewayInvalidRequest as exc:
            if exc.code in _ALREADY_SETTLED:
                return await self.retrieve(reference)
            raise
        return transformers.payment_result(self._payment(response))

    async def void(self, reference: str, *, idempotency_key: str) -> GatewayResult:
        try:
            response = await self._call(
                lambda: self._client.payments.cancel(reference, request_options=_NO_RETRIES)
            )
        except GatewayInvalidRequest as exc:
            if exc.code in _ALREADY_SETTLED:
                return await self.retrieve(reference)
            raise
        return transformers.payment_result(self._payment(response))

    async def refund(
        self, reference: str, amount: Money, reason: str | None, *, idempotency_key: str
    ) -> GatewayRefund:
        ours = idempotency_key.split(":")[0]
        params = transformers.refund_params(
            reference,
            amount,
            reason,
            idempotency_key=idempotency_key,
            our_id=ours if ours.startswith("re_") else None,
        )
        try:
            response = await self._call(
                lambda: self._client.refunds.refund_payment(**params, request_options=_NO_RETRIES),
                answers=frozenset({ErrorKind.REFUND_ERROR}),
            )
        except _Answer as answer:
            return transformers.refund_error_result(answer.body, amount)
        refund = _dump(response.refund)
        if not refund.get("id"):
            raise GatewayUnavailable("square: the answer has no refund")
        return transformers.refund_result(refund)

    async def retrieve(self, reference: str) -> GatewayResult:
        return transformers.payment_result(await self._get_payment(reference))

    async def _list_page(
        self, method: Callable[..., Awaitable[Any]], since: str, cursor: str | None
    ) -> Any:
        """One page (100, newest first) of ListPayments or ListPaymentRefunds."""
        return await self._call(
            lambda: method(
                begin_time=since,
                sort_order="DESC",
                cursor=cursor,
                location_id=self.location_id,
                limit=100,
                request_options=_NO_RETRIES,
            )
        )

    @staticmethod
    def _since() -> str:
        begin = datetime.now(UTC) - _LIST_WINDOW
        return begin.strftime("%Y-%m-%dT%H:%M:%SZ")

    @staticmethod
    def _next_cursor(page: Any, items: list[dict[str, Any]], seen: set[str]) -> str | None:
        """The cursor of the next page; None at the end. A cursor Square already gave would
        go round forever: the answer is then unknown (GatewayUnavailable), not "none"."""
        cursor = getattr(page.response, "cursor", None)
        if not cursor or not items:
            return None
        if cursor in seen:
            raise GatewayUnavailable("square: the list gave the same cursor twice")
        seen.add(cursor)
        return str(cursor)

    async def lookup(self, our_reference: str, idempotency_key: str) -> GatewayResult | None:
        """The newest payment whose ``reference_id`` is our intent id (ListPayments, newest
        first, over the last 7 days at this location), or None. Square payments don't record
        the idempotency key; an earlier attempt's payment (older) is told apart by the caller.
        Scanning the whole window without reaching its start raises GatewayUnavailable: the
        answer is then unknown, not "none"."""
        cursor: str | None = None
        seen: set[str] = set()
        since = self._since()
        for _ in range(_LIST_PAGES):
            page = await self._list_page(self._client.payments.list, since, cursor)
            payments = [_dump(p) for p in page.items or []]
            chosen = transformers.pick_lookup(payments, our_reference)
            if chosen is not None:
                return transformers.payment_result(chosen)
            cursor = self._next_cursor(page, payments, seen)
            if cursor is None:
                return None
        raise GatewayUnavailable(
            f"square: lookup read {_LIST_PAGES} pages of payments without reaching the window"
        )

    async def retrieve_refund(
        self, reference: str | None, *, our_id: str, payment_reference: str
    ) -> GatewayRefund | None:
        if reference:
            refund = await self._refund(reference)
            if refund:
                return transformers.refund_result(refund)
        try:
            payment = await self._get_payment(payment_reference)
        except GatewayInvalidRequest:
            return None
        listed = [r for r in [await self._refund(i) for i in payment.get("refund_ids") or []] if r]
        chosen = transformers.pick_refund(listed, our_id)
        if chosen is None:  # a refund not yet on the payment: the location's recent refunds
            chosen = transformers.pick_refund(await self._recent_refunds(payment_reference), our_id)
        return transformers.refund_result(chosen) if chosen is not None else None

    async def _refund(self, refund_id: str) -> dict[str, Any]:
        try:
            response = await self._call(
                lambda: self._client.refunds.get(refund_id, request_options=_NO_RETRIES)
            )
        except GatewayInvalidRequest:
            return {}
        return _dump(response.refund)

    async def _recent_refunds(self, payment_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        since = self._since()
        for _ in range(_LIST_PAGES):
            page = await self._list_page(self._client.refunds.list, since, cursor)
            refunds = [_dump(r) for r in page.items or []]
            found += [r for r in refunds if r.get("payment_id") == payment_id]
            cursor = self._next_cursor(page, refunds, seen)
            if cursor is None:
                return found
        raise GatewayUnavailable(
            f"square: read {_LIST_PAGES} pages of refunds without reaching the window"
        )

    async def update_payment(
        self, reference: str, amount: Money, capture: bool, *, idempotency_key: str
    ) -> None:
        """Square creates the payment at confirmation (``open_payment`` is None): there is
        never one open to change, so this is refused, as a caller's mistake."""
        raise GatewayInvalidRequest(
            "square: payments are made at confirmation, there is none open to change",
            code="update_unsupported",
        )

    async def create_customer(
        self, reference: str, email: str | None, *, idempotency_key: str
    ) -> str:
        params = transformers.customer_params(reference, email, idempotency_key=idempotency_key)
        response = await self._call(
            lambda: self._client.customers.create(**params, request_options=_NO_RETRIES)
        )
        customer = _dump(response.customer)
        if not customer.get("id"):
            raise GatewayUnavailable("square: the answer has no customer")
        return str(customer["id"])

    async def attach_payment_method(
        self, token: str, customer_token: str, *, idempotency_key: str
    ) -> CardDetails | Decline:
        return await self._save_card(token, customer_token, idempotency_key, None)

    async def _save_card(
        self,
        token: str,
        customer_token: str,
        idempotency_key: str,
        verification_token: str | None,
    ) -> CardDetails | Decline:
        """CreateCard from a Web Payments SDK token (with verifyBuyer's STORE verification
        when the payer gave one); a card on file already the customer's is answered as is."""
        if token.startswith("ccof:"):
            card = await self._card(token)
            if card.get("customer_id") != customer_token or card.get("enabled") is False:
                raise GatewayInvalidRequest(
                    "square: a card on file belongs to one customer and can't be moved",
                    code="card_on_file_not_movable",
                )
            return transformers.card_details(card)
        params = transformers.card_params(
            token,
            customer_token,
            idempotency_key=idempotency_key,
            verification_token=verification_token,
        )
        try:
            response = await self._call(
                lambda: self._client.cards.create(**params, request_options=_NO_RETRIES),
                answers=frozenset({ErrorKind.DECLINE}),
            )
        except _Answer as answer:
            return transformers.declined_result(answer.body).decline or Decline(
                "GENERIC_DECLINE", "The card was declined."
            )
        card = _dump(response.card)
        if not card.get("id"):
            raise GatewayUnavailable("square: the answer has no card")
        return transformers.card_details(card)

    async def _card(self, card_id: str) -> dict[str, Any]:
        try:
            response = await self._call(
                lambda: self._client.cards.get(card_id, request_options=_NO_RETRIES)
            )
        except GatewayInvalidRequest:
            return {}
        return _dump(response.card)

    async def detach_payment_method(self, token: str, *, idempotency_key: str) -> None:
        if not token.startswith("ccof:"):
            return  # a token that was never saved: nothing is stored at Square
        await self._call(lambda: self._client.cards.disable(token, request_options=_NO_RETRIES))

    async def setup(self, request: SetupRequest, *, idempotency_key: str) -> SetupResult:
        """Square's card on file: CreateCard from the token for the customer (the same call
        ``attach`` makes), with the buyer's verification token. Square's buyer verification
        (SCA) for a stored card runs in the browser (``verifyBuyer`` with intent STORE)
        before the token reaches us, so there is never an action left to take here: saved,
        or declined."""
        try:
            outcome = await self._save_card(
                request.payment_method_token,
                request.customer_token,
                idempotency_key,
                request.verification_token,
            )
        except GatewayInvalidRequest as exc:
            if exc.code != "IDEMPOTENCY_KEY_REUSED" or request.verification_token:
                raise
            # The first call under this key carried the payer's verification token and this
            # one has none: Square's answer to the first is unknown until a call sends the
            # token again (the confirm's retry, or the settle from the token the pending
            # attempt keeps: services/setup_intents.py).
            raise GatewayUnavailable(
                "square: this setup's first CreateCard carried a verification token; "
                "its outcome is read by the retry that sends it again"
            ) from exc
        if isinstance(outcome, Decline):
            return SetupResult(status=GatewayStatus.FAILED, reference=None, decline=outcome)
        return SetupResult(status=GatewayStatus.SUCCEEDED, reference=outcome.token, card=outcome)

    async def retrieve_setup(self, reference: str, *, idempotency_key: str) -> SetupResult:
        """The card on file ``reference`` (RetrieveCard): saved while it is enabled."""
        card = await self._card(reference)
        if not card.get("id"):
            raise GatewayInvalidRequest(f"square: no card {reference}", code="not_found")
        if card.get("enabled") is False:
            return SetupResult(status=GatewayStatus.CANCELED, reference=reference)
        details = transformers.card_details(card)
        return SetupResult(status=GatewayStatus.SUCCEEDED, reference=reference, card=details)

    async def verify_webhook(self, headers: dict[str, str], body: bytes) -> InboundEvent:
        return self.verify(headers, body)

    def verify(self, headers: dict[str, str], body: bytes) -> InboundEvent:
        """Verify the raw bytes (no I/O), then parse them."""
        event = webhooks.verify(
            headers, body, keys=self.webhook_signature_keys, url=self.webhook_url
        )
        return InboundEvent(self.name, str(event["event_id"]), str(event["type"]), event)

    def interpret_event(
        self, event: InboundEvent
    ) -> PaymentUpdate | RefundUpdate | DisputeUpdate | None:
        return transformers.interpret_event(event)
