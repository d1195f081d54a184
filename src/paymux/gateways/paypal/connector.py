"""The PayPal connector: the Gateway Protocol over PayPal's REST API, with httpx.

paymux does not use ``paypal-server-sdk``: its licence (PayPal's own "SDK LICENSE", with a
field-of-use restriction and indemnity terms) is not compatible with paymux's Apache-2.0, so
this module speaks the documented REST API (Orders v2, Payments v2, Vault v3, Webhooks v1)
itself. It is a thin I/O shell; requests and answers are mapped by transformers.py, webhook
signatures are checked by webhooks.py.

- Auth: OAuth2 client credentials (``POST /v1/oauth2/token``, HTTP basic auth); the access
  token is cached until a minute before it expires and fetched again, once, on a 401.
- Every POST carries ``PayPal-Request-Id`` made from paymux's idempotency key (our object id
  and step), so a retry of a step is replayed by PayPal instead of charging twice; the one
  retry policy lives in paymux (services/gateway_calls), this module makes no retries.
- ``Prefer: return=representation`` on every call, so captures and refunds come back whole.

Errors, translated at this boundary (``raise ... from``; PayPal's debug id is the request id)::

    422 with a payer-side issue (INSTRUMENT_DECLINED, PAYER_ACTION_REQUIRED, ...; the card
        error rows of paypal/errors.py)                           -> a Decline (data)
    network error, timeout, 409, 5xx                              -> GatewayUnavailable
    429                                                           -> GatewayRateLimited
    401 after one token refresh, other 4xx                        -> PayPalApiError, a
        GatewayInvalidRequest whose ``code`` is PayPal's issue (e.g. AUTHORIZATION_EXPIRED)

How paymux's payment flow maps onto PayPal (see docs/gateways/paypal.md):

1. create (not confirming): an order is created (intent CAPTURE for automatic capture,
   AUTHORIZE for manual) with our payment id as ``custom_id``; the response's ``client``
   holds ``order_id`` and ``client_id`` for the PayPal JS SDK (``createOrder`` returns
   ``order_id``).
2. The buyer approves in PayPal's window; ``onApprove`` calls paymux's confirm with
   ``payment_method`` = the order id.
3. confirm captures (or authorizes) that order. A saved method (``<kind>:<vault id>``, from a
   Vault v3 setup token attached to a customer) is charged with a new order instead.
4. A saved method PayPal wants the payer for (the new order is PAYER_ACTION_REQUIRED: 3-D
   Secure, or approval) answers ``requires_action`` with the order and its payer-action
   link. Once the payer has acted (the order is APPROVED, which ``retrieve`` reports as
   ``open``), authorize again with the same request (``gateway_reference`` = that order)
   captures or authorizes that order instead of making another. (A capture of an order token
   PayPal refuses with PAYER_ACTION_REQUIRED stays a decline, ``authentication_required``:
   the buyer approves again in PayPal's window and the page confirms again.)

Recovery is read-only: ``retrieve`` reads an order, authorization or capture; ``lookup``
can't find anything (PayPal has no search of orders by ``custom_id``, and re-sending the
create with the same PayPal-Request-Id would not be read-only), so a lost create is settled by
re-sending it with the same PayPal-Request-Id while PayPal keeps it (Orders v2: 6 hours).
``void`` of an order (opened, never confirmed) voids its authorization if it has one;
an order never authorized or captured needs nothing (PayPal lets it expire).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx

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
    WebhookVerificationError,
)
from paymux.gateways.paypal import transformers, webhooks
from paymux.gateways.paypal.credentials import PayPalCredentials, from_environment
from paymux.gateways.paypal.transformers import ApiError
from paymux.money import Money

if TYPE_CHECKING:
    from cryptography import x509

    from paymux.config import Settings

__all__ = ["PayPalApiError", "PayPalGateway"]

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# A capture or authorize that PayPal already did (a retry whose first answer was lost).
_ALREADY_DONE = frozenset({"ORDER_ALREADY_CAPTURED", "ORDER_ALREADY_AUTHORIZED"})
_VERIFICATION_MODES = ("api", "offline")
# How long PayPal keeps a PayPal-Request-Id: Orders v2 (create, capture, authorize) "stores
# keys for 6 hours" (72 on request to PayPal), Payments v2 (capture of an authorization,
# refund) for 45 days, Vault v3 payment tokens for 3 hours -- the PayPal-Request-Id parameters
# of PayPal's OpenAPI specs (paypal/paypal-rest-api-specifications: checkout_orders_v2.json,
# payments_payment_v2.json, vault_payment_tokens_v3.json) and
# https://developer.paypal.com/api/orders/v2/orders-create . The shortest one that guards a
# payment (an order's) is the gateway's.
IDEMPOTENCY_RETENTION_SECONDS = 6 * 3600.0
_NOT_THERE = (400, 404, 422)  # a GET of an id PayPal knows under another kind of object


class PayPalApiError(GatewayInvalidRequest):
    """PayPal refused the request (4xx, not a decline); ``code`` is PayPal's issue."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(
            f"paypal: HTTP {error.status} {error.issue}: {error.message}",
            code=error.issue,
            request_id=error.debug_id,
        )
        self.error = error


