"""Customers and payment methods. A payment method is a gateway token reference, never a card.

A gateway's shared test token (the sandbox's and Stripe's ``pm_card_visa``, ``tok_visa``)
never resolves to a payment method recorded before: each use is a payment method of its own,
as on Stripe, so attaching one use to a customer leaves the token free for every other use.

A card's ``fingerprint`` is per card number and per account: paymux derives it from the
gateway's own fingerprint and the account id (``account_fingerprint``), so the same number
gives one fingerprint in an account, however it was tokenized, and different ones in two
accounts (the sandbox's processor, shared by every account, knows no accounts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError, card_error
from paymux.domain.ids import new_id
from paymux.gateways.base import CardDetails, Decline, Gateway, GatewayInvalidRequest
from paymux.services.context import (
    Context,
    CreatedRange,
    Routed,
    emit,
    get_owned,
    merge_metadata,
    page_of,
    ref_key,
    request_livemode,
    scoped,
)
from paymux.services.gateway_calls import call_with_retries
from paymux.services.views import customer_view, payment_method_view
from paymux.storage.models import Customer, GatewayTokenOwner, PaymentMethod

__all__ = [
    "CustomerParams",
    "CustomersService",
    "account_fingerprint",
    "find_payment_method",
    "resolve_payment_method",
    "take_card_details",
]


def account_fingerprint(account_id: str, gateway_fingerprint: str | None) -> str | None:
    """The fingerprint paymux shows for a card: the gateway's (one per card number) made
    particular to the account, so two accounts can't match their customers' cards."""
    if not gateway_fingerprint:
        return None
    return hashlib.sha256(f"{account_id}:{gateway_fingerprint}".encode()).hexdigest()[:16]


async def find_payment_method(
    s: AsyncSession, account_id: str, gateway_name: str, ref: str
) -> PaymentMethod | None:
    """One of ours by id (preferred), else our record of the gateway token ``ref``: one query."""
    query = scoped(PaymentMethod, account_id).where(
        or_(
            PaymentMethod.id == ref,
            and_(PaymentMethod.gateway == gateway_name, PaymentMethod.token == ref),
        )
    )
    found = (await s.execute(query)).scalars().all()
    return next((m for m in found if m.id == ref), found[0] if found else None)


async def _owned_elsewhere(ctx: Context, account_id: str, gateway: str, token: str) -> bool:
    """Another account owns the token: it claimed it (``gateway_token_owners``), or it has a
    payment method with it (a token recorded before owners were, or a vault token a gateway
    issued to that account). A fast refusal only: the claim itself is ``_claim``."""
    claimed = select(GatewayTokenOwner.account_id).where(
        GatewayTokenOwner.gateway == gateway,
        GatewayTokenOwner.token == token,
        GatewayTokenOwner.account_id != account_id,
    )
    recorded = select(PaymentMethod.account_id).where(
        PaymentMethod.gateway == gateway,
        PaymentMethod.token == token,
        PaymentMethod.account_id != account_id,
    )
    async with ctx.db.read() as s:
        row = (await s.execute(claimed.union_all(recorded).limit(1))).first()
    return row is not None


def _claim(pm: PaymentMethod, now: int) -> GatewayTokenOwner:
    """The row that makes ``pm``'s account its token's owner: added in the transaction that
    records ``pm``, so of two accounts racing for one token only the first commits."""
    return GatewayTokenOwner(
        gateway=pm.gateway, token=pm.token, account_id=pm.account_id, created_us=now
    )


async def _owner_of(ctx: Context, gateway: str, token: str) -> str | None:
    async with ctx.db.read() as s:
        owner: str | None = (
            await s.execute(
                select(GatewayTokenOwner.account_id).where(
                    GatewayTokenOwner.gateway == gateway, GatewayTokenOwner.token == token
                )
            )
        ).scalar_one_or_none()
    return owner


async def resolve_payment_method(
    ctx: Context,
    account_id: str,
    gateway_name: str,
    ref: str,
    *,
    customer_id: str | None,
    known: PaymentMethod | None = None,
    looked_up: bool = False,
    connection_id: str | None = None,
    defer_shared: bool = False,
) -> PaymentMethod:
    """Our PaymentMethod for ``ref``: one of ours by id, or a gateway token we record now.

    ``known``: what ``find_payment_method`` already found in the caller's transaction
    (``looked_up``: it looked, and ``known`` None means it found nothing).
    ``connection_id``: the connection the payment goes through; a new token is described by,
    and recorded as, that connection's.
    ``defer_shared``: a use of a shared test token (a fresh token of its own, which no other
    request can record) is returned unsaved (transient), for the caller to add in its own
    write transaction.
    """
    pm = known
    if pm is None and not looked_up:
        async with ctx.db.read() as s:
            pm = await find_payment_method(s, account_id, gateway_name, ref)
    gateway: Gateway | None = None
    if pm is None or pm.id != ref:
        gateway = await ctx.gateway(
            gateway_name, account_id=account_id, connection_id=connection_id
        )
        if pm is not None and gateway.reusable_test_token(ref):
            pm = None  # a shared test token: each use is a payment method of its own
    if pm is not None:
        if pm.gateway != gateway_name:
            raise PaymuxError.of(
                "payment_method_unexpected_state",
                f"The payment method belongs to the {pm.gateway} gateway, not {gateway_name}.",
                param="payment_method",
            )
        if connection_id and pm.connection_id and pm.connection_id != connection_id:
            raise PaymuxError.of(
                "payment_method_unexpected_state",
                f"The payment method was saved through connection {pm.connection_id}, not "
                f"{connection_id}.",
                param="payment_method",
            )
        if pm.customer_id is not None and pm.customer_id != customer_id:
            raise PaymuxError.of(
                "payment_method_unexpected_state",
                "The payment method is attached to another customer.",
                param="payment_method",
            )
        return pm
    assert gateway is not None
    if not gateway.reusable_test_token(ref) and await _owned_elsewhere(
        ctx, account_id, gateway_name, ref
    ):
        # A token belongs to the account that first used it: another account's saved card
        # is as unknown here as a token that never existed.
        raise PaymuxError.of(
            "resource_missing", f"No such payment_method: '{ref}'", param="payment_method"
        )
    try:
        details = await call_with_retries(
            ctx.settings, lambda: gateway.describe_payment_method(ref)
        )
    except GatewayInvalidRequest:
        details = None
    if details is None:
        raise PaymuxError.of(
            "resource_missing", f"No such payment_method: '{ref}'", param="payment_method"
        )
    now = ctx.now_us()
    pm = PaymentMethod(
        id=new_id("pm"),
        account_id=account_id,
        customer_id=None,
        gateway=gateway_name,
        connection_id=connection_id,
        livemode=request_livemode(),
        token=details.token,
        type=details.type,
        card_brand=details.brand,
        card_last4=details.last4,
        card_exp_month=details.exp_month,
        card_exp_year=details.exp_year,
        card_fingerprint=account_fingerprint(account_id, details.fingerprint),
        card_country=details.country,
        card_funding=details.funding,
        metadata_={},
        created_us=now,
    )
    shared = gateway.reusable_test_token(ref)
    if defer_shared and shared:
        return pm
    try:
        async with ctx.db.write() as s:
            s.add(pm)
            if not shared:
                s.add(_claim(pm, now))
    except IntegrityError:  # another request recorded the same token first
        owner = None if shared else await _owner_of(ctx, gateway_name, details.token)
        if owner is not None and owner != account_id:
            # Another account won the race for this token: it is theirs, unknown here.
            raise PaymuxError.of(
                "resource_missing", f"No such payment_method: '{ref}'", param="payment_method"
            ) from None
        async with ctx.db.read() as s:
            existing: PaymentMethod = (
                await s.execute(
                    scoped(PaymentMethod, account_id).where(
                        PaymentMethod.gateway == gateway_name, PaymentMethod.token == details.token
                    )
                )
            ).scalar_one()
            return existing
    return pm


def take_card_details(row: PaymentMethod, details: CardDetails) -> None:
    """The card a gateway saved under a token of its own: that token is charged from now on."""
    row.token = details.token
    row.card_brand = details.brand or row.card_brand
    row.card_last4 = details.last4 or row.card_last4
    row.card_exp_month = details.exp_month or row.card_exp_month
    row.card_exp_year = details.exp_year or row.card_exp_year
    row.card_fingerprint = (
        account_fingerprint(row.account_id, details.fingerprint) or row.card_fingerprint
    )
    row.card_country = details.country or row.card_country
    row.card_funding = details.funding or row.card_funding


@dataclass
class CustomerParams:
    email: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None
    default_payment_method: str | None = None
    # Stripe's ``invoice_settings[default_payment_method]`` ("" unsets): the same column as
    # the top-level ``default_payment_method``, which keeps working.
    invoice_settings: dict[str, Any] | None = None
    test_clock: str | None = None  # billing: the test clock the customer lives on (test mode)

    def default_method(self) -> str | None:
        """The default payment method asked for: the top-level one, else invoice_settings'."""
        if self.default_payment_method is not None:
            return self.default_payment_method
        return (self.invoice_settings or {}).get("default_payment_method")


