"""SetupIntents: save a card for a customer without a charge, to charge it later off-session.

The flow is Stripe's: ``requires_payment_method`` -> ``requires_confirmation`` ->
(``requires_action``: the payer authenticates, 3-D Secure) -> ``succeeded``, or
``canceled``. A decline goes back to ``requires_payment_method`` with ``last_setup_error``
(and the confirm answers 402, as Stripe does).

On every gateway the setup is one operation of the Gateway Protocol (``Gateway.setup``): the
gateway saves the card in its customer vault (a Stripe customer, a PayPal vault customer, a
Square customer), authenticating first where the card needs it. paymux then records the
payment method for the customer, through the same helpers the attach endpoint uses
(``resolve_payment_method``, the customer's gateway-side id), and emits
``setup_intent.succeeded`` and ``payment_method.attached``.

Crash safety, as payments have it in proportion: the setup is recorded as ``pending``, with
its attempt number, in a committed transaction before the gateway call (which runs with no
transaction open, under the key ``<seti id>:setup:<attempt>``), and its outcome is applied in
another. A retry of a request that died in between (the same Idempotency-Key resumes it) or
any later read finds ``pending`` and asks the gateway again with the same key: the
provider replays its first answer, so there is never a second vault entry. A setup waiting
for the payer is settled when it is read: paymux asks the gateway (``retrieve_setup``, key
``<seti id>:attach:<attempt>`` where the provider needs a second step to save the card).

Stripe's card setup in the browser (the hosted page and paymux.js): a confirm without a
card makes Stripe's SetupIntent (the same keyed setup call, with no card) and answers
``requires_action`` with ``next_action`` ``use_stripe_sdk`` and Stripe's client secret;
Stripe.js's ``confirmCardSetup`` makes the PaymentMethod, confirms and authenticates; every
read then asks Stripe (``retrieve_setup``), and the PaymentMethod Stripe made is recorded for
the customer once it succeeded (attached at Stripe under ``<seti id>:attach:<attempt>``). A
failed attempt (a decline, a failed challenge) leaves the intent waiting for another card:
the next confirm makes a new Stripe SetupIntent under the next attempt's key.

The payer's verification token (Square's verifyBuyer, intent STORE) is part of the setup
call, and Square replays a keyed call only when it is sent again identically; so it is kept
with the pending attempt (in ``next_action``, under ``_PENDING_VERIFICATION``, never shown:
``setup_intent_view`` leaves it out), and dropped when the attempt's answer is applied. A
setup left pending by a crash is then settled by any read or the ``refresh_setup_intent``
job, without the client's retry. It is no card data and no credential: a single-use proof
of the buyer's verification, bound to the card's single-use nonce.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.clock import seconds
from paymux.domain.errors import PaymuxError, card_error
from paymux.domain.ids import new_id
from paymux.gateways.base import (
    Gateway,
    GatewayError,
    GatewayInvalidRequest,
    GatewayStatus,
    SetupRequest,
    SetupResult,
)
from paymux.security import mask_pans
from paymux.services.context import (
    Context,
    CreatedRange,
    emit,
    get_owned,
    merge_metadata,
    page_of,
    request_livemode,
)
from paymux.services.customers import (
    CustomersService,
    TokenData,
    account_fingerprint,
    payment_method_from_token,
    payment_method_id_of_request,
    resolve_payment_method,
    take_card_details,
)
from paymux.services.gateway_calls import call_with_retries
from paymux.services.idempotency import current_claim, record_recovery_point
from paymux.services.routing import require_capability
from paymux.services.token_owners import claim_token, not_this_accounts
from paymux.services.views import payment_method_view
from paymux.storage.models import Customer, PaymentMethod, SetupIntent

__all__ = ["SetupIntentsService", "SetupParams", "UpdateSetupParams", "setup_intent_view"]

log = logging.getLogger(__name__)

REQUIRES_PAYMENT_METHOD = "requires_payment_method"
REQUIRES_CONFIRMATION = "requires_confirmation"
REQUIRES_ACTION = "requires_action"
SUCCEEDED = "succeeded"
CANCELED = "canceled"
# Where a confirm, an update of the card or customer, and a cancel may start.
_CONFIRMABLE = (REQUIRES_PAYMENT_METHOD, REQUIRES_CONFIRMATION)
_CANCELABLE = (REQUIRES_PAYMENT_METHOD, REQUIRES_CONFIRMATION, REQUIRES_ACTION)
CANCELLATION_REASONS = ("abandoned", "requested_by_customer", "duplicate")


# ``next_action``'s key for the pending attempt's verification token (module docstring).
_PENDING_VERIFICATION = "_pending_verification_token"


def _public_next_action(next_action: dict[str, Any] | None) -> dict[str, Any] | None:
    """``next_action`` as shown: without the pending attempt's verification token."""
    if not next_action or _PENDING_VERIFICATION not in next_action:
        return next_action
    shown = {k: v for k, v in next_action.items() if k != _PENDING_VERIFICATION}
    return shown or None


