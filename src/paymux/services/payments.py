"""Payment intents: create, confirm, capture, cancel, expire; and applying gateway outcomes.

Each gateway call follows gateway_calls: the intent moves to ``processing`` and the attempt is
recorded in one committed transaction (a conditional UPDATE, so two concurrent confirms can't
both start), the call runs with no transaction open, and its outcome is applied in another.
``apply_result`` is the one place a gateway outcome changes an intent: the synchronous path,
the settlement job and inbound webhooks all go through it, and it ignores outcomes that would
move the intent backwards (a late webhook), so applying one twice changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError, card_error
from paymux.domain.ids import new_id
from paymux.domain.states import PaymentIntentStatus as S
from paymux.domain.states import check_operation, check_transition
from paymux.gateways.base import (
    AuthorizeRequest,
    GatewayInvalidRequest,
    GatewayRateLimited,
    GatewayResult,
    GatewayStatus,
    GatewayUnavailable,
)
from paymux.money import Money, MoneyError, max_charge_amount, min_charge_amount
from paymux.services.context import Context, emit, get_owned, page_of
from paymux.services.customers import find_payment_method, resolve_payment_method
from paymux.services.gateway_calls import call_with_retries, defer_attempt, start_attempt
from paymux.services.routing import choose_gateway
from paymux.services.views import payment_intent_view
from paymux.storage.models import Customer, GatewayAttempt, PaymentIntent, PaymentMethod

__all__ = [
    "CreateParams",
    "PaymentsService",
    "UpdateParams",
    "amount_from",
    "charge_amount",
    "check_currency",
]

log = logging.getLogger(__name__)

CANCELLATION_REASONS = frozenset(
    {"duplicate", "fraudulent", "requested_by_customer", "abandoned", "automatic"}
)


def charge_amount(amount: int, currency: str) -> Money:
    """A chargeable amount, or a 400 naming the parameter: before any gateway call."""
    try:
        money = Money(amount, currency)
    except MoneyError as exc:
        param = "currency" if exc.code == "currency_unknown" else "amount"
        raise PaymuxError.of(exc.code, str(exc), param=param) from exc
    if amount <= 0:
        raise PaymuxError.of(
            "amount_invalid",
            "The amount must be a positive integer in minor units.",
            param="amount",
        )
    minimum = min_charge_amount(money.currency)
    if amount < minimum:
        floor = Money(minimum, money.currency).to_decimal_string()
        raise PaymuxError.of(
            "amount_too_small",
            f"Amount must be at least {floor} {money.currency.lower()} ({minimum} in minor units).",
            param="amount",
        )
    if amount > max_charge_amount(money.currency):
        raise PaymuxError.of(
            "amount_too_large",
            f"Amount must be no more than {max_charge_amount(money.currency)} in minor units.",
            param="amount",
        )
    return money


def amount_from(amount: int | None, amount_decimal: str | None, currency: str) -> int:
    """Minor units from ``amount`` or ``amount_decimal`` (exactly one), never rounding."""
    if amount is not None and amount_decimal is not None:
        raise PaymuxError.of(
            "parameters_exclusive",
            "Send amount or amount_decimal, not both.",
            param="amount_decimal",
        )
    if amount_decimal is not None:
        try:
            return Money.parse(amount_decimal, currency).amount
        except MoneyError as exc:
            param = "currency" if exc.code == "currency_unknown" else "amount_decimal"
            raise PaymuxError.of(exc.code, str(exc), param=param) from exc
    if amount is None:
        raise PaymuxError.of("parameter_missing", "Missing required param: amount.", param="amount")
    return amount


def check_currency(given: str | None, expected: str) -> None:
    """A currency sent alongside an amount must be the object's own."""
    if given is not None and given.upper() != expected.upper():
        raise PaymuxError.of(
            "currency_mismatch",
            f"The currency {given.lower()} does not match the payment's currency "
            f"{expected.lower()}.",
            param="currency",
        )


