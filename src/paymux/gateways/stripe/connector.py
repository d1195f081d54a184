"""The Stripe connector: the Gateway Protocol over the official ``stripe`` SDK (StripeClient).

A thin I/O shell: parameters and answers are mapped by transformers.py. The SDK's own retries
are off (``max_network_retries=0``): paymux's one retry policy (gateway_calls) retries network
errors, 409 and 5xx with the same idempotency key and honours Retry-After on 429; this module
only translates the SDK's exceptions into that policy's terms::

    stripe.CardError                    -> a Decline (data, never retried)
    stripe.APIConnectionError           -> GatewayUnavailable (GatewayUnreachable: never connected)
    stripe.APIError (409, 5xx)          -> GatewayUnavailable
    stripe.RateLimitError (429)         -> GatewayRateLimited(retry_after)
    any other stripe.StripeError        -> GatewayInvalidRequest (our bug or configuration)

Keys come from the environment (STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY,
STRIPE_WEBHOOK_SECRETS); the API base is configurable (PAYMUX_STRIPE_API_BASE) so tests
point it at localstripe.

Recovery (read-only): ``lookup`` finds the PaymentIntent a lost create+confirm made by our
intent id in its metadata (Search API, then a bounded scan of the newest PaymentIntents, which
is also what covers Search's indexing delay and accounts without Search), and tells attempts
apart by the idempotency key recorded next to it (``paymux_key``). ``retrieve_refund`` reads a
refund by id, else finds ours by its metadata among the payment's refunds.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import stripe

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
    GatewayUnreachable,
    InboundEvent,
    OpenedPayment,
    PaymentUpdate,
    RefundUpdate,
    SetupRequest,
    SetupResult,
    SetupUpdate,
)
from paymux.gateways.signing import verify_signature
from paymux.gateways.stripe import transformers
from paymux.money import Money

__all__ = ["StripeGateway"]

# The PaymentIntent's charge, expanded: its payment_method_details.card carries the 3-D
# Secure outcome and the network transaction id (transformers.payment_result).
_EXPAND = ["latest_charge"]

T = TypeVar("T")

log = logging.getLogger(__name__)

# docs.stripe.com/idempotency: "You can remove keys from the system automatically after
# they're at least 24 hours old." Stripe documents 24 h as the least it keeps a key.
IDEMPOTENCY_RETENTION_SECONDS = 24 * 3600.0
# lookup: Search pages (100 results each) and pages of the newest PaymentIntents scanned.
_SEARCH_PAGES = 3
_LIST_PAGES = 5
_PAGE = 100
# A cancel refused because the PaymentIntent is past cancelling: these are the truth to report.
_SETTLED = frozenset({GatewayStatus.SUCCEEDED, GatewayStatus.CANCELED, GatewayStatus.PROCESSING})

# Stripe's unsupported-currency list is long and changes; paymux refuses only what Stripe
# cannot express at all (ISO 4217 funds codes), and lets Stripe answer for the rest.
_UNSUPPORTED = frozenset({"BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN", "UYI", "UYW", "XAD"})


_TEST_SHORTCUT = re.compile(r"(pm_card|tok)_[A-Za-z][A-Za-z_]*")


def _retry_after(exc: stripe.StripeError) -> float | None:
    headers = exc.headers or {}
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        data: dict[str, Any] = obj.to_dict()
        return data
    return dict(obj)


STRIPE_JS_URL = "https://js.stripe.com/v3/"


class StripeGateway:
    name = "stripe"
    idempotency_retention_seconds = IDEMPOTENCY_RETENTION_SECONDS
    lookup_finds_all = True  # the Search API by metadata

    def __init__(
        self,
        secret_key: str,
        *,
        publishable_key: str | None = None,
        webhook_secrets: list[str] | None = None,
        api_base: str | None = None,
        webhook_tolerance: int = 300,
        timeout: float = 30.0,
    ) -> None:
        base = {"api": api_base} if api_base else None
        http_client = stripe.HTTPXClient(timeout=timeout, allow_sync_methods=True)
        self._http = http_client
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=0,
            http_client=http_client,
        )
        self.publishable_key = publishable_key
        # Stripe.js, for the browser (paymux.js loads it): js.stripe.com, or the fake one a
        # Stripe stand-in at ``api_base`` serves at the same path (localstripe).
        self.js_url = f"{api_base.rstrip('/')}/js.stripe.com/v3/" if api_base else STRIPE_JS_URL
        self.webhook_secrets = webhook_secrets or []
        self.webhook_tolerance = webhook_tolerance
        self.livemode = secret_key.startswith(("sk_live_", "rk_live_"))

    async def aclose(self) -> None:
        """Close the HTTP connections (they belong to the event loop that opened them)."""
        await self._http.close_async()  # type: ignore[no-untyped-call]
        self._http.close()  # type: ignore[no-untyped-call]

    async def check_credentials(self) -> CredentialsCheck:
        """``GET /v1/balance``: read-only and needs the secret key. Stripe's 401 (a wrong or
        rolled key) and 403 (a restricted key without balance read) are the answer; its
        message, which echoes part of the key, is not kept."""
        try:
            await self._call(lambda: self._client.v1.balance.retrieve_async())
        except GatewayInvalidRequest as exc:
            cause = exc.__cause__
            if isinstance(cause, stripe.AuthenticationError | stripe.PermissionError):
                return CredentialsCheck.refused(cause.http_status, exc.request_id)
            raise
        return CredentialsCheck(ok=True)

    # -- the seam ---------------------------------------------------------------------------
    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except stripe.CardError:
            raise
        except stripe.APIConnectionError as exc:
            # stripe-python chains httpx's error: ConnectError means no connection was made.
            unsent = isinstance(exc.__cause__, httpx.ConnectError)
            raise (GatewayUnreachable if unsent else GatewayUnavailable)(
                f"stripe: {type(exc).__name__}", request_id=exc.request_id
            ) from exc
        except stripe.RateLimitError as exc:
            raise GatewayRateLimited(
                "stripe: rate limited", retry_after=_retry_after(exc), request_id=exc.request_id
            ) from exc
        except stripe.APIError as exc:
            status = exc.http_status or 0
            if 400 <= status < 500 and status != 409:  # e.g. 405, 413: retrying can't help
                raise GatewayInvalidRequest(
                    f"stripe: HTTP {status}", code="api_error", request_id=exc.request_id
                ) from exc
            raise GatewayUnavailable(
                f"stripe: HTTP {exc.http_status}", request_id=exc.request_id
            ) from exc
        except stripe.StripeError as exc:
            if exc.http_status == 409 or (exc.http_status or 0) >= 500:
                raise GatewayUnavailable(
                    f"stripe: HTTP {exc.http_status}", request_id=exc.request_id
                ) from exc
            code = getattr(exc, "code", None) or type(exc).__name__
            raise GatewayInvalidRequest(
                f"stripe: {exc.user_message or code}", code=str(code), request_id=exc.request_id
            ) from exc

    @staticmethod
    def _options(key: str) -> dict[str, Any]:
        return {"idempotency_key": key}

    async def _page(
        self, method: Callable[..., Awaitable[Any]], params: dict[str, Any]
    ) -> dict[str, Any]:
        """One page of a list or search call, as plain JSON."""
        sent = dict(params)
        return _as_dict(await self._call(lambda: method(params=sent)))

    # -- Gateway Protocol -------------------------------------------------------------------
    def supports_currency(self, currency: str) -> bool:
        return currency.upper() not in _UNSUPPORTED

    def amount_problem(self, amount: Money) -> str | None:
        return transformers.amount_problem(amount)

    def reusable_test_token(self, token: str) -> bool:
        # Stripe's test shortcuts (docs.stripe.com/testing): pm_card_visa, tok_visa, ...;
        # real ids are pm_1..., tok_1..., card_1....
        return not self.livemode and _TEST_SHORTCUT.fullmatch(token) is not None

    def browser_params(self, reference: str) -> dict[str, Any]:
        return {
            "gateway": self.name,
            "publishable_key": self.publishable_key,
            "sdk_url": self.js_url,
        }

    async def describe_payment_method(self, token: str) -> CardDetails | None:
        try:
            pm = await self._call(lambda: self._client.v1.payment_methods.retrieve_async(token))
        except GatewayInvalidRequest:
            return None
        return transformers.card_details(_as_dict(pm))

    async def open_payment(
        self, amount: Money, reference: str, capture: bool, *, idempotency_key: str
    ) -> OpenedPayment | None:
        params = transformers.open_params(amount, reference, capture, idempotency_key)
        pi = await self._call(
            lambda: self._client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options=self._options(idempotency_key),  # type: ignore[arg-type]
            )
        )
        return OpenedPayment(
            reference=str(pi.id),
            client={"client_secret": pi.client_secret, "publishable_key": self.publishable_key},
        )

    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> GatewayResult:
        reference = request.gateway_reference
        try:
            if reference:
                # Set the method on the opened PaymentIntent, then confirm it: two keyed steps
                # (Stripe also takes payment_method on confirm; localstripe does not).
                update, confirm = transformers.update_then_confirm_params(request, idempotency_key)
                await self._call(
                    lambda: self._client.v1.payment_intents.update_async(
                        reference,
                        params=update,  # type: ignore[arg-type]
                        options=self._options(f"{idempotency_key}:method"),  # type: ignore[arg-type]
                    )
                )
                pi = await self._call(
                    lambda: self._client.v1.payment_intents.confirm_async(
                        reference,
                        params={**confirm, "expand": _EXPAND},  # type: ignore[arg-type]
                        options=self._options(idempotency_key),  # type: ignore[arg-type]
                    )
                )
            else:
                params = transformers.create_params(
                    request, confirm=True, idempotency_key=idempotency_key
                )
                params["expand"] = _EXPAND
                pi = await self._call(
                    lambda: self._client.v1.payment_intents.create_async(
                        params=params,  # type: ignore[arg-type]
                        options=self._options(idempotency_key),  # type: ignore[arg-type]
                    )
                )
        except stripe.CardError as exc:
            result = self._card_error_result(exc)
            if result.reference is None and reference:
                return GatewayResult(
                    status=result.status,
                    reference=reference,
                    decline=result.decline,
                    raw=result.raw,
                )
            return result
        return transformers.payment_result(_as_dict(pi))

    def _card_error_result(self, exc: stripe.CardError) -> GatewayResult:
        error = _as_dict(exc.error)
        payment = error.get("payment_intent") or {}
        return GatewayResult(
            status=GatewayStatus.FAILED,
            reference=payment.get("id") if isinstance(payment, dict) else None,
            decline=transformers.decline_from_error(error),
            raw={"request_id": exc.request_id},
        )

    async def capture(
        self, reference: str, amount: Money, *, idempotency_key: str
    ) -> GatewayResult:
        try:
            pi = await self._call(
                lambda: self._client.v1.payment_intents.capture_async(
                    reference,
                    params={
                        "amount_to_capture": transformers.to_stripe(amount),
                        "expand": _EXPAND,
                    },
                    options=self._options(idempotency_key),  # type: ignore[arg-type]
                )
            )
        except stripe.CardError as exc:
            return self._card_error_result(exc)
        return transformers.payment_result(_as_dict(pi))

    async def void(self, reference: str, *, idempotency_key: str) -> GatewayResult:
        """Cancel an authorization, or a PaymentIntent opened and never confirmed. One Stripe
        won't cancel any more (it succeeded, is processing or is already canceled) is read back
        and reported as it is, so the caller sees money that moved."""
        try:
            pi = await self._call(
                lambda: self._client.v1.payment_intents.cancel_async(
                    reference,
                    options=self._options(idempotency_key),  # type: ignore[arg-type]
                )
            )
        except GatewayInvalidRequest as refused:
            try:
                found = await self.retrieve(reference)
            except GatewayInvalidRequest:
                raise refused from None
            if found.status in _SETTLED:
                return found
            raise
        return transformers.payment_result(_as_dict(pi))

    async def refund(
        self, reference: str, amount: Money, reason: str | None, *, idempotency_key: str
    ) -> GatewayRefund:
        params: dict[str, Any] = {
            "payment_intent": reference,
            "amount": transformers.to_stripe(amount),
            "metadata": {transformers.METADATA_KEY: idempotency_key.split(":")[0]},
        }
        if reason:
            params["reason"] = reason
        refund = await self._call(
            lambda: self._client.v1.refunds.create_async(
                params=params,  # type: ignore[arg-type]
                options=self._options(idempotency_key),  # type: ignore[arg-type]
            )
        )
        return transformers.refund_result(_as_dict(refund))

    async def retrieve(self, reference: str) -> GatewayResult:
        pi = await self._call(
            lambda: self._client.v1.payment_intents.retrieve_async(
                reference,
                params={"expand": _EXPAND},
            )
        )
        return transformers.payment_result(_as_dict(pi))

    async def lookup(self, our_reference: str, idempotency_key: str) -> GatewayResult | None:
        """The PaymentIntent a lost call made for our intent, or None (read-only).

        Search (``metadata['paymux_id']:'<our id>'``) first; Search is eventually consistent
        (new objects can take up to a minute to appear) and unavailable to some accounts, so
        when it finds nothing for this key the newest PaymentIntents are scanned too."""
        found: list[dict[str, Any]] = []
        try:
            found += await self._search(our_reference)
        except GatewayInvalidRequest as exc:  # no Search here (localstripe answers 404)
            log.info("stripe: search unavailable (%s); scanning recent PaymentIntents", exc.code)
        chosen = transformers.pick_lookup(found, our_reference, idempotency_key)
        if chosen is None or chosen["metadata"].get(transformers.ATTEMPT_KEY) != idempotency_key:
            found += await self._recent_payment_intents()
            chosen = transformers.pick_lookup(found, our_reference, idempotency_key)
        if chosen is None:
            return None
        if not transformers.charge_is_expanded(chosen):
            # Search and List answer latest_charge as an id: read the one found again with
            # its charge expanded, which carries the 3-D Secure result and network id.
            return await self.retrieve(str(chosen["id"]))
        return transformers.payment_result(chosen)

    async def _search(self, our_reference: str) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "query": transformers.search_query(our_reference),
            "limit": _PAGE,
        }
        results: list[dict[str, Any]] = []
        for _ in range(_SEARCH_PAGES):
            data = await self._page(self._client.v1.payment_intents.search_async, params)
            results += [d for d in data.get("data") or [] if isinstance(d, dict)]
            if not data.get("has_more") or not data.get("next_page"):
                break
            params["page"] = data["next_page"]
        return results

    async def _recent_payment_intents(self) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": _PAGE}
        results: list[dict[str, Any]] = []
        for _ in range(_LIST_PAGES):
            page = await self._page(self._client.v1.payment_intents.list_async, params)
            data = [d for d in page.get("data") or [] if isinstance(d, dict)]
            results += data
            if not page.get("has_more") or not data:
                break
            params["starting_after"] = data[-1]["id"]
        return results

    async def retrieve_refund(
        self, reference: str | None, *, our_id: str, payment_reference: str
    ) -> GatewayRefund | None:
        if reference:
            try:
                refund = await self._call(lambda: self._client.v1.refunds.retrieve_async(reference))
            except GatewayInvalidRequest:
                pass  # not (or no longer) known by this id: look for ours below
            else:
                return transformers.refund_result(_as_dict(refund))
        params: dict[str, Any] = {"payment_intent": payment_reference, "limit": _PAGE}
        refunds: list[dict[str, Any]] = []
        for _ in range(_LIST_PAGES):
            page = await self._page(self._client.v1.refunds.list_async, params)
            data = [d for d in page.get("data") or [] if isinstance(d, dict)]
            refunds += data
            if not page.get("has_more") or not data:
                break
            params["starting_after"] = data[-1]["id"]
        chosen = transformers.pick_refund(refunds, our_id)
        return transformers.refund_result(chosen) if chosen is not None else None

    async def update_payment(
        self, reference: str, amount: Money, capture: bool, *, idempotency_key: str
    ) -> None:
        """PaymentIntent update of amount, currency and capture method; Stripe refuses it once
        the PaymentIntent is confirmed (GatewayInvalidRequest)."""
        params = transformers.update_params(amount, capture)
        await self._call(
            lambda: self._client.v1.payment_intents.update_async(
                reference,
                params=params,  # type: ignore[arg-type]
                options=self._options(idempotency_key),  # type: ignore[arg-type]
            )
        )

    async def create_customer(
        self, reference: str, email: str | None, *, idempotency_key: str
    ) -> str:
        params: dict[str, Any] = {"metadata": {transformers.METADATA_KEY: reference}}
        if email:
            params["email"] = email
        customer = await self._call(
            lambda: self._client.v1.customers.create_async(
                params=params,  # type: ignore[arg-type]
                options=self._options(idempotency_key),  # type: ignore[arg-type]
            )
        )
        return str(customer.id)

    async def attach_payment_method(
        self, token: str, customer_token: str, *, idempotency_key: str
    ) -> CardDetails | Decline:
        try:
            pm = await self._call(
                lambda: self._client.v1.payment_methods.attach_async(
                    token,
                    params={"customer": customer_token},
                    options=self._options(idempotency_key),  # type: ignore[arg-type]
                )
            )
        except stripe.CardError as exc:
            return transformers.decline_from_error(_as_dict(exc.error))
        return transformers.card_details(_as_dict(pm))

    async def detach_payment_method(self, token: str, *, idempotency_key: str) -> None:
        await self._call(
            lambda: self._client.v1.payment_methods.detach_async(
                token,
                options=self._options(idempotency_key),  # type: ignore[arg-type]
            )
        )

    async def setup(self, request: SetupRequest, *, idempotency_key: str) -> SetupResult:
        """A Stripe SetupIntent for the customer, then its confirmation with the card: two
        keyed steps (``<key>:create``, ``<key>``), as localstripe takes no payment method at
        creation. A card that needs 3-D Secure answers ``requires_action`` (Stripe.js, or the
        return URL, completes it); a decline is Stripe's 402 card error.

        Without a card (``payment_method_token`` empty): the SetupIntent alone, confirmed in
        the payer's browser by Stripe.js (``confirmCardSetup`` with its client secret and the
        card Element: Stripe.js makes the one PaymentMethod, confirms, runs 3-D Secure). It
        answers ``requires_action`` with ``next_action`` ``use_stripe_sdk`` and that secret;
        the outcome is read from Stripe (``retrieve_setup``), never taken from the browser."""
        create = transformers.setup_create_params(request, idempotency_key)
        seti = await self._call(
            lambda: self._client.v1.setup_intents.create_async(
                params=create,  # type: ignore[arg-type]
                options=self._options(f"{idempotency_key}:create"),  # type: ignore[arg-type]
            )
        )
        reference = str(seti.id)
        if not request.payment_method_token:
            return transformers.browser_setup_result(_as_dict(seti))
        confirm = transformers.setup_confirm_params(request)
        try:
            seti = await self._call(
                lambda: self._client.v1.setup_intents.confirm_async(
                    reference,
                    params=confirm,  # type: ignore[arg-type]
                    options=self._options(idempotency_key),  # type: ignore[arg-type]
                )
            )
        except stripe.CardError as exc:
            return SetupResult(
                status=GatewayStatus.FAILED,
                reference=reference,
                decline=transformers.decline_from_error(_as_dict(exc.error)),
                raw={"request_id": exc.request_id},
            )
        return await self._setup_outcome(
            _as_dict(seti), request.customer_token, f"{idempotency_key}:attach"
        )

    async def retrieve_setup(self, reference: str, *, idempotency_key: str) -> SetupResult:
        seti = await self._call(lambda: self._client.v1.setup_intents.retrieve_async(reference))
        data = _as_dict(seti)
        return await self._setup_outcome(data, data.get("customer"), idempotency_key)

    async def _setup_outcome(
        self, seti: dict[str, Any], customer: Any, attach_key: str
    ) -> SetupResult:
        """The SetupResult, with the saved card once it succeeded. Stripe attaches the card
        to the SetupIntent's customer itself; where it is not (localstripe doesn't), it is
        attached here, keyed, so the card is the customer's either way."""
        if seti.get("status") == "canceled":
            return transformers.canceled_setup_result(seti)
        if seti.get("status") == "requires_payment_method" and seti.get("last_setup_error"):
            await self._cancel_failed_setup(str(seti.get("id")), f"{attach_key}:cancel")
        if seti.get("status") != "succeeded" or not seti.get("payment_method"):
            return transformers.setup_result(seti)
        pm_id = seti["payment_method"]
        pm_id = str(pm_id["id"] if isinstance(pm_id, dict) else pm_id)
        pm = _as_dict(
            await self._call(lambda: self._client.v1.payment_methods.retrieve_async(pm_id))
        )
        if customer and pm.get("customer") != customer:
            outcome = await self.attach_payment_method(
                pm_id, str(customer), idempotency_key=attach_key
            )
            if isinstance(outcome, Decline):
                return SetupResult(
                    status=GatewayStatus.FAILED, reference=seti.get("id"), decline=outcome
                )
            return transformers.setup_result(seti, outcome)
        return transformers.setup_result(seti, transformers.card_details(pm))

    async def _cancel_failed_setup(self, reference: str, idempotency_key: str) -> None:
        """A failed try (a decline, a failed challenge) leaves Stripe's SetupIntent open for
        another card, and the payer's browser holds its client secret: canceled, so that
        secret cannot try card after card at Stripe past paymux's limits on tries (the next
        try gets a SetupIntent of its own). Not cancelable now: logged, the failure still
        recorded."""
        try:
            await self._call(
                lambda: self._client.v1.setup_intents.cancel_async(
                    reference,
                    options=self._options(idempotency_key),  # type: ignore[arg-type]
                )
            )
        except GatewayError as exc:
            log.warning("could not cancel the failed setup %s: %s", reference, type(exc).__name__)

    async def verify_webhook(self, headers: dict[str, str], body: bytes) -> InboundEvent:
        return self.verify(headers, body)

    def verify(self, headers: dict[str, str], body: bytes) -> InboundEvent:
        """Verify the raw bytes (no I/O), then parse them."""
        event = verify_signature(
            body,
            headers.get("stripe-signature"),
            self.webhook_secrets,
            tolerance=self.webhook_tolerance,
        )
        return InboundEvent(self.name, str(event["id"]), str(event["type"]), event)

    def interpret_event(
        self, event: InboundEvent
    ) -> PaymentUpdate | RefundUpdate | DisputeUpdate | SetupUpdate | None:
        if event.type.startswith("setup_intent."):
            return setup_update(event)
        return transformers.interpret_event(event)


# The SetupIntent events that say a setup ended at Stripe (the payer authenticated, failed
# to, or it was canceled there); ``setup_intent.created`` and ``.requires_action`` follow our
# own calls, whose answers we apply already.
_SETUP_ENDED = frozenset(
    {"setup_intent.succeeded", "setup_intent.setup_failed", "setup_intent.canceled"}
)


def setup_update(event: InboundEvent) -> SetupUpdate | None:
    """A ``setup_intent.*`` event about one of ours (named in its metadata; a SetupIntent
    another integration made on the same Stripe account is not ours and is ignored)."""
    obj = (event.payload.get("data") or {}).get("object") or {}
    if event.type not in _SETUP_ENDED or obj.get("object") != "setup_intent":
        return None
    ours = (obj.get("metadata") or {}).get(transformers.METADATA_KEY)
    if not ours:
        return None
    status = {
        "setup_intent.succeeded": GatewayStatus.SUCCEEDED,
        "setup_intent.setup_failed": GatewayStatus.FAILED,
        "setup_intent.canceled": GatewayStatus.CANCELED,
    }[event.type]
    return SetupUpdate(reference=str(ours), gateway_reference=obj.get("id"), status=status)