def _kept_verification(si: SetupIntent) -> str | None:
    kept = (si.next_action or {}).get(_PENDING_VERIFICATION)
    return str(kept) if kept else None


def _drop_verification(si: SetupIntent) -> None:
    """The attempt's answer is applied: its verification token is no longer needed."""
    if si.next_action and _PENDING_VERIFICATION in si.next_action:
        si.next_action = _public_next_action(si.next_action)


def setup_intent_view(si: SetupIntent) -> dict[str, Any]:
    """Stripe's SetupIntent object, plus the gateway and connection that ran it."""
    return {
        "id": si.id,
        "object": "setup_intent",
        "application": None,
        "cancellation_reason": si.cancellation_reason,
        "canceled_at": seconds(si.canceled_us),
        "client_secret": si.client_secret,
        "created": seconds(si.created_us),
        "customer": si.customer_id,
        "description": None,
        "last_setup_error": si.last_setup_error,
        "latest_attempt": None,
        "livemode": bool(si.livemode),
        "mandate": None,
        "metadata": si.metadata_ or {},
        "next_action": _public_next_action(si.next_action),
        "on_behalf_of": None,
        "payment_method": si.payment_method_id,
        "payment_method_options": {},
        "payment_method_types": list(si.payment_method_types or ["card"]),
        "return_url": si.return_url,
        "single_use_mandate": None,
        "status": si.status,
        "usage": si.usage,
        "gateway": si.gateway,
        "connection": si.connection_id,
        "gateway_reference": si.gateway_reference,
    }


@dataclass
class SetupParams:
    customer: str | None = None
    payment_method: str | None = None
    confirm: bool = False
    usage: str = "off_session"
    payment_method_types: list[str] | None = None
    return_url: str | None = None
    gateway: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # A payment method made from a gateway token (``card[token]``), as on a PaymentIntent.
    payment_method_data: dict[str, Any] | None = None
    # The caller's id for it (a Checkout Session's, derived from the session's): a create
    # with an id already made returns that SetupIntent, never a second one.
    id: str | None = None


@dataclass
class UpdateSetupParams:
    customer: str | None = None
    payment_method: str | None = None
    metadata: dict[str, str] | None = None


def _no_customer() -> PaymuxError:
    return PaymuxError.of(
        "parameter_missing",
        "A SetupIntent saves the card for a customer: set its customer first.",
        param="customer",
    )


def _unexpected(si: SetupIntent, action: str) -> PaymuxError:
    return PaymuxError.of(
        "setup_intent_unexpected_state",
        f"You cannot {action} this SetupIntent because it has a status of {si.status}.",
        status=si.status,
    )