@dataclass
class CreateParams:
    amount: int
    currency: str
    capture_method: str = "automatic"
    customer: str | None = None
    payment_method: str | None = None
    gateway: str | None = None
    confirm: bool = False
    off_session: bool = False
    setup_future_usage: str | None = None
    return_url: str | None = None
    description: str | None = None
    statement_descriptor: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class UpdateParams:
    amount: int | None = None
    currency: str | None = None
    customer: str | None = None
    payment_method: str | None = None
    description: str | None = None
    statement_descriptor: str | None = None
    metadata: dict[str, str] | None = None
    setup_future_usage: str | None = None
    capture_method: str | None = None


class PaymentsService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- reads ------------------------------------------------------------------------------
    async def retrieve(self, account_id: str, pi_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            return self._view(pi)

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        customer: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            PaymentIntent,
            account_id,
            self._view,
            PaymentIntent.customer_id == customer if customer else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )

    def _view(self, pi: PaymentIntent) -> dict[str, Any]:
        extra = None
        if pi.status in (S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION):
            gateway = self.ctx.gateways.get(pi.gateway)
            if gateway is not None:
                extra = {"client": {**gateway.browser_params(pi.id), **(pi.gateway_client or {})}}
        return payment_intent_view(pi, extra)

    # -- create / update --------------------------------------------------------------------
    async def create(self, account_id: str, p: CreateParams) -> dict[str, Any]:
        money = charge_amount(p.amount, p.currency)
        gateway = choose_gateway(self.ctx, p.gateway, money)
        if p.off_session and not p.confirm:
            raise PaymuxError.of(
                "parameter_invalid",
                "off_session is only allowed together with confirm=true.",
                param="off_session",
            )
        pm_id: str | None = None
        if p.payment_method:
            pm = await resolve_payment_method(
                self.ctx, account_id, gateway.name, p.payment_method, customer_id=p.customer
            )
            pm_id = pm.id
        if p.customer:
            async with self.ctx.db.read() as s:
                await get_owned(s, Customer, p.customer, account_id, param="customer")
        pi_id = new_id("pi")
        opened = None
        if not p.confirm:
            # Gateways whose browser SDK confirms (Stripe.js) need their payment now.
            opened = await call_with_retries(
                self.ctx.settings,
                lambda: gateway.open_payment(
                    money, pi_id, p.capture_method == "automatic", idempotency_key=f"{pi_id}:open"
                ),
            )
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            pi = PaymentIntent(
                id=pi_id,
                gateway_reference=opened.reference if opened else None,
                gateway_client=opened.client if opened else None,
                account_id=account_id,
                status=S.REQUIRES_CONFIRMATION if pm_id else S.REQUIRES_PAYMENT_METHOD,
                amount=money.amount,
                currency=money.currency,
                amount_capturable=0,
                amount_received=0,
                amount_refunded=0,
                amount_refund_pending=0,
                capture_method=p.capture_method,
                customer_id=p.customer,
                payment_method_id=pm_id,
                setup_future_usage=p.setup_future_usage,
                off_session=p.off_session,
                gateway=gateway.name,
                return_url=p.return_url,
                description=p.description,
                statement_descriptor=p.statement_descriptor,
                metadata_=p.metadata,
                confirm_count=0,
                created_us=now,
                updated_us=now,
            )
            s.add(pi)
            await s.flush()
            await emit(s, account_id, "payment_intent.created", self._view(pi), now)
        if p.confirm:
            return await self.confirm(account_id, pi.id, off_session=p.off_session)
        return self._view(pi)

    async def update(self, account_id: str, pi_id: str, p: UpdateParams) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            check_operation("update", pi.status)
            gateway_name = pi.gateway
            customer = p.customer or pi.customer_id
        pm_id = None
        if p.payment_method:
            pm = await resolve_payment_method(
                self.ctx, account_id, gateway_name, p.payment_method, customer_id=customer
            )
            pm_id = pm.id
        async with self.ctx.db.write() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            check_operation("update", pi.status)
            if p.amount is not None or p.currency is not None:
                money = charge_amount(
                    p.amount if p.amount is not None else pi.amount, p.currency or pi.currency
                )
                pi.amount, pi.currency = money.amount, money.currency
            if p.customer is not None:
                await get_owned(s, Customer, p.customer, account_id, param="customer")
                pi.customer_id = p.customer
            if pm_id is not None:
                pi.payment_method_id = pm_id
                pi.status = S.REQUIRES_CONFIRMATION
            for name in (
                "description",
                "statement_descriptor",
                "setup_future_usage",
                "capture_method",
            ):
                value = getattr(p, name)
                if value is not None:
                    setattr(pi, name, value)
            if p.metadata is not None:
                merged = dict(pi.metadata_ or {})
                for key, value in p.metadata.items():
                    if value == "":
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                pi.metadata_ = merged
            pi.updated_us = self.ctx.now_us()
            return self._view(pi)

    # -- confirm ----------------------------------------------------------------------------
    async def confirm(
        self,
        account_id: str,
        pi_id: str,
        *,
        payment_method: str | None = None,
        off_session: bool | None = None,
        return_url: str | None = None,
        setup_future_usage: str | None = None,
    ) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            check_operation("confirm", pi.status)
            gateway = self.ctx.gateway(pi.gateway)
            customer_id = pi.customer_id
            pm_ref = payment_method or pi.payment_method_id
            known = (
                await find_payment_method(s, account_id, gateway.name, pm_ref) if pm_ref else None
            )
        if not pm_ref:
            raise PaymuxError.of(
                "parameter_missing",
                "You must provide a payment_method to confirm this PaymentIntent.",
                param="payment_method",
            )
        pm = await resolve_payment_method(
            self.ctx, account_id, gateway.name, pm_ref, customer_id=customer_id, known=known
        )
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            changes: dict[str, Any] = {
                "status": S.PROCESSING,
                "payment_method_id": pm.id,
                "confirm_count": PaymentIntent.confirm_count + 1,
                "last_payment_error": None,
                "next_action": None,
                "updated_us": now,
            }
            if off_session is not None:
                changes["off_session"] = off_session
            if return_url is not None:
                changes["return_url"] = return_url
            if setup_future_usage is not None:
                changes["setup_future_usage"] = setup_future_usage
            started = await s.execute(
                update(PaymentIntent)
                .where(
                    PaymentIntent.id == pi_id,
                    PaymentIntent.account_id == account_id,
                    PaymentIntent.status.in_([S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION]),
                )
                .values(**changes)
                .returning(PaymentIntent)  # the updated row: no second SELECT
            )
            updated = started.scalar_one_or_none()
            if updated is None:
                current = await get_owned(s, PaymentIntent, pi_id, account_id)
                check_operation("confirm", current.status)
                raise PaymuxError.of("payment_intent_unexpected_state", status=current.status)
            pi = updated
            count = pi.confirm_count
            customer_token = None
            if pm.customer_id:
                customer = await s.get(Customer, pm.customer_id)
                customer_token = (
                    (customer.gateway_refs or {}).get(gateway.name) if customer else None
                )
            request = _authorize_request(pi, pm.token, customer_token)
            attempt = await start_attempt(
                s,
                account_id=account_id,
                gateway=gateway.name,
                operation="authorize",
                object_id=pi.id,
                idempotency_key=f"{pi.id}:authorize:{count}",
                request={"token": pm.token, "customer_token": customer_token},
                now_us=now,
            )
        return await self._run_attempt(
            attempt, lambda: gateway.authorize(request, idempotency_key=attempt.idempotency_key)
        )

    async def _run_attempt(self, attempt: GatewayAttempt, call: Any) -> dict[str, Any]:
        """Make the call (no transaction open) and record what came back."""
        try:
            result = await call_with_retries(self.ctx.settings, call)
        except (GatewayUnavailable, GatewayRateLimited) as exc:
            async with self.ctx.db.write() as s:
                await defer_attempt(s, attempt.id, exc, self.ctx.settings, now_us=self.ctx.now_us())
                pi = await s.get(PaymentIntent, attempt.object_id)
                assert pi is not None
                return self._view(pi)
        except GatewayInvalidRequest as exc:
            await self.abandon_attempt(attempt.id, f"{exc.code}: {exc}")
            raise PaymuxError.of(
                "gateway_invalid_request",
                f"The gateway refused the request: {exc}",
                gateway=attempt.gateway,
                gateway_code=exc.code,
            ) from exc
        return await self.settle(attempt.id, result)

    async def settle(self, attempt_id: str, result: GatewayResult) -> dict[str, Any]:
        """Record a call's outcome on its attempt and apply it to the intent (idempotent)."""
        async with self.ctx.db.write() as s:
            attempt, pi = await _lock_attempt_and_intent(s, attempt_id)
            if attempt.status == "pending":
                attempt.status = "settled"
                attempt.result = _result_json(result)
                attempt.updated_us = self.ctx.now_us()
                await self.apply_result(s, pi, result, operation=attempt.operation)
            view = self._view(pi)
        if (
            pi.status == S.REQUIRES_PAYMENT_METHOD
            and pi.last_payment_error
            and (attempt.operation == "authorize")
        ):
            last = pi.last_payment_error
            error = PaymuxError.of(
                last["code"],
                last["message"],
                decline_code=last.get("decline_code"),
                gateway=last.get("gateway"),
                gateway_code=last.get("gateway_code"),
            )
            error.extra = {"payment_intent": view}
            raise error
        return view

    async def abandon_attempt(self, attempt_id: str, reason: str) -> None:
        """The call is known not to have happened: put the intent back where it was."""
        async with self.ctx.db.write() as s:
            attempt, pi = await _lock_attempt_and_intent(s, attempt_id)
            if attempt.status != "pending":
                return
            attempt.status = "abandoned"
            attempt.error = reason
            attempt.updated_us = self.ctx.now_us()
            if pi.status != S.PROCESSING:
                return
            if attempt.operation == "authorize":
                error = PaymuxError.of(
                    "gateway_unavailable",
                    "The payment could not be processed; no charge was made.",
                    gateway=attempt.gateway,
                )
                pi.status = S.REQUIRES_PAYMENT_METHOD
                pi.last_payment_error = error.to_dict()
                pi.payment_method_id = None
                await emit(
                    s,
                    pi.account_id,
                    "payment_intent.payment_failed",
                    self._view(pi),
                    self.ctx.now_us(),
                )
            else:
                pi.status = S.REQUIRES_CAPTURE
            pi.updated_us = self.ctx.now_us()

    async def apply_result(
        self, s: AsyncSession, pi: PaymentIntent, result: GatewayResult, *, operation: str
    ) -> bool:
        """Move the intent to what the gateway says, if that is a legal move. True if it moved."""
        now = self.ctx.now_us()
        target, event = _TARGETS[result.status]
        if result.status is GatewayStatus.FAILED and operation in ("capture", "void"):
            target, event = S.REQUIRES_CAPTURE, None
        if pi.status == target or not check_transition(pi.status, target):
            log.info("ignoring %s outcome for %s in %s", result.status, pi.id, pi.status)
            return False
        pi.status = target
        pi.updated_us = now
        if result.reference:
            pi.gateway_reference = result.reference
        if result.risk_level:
            pi.risk_level = result.risk_level
        pi.next_action = None
        if target == S.REQUIRES_ACTION:
            pi.next_action = result.next_action
        elif target == S.REQUIRES_CAPTURE:
            pi.amount_capturable = result.amount_authorized or pi.amount
            pi.authorized_us = pi.authorized_us or now
        elif target == S.SUCCEEDED:
            pi.amount_received = result.amount_captured or pi.amount
            pi.amount_capturable = 0
        elif target == S.CANCELED:
            pi.amount_capturable = 0
            pi.canceled_us = now
            pi.cancellation_reason = pi.cancellation_reason or "requested_by_customer"
        elif target == S.REQUIRES_PAYMENT_METHOD and result.decline is not None:
            error = card_error(pi.gateway, result.decline.gateway_code, result.decline.message)
            error_dict = error.to_dict()
            error_dict["payment_method"] = pi.payment_method_id
            pi.last_payment_error = error_dict
            pi.payment_method_id = None
        if event:
            await emit(s, pi.account_id, event, self._view(pi), now)
        return True

    # -- capture / cancel -------------------------------------------------------------------
    async def capture(
        self,
        account_id: str,
        pi_id: str,
        amount_to_capture: int | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            check_operation("capture", pi.status)
            check_currency(currency, pi.currency)
            amount = pi.amount_capturable if amount_to_capture is None else amount_to_capture
            if amount <= 0:
                raise PaymuxError.of("amount_invalid", param="amount_to_capture")
            if amount > pi.amount_capturable:
                raise PaymuxError.of(
                    "amount_to_capture_too_large",
                    f"The amount to capture ({amount}) is more than the amount capturable "
                    f"({pi.amount_capturable}).",
                    param="amount_to_capture",
                )
            attempt = await self._begin(
                s, pi, "capture", S.REQUIRES_CAPTURE, now, {"amount": amount}
            )
            reference, currency = pi.gateway_reference, pi.currency
        gateway = self.ctx.gateway(pi.gateway)
        assert reference is not None
        return await self._run_attempt(
            attempt,
            lambda: gateway.capture(
                reference, Money(amount, currency), idempotency_key=attempt.idempotency_key
            ),
        )

    async def _begin(
        self,
        s: AsyncSession,
        pi: PaymentIntent,
        operation: str,
        from_status: str,
        now: int,
        request: dict[str, Any],
    ) -> GatewayAttempt:
        moved = await s.execute(
            update(PaymentIntent)
            .where(PaymentIntent.id == pi.id, PaymentIntent.status == from_status)
            .values(status=S.PROCESSING, updated_us=now)
        )
        if getattr(moved, "rowcount", 1) != 1:
            await s.refresh(pi)
            check_operation(operation, pi.status)
            raise PaymuxError.of("payment_intent_unexpected_state", status=pi.status)
        return await start_attempt(
            s,
            account_id=pi.account_id,
            gateway=pi.gateway,
            operation=operation,
            object_id=pi.id,
            idempotency_key=f"{pi.id}:{operation}",
            request=request,
            now_us=now,
        )

    async def cancel(
        self, account_id: str, pi_id: str, cancellation_reason: str | None = None
    ) -> dict[str, Any]:
        if cancellation_reason is not None and cancellation_reason not in CANCELLATION_REASONS:
            raise PaymuxError.of(
                "parameter_invalid",
                f"cancellation_reason must be one of {', '.join(sorted(CANCELLATION_REASONS))}.",
                param="cancellation_reason",
            )
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            check_operation("cancel", pi.status)
            pi.cancellation_reason = cancellation_reason or "requested_by_customer"
            if pi.status in (S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION) or (
                pi.gateway_reference is None
            ):
                pi.status = S.CANCELED
                pi.canceled_us = now
                pi.updated_us = now
                await emit(s, account_id, "payment_intent.canceled", self._view(pi), now)
                return self._view(pi)
            attempt = await self._begin(s, pi, "cancel", pi.status, now, {})
            reference = pi.gateway_reference
        gateway = self.ctx.gateway(pi.gateway)
        return await self._run_attempt(
            attempt, lambda: gateway.void(reference, idempotency_key=attempt.idempotency_key)
        )

    async def expire_authorization(self, pi_id: str) -> None:
        """Cancel an authorization nobody captured in time (job ``expire_authorization``)."""
        async with self.ctx.db.read() as s:
            pi = await s.get(PaymentIntent, pi_id)
            if pi is None or pi.status != S.REQUIRES_CAPTURE:
                return
            account_id = pi.account_id
        try:
            await self.cancel(account_id, pi_id, "automatic")
        except PaymuxError as exc:
            if exc.code != "payment_intent_unexpected_state":
                raise

    async def expired_authorizations(self) -> list[str]:
        cutoff = self.ctx.now_us() - self.ctx.settings.authorization_expiry_seconds * 1_000_000
        async with self.ctx.db.read() as s:
            rows = await s.execute(
                select(PaymentIntent.id)
                .where(
                    PaymentIntent.status == S.REQUIRES_CAPTURE,
                    PaymentIntent.authorized_us < cutoff,
                )
                .limit(500)
            )
            return list(rows.scalars())

    # -- recovery ---------------------------------------------------------------------------
    async def settle_attempt(self, attempt_id: str) -> None:
        """Ask the gateway about a pending attempt, by its idempotency key, and settle it."""
        async with self.ctx.db.read() as s:
            attempt = await s.get(GatewayAttempt, attempt_id)
            if attempt is None or attempt.status != "pending":
                return
            pi = await s.get(PaymentIntent, attempt.object_id)
            if pi is None:
                return
            pm = await s.get(PaymentMethod, pi.payment_method_id) if pi.payment_method_id else None
        gateway = self.ctx.gateway(attempt.gateway)
        key = attempt.idempotency_key
        if attempt.operation == "authorize":
            found = await gateway.lookup(key)
            if found is not None:
                await self._settle_quietly(attempt.id, found)
                return
            if pm is None:
                await self.abandon_attempt(attempt.id, "no payment method to retry with")
                return
            request = _authorize_request(pi, pm.token, attempt.request.get("customer_token"))
            result = await gateway.authorize(request, idempotency_key=key)
        elif attempt.operation == "capture":
            assert pi.gateway_reference is not None
            result = await gateway.capture(
                pi.gateway_reference,
                Money(int(attempt.request["amount"]), pi.currency),
                idempotency_key=key,
            )
        elif attempt.operation == "cancel":
            assert pi.gateway_reference is not None
            result = await gateway.void(pi.gateway_reference, idempotency_key=key)
        else:
            raise ValueError(f"unknown attempt operation {attempt.operation}")
        await self._settle_quietly(attempt.id, result)

    async def _settle_quietly(self, attempt_id: str, result: GatewayResult) -> None:
        try:
            await self.settle(attempt_id, result)
        except PaymuxError:
            pass  # a decline is an outcome, already recorded on the intent

    async def stale_attempts(self) -> list[str]:
        cutoff = self.ctx.now_us() - int(self.ctx.settings.attempt_settle_after_seconds * 1e6)
        async with self.ctx.db.read() as s:
            rows = await s.execute(
                select(GatewayAttempt.id)
                .where(GatewayAttempt.status == "pending", GatewayAttempt.updated_us < cutoff)
                .limit(500)
            )
            return list(rows.scalars())


async def _lock_attempt_and_intent(
    s: AsyncSession, attempt_id: str
) -> tuple[GatewayAttempt, PaymentIntent]:
    """Lock the intent, then read its attempt: the same order as the webhook path, so a
    webhook and a returning gateway call can't both apply one outcome (or deadlock)."""
    object_id = (
        await s.execute(select(GatewayAttempt.object_id).where(GatewayAttempt.id == attempt_id))
    ).scalar_one()
    pi = await s.get(PaymentIntent, object_id, with_for_update=True, populate_existing=True)
    attempt = await s.get(GatewayAttempt, attempt_id, with_for_update=True, populate_existing=True)
    assert pi is not None and attempt is not None
    return attempt, pi


def _authorize_request(
    pi: PaymentIntent, token: str, customer_token: str | None
) -> AuthorizeRequest:
    """The gateway request for confirming ``pi`` (the same on first try and on recovery)."""
    return AuthorizeRequest(
        amount=Money(pi.amount, pi.currency),
        payment_method_token=token,
        capture=pi.capture_method == "automatic",
        reference=pi.id,
        customer_token=customer_token,
        off_session=pi.off_session,
        setup_future_usage=pi.setup_future_usage,
        return_url=pi.return_url,
        statement_descriptor=pi.statement_descriptor,
        description=pi.description,
        gateway_reference=pi.gateway_reference,
    )


_TARGETS: dict[GatewayStatus, tuple[S, str | None]] = {
    GatewayStatus.REQUIRES_ACTION: (S.REQUIRES_ACTION, "payment_intent.requires_action"),
    GatewayStatus.REQUIRES_CAPTURE: (
        S.REQUIRES_CAPTURE,
        "payment_intent.amount_capturable_updated",
    ),
    GatewayStatus.SUCCEEDED: (S.SUCCEEDED, "payment_intent.succeeded"),
    GatewayStatus.PROCESSING: (S.PROCESSING, "payment_intent.processing"),
    GatewayStatus.FAILED: (S.REQUIRES_PAYMENT_METHOD, "payment_intent.payment_failed"),
    GatewayStatus.CANCELED: (S.CANCELED, "payment_intent.canceled"),
}


def _result_json(result: GatewayResult) -> dict[str, Any]:
    return {
        "status": str(result.status),
        "reference": result.reference,
        "amount_authorized": result.amount_authorized,
        "amount_captured": result.amount_captured,
        "decline": None
        if result.decline is None
        else {
            "gateway_code": result.decline.gateway_code,
            "message": result.decline.message,
        },
    }