class CustomersService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def create(self, account_id: str, p: CustomerParams) -> dict[str, Any]:
        if p.default_method():
            # A new customer has no payment method attached yet: attach one (or save one with
            # a SetupIntent), then make it the default with an update.
            raise PaymuxError.of(
                "payment_method_unexpected_state",
                "The default payment method must be attached to this customer.",
                param="invoice_settings[default_payment_method]",
            )
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            if p.test_clock is not None:
                from paymux.billing.clocks import clock_for_customer

                await clock_for_customer(s, account_id, p.test_clock)
            customer = Customer(
                id=new_id("cus"),
                account_id=account_id,
                livemode=request_livemode(),
                email=p.email,
                name=p.name,
                description=p.description,
                metadata_=p.metadata or {},
                default_payment_method=None,
                gateway_refs={},
                deleted=False,
                test_clock_id=p.test_clock,
                created_us=now,
                updated_us=now,
            )
            s.add(customer)
            await emit(s, account_id, "customer.created", customer_view(customer), now)
            return customer_view(customer)

    async def retrieve(self, account_id: str, customer_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return customer_view(
                await get_owned(s, Customer, customer_id, account_id, include_deleted=True)
            )

    async def update(self, account_id: str, customer_id: str, p: CustomerParams) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            c = await get_owned(s, Customer, customer_id, account_id)
            for name in ("email", "name", "description"):
                if getattr(p, name) is not None:
                    setattr(c, name, getattr(p, name))
            if p.metadata is not None:
                c.metadata_ = merge_metadata(c.metadata_, p.metadata)
            wanted = p.default_method()
            param = (
                "default_payment_method"
                if p.default_payment_method is not None
                else "invoice_settings[default_payment_method]"
            )
            if wanted == "":
                c.default_payment_method = None
            elif wanted is not None:
                pm = await get_owned(s, PaymentMethod, wanted, account_id, param=param)
                if pm.customer_id != c.id:
                    raise PaymuxError.of(
                        "payment_method_unexpected_state",
                        "The default payment method must be attached to this customer.",
                        param=param,
                    )
                if c.default_payment_method != pm.id:
                    from paymux.billing.dunning import retry_with_new_method

                    await retry_with_new_method(s, account_id, c.id, now)
                c.default_payment_method = pm.id
            c.updated_us = now
            await emit(s, account_id, "customer.updated", customer_view(c), now)
            return customer_view(c)

    async def delete(self, account_id: str, customer_id: str) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            c = await get_owned(s, Customer, customer_id, account_id)
            c.deleted = True
            c.updated_us = now
            await emit(s, account_id, "customer.deleted", customer_view(c), now)
            return {"id": c.id, "object": "customer", "deleted": True}

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        email: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            Customer,
            account_id,
            customer_view,
            Customer.deleted.is_(False),
            Customer.email == email if email else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    # -- payment methods --------------------------------------------------------------------
    async def retrieve_payment_method(self, account_id: str, pm_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return payment_method_view(await get_owned(s, PaymentMethod, pm_id, account_id))

    async def update_payment_method(
        self, account_id: str, pm_id: str, metadata: dict[str, str] | None
    ) -> dict[str, Any]:
        """A payment method's metadata (its card details are the gateway's)."""
        async with self.ctx.db.write() as s:
            pm = await get_owned(s, PaymentMethod, pm_id, account_id, lock=True)
            if metadata is not None:
                pm.metadata_ = merge_metadata(pm.metadata_, metadata)
            return payment_method_view(pm)

    async def list_payment_methods(self, account_id: str, customer_id: str) -> list[dict[str, Any]]:
        async with self.ctx.db.read() as s:
            await get_owned(s, Customer, customer_id, account_id, param="customer")
            rows = await s.execute(
                scoped(PaymentMethod, account_id)
                .where(PaymentMethod.customer_id == customer_id)
                .order_by(PaymentMethod.created_us.desc())
            )
            return [payment_method_view(pm) for pm in rows.scalars()]

    async def attach(
        self, account_id: str, ref: str, customer_id: str, gateway_name: str | None = None
    ) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            customer = await get_owned(s, Customer, customer_id, account_id, param="customer")
            known = await find_payment_method(s, account_id, gateway_name or "", ref)
        if known is not None:  # a saved card stays with the connection that saved it
            routed = Routed(await self.ctx.gateway_of(known), known.connection_id or "")
        else:
            routed = await self.ctx.named(account_id, gateway_name)
        gateway = routed.gateway
        pm = await resolve_payment_method(
            self.ctx,
            account_id,
            gateway.name,
            ref,
            customer_id=customer_id,
            known=known,
            connection_id=routed.connection_id or None,
        )
        customer_token = await self.gateway_customer(
            account_id, customer, gateway, pm.connection_id
        )
        try:
            outcome = await call_with_retries(
                self.ctx.settings,
                lambda: gateway.attach_payment_method(
                    pm.token, customer_token, idempotency_key=f"{pm.id}:attach:{customer_id}"
                ),
            )
        except GatewayInvalidRequest as exc:
            raise PaymuxError.of(
                "payment_method_unexpected_state", str(exc), param="payment_method"
            ) from exc
        if isinstance(outcome, Decline):
            raise card_error(gateway.name, outcome.gateway_code, outcome.message)
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            row = await get_owned(s, PaymentMethod, pm.id, account_id)
            if outcome.token != row.token:
                # The gateway saved the card under a new token (Square: a card on file
                # replaces the single-use browser token): charge that one from now on.
                take_card_details(row, outcome)
            if row.customer_id != customer_id:
                row.customer_id = customer_id
                await emit(s, account_id, "payment_method.attached", payment_method_view(row), now)
            return payment_method_view(row)

    async def gateway_customer(
        self, account_id: str, customer: Customer, gateway: Gateway, connection_id: str | None
    ) -> str:
        """The customer's id at this gateway connection: made once, then kept on the customer."""
        key = ref_key(gateway.name, connection_id)
        existing = (customer.gateway_refs or {}).get(key)
        if existing:
            return str(existing)
        token = await call_with_retries(
            self.ctx.settings,
            lambda: gateway.create_customer(
                customer.id,
                customer.email,
                idempotency_key=f"{customer.id}:create_customer:{key}",
            ),
        )
        async with self.ctx.db.write() as s:
            row = await get_owned(s, Customer, customer.id, account_id)
            refs = dict(row.gateway_refs or {})
            refs.setdefault(key, token)
            row.gateway_refs = refs
            return str(refs[key])

    async def detach(self, account_id: str, pm_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            pm = await get_owned(s, PaymentMethod, pm_id, account_id)
            if pm.customer_id is None:
                raise PaymuxError.of(
                    "payment_method_unexpected_state",
                    "The payment method is not attached to a customer.",
                    param="payment_method",
                )
            customer_id = pm.customer_id
        gateway = await self.ctx.gateway_of(pm)
        await call_with_retries(
            self.ctx.settings,
            lambda: gateway.detach_payment_method(
                pm.token, idempotency_key=f"{pm.id}:detach:{customer_id}"
            ),
        )
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            row = await get_owned(s, PaymentMethod, pm_id, account_id)
            row.customer_id = None
            customer = await s.get(Customer, customer_id)
            if customer is not None and customer.default_payment_method == pm_id:
                customer.default_payment_method = None
            await emit(s, account_id, "payment_method.detached", payment_method_view(row), now)
            return payment_method_view(row)