class SetupIntentsService:
    def __init__(self, ctx: Context, customers: CustomersService | None = None) -> None:
        self.ctx = ctx
        self.customers = customers or CustomersService(ctx)

    # -- reads ------------------------------------------------------------------------------
    async def retrieve(self, account_id: str, seti_id: str) -> dict[str, Any]:
        """The SetupIntent; one left mid-call or waiting for the payer is settled first by
        asking its gateway (never inside a transaction)."""
        async with self.ctx.db.read() as s:
            si = await get_owned(s, SetupIntent, seti_id, account_id)
        if si.pending or (si.status == REQUIRES_ACTION and si.gateway_reference):
            try:
                view, _ = await self._settle(account_id, si)
            except GatewayError as exc:
                # A read answers with what we know when the gateway can't say more now; the
                # next read (or the confirm's retry) asks again.
                log.warning("setup %s not settled: %s", si.id, type(exc).__name__)
                return setup_intent_view(si)
            return view
        return setup_intent_view(si)

    async def settle_waiting(self, account_id: str, seti_id: str) -> None:
        """Job ``refresh_setup_intent``, queued by the gateway's webhook that the setup ended
        (the payer authenticated at the gateway, or failed to): settle it as the payer's
        return does, by asking the gateway (no transaction open). Applied once, whoever
        comes first (``_apply`` checks the attempt under the row's lock); a gateway error
        propagates, so the job is retried."""
        async with self.ctx.db.read() as s:
            si = await get_owned(s, SetupIntent, seti_id, account_id)
        if si.pending or (si.status == REQUIRES_ACTION and si.gateway_reference):
            await self._settle(account_id, si)

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        customer: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            SetupIntent,
            account_id,
            setup_intent_view,
            SetupIntent.customer_id == customer if customer else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    # -- create / update ------------------------------------------------------------------
    async def create(self, account_id: str, p: SetupParams) -> dict[str, Any]:
        claim = current_claim.get()
        if claim is not None and claim.resumed and claim.object_id:
            async with self.ctx.db.read() as s:
                made = await s.get(SetupIntent, claim.object_id)
            if made is not None and made.account_id == account_id:
                # A retry of a create that died after making it: finish, never a second one.
                if p.confirm and (made.pending or made.status in _CONFIRMABLE):
                    return await self.confirm(account_id, made.id)
                return await self.retrieve(account_id, made.id)
        if p.id is not None:
            async with self.ctx.db.read() as s:
                reserved = await s.get(SetupIntent, p.id)
            if reserved is not None:
                return await self.retrieve(account_id, reserved.id)
        routed = await self.ctx.named(account_id, p.gateway)
        gateway = routed.gateway
        require_capability(gateway.name, "vault", param="gateway")  # saving needs a vault
        # The input is checked before anything is made: a refused create writes nothing
        # (and leaves a single-use token in payment_method_data unused).
        if p.confirm and not p.customer:
            raise _no_customer()
        if p.customer:
            async with self.ctx.db.read() as s:
                await get_owned(s, Customer, p.customer, account_id, param="customer")
        pm_id = None
        if p.payment_method_data is not None:
            pm_id = (
                await self._from_data(
                    account_id,
                    gateway.name,
                    routed.connection_id,
                    p.payment_method_data,
                    p.payment_method,
                    "setup_intents.create",
                )
            ).id
        elif p.payment_method:
            pm = await resolve_payment_method(
                self.ctx,
                account_id,
                gateway.name,
                p.payment_method,
                customer_id=p.customer,
                connection_id=routed.connection_id,
            )
            pm_id = pm.id
        seti_id = p.id or new_id("seti")
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            si = SetupIntent(
                id=seti_id,
                account_id=account_id,
                status=REQUIRES_CONFIRMATION if pm_id else REQUIRES_PAYMENT_METHOD,
                usage=p.usage,
                customer_id=p.customer,
                payment_method_id=pm_id,
                gateway=gateway.name,
                connection_id=routed.connection_id,
                client_secret=new_id(f"{seti_id}_secret", 24),
                return_url=p.return_url,
                payment_method_types=p.payment_method_types,
                attempts=0,
                pending=False,
                livemode=request_livemode(),
                metadata_=p.metadata,
                created_us=now,
                updated_us=now,
            )
            s.add(si)
            await record_recovery_point(s, "created", seti_id)
            await emit(s, account_id, "setup_intent.created", setup_intent_view(si), now)
            view = setup_intent_view(si)
        if p.confirm:
            return await self.confirm(account_id, seti_id)
        return view

    async def update(self, account_id: str, seti_id: str, p: UpdateSetupParams) -> dict[str, Any]:
        """Metadata in any state; the card and the customer only before confirmation."""
        changes_payer = p.customer is not None or p.payment_method is not None
        async with self.ctx.db.read() as s:
            si = await get_owned(s, SetupIntent, seti_id, account_id)
            if changes_payer and (si.pending or si.status not in _CONFIRMABLE):
                raise _unexpected(si, "update")
            if p.customer is not None:
                await get_owned(s, Customer, p.customer, account_id, param="customer")
        pm_id = None
        if p.payment_method is not None:
            pm = await resolve_payment_method(
                self.ctx,
                account_id,
                si.gateway,
                p.payment_method,
                customer_id=p.customer or si.customer_id,
                connection_id=si.connection_id,
            )
            pm_id = pm.id
        async with self.ctx.db.write() as s:
            si = await get_owned(s, SetupIntent, seti_id, account_id, lock=True)
            if changes_payer and (si.pending or si.status not in _CONFIRMABLE):
                raise _unexpected(si, "update")
            if p.customer is not None:
                si.customer_id = p.customer
            if pm_id is not None:
                si.payment_method_id = pm_id
                si.status = REQUIRES_CONFIRMATION
            if p.metadata is not None:
                si.metadata_ = merge_metadata(si.metadata_, p.metadata)
            si.updated_us = max(self.ctx.now_us(), si.updated_us)
            return setup_intent_view(si)

    async def cancel(self, account_id: str, seti_id: str, reason: str | None) -> dict[str, Any]:
        if reason is not None and reason not in CANCELLATION_REASONS:
            raise PaymuxError.of(
                "parameter_invalid",
                f"cancellation_reason must be one of {', '.join(CANCELLATION_REASONS)}.",
                param="cancellation_reason",
            )
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            si = await get_owned(s, SetupIntent, seti_id, account_id, lock=True)
            if si.pending or si.status not in _CANCELABLE:
                raise _unexpected(si, "cancel")
            si.status = CANCELED
            si.cancellation_reason = reason
            si.canceled_us = now
            si.next_action = None
            si.updated_us = max(now, si.updated_us)
            view = setup_intent_view(si)
            await emit(s, account_id, "setup_intent.canceled", view, now)
            return view

    # -- confirm ----------------------------------------------------------------------------
    async def confirm(
        self,
        account_id: str,
        seti_id: str,
        *,
        payment_method: str | None = None,
        return_url: str | None = None,
        payment_method_data: dict[str, Any] | None = None,
        verification_token: str | None = None,
    ) -> dict[str, Any]:
        """``verification_token``: the payer's verification for storing the card, made in
        the browser with the card's token (Square's verifyBuyer, intent STORE). It is sent
        with this confirm's setup call, kept with the pending attempt until its answer is
        applied (so a read or the settle job can send it again after a crash), then
        dropped."""
        async with self.ctx.db.read() as s:
            si = await get_owned(s, SetupIntent, seti_id, account_id)
        claim = current_claim.get()
        if (
            claim is not None
            and claim.object_id == seti_id
            and claim.recovery_point == "setup_started"
            and not si.pending
        ):
            return _answered(si)  # this key's confirm already ran (its answer was lost)
        if si.pending:  # a call of ours whose answer never came: ask again, same key
            view, error = await self._settle(account_id, si, verification_token)
            if error is not None:
                raise error
            return view
        if si.status not in _CONFIRMABLE:
            raise _unexpected(si, "confirm")
        customer_id = si.customer_id
        if customer_id is None:
            raise _no_customer()
        pm_id = si.payment_method_id
        if payment_method_data is not None:
            pm_id = (
                await self._from_data(
                    account_id,
                    si.gateway,
                    si.connection_id,
                    payment_method_data,
                    payment_method,
                    f"setup_intents.confirm:{seti_id}",
                )
            ).id
        elif payment_method is not None:
            pm = await resolve_payment_method(
                self.ctx,
                account_id,
                si.gateway,
                payment_method,
                customer_id=customer_id,
                connection_id=si.connection_id,
            )
            pm_id = pm.id
        if pm_id is None and not (_gateway_makes_method(si) or _browser_confirms(si)):
            raise PaymuxError.of(
                "parameter_missing",
                "Missing required param: payment_method.",
                param="payment_method",
            )
        async with self.ctx.db.read() as s:
            customer = await get_owned(s, Customer, customer_id, account_id, param="customer")
            chosen = (
                await get_owned(s, PaymentMethod, pm_id, account_id, param="payment_method")
                if pm_id is not None
                else None
            )
        if chosen is not None and chosen.customer_id not in (None, customer_id):
            raise PaymuxError.of(
                "payment_method_unexpected_state",
                "The payment method is attached to another customer.",
                param="payment_method",
            )
        gateway = await self.ctx.gateway_of(si)
        # The customer's id at the gateway (made once, kept on the customer): before we
        # record the call, as it is a call of its own with a key of its own.
        await self.customers.gateway_customer(account_id, customer, gateway, si.connection_id)
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            si = await get_owned(s, SetupIntent, seti_id, account_id, lock=True)
            if si.pending or si.status not in _CONFIRMABLE:
                raise _unexpected(si, "confirm")
            si.payment_method_id = pm_id
            if return_url is not None:
                si.return_url = return_url
            si.attempts += 1
            si.pending = True
            si.last_setup_error = None
            si.next_action = (
                {_PENDING_VERIFICATION: verification_token} if verification_token else None
            )
            si.updated_us = max(now, si.updated_us)
            await record_recovery_point(s, "setup_started", seti_id)
        view, error = await self._settle(account_id, si, verification_token)
        if error is not None:
            raise error
        return view

    async def _from_data(
        self,
        account_id: str,
        gateway_name: str,
        connection_id: str | None,
        data: dict[str, Any],
        payment_method: str | None,
        step: str,
    ) -> PaymentMethod:
        """``payment_method_data``: a new detached payment method from a gateway token, as
        ``POST /v1/payment_methods`` makes one (a token, never card data), whose id comes
        from the request's Idempotency-Key so a retry after a crash finds it."""
        if payment_method is not None:
            raise PaymuxError.of(
                "parameters_exclusive",
                "Send payment_method or payment_method_data, not both.",
                param="payment_method_data",
            )
        return await payment_method_from_token(
            self.ctx,
            account_id,
            gateway_name,
            TokenData.of(data, "payment_method_data"),
            connection_id=connection_id,
            param="payment_method_data[card][token]",
            made_as=payment_method_id_of_request(step),
        )

    async def _request(
        self,
        account_id: str,
        si: SetupIntent,
        gateway: Gateway,
        verification_token: str | None = None,
    ) -> SetupRequest:
        """The gateway request of the setup ``si`` records: the same on every retry (with
        the payer's verification token where the confirm, or its retry, carries one)."""
        assert si.customer_id is not None
        async with self.ctx.db.read() as s:
            customer = await get_owned(s, Customer, si.customer_id, account_id)
            pm = (
                await get_owned(s, PaymentMethod, si.payment_method_id, account_id)
                if si.payment_method_id is not None
                else None
            )
        customer_token = await self.customers.gateway_customer(
            account_id, customer, gateway, si.connection_id
        )
        return SetupRequest(
            # None: the gateway makes the payment method with the payer (a PayPal wallet).
            payment_method_token=pm.token if pm is not None else "",
            customer_token=customer_token,
            reference=si.id,
            usage=si.usage,
            return_url=si.return_url,
            verification_token=verification_token,
        )

    async def _settle(
        self, account_id: str, si: SetupIntent, verification_token: str | None = None
    ) -> tuple[dict[str, Any], PaymuxError | None]:
        """Ask the gateway (the setup call of a pending attempt, or how a setup waiting for
        the payer stands) and apply its answer: (the view, the error a confirm answers)."""
        gateway = await self.ctx.gateway_of(si)
        attempt = si.attempts
        if si.pending:
            verification_token = verification_token or _kept_verification(si)
            request = await self._request(account_id, si, gateway, verification_token)
            key = f"{si.id}:setup:{attempt}"
            call = lambda: gateway.setup(request, idempotency_key=key)  # noqa: E731
        else:
            assert si.gateway_reference is not None
            reference, key = si.gateway_reference, f"{si.id}:attach:{attempt}"
            call = lambda: gateway.retrieve_setup(reference, idempotency_key=key)  # noqa: E731
        try:
            result = await call_with_retries(self.ctx.settings, call)
        except GatewayInvalidRequest as exc:
            if not si.pending:
                raise
            return await self._refused(account_id, si.id, attempt, gateway.name, exc)
        return await self._apply(account_id, si.id, attempt, gateway.name, result)

    async def _refused(
        self, account_id: str, seti_id: str, attempt: int, gateway_name: str, exc: Exception
    ) -> tuple[dict[str, Any], PaymuxError | None]:
        """The gateway refused the request outright (not a decline): the card can't be set
        up this way; the intent waits for another payment method."""
        error = PaymuxError.of(
            "payment_method_unexpected_state",
            # Stored and answered: masked, in case the gateway's text echoes what it was sent.
            f"The {gateway_name} gateway refused to save the payment method: {mask_pans(str(exc))}",
            param="payment_method",
        )
        async with self.ctx.db.write() as s:
            si = await get_owned(s, SetupIntent, seti_id, account_id, lock=True)
            if si.pending and si.attempts == attempt:
                si.pending = False
                _drop_verification(si)
                si.status = REQUIRES_PAYMENT_METHOD
                si.last_setup_error = {
                    "type": "invalid_request_error",
                    "code": error.code,
                    "message": error.message,
                    "param": "payment_method",
                    "payment_method": {"id": si.payment_method_id},
                }
                si.payment_method_id = None
                now = self.ctx.now_us()
                si.updated_us = max(now, si.updated_us)
                await emit(s, account_id, "setup_intent.setup_failed", setup_intent_view(si), now)
            view = setup_intent_view(si)
        error.extra = {"setup_intent": view}
        return view, error

    async def _apply(
        self,
        account_id: str,
        seti_id: str,
        attempt: int,
        gateway_name: str,
        result: SetupResult,
    ) -> tuple[dict[str, Any], PaymuxError | None]:
        """Apply the gateway's answer for attempt ``attempt``, once (a later attempt's state,
        or an answer applied already, is left as it is)."""
        now = self.ctx.now_us()
        error: PaymuxError | None = None
        async with self.ctx.db.write() as s:
            si = await get_owned(s, SetupIntent, seti_id, account_id, lock=True)
            current = si.attempts == attempt and (si.pending or si.status == REQUIRES_ACTION)
            if current:
                si.pending = False
                _drop_verification(si)
                si.gateway_reference = result.reference or si.gateway_reference
                si.updated_us = max(now, si.updated_us)
                match result.status:
                    case GatewayStatus.SUCCEEDED:
                        error = await self._succeeded(s, si, result, now)
                    case GatewayStatus.REQUIRES_ACTION:
                        if si.status != REQUIRES_ACTION:
                            si.status = REQUIRES_ACTION
                            si.next_action = _next_action(result, si.return_url, gateway_name)
                            view = setup_intent_view(si)
                            await emit(s, account_id, "setup_intent.requires_action", view, now)
                    case GatewayStatus.FAILED:
                        error = self._failed(si, result, gateway_name)
                        view = setup_intent_view(si)
                        await emit(s, account_id, "setup_intent.setup_failed", view, now)
                    case GatewayStatus.CANCELED:
                        si.status = CANCELED
                        si.next_action = None
                        si.canceled_us = now
                        view = setup_intent_view(si)
                        await emit(s, account_id, "setup_intent.canceled", view, now)
                    case _:
                        pass  # still processing at the gateway: asked again on the next read
            view = setup_intent_view(si)
        if error is not None:
            error.extra = {"setup_intent": view}
        return view, error

    async def _succeeded(
        self, s: AsyncSession, si: SetupIntent, result: SetupResult, now: int
    ) -> PaymuxError | None:
        """Record the saved card; a token the gateway saved it under that another account
        owns is refused (the intent fails with ``payment_method_unexpected_state``, nothing
        records the token: ``token_owners.not_this_accounts``)."""
        if si.payment_method_id is None:
            pm = self._new_method(si, result, now)
            # The gateway's new token is the account's, claimed with its payment method.
            if not await claim_token(
                s, gateway=pm.gateway, token=pm.token, account_id=si.account_id, now=now
            ):
                return await self._not_ours(s, si, pm.gateway, pm.token, now)
            s.add(pm)
            await s.flush()
            si.payment_method_id = pm.id
        else:
            pm = await get_owned(s, PaymentMethod, si.payment_method_id, si.account_id, lock=True)
        if result.card is not None and result.card.token != pm.token:
            # The gateway saved the card under an id of its own (a vault token, a card on
            # file): that is what off-session payments charge from now on, and the account's.
            if not await claim_token(
                s, gateway=pm.gateway, token=result.card.token, account_id=si.account_id, now=now
            ):
                return await self._not_ours(s, si, pm.gateway, result.card.token, now)
            take_card_details(pm, result.card)
        si.status = SUCCEEDED
        si.next_action = None
        if pm.customer_id != si.customer_id:
            pm.customer_id = si.customer_id
            await emit(s, si.account_id, "payment_method.attached", payment_method_view(pm), now)
        await emit(s, si.account_id, "setup_intent.succeeded", setup_intent_view(si), now)
        return None

    @staticmethod
    async def _not_ours(
        s: AsyncSession, si: SetupIntent, gateway: str, token: str, now: int
    ) -> PaymuxError:
        """The gateway saved the card under ``token``, which another account owns: refused as
        a gateway's refusal to save is (``_refused``), naming only this account's own payment
        method. The intent waits for another payment method. A gateway whose setup reference
        is the saved token (Square's card on file) has it dropped too: it is not ours."""
        error = not_this_accounts(gateway, si.payment_method_id)
        if si.gateway_reference == token:
            si.gateway_reference = None
        si.status = REQUIRES_PAYMENT_METHOD
        si.next_action = None
        si.last_setup_error = {
            "type": str(error.type),
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "payment_method": {"id": si.payment_method_id},
        }
        si.payment_method_id = None
        await emit(s, si.account_id, "setup_intent.setup_failed", setup_intent_view(si), now)
        return error

    @staticmethod
    def _new_method(si: SetupIntent, result: SetupResult, now: int) -> PaymentMethod:
        """The payment method a gateway made with the payer (a PayPal wallet saved from a
        setup token paymux created; the PaymentMethod Stripe.js made with the card):
        recorded now, as the attach endpoint records one."""
        card = result.card
        if card is None:
            raise PaymuxError.of(
                "gateway_invalid_request", "The gateway saved no payment method.", status=si.status
            )
        return PaymentMethod(
            id=new_id("pm"),
            account_id=si.account_id,
            customer_id=None,
            gateway=si.gateway,
            connection_id=si.connection_id,
            livemode=si.livemode,
            token=card.token,
            type=card.type,
            card_brand=card.brand,
            card_last4=card.last4,
            card_exp_month=card.exp_month,
            card_exp_year=card.exp_year,
            card_fingerprint=account_fingerprint(si.account_id, card.fingerprint),
            card_country=card.country,
            card_funding=card.funding,
            card_bin=card.bin,
            card_cvc_check=card.cvc_check,
            card_address_line1_check=card.address_line1_check,
            card_address_zip_check=card.address_zip_check,
            metadata_={},
            created_us=now,
        )

    @staticmethod
    def _failed(si: SetupIntent, result: SetupResult, gateway_name: str) -> PaymuxError:
        decline = result.decline
        code, message = (
            (decline.gateway_code, decline.message)
            if decline is not None
            else ("generic_decline", "The card could not be set up.")
        )
        error = card_error(gateway_name, code, message)
        si.status = REQUIRES_PAYMENT_METHOD
        si.next_action = None
        si.last_setup_error = {
            "type": str(error.type),
            "code": error.code,
            "decline_code": error.decline_code,
            "message": error.message,
            # The taxonomy's words for the payer (paymux.js shows them after Stripe.js).
            "user_message": error.user_message,
            "param": error.param,
            "gateway": gateway_name,
            "gateway_code": code,
            "payment_method": {"id": si.payment_method_id},
        }
        si.payment_method_id = None
        return error