def _path_id(value: str) -> str:
    """An id going into a URL path: PayPal ids only (no ``/``, ``..`` or ``?``)."""
    if not _ID.match(value):
        raise GatewayInvalidRequest(
            "paypal: not a PayPal id", code="invalid_reference", request_id=None
        )
    return value


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = response.headers.get("retry-after")
        return float(value) if value is not None else None
    except ValueError:
        return None


def _body(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class _TokenRefused(GatewayInvalidRequest):
    """PayPal answered the token request without a token (its HTTP status kept)."""

    def __init__(
        self, message: str, *, code: str, request_id: str | None, http_status: int
    ) -> None:
        super().__init__(message, code=code, request_id=request_id)
        self.http_status = http_status


class PayPalGateway:
    name = "paypal"
    idempotency_retention_seconds = IDEMPOTENCY_RETENTION_SECONDS
    lookup_finds_all = False  # no search of orders by custom_id

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        api_base: str = "https://api-m.sandbox.paypal.com",
        webhook_id: str | None = None,
        webhook_verification: str = "api",
        trust_roots: list[x509.Certificate] | None = None,
        cert_fetcher: webhooks.CertFetcher | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if webhook_verification not in _VERIFICATION_MODES:
            raise ValueError("paypal webhook verification must be 'api' or 'offline'")
        self.client_id = client_id
        self._secret = client_secret
        self.webhook_id = webhook_id
        self.webhook_verification = webhook_verification
        self._http = httpx.AsyncClient(
            base_url=api_base.rstrip("/"), timeout=timeout, transport=transport
        )
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock: asyncio.Lock | None = None
        self._offline: webhooks.OfflineVerifier | None = None
        if webhook_verification == "offline":
            self._offline = webhooks.OfflineVerifier(
                trust_roots if trust_roots is not None else webhooks.load_trust_roots(),
                cert_fetcher or webhooks.fetch_certificate,
            )

    @classmethod
    def from_credentials(
        cls, credentials: PayPalCredentials, *, timeout: float = 30.0
    ) -> PayPalGateway:
        mode = credentials.webhook_verification
        roots = webhooks.load_trust_roots(credentials.trust_roots) if mode == "offline" else None
        return cls(
            credentials.client_id,
            credentials.client_secret.get_secret_value(),
            api_base=credentials.api_base,
            webhook_id=credentials.webhook_id,
            webhook_verification=mode,
            trust_roots=roots,
            timeout=timeout,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PayPalGateway:
        """The gateway of the PAYPAL_* environment variables."""
        credentials = from_environment(settings)
        if credentials is None:
            raise ValueError("paypal: PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET are not set")
        return cls.from_credentials(credentials, timeout=settings.gateway_timeout)

    def __repr__(self) -> str:
        return f"PayPalGateway(client_id={self.client_id!r}, api_base={str(self._http.base_url)!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def check_credentials(self) -> CredentialsCheck:
        """A new OAuth2 client-credentials token (``POST /v1/oauth2/token``): it needs the
        client id and secret and changes nothing. PayPal's 401 (``invalid_client``) is the
        answer; an outage raises as any call does."""
        try:
            await self._access_token(refresh=True)
        except GatewayInvalidRequest as exc:
            status = exc.http_status if isinstance(exc, _TokenRefused) else None
            if status in (401, 403):
                return CredentialsCheck.refused(status, exc.request_id)
            raise
        return CredentialsCheck(ok=True)

    # -- the seam ---------------------------------------------------------------------------
    async def _access_token(self, *, refresh: bool = False) -> str:
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            if not refresh and self._token and self._clock() < self._token_expires:
                return self._token
            try:
                response = await self._http.post(
                    "/v1/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(self.client_id, self._secret),
                    headers={"accept": "application/json"},
                )
            except httpx.HTTPError as exc:
                raise GatewayUnavailable(f"paypal: token: {type(exc).__name__}") from exc
            self._raise_for_transport_status(response, "POST /v1/oauth2/token")
            body = _body(response)
            token = body.get("access_token")
            if response.status_code != 200 or not isinstance(token, str) or not token:
                raise _TokenRefused(
                    f"paypal: could not get an access token (HTTP {response.status_code})",
                    code=str(body.get("error") or "authentication_failure"),
                    request_id=response.headers.get("paypal-debug-id"),
                    http_status=response.status_code,
                )
            try:
                lifetime = float(body.get("expires_in") or 300)
            except (TypeError, ValueError):
                lifetime = 300.0
            self._token = token
            self._token_expires = self._clock() + max(lifetime - min(60.0, lifetime / 10), 0.0)
            log.debug("paypal: new access token, valid %.0fs", lifetime)
            return token

    @staticmethod
    def _raise_for_transport_status(response: httpx.Response, what: str) -> None:
        status = response.status_code
        debug_id = response.headers.get("paypal-debug-id")
        if status == 429:
            raise GatewayRateLimited(
                f"paypal: {what}: rate limited",
                retry_after=_retry_after(response),
                request_id=debug_id,
            )
        if status == 409 or status >= 500:
            raise GatewayUnavailable(f"paypal: {what}: HTTP {status}", request_id=debug_id)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        content: bytes | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """One API call; the JSON answer on 2xx, else the translated exception."""
        what = f"{method} {path}"
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
        response: httpx.Response | None = None
        for attempt in range(2):
            headers = {
                "authorization": f"Bearer {await self._access_token(refresh=attempt > 0)}",
                "accept": "application/json",
                "prefer": "return=representation",
            }
            if content is not None:
                headers["content-type"] = "application/json"
            if method == "POST" and key is not None:
                headers["paypal-request-id"] = transformers.request_id(key)
            started = time.monotonic()
            try:
                response = await self._http.request(method, path, content=content, headers=headers)
            except httpx.HTTPError as exc:
                raise GatewayUnavailable(f"paypal: {what}: {type(exc).__name__}") from exc
            log.debug(
                "paypal %s -> %s in %.0f ms (debug id %s)",
                what,
                response.status_code,
                (time.monotonic() - started) * 1000,
                response.headers.get("paypal-debug-id"),
            )
            if response.status_code != 401:
                break
        assert response is not None
        self._raise_for_transport_status(response, what)
        if 200 <= response.status_code < 300:
            return _body(response)
        raise PayPalApiError(
            transformers.api_error(
                response.status_code, _body(response), response.headers.get("paypal-debug-id")
            )
        )

    # -- Gateway Protocol -------------------------------------------------------------------
    def supports_currency(self, currency: str) -> bool:
        return currency.upper() in transformers.SUPPORTED_CURRENCIES

    def amount_problem(self, amount: Money) -> str | None:
        return transformers.amount_problem(amount)

    def reusable_test_token(self, token: str) -> bool:
        return False  # PayPal publishes no shared test tokens: orders and vault ids are owned

    def browser_params(self, reference: str) -> dict[str, Any]:
        return {"gateway": self.name, "client_id": self.client_id}

    async def open_payment(
        self, amount: Money, reference: str, capture: bool, *, idempotency_key: str
    ) -> OpenedPayment | None:
        order = await self._call(
            "POST",
            "/v2/checkout/orders",
            body=transformers.open_request(amount, reference, capture),
            key=idempotency_key,
        )
        order_id = str(order.get("id") or "")
        if not order_id:
            raise GatewayUnavailable("paypal: the order has no id")
        return OpenedPayment(
            reference=order_id,
            client={
                "order_id": order_id,
                "client_id": self.client_id,
                # The JS SDK's script URL must say the same (intent=authorize, currency=EUR).
                "intent": "capture" if capture else "authorize",
                "currency": amount.currency,
            },
        )

    async def open_card_order(
        self,
        amount: Money,
        reference: str,
        capture: bool,
        three_d_secure: str | None,
        *,
        idempotency_key: str,
    ) -> str:
        """The order the page's card fields (the JS SDK's ``CardFields``) pay: opened for our
        payment ``reference`` (``custom_id``), its 3-D Secure verification as
        ``three_d_secure`` asks (transformers.card_order_request). The card goes from PayPal's
        fields to PayPal; ``authorize`` with this order's id then reads the authentication
        result before it captures. Keyed: the same key answers the same order."""
        order = await self._call(
            "POST",
            "/v2/checkout/orders",
            body=transformers.card_order_request(amount, reference, capture, three_d_secure),
            key=idempotency_key,
        )
        order_id = str(order.get("id") or "")
        if not order_id:
            raise GatewayUnavailable("paypal: the order has no id")
        return order_id

    async def order_opened_for(self, order_id: str) -> str | None:
        """The payment an order was opened for (its ``custom_id``, read at PayPal); None
        when PayPal knows no such order or it names none (made outside paymux)."""
        order = await self._get_order(order_id)
        return transformers.opened_for_payment(order) if order is not None else None

    async def describe_payment_method(self, token: str) -> CardDetails | None:
        """An approved order (token = order id), a setup token to attach, or a vault payment
        token (``<kind>:<id>``, or a bare vault id); None when PayPal knows none of them."""
        try:
            vault = transformers.split_vault_token(token)
        except ValueError:
            return None
        if vault is not None:
            return await self._vault_details(vault[1])
        if not _ID.match(token):
            return None
        candidates: list[tuple[str, Callable[[dict[str, Any]], CardDetails]]] = [
            (f"/v2/checkout/orders/{token}", transformers.card_details_from_order),
            (
                f"/v3/vault/setup-tokens/{token}",
                lambda v: transformers.card_details_from_vault(v, setup=True),
            ),
            (f"/v3/vault/payment-tokens/{token}", transformers.card_details_from_vault),
        ]
        for path, parse in candidates:
            try:
                found = await self._call("GET", path)
            except PayPalApiError as exc:
                if exc.error.status in (400, 404, 422):
                    continue
                raise
            if found.get("id"):
                details = parse(found)
                # Keep the id asked about (``<kind>:<id>`` for a saved payment token).
                if details.token.endswith(f":{found['id']}"):
                    return replace(details, token=transformers.vault_token(details.type, token))
                return replace(details, token=token)
        return None

    async def _vault_details(self, vault_id: str) -> CardDetails | None:
        try:
            found = await self._call("GET", f"/v3/vault/payment-tokens/{_path_id(vault_id)}")
        except PayPalApiError as exc:
            if exc.error.status in (400, 404, 422):
                return None
            raise
        if not found.get("id"):
            return None
        details = transformers.card_details_from_vault(found)
        return replace(details, token=transformers.vault_token(details.type, vault_id))

    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> GatewayResult:
        token = request.payment_method_token
        try:
            vault = transformers.split_vault_token(token)
        except ValueError as exc:
            raise GatewayInvalidRequest(str(exc), code="invalid_payment_method") from exc
        if vault is None:
            order_id = _path_id(token)
            order = await self._get_order(order_id)
            if order is not None:
                foreign = transformers.foreign_order(order, request.reference, request.amount)
                if foreign is not None:
                    raise GatewayInvalidRequest(
                        foreign, code="invalid_payment_method", param="payment_method"
                    )
            return await self._complete_order(
                order_id,
                request.capture,
                idempotency_key,
                request.amount.amount,
                order,
                paying=request.reference,
            )
        kind, vault_id = vault
        if request.gateway_reference:
            resumed = await self._resume_order(request, idempotency_key)
            if resumed is not None:
                return resumed
        try:
            order = await self._call(
                "POST",
                "/v2/checkout/orders",
                body=transformers.vault_order_request(request, kind, vault_id),
                key=idempotency_key,
            )
        except PayPalApiError as exc:
            decline = transformers.decline_for(exc.error)
            if decline is None:
                raise
            return self._declined(decline, request.gateway_reference, exc.error)
        result = transformers.order_result(
            order, capture=request.capture, requested=request.amount.amount
        )
        if result.raw.get("status") == transformers.OrderStatus.APPROVED and order.get("id"):
            # Created and approved with the saved method but not charged yet: charge it.
            return await self._complete_order(
                _path_id(str(order["id"])),
                request.capture,
                f"{idempotency_key}:complete",
                request.amount.amount,
                order,
            )
        return result

    async def _get_order(self, order_id: str) -> dict[str, Any] | None:
        """The order, or None when PayPal knows no order by this id."""
        try:
            return await self._call("GET", f"/v2/checkout/orders/{_path_id(order_id)}")
        except PayPalApiError as exc:
            if exc.error.status in _NOT_THERE:
                return None
            raise

    async def _resume_order(
        self, request: AuthorizeRequest, idempotency_key: str
    ) -> GatewayResult | None:
        """Confirming again a saved-method charge whose order waited for the payer
        (PAYER_ACTION_REQUIRED): complete the order once the payer approved it, or report where
        it stands. None when ``gateway_reference`` is no such order (e.g. an order opened for
        the JS SDK that nobody approved): a new order is then made."""
        assert request.gateway_reference is not None
        order = await self._get_order(request.gateway_reference)
        if order is None or not order.get("id"):
            return None
        status = transformers.order_status(order)
        if status is transformers.OrderStatus.CREATED:
            return None
        if status is transformers.OrderStatus.APPROVED:
            return await self._complete_order(
                _path_id(str(order["id"])),
                request.capture,
                f"{idempotency_key}:complete",
                request.amount.amount,
                order,
            )
        return transformers.order_result(
            order, capture=request.capture, requested=request.amount.amount
        )

    async def _complete_order(
        self,
        order_id: str,
        capture: bool,
        key: str,
        requested: int,
        known: dict[str, Any] | None = None,
        *,
        paying: str | None = None,
    ) -> GatewayResult:
        """Capture or authorize an approved order, once its card's 3-D Secure result (read
        first: ``known``, the order as just read, or a GET) allows it, as PayPal recommends
        (transformers.completion_refusal); a refused one stays uncaptured, declined. An order
        no longer APPROVED-and-unpaid goes on to the call, whose already-done path reports it.

        ``paying``: our payment, when the caller named the order (a payment method). Our own
        call sent again is replayed by PayPal (``PayPal-Request-Id``); "already captured"
        means another request paid it, so it is reported only when the order was opened for
        this payment (``custom_id``): an order made outside paymux and paid once must not
        pay a second payment of the same amount."""
        order_read = known if known is not None else await self._get_order(order_id)
        if order_read is not None:
            refusal = transformers.completion_refusal(order_read)
            if refusal is not None:
                return GatewayResult(
                    status=GatewayStatus.FAILED,
                    reference=order_id,
                    decline=refusal,
                    raw={"issue": refusal.gateway_code, "object": "order"},
                    three_d_secure=transformers.three_d_secure(order_read),
                )
        action = "capture" if capture else "authorize"
        try:
            order = await self._call(
                "POST", f"/v2/checkout/orders/{order_id}/{action}", body={}, key=key
            )
        except PayPalApiError as exc:
            if exc.error.issue in _ALREADY_DONE:
                order = await self._call("GET", f"/v2/checkout/orders/{order_id}")
                if paying is not None and transformers.opened_for_payment(order) != paying:
                    raise GatewayInvalidRequest(
                        "This PayPal order was already paid, and not by this payment.",
                        code="invalid_payment_method",
                        param="payment_method",
                    ) from exc
                return transformers.order_result(order, capture=capture, requested=requested)
            decline = transformers.decline_for(exc.error)
            if decline is None:
                raise
            # The order stays: the buyer can approve it again with another funding source.
            return self._declined(decline, order_id, exc.error)
        return transformers.order_result(order, capture=capture, requested=requested)

    @staticmethod
    def _declined(decline: Decline, reference: str | None, error: ApiError) -> GatewayResult:
        return GatewayResult(
            status=GatewayStatus.FAILED,
            reference=reference,
            decline=decline,
            raw={"issue": error.issue, "debug_id": error.debug_id},
        )

    async def capture(
        self, reference: str, amount: Money, *, idempotency_key: str
    ) -> GatewayResult:
        try:
            captured = await self._call(
                "POST",
                f"/v2/payments/authorizations/{_path_id(reference)}/capture",
                body=transformers.capture_request(amount),
                key=idempotency_key,
            )
        except PayPalApiError as exc:
            decline = transformers.decline_for(exc.error)
            if decline is None:
                raise
            return self._declined(decline, reference, exc.error)
        return transformers.capture_result(
            captured, requested=amount.amount, failed_reference=reference
        )

    async def void(self, reference: str, *, idempotency_key: str) -> GatewayResult:
        """Void an authorization; for an order (opened and never confirmed), void its
        authorization if it has one, else nothing (the order expires). A payment already
        captured is reported as it is (SUCCEEDED, with the capture), never an error."""
        ref = _path_id(reference)
        try:
            await self._void_authorization(ref, idempotency_key)
        except PayPalApiError as exc:
            if exc.error.status not in (404, 422):
                raise
            authorization = await self._get_authorization(ref)
            if authorization is None:  # not an authorization: an order, or a capture
                return await self._void_other(ref, idempotency_key, exc)
            settled = await self._authorization_settled(authorization)
            if settled is not None:
                return settled
            raise
        # A 2xx means voided (the body is the authorization, or nothing with 204).
        return GatewayResult(
            status=GatewayStatus.CANCELED, reference=reference, raw={"object": "authorization"}
        )

    async def _void_authorization(self, authorization_id: str, key: str) -> None:
        await self._call("POST", f"/v2/payments/authorizations/{authorization_id}/void", key=key)

    async def _get_authorization(self, authorization_id: str) -> dict[str, Any] | None:
        """The authorization, or None when PayPal knows no authorization by this id."""
        try:
            return await self._call("GET", f"/v2/payments/authorizations/{authorization_id}")
        except PayPalApiError as exc:
            if exc.error.status in _NOT_THERE:
                return None
            raise

    async def _authorization_settled(self, authorization: dict[str, Any]) -> GatewayResult | None:
        """An authorization PayPal would not void: its outcome if it is settled (captured,
        voided, denied), None if it is still held (the refusal stands)."""
        authorization_id = str(authorization.get("id") or "")
        try:
            status = transformers.AuthorizationStatus(str(authorization.get("status")))
        except ValueError:
            return None  # a status this connector does not know: the refusal stands
        if status in (
            transformers.AuthorizationStatus.CREATED,
            transformers.AuthorizationStatus.PENDING,
        ):
            return None
        if status in (
            transformers.AuthorizationStatus.VOIDED,
            transformers.AuthorizationStatus.DENIED,
        ):
            return transformers.canceled_result(authorization_id, authorization, "authorization")
        order_id = transformers.related_order_id(authorization)
        order = await self._get_order(order_id) if order_id else None
        plan = transformers.order_cancel_plan(order) if order else None
        if isinstance(plan, GatewayResult) and plan.status is not GatewayStatus.CANCELED:
            return plan  # the capture, with its id and amount
        return transformers.captured_authorization_result(authorization)

    async def _void_other(
        self, reference: str, key: str, not_an_authorization: PayPalApiError
    ) -> GatewayResult:
        order = await self._get_order(reference)
        if order is None:
            try:
                capture = await self._call("GET", f"/v2/payments/captures/{reference}")
            except PayPalApiError as exc:
                if exc.error.status in _NOT_THERE:
                    raise not_an_authorization from None
                raise
            return transformers.capture_result(capture)  # paid already: say so
        plan = transformers.order_cancel_plan(order)
        if isinstance(plan, GatewayResult):
            return plan
        try:
            await self._void_authorization(_path_id(plan), f"{key}:authorization")
        except PayPalApiError as exc:
            authorization = await self._get_authorization(plan) if exc.error.status == 422 else None
            settled = await self._authorization_settled(authorization) if authorization else None
            if settled is not None:
                return settled
            raise
        return GatewayResult(
            status=GatewayStatus.CANCELED, reference=plan, raw={"object": "authorization"}
        )

    async def refund(
        self, reference: str, amount: Money, reason: str | None, *, idempotency_key: str
    ) -> GatewayRefund:
        ours = idempotency_key.split(":")[0]
        our_id = ours if ours.startswith("re_") else None
        refund = await self._call(
            "POST",
            f"/v2/payments/captures/{_path_id(reference)}/refund",
            body=transformers.refund_request(amount, our_id),
            key=idempotency_key,
        )
        return transformers.refund_result(
            refund, payment_reference=reference, requested=amount.amount, our_id=our_id
        )

    async def retrieve(self, reference: str) -> GatewayResult:
        """An order, an authorization or a capture, whichever ``reference`` names."""
        ref = _path_id(reference)
        candidates: list[tuple[str, Callable[[dict[str, Any]], GatewayResult]]] = [
            (f"/v2/checkout/orders/{ref}", lambda o: transformers.order_result(o)),
            (f"/v2/payments/authorizations/{ref}", lambda a: transformers.authorization_result(a)),
            (f"/v2/payments/captures/{ref}", lambda c: transformers.capture_result(c)),
        ]
        for path, parse in candidates:
            try:
                found = await self._call("GET", path)
            except PayPalApiError as exc:
                if exc.error.status in (404, 422):
                    continue
                raise
            return parse(found)
        raise GatewayInvalidRequest(
            "paypal: no order, authorization or capture with this id", code="RESOURCE_NOT_FOUND"
        )

    async def lookup(self, our_reference: str, idempotency_key: str) -> GatewayResult | None:
        """Always None: PayPal offers no search of orders (or captures) by ``custom_id`` or
        by PayPal-Request-Id, and the one call that would find the order a lost create made,
        the same create with the same PayPal-Request-Id, is not read-only. A lost create is
        settled by sending it again with its PayPal-Request-Id within
        ``idempotency_retention_seconds`` (PayPal then answers with the first order); an order
        opened at create, or one that waited for the payer, is known by its id and read with
        ``retrieve``. (Transaction Search, GET /v1/reporting/transactions, lists captures with
        their ``custom_field`` but needs its own app permission and shows a transaction only
        up to 3 hours after it happened: not used.)"""
        return None

    async def retrieve_refund(
        self, reference: str | None, *, our_id: str, payment_reference: str
    ) -> GatewayRefund | None:
        """A refund by its id; else ours (``custom_id`` = our refund id) among the refunds of
        the order the capture ``payment_reference`` belongs to (PayPal lists a capture's
        refunds nowhere else). None when there is none."""
        if reference:
            try:
                refund = await self._call("GET", f"/v2/payments/refunds/{_path_id(reference)}")
            except PayPalApiError as exc:
                if exc.error.status not in _NOT_THERE:
                    raise
            else:
                return transformers.refund_result(refund, payment_reference=payment_reference)
        try:
            capture = await self._call(
                "GET", f"/v2/payments/captures/{_path_id(payment_reference)}"
            )
        except PayPalApiError as exc:
            if exc.error.status in _NOT_THERE:
                return None
            raise
        order_id = transformers.related_order_id(capture)
        order = await self._get_order(order_id) if order_id else None
        chosen = transformers.order_refund(order, our_id) if order else None
        if chosen is None:
            return None
        return transformers.refund_result(chosen, payment_reference=payment_reference)

    async def update_payment(
        self, reference: str, amount: Money, capture: bool, *, idempotency_key: str
    ) -> None:
        """Replace the amount of an order opened at create (Orders v2 PATCH, while it is
        CREATED or APPROVED). A change of intent or of currency is refused
        (``update_unsupported``): PayPal's PATCH could replace the intent, but the PayPal JS
        SDK on the payer's page was loaded with the order's intent and currency (the
        ``client`` of ``open_payment``), which an update can't give anew; a new order can."""
        order = await self._get_order(reference)
        if order is None:
            raise GatewayInvalidRequest("paypal: no order with this id", code="RESOURCE_NOT_FOUND")
        if transformers.order_wants_capture(order) != capture:
            raise GatewayInvalidRequest(
                "paypal: an order's intent (capture or authorize) can't change once the "
                "payer's page has it; cancel and create the payment again",
                code="update_unsupported",
            )
        if transformers.order_currency(order) not in (None, amount.currency):
            raise GatewayInvalidRequest(
                "paypal: an order's currency can't change once the payer's page has it; "
                "cancel and create the payment again",
                code="update_unsupported",
            )
        patch = json.dumps(transformers.update_order_patch(amount), separators=(",", ":"))
        await self._call(
            "PATCH", f"/v2/checkout/orders/{_path_id(reference)}", content=patch.encode()
        )

    async def create_customer(
        self, reference: str, email: str | None, *, idempotency_key: str
    ) -> str:
        # Vault v3 has no customer object to create: tokens are grouped by a customer id that
        # PayPal assigns when a token is saved. paymux keeps a stable handle of its own.
        return transformers.customer_reference(reference)

    async def attach_payment_method(
        self, token: str, customer_token: str, *, idempotency_key: str
    ) -> CardDetails | Decline:
        """Save a setup token the buyer approved as a Vault v3 payment token; the answer's
        token (``<kind>:<id>``) is what later charges use."""
        try:
            vault = transformers.split_vault_token(token)
        except ValueError as exc:
            raise GatewayInvalidRequest(str(exc), code="invalid_payment_method") from exc
        if vault is not None:
            details = await self._vault_details(vault[1])
            if details is None:
                raise GatewayInvalidRequest(
                    "paypal: no such payment token", code="RESOURCE_NOT_FOUND"
                )
            return details
        try:
            saved = await self._call(
                "POST",
                "/v3/vault/payment-tokens",
                body=transformers.payment_token_request(_path_id(token)),
                key=idempotency_key,
            )
        except PayPalApiError as exc:
            decline = transformers.decline_for(exc.error)
            if decline is None:
                raise
            return decline
        return transformers.card_details_from_vault(saved)

    async def detach_payment_method(self, token: str, *, idempotency_key: str) -> None:
        try:
            vault = transformers.split_vault_token(token)
        except ValueError:
            return
        if vault is None:
            return  # an order or a setup token: nothing saved at PayPal
        try:
            await self._call("DELETE", f"/v3/vault/payment-tokens/{_path_id(vault[1])}")
        except PayPalApiError as exc:
            if exc.error.status != 404:
                raise

    async def setup(self, request: SetupRequest, *, idempotency_key: str) -> SetupResult:
        """Vault v3. With no token: a setup token for the payer's PayPal wallet
        (``POST /v3/vault/setup-tokens``, keyed), which the payer approves at PayPal
        (``requires_action``). With a setup token (from your page's JS SDK): once approved,
        exchanged for a payment token (``POST /v3/vault/payment-tokens``, keyed
        ``<key>:attach``). A payment token already saved (``<kind>:<id>``) is saved."""
        token = request.payment_method_token
        if not token:
            if not request.return_url:
                raise GatewayInvalidRequest(
                    "paypal: saving a PayPal wallet needs a return_url for the payer's approval",
                    code="return_url_required",
                )
            created = await self._call(
                "POST",
                "/v3/vault/setup-tokens",
                body=transformers.setup_token_request(request),
                key=idempotency_key,
            )
            return await self._setup_state(created, f"{idempotency_key}:attach")
        try:
            vault = transformers.split_vault_token(token)
        except ValueError as exc:
            raise GatewayInvalidRequest(str(exc), code="invalid_payment_method") from exc
        if vault is not None:
            details = await self._vault_details(vault[1])
            if details is None:
                raise GatewayInvalidRequest(
                    "paypal: no such payment token", code="RESOURCE_NOT_FOUND"
                )
            return SetupResult(status=GatewayStatus.SUCCEEDED, reference=vault[1], card=details)
        return await self.retrieve_setup(token, idempotency_key=f"{idempotency_key}:attach")

    async def retrieve_setup(self, reference: str, *, idempotency_key: str) -> SetupResult:
        """The setup token; once the payer approved it, its payment token, made here with
        ``idempotency_key`` (PayPal replays the same payment token for the same key)."""
        found = await self._call("GET", f"/v3/vault/setup-tokens/{_path_id(reference)}")
        return await self._setup_state(found, idempotency_key)

    async def _setup_state(self, setup_token: dict[str, Any], attach_key: str) -> SetupResult:
        status = str(setup_token.get("status") or "")
        reference = str(setup_token.get("id") or "")
        if status in transformers.SETUP_READY and reference:
            outcome = await self.attach_payment_method(reference, "", idempotency_key=attach_key)
            if isinstance(outcome, Decline):
                return SetupResult(
                    status=GatewayStatus.FAILED, reference=reference, decline=outcome
                )
            return SetupResult(status=GatewayStatus.SUCCEEDED, reference=reference, card=outcome)
        if status in transformers.SETUP_WAITING:
            return transformers.setup_pending_result(setup_token)
        raise GatewayInvalidRequest(
            f"paypal: setup token {reference} is {status or 'in no known state'}",
            code="setup_token_unexpected_state",
        )

    async def verify_webhook(self, headers: dict[str, str], body: bytes) -> InboundEvent:
        t = webhooks.transmission(headers)
        webhooks.check_cert_url(t.cert_url)
        if not self.webhook_id:
            raise WebhookVerificationError(
                "verification_failed", "No PayPal webhook id is configured (PAYPAL_WEBHOOK_ID)."
            )
        if self._offline is not None:
            await self._offline.verify(t, self.webhook_id, body)
            event = webhooks.parse_event(body)
        else:
            event = webhooks.parse_event(body)
            await self._verify_by_api(t, self.webhook_id, body)
        return InboundEvent(self.name, str(event["id"]), str(event["event_type"]), event)

    async def _verify_by_api(self, t: webhooks.Transmission, webhook_id: str, body: bytes) -> None:
        request = webhooks.api_request_body(t, webhook_id, body)
        # Keyed by the whole request: a forged delivery that reuses a genuine transmission id
        # must not get its FAILURE replayed to the genuine one.
        key = "verify:" + hashlib.sha256(request).hexdigest()
        try:
            answer = await self._call(
                "POST", "/v1/notifications/verify-webhook-signature", content=request, key=key
            )
        except GatewayError as exc:
            raise WebhookVerificationError(
                "verification_failed", f"PayPal could not verify the webhook: {exc}"
            ) from exc
        if answer.get("verification_status") != "SUCCESS":
            raise WebhookVerificationError(
                "signature_mismatch", "PayPal says the signature does not match."
            )

    def interpret_event(
        self, event: InboundEvent
    ) -> PaymentUpdate | RefundUpdate | DisputeUpdate | None:
        return transformers.interpret_event(event)
