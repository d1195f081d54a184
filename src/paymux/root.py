"""The composition root: ``Paymux`` builds every service and wires the domain packages
(billing, checkout, fraud, inbound webhooks, outbound webhooks) to them. It is the library's
face (``Paymux(settings)`` then ``.payments.create``) and what the entry points (api/, web/,
dashboard/, cli, the job worker) hold.

It sits above services/ and the packages that import services, so everything it builds is
imported at the top of this module. ``from paymux.services import Paymux`` still works (a
lazy alias in services/__init__.py, kept for users' code).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.balance import BalanceService
from paymux.billing.catalog import CatalogService
from paymux.billing.catalog_views import price_view, product_view
from paymux.billing.clocks import ClocksService, clock_for_customer
from paymux.billing.credit_notes import CreditNotesService
from paymux.billing.dunning import retry_with_new_method
from paymux.billing.invoice_core import InvoicesCore
from paymux.billing.invoice_items import InvoiceItemsService
from paymux.billing.invoice_manual import ManualInvoices
from paymux.billing.invoices import InvoicesService
from paymux.billing.meters import MetersService
from paymux.billing.scheduler import BillingScheduler
from paymux.billing.subscription_item_api import SubscriptionItemsService
from paymux.billing.subscription_views import view_in as subscription_view_in
from paymux.billing.subscriptions import SubscriptionsService
from paymux.checkout.csp_reports import CspReports
from paymux.checkout.service import CheckoutService
from paymux.config import Settings
from paymux.domain.attempts import ProviderStatus, refundable
from paymux.domain.clock import Clock, SystemClock
from paymux.domain.errors import PaymuxError
from paymux.domain.states import PaymentIntentStatus as S
from paymux.fraud.decisions import FraudEngine
from paymux.fraud.lists import ValueLists
from paymux.fraud.reviews import Reviews
from paymux.fraud.rules import FraudRules
from paymux.gateways.connectors import connectors
from paymux.gateways.registry import GatewayRegistry, build_registry
from paymux.outbound.endpoints import WebhookEndpoints
from paymux.services.accounts import AccountsService
from paymux.services.attempts import AttemptEngine, state_of
from paymux.services.audit import AuditLog
from paymux.services.charges import ChargesService
from paymux.services.connections import ConnectionsService
from paymux.services.context import Context, get_owned
from paymux.services.customers import CustomersService
from paymux.services.events import EventsService
from paymux.services.expand import Expander, Loader
from paymux.services.gateway_calls import call_with_retries
from paymux.services.idempotency import IdempotencyService
from paymux.services.keys import KeysService
from paymux.services.payments import PaymentsService
from paymux.services.ratelimit import RateLimiter
from paymux.services.refunds import RefundsService
from paymux.services.setup_intents import SetupIntentsService
from paymux.storage.db import Database
from paymux.storage.models import (
    Customer,
    Event,
    Invoice,
    PaymentIntent,
    PaymentMethod,
    Price,
    Product,
    Subscription,
)
from paymux.webhooks.inbound import InboundWebhooks

__all__ = ["Paymux"]

log = logging.getLogger(__name__)


async def _was_ever_attached(s: AsyncSession, pm_id: str) -> bool:
    """Whether ``pm_id`` was attached to a customer at some time (its event says so)."""
    found = await s.execute(
        select(Event.id)
        .where(Event.object_id == pm_id, Event.type == "payment_method.attached")
        .limit(1)
    )
    return found.first() is not None


def billing_loaders(ctx: Context) -> dict[str, Loader]:
    """What ``expand[]`` loads for billing's objects (services/expand.py knows only those of
    services; billing imports services, so its views are handed in from here)."""
    invoices = InvoicesCore(ctx)

    async def price(s: AsyncSession, account_id: str, object_id: str) -> dict[str, Any]:
        return price_view(await get_owned(s, Price, object_id, account_id, param="expand"))

    async def product(s: AsyncSession, account_id: str, object_id: str) -> dict[str, Any]:
        return product_view(
            await get_owned(s, Product, object_id, account_id, param="expand", include_deleted=True)
        )

    async def subscription(s: AsyncSession, account_id: str, object_id: str) -> dict[str, Any]:
        sub = await get_owned(s, Subscription, object_id, account_id, param="expand")
        return await subscription_view_in(s, sub)

    async def invoice(s: AsyncSession, account_id: str, object_id: str) -> dict[str, Any]:
        row = await get_owned(s, Invoice, object_id, account_id, param="expand")
        return await invoices.view_in(s, row)

    return {"price": price, "product": product, "subscription": subscription, "invoice": invoice}


class Paymux:
    """Everything paymux does, as one object: ``Paymux(settings)`` then ``.payments.create``."""

    def __init__(
        self,
        settings: Settings,
        *,
        gateways: GatewayRegistry | None = None,
        clock: Clock | None = None,
        database: Database | None = None,
    ) -> None:
        self.settings = settings
        connectors()  # every connector registered, with its error-code rows
        self.ctx = Context(
            db=database
            or Database(
                settings.database_url,
                pool_size=settings.db_pool_size,
                read_connections=settings.db_read_connections,
            ),
            gateways=gateways if gateways is not None else build_registry(settings),
            settings=settings,
            clock=clock or SystemClock(),
        )
        self.connections = ConnectionsService(self.ctx, self.ctx.gateways)
        self.ctx.directory = self.connections
        self.keys = KeysService(self.ctx)
        self.accounts = AccountsService(self.ctx, self.keys)
        self.audit = AuditLog(self.ctx)
        self.engine = AttemptEngine(self.ctx)
        self.payments = PaymentsService(self.ctx, self.engine)
        self.refunds = RefundsService(self.ctx, self.engine)
        self.customers = CustomersService(self.ctx)
        self.customers.check_test_clock = clock_for_customer
        self.customers.default_changed = retry_with_new_method
        self.catalog = CatalogService(self.ctx)
        self.setup_intents = SetupIntentsService(self.ctx, self.customers)
        self.balance = BalanceService(self.ctx)
        self.invoice_items = InvoiceItemsService(self.ctx)
        self.manual_invoices = ManualInvoices(self.ctx, self)
        self.credit_notes = CreditNotesService(self.ctx, self)
        self.engine.refund_failed_hook = self.credit_notes.on_refund_failed
        self.meters = MetersService(self.ctx)
        self.invoices = InvoicesService(self.ctx, self.payments)
        self.engine.invoice_hook = self.invoices.on_intent_settled
        self.payments.start_guard = self.invoices.guard_start
        self.subscriptions = SubscriptionsService(self.ctx, self.invoices, self.meters.usage)
        self.clocks = ClocksService(self.ctx, self.subscriptions, self.invoices)
        self.subscription_items = SubscriptionItemsService(self.subscriptions)
        self.billing_scheduler = BillingScheduler(self.ctx)
        self.events = EventsService(self.ctx)
        self.charges = ChargesService(self.ctx)
        self.expander = Expander(self.ctx, billing_loaders(self.ctx))
        self.idempotency = IdempotencyService(self.ctx)
        self.rate_limiter = RateLimiter(self.ctx)
        self.webhooks = InboundWebhooks(self.ctx, self.payments, self.refunds, self.connections)
        self.webhook_endpoints = WebhookEndpoints(self.ctx, self.connections.keyring)
        self.checkout = CheckoutService(self.ctx, self.payments, self.setup_intents, self.customers)
        self.csp_reports = CspReports(self.ctx)
        self.fraud_rules = FraudRules(self.ctx)
        self.value_lists = ValueLists(self.ctx, on_change=self.fraud_rules.forget)
        self.fraud = FraudEngine(self.ctx, self.fraud_rules)
        self.payments.screen = self.fraud.screen_in
        self.reviews = Reviews(self.ctx, self.payments, self.refunds)

    async def settle_attempt(self, attempt_id: str) -> None:
        """Settle an interrupted gateway call by asking the provider (job ``settle_attempt``)."""
        await self.engine.recover(attempt_id)

    async def attach_payment_method(
        self, account_id: str, pm_id: str, customer_id: str, pi_id: str | None = None
    ) -> None:
        """The gateway's side of saving the payment method of a payment made with
        ``setup_future_usage`` (job ``attach_payment_method``). The payment's success already
        made it the customer's in paymux, in the same transaction
        (``AttemptEngine._save_for_later_if_asked``); this makes the provider keep the card
        for that customer, outside any transaction. The gateway call carries the key
        ``<pm id>:attach:<customer id>``; an outage raises, so the job is retried and the
        payment is never touched. A refusal is logged and left: the payment itself stands.

        A payment method the customer no longer holds (detached, or deleted customer) is not
        attached again. A job queued before ownership was recorded with the payment finds the
        payment method unowned and never attached: it attaches it, as such jobs always did."""
        async with self.ctx.db.read() as s:
            pm = await s.get(PaymentMethod, pm_id)
            customer = await s.get(Customer, customer_id)
            if pm is None or pm.account_id != account_id:
                return
            if customer is None or customer.account_id != account_id or customer.deleted:
                return
            held = pm.customer_id == customer_id
            # Unowned and never attached: a job queued before ownership came with the payment.
            if pm.customer_id != customer_id and (
                pm.customer_id is not None or await _was_ever_attached(s, pm_id)
            ):
                log.warning(
                    "not saving %s for %s (%s): %s since",
                    pm_id,
                    customer_id,
                    pi_id,
                    f"attached to {pm.customer_id}" if pm.customer_id else "detached",
                )
                return
        try:
            await self.customers.attach(account_id, pm_id, customer_id, held=held)
        except PaymuxError as exc:
            log.warning(
                "could not save %s for %s after %s: %s %s",
                pm_id,
                customer_id,
                pi_id,
                exc.code,
                exc.message,
            )

    async def return_late_payment(self, pi_id: str) -> None:
        """Give back money that landed on a canceled intent (job ``return_late_payment``):
        void an authorization still held, refund what was captured. Asks the provider first."""
        async with self.ctx.db.read() as s:
            pi = await s.get(PaymentIntent, pi_id)
            if pi is None or pi.status != S.CANCELED or pi.gateway_reference is None:
                return
            reference, account_id = pi.gateway_reference, pi.account_id
        gateway = await self.ctx.gateway_of(pi)
        settings = self.ctx.settings
        found = await call_with_retries(settings, lambda: gateway.retrieve(reference))
        if found.status is ProviderStatus.REQUIRES_CAPTURE:
            await call_with_retries(
                settings, lambda: gateway.void(reference, idempotency_key=f"{pi_id}:late_void")
            )
            log.warning("voided an authorization that landed on canceled %s", pi_id)
            return
        if found.status is ProviderStatus.SUCCEEDED:
            async with self.ctx.db.write() as s:
                locked = await s.get(PaymentIntent, pi_id, with_for_update=True)
                assert locked is not None
                await self.engine.apply_payment_report(s, locked, found)
                due = refundable(state_of(locked))
            if due > 0:
                await self.refunds.create(
                    account_id,
                    pi_id,
                    due,
                    "duplicate",
                    {"paymux_reason": "paid_after_cancel"},
                    late_payment=True,
                )
                log.warning("refunding %s received on canceled %s", due, pi_id)

    async def close(self) -> None:
        await self.webhooks.aclose()  # a group commit in progress answers its waiters first
        for gateway in self.ctx.gateways.values():
            await gateway.aclose()
        await self.connections.aclose()
        await self.ctx.db.dispose()