def _answered(si: SetupIntent) -> dict[str, Any]:
    """What the confirm that ran under a key answered, for its retry: the intent, or the
    refusal its ``last_setup_error`` records (a card error, or the gateway's refusal)."""
    view = setup_intent_view(si)
    failed = si.last_setup_error
    if si.status != REQUIRES_PAYMENT_METHOD or not failed:
        return view
    if failed.get("gateway_code"):
        error = card_error(failed["gateway"], failed["gateway_code"], failed["message"])
    else:
        error = PaymuxError.of(failed["code"], failed["message"], param=failed.get("param"))
    error.extra = {"setup_intent": view}
    raise error


def _gateway_makes_method(si: SetupIntent) -> bool:
    """A SetupIntent for a PayPal wallet only: the gateway makes the payment method with the
    payer (a setup token the payer approves at PayPal), so none is needed to confirm."""
    return list(si.payment_method_types or []) == ["paypal"]


def _browser_confirms(si: SetupIntent) -> bool:
    """A card SetupIntent routed to Stripe: confirmed without a card, paymux makes Stripe's
    SetupIntent and hands its secret to Stripe.js (``next_action`` ``use_stripe_sdk``),
    which makes the one PaymentMethod with the card, confirms and runs 3-D Secure in the
    payer's browser; paymux then reads the outcome from Stripe (``retrieve_setup``) and
    records the PaymentMethod Stripe made, once (``_succeeded``)."""
    return si.gateway == "stripe" and "card" in (si.payment_method_types or ["card"])


def _next_action(result: SetupResult, return_url: str | None, gateway_name: str) -> dict[str, Any]:
    """Stripe's ``next_action``: where to send the payer, and where they come back to. For
    PayPal, also ``paypal_setup_token``: the setup token the payer approves, which PayPal's
    JS SDK buttons take from ``createVaultSetupToken`` (paymux.js and the hosted page) to
    approve it in PayPal's window, rather than by the redirect."""
    action = dict(result.next_action or {})
    redirect = dict(action.get("redirect_to_url") or {})
    if redirect:
        redirect.setdefault("return_url", return_url)
        if redirect.get("return_url") is None:
            redirect["return_url"] = return_url
        shown: dict[str, Any] = {"type": "redirect_to_url", "redirect_to_url": redirect}
        if gateway_name == "paypal" and result.reference:
            shown["paypal_setup_token"] = result.reference
        return shown
    action.setdefault("type", "use_stripe_sdk")
    return action
