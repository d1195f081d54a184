"""Checkout sessions, the use cases (rules.py holds the pure parts).

- ``create``: the session's id first (recorded on the request's Idempotency-Key), then its
  intent outside any transaction: a PaymentIntent whose id is derived from the session's
  (``rules.intent_id_for``), so a retried create resumes the same payment and every gateway
  call keeps its key; or, in setup mode, a SetupIntent (and a customer when none is named,
  as Stripe's setup mode makes one). Only then the session row. A crash in between leaves at
  most an intent that waits for a payment method, which moves no money.
- Completion: an in-transaction reaction to ``payment_intent.succeeded``,
  ``payment_intent.amount_capturable_updated`` and ``setup_intent.succeeded``
  (services/context.py ``react_to``), so the session completes in the transaction that
  settles its intent, whichever path settled it: the page's confirm, the payer's return from
  3-D Secure, the gateway's webhook or a recovery job. It emits
  ``checkout.session.completed``.
- ``expire``: the intent is canceled FIRST (at the gateway too); only a canceled intent lets
  the session expire. A payment racing the expiry either wins (the session completes and the
  expire is refused) or loses (its confirm is refused). ``expire_due`` is the sweep of open
  sessions past ``expires_at`` (the worker's sweep calls it); the page refuses to pay a
  session past ``expires_at`` even before the sweep runs.
- The hosted page's payment (``pay_from_page``): the page posts the token the gateway's own
  card form made; the session's intent is confirmed with it, ``return_url`` the page, so the
  card number never reaches paymux.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import quote

from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.catalog_views import price_view
from paymux.checkout import rules
from paymux.domain.errors import PaymuxError, card_error
from paymux.domain.ids import new_id
from paymux.gateways.base import GatewayError, GatewayInvalidRequest
from paymux.jobs import queue
from paymux.money import Money
from paymux.money.errors import MoneyError
from paymux.services.context import (
    Context,
    CreatedRange,
    current_livemode,
    emit,
    get_owned,
    page_of,
    react_to,
    request_livemode,
)
from paymux.services.customers import CustomerParams, CustomersService
from paymux.services.idempotency import current_claim, record_recovery_point
from paymux.services.payments import CreateParams, PaymentsService
from paymux.services.setup_intents import SetupIntentsService, SetupParams
from paymux.services.three_d_secure import requested_option
from paymux.storage.models import (
    CheckoutSession,
    Customer,
    Job,
    PaymentIntent,
    Price,
    Product,
    SetupIntent,
)

__all__ = ["CardOrders", "CheckoutService", "LineItemParams", "PageOutcome", "SessionParams"]

log = logging.getLogger(__name__)

PAGE_PREFIX = "/c/pay"
# An intent in these states may be canceled so that its session expires.
_CANCELABLE_PI = ("requires_payment_method", "requires_confirmation", "requires_action")
_CANCELABLE_SI = ("requires_payment_method", "requires_confirmation", "requires_action")
EXPIRE_BATCH = 100
REFRESH_EVERY = 5.0  # seconds between two gateway asks of one session on return
EXPIRE_JOB = "expire_checkout_session"
EXPIRE_JOB_PREFIX = "cs-expire:"
# Cards one session's page may try before it refuses more (card testing).
PAGE_TRIES = 10
# A payment waiting for the payer's card: the PayPal card fields' order may be opened for it.
_WAITS_FOR_CARD = ("requires_payment_method", "requires_confirmation")


@runtime_checkable
class CardOrders(Protocol):
    """A gateway whose browser SDK's card fields pay an order opened by the server (PayPal's
    ``CardFields``): the order opened for our payment, and the payment an order was opened
    for (read at the gateway)."""

    async def open_card_order(
        self,
        amount: Money,
        reference: str,
        capture: bool,
        three_d_secure: str | None,
        *,
        idempotency_key: str,
    ) -> str: ...

    async def order_opened_for(self, order_id: str) -> str | None: ...


@dataclass
class LineItemParams:
    quantity: int = 1
    price: str | None = None
    # Stripe's price_data: currency, unit_amount, and product or product_data {name, ...}.
    price_data: dict[str, Any] | None = None


@dataclass
class SessionParams:
    mode: str | None = None
    line_items: list[LineItemParams] = field(default_factory=list)
    customer: str | None = None
    customer_email: str | None = None
    success_url: str | None = None
    cancel_url: str | None = None
    expires_at: int | None = None
    payment_method_types: list[str] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    client_reference_id: str | None = None
    locale: str | None = None
    currency: str | None = None  # setup mode: the currency shown (Stripe's)
    capture_method: str = "automatic"  # payment_intent_data[capture_method]
    description: str | None = None  # payment_intent_data[description]
    intent_metadata: dict[str, str] = field(default_factory=dict)  # *_data[metadata]
    gateway: str | None = None  # paymux's: the connection to route to (default routing)


@dataclass(frozen=True)
class PageOutcome:
    status: str  # complete | requires_action | processing | open | expired
    redirect_url: str | None = None
    # Stripe's 3-D Secure (next_action use_stripe_sdk): the secret of Stripe's own intent,
    # for Stripe.js's confirmCardPayment on the page, which then returns to ``return_url``.
    client_secret: str | None = None
    return_url: str | None = None


class CheckoutService:
    def __init__(
        self,
        ctx: Context,
        payments: PaymentsService,
        setup_intents: SetupIntentsService,
        customers: CustomersService,
    ) -> None:
        self.ctx = ctx
        self.payments = payments
        self.setup_intents = setup_intents
        self.customers = customers
        # session id -> when this process last asked the gateway for it (monotonic s)
        self._refreshed: dict[str, float] = {}
        react_to("payment_intent.succeeded", _on_payment_settled, when=_may_be_sessions)
        react_to(
            "payment_intent.amount_capturable_updated", _on_payment_settled, when=_may_be_sessions
        )
        react_to("setup_intent.succeeded", _on_setup_succeeded)

    # -- views ------------------------------------------------------------------------------
    def page_url(self, session_id: str) -> str:
        base = self.ctx.settings.base_url().rstrip("/")
        return f"{base}{PAGE_PREFIX}/{quote(session_id, safe='')}"

    def view(self, row: CheckoutSession) -> dict[str, Any]:
        return rules.session_view(row, self.page_url(row.id))

    # -- create -----------------------------------------------------------------------------
    async def create(self, account_id: str, p: SessionParams) -> dict[str, Any]:
        mode = rules.check_mode(p.mode)
        success_url = rules.check_url(p.success_url, "success_url", required=True)
        cancel_url = rules.check_url(p.cancel_url, "cancel_url", required=False)
        rules.check_customer(p.customer, p.customer_email)
        types = p.payment_method_types or ["card"]
        now = self.ctx.now_us()
        expires = rules.expires_us(now, p.expires_at)
        livemode = request_livemode()
        if p.customer:
            async with self.ctx.db.read() as s:
                await get_owned(s, Customer, p.customer, account_id, param="customer")
        items: list[dict[str, Any]] = []
        totals = None
        if mode == "payment":
            items = await self._line_items(account_id, p.line_items, now, livemode)
            totals = rules.line_totals(items)
        elif p.line_items:
            raise PaymuxError.of(
                "parameter_invalid",
                "line_items cannot be used in setup mode: nothing is charged.",
                param="line_items",
            )
        currency = totals.currency if totals else _currency_or_none(p.currency)

        claim = current_claim.get()
        session_id = None
        if claim is not None and claim.resumed and (claim.object_id or "").startswith("cs_"):
            session_id = claim.object_id
            async with self.ctx.db.read() as s:
                made = await s.get(CheckoutSession, session_id)
            if made is not None and made.account_id == account_id:
                return self.view(made)  # a retry of a create that finished its write
        if session_id is None:
            session_id = new_id("cs_live" if livemode else "cs_test", 30)
            if claim is not None:
                async with self.ctx.db.write() as s:  # a retry resumes this session's id
                    await record_recovery_point(s, "id_reserved", session_id)

        # The intent, outside any transaction (it may call the gateway), without the
        # request's idempotency claim: its own id (or the session's) makes it once.
        token = current_claim.set(None)
        try:
            pi_id = seti_id = None
            customer_id = p.customer
            if mode == "payment":
                assert totals is not None
                try:
                    made_pi = await self.payments.create(
                        account_id,
                        CreateParams(
                            amount=totals.total,
                            currency=totals.currency,
                            capture_method=p.capture_method,
                            customer=p.customer,
                            gateway=p.gateway,
                            description=p.description,
                            receipt_email=p.customer_email,
                            payment_method_types=types,
                            metadata=p.intent_metadata,
                            id=rules.intent_id_for(session_id),
                        ),
                    )
                except PaymuxError as exc:
                    if exc.param == "amount":  # the total: the session's line items make it
                        exc.param = "line_items"
                    raise
                pi_id = str(made_pi["id"])
            else:
                seti_id = rules.setup_intent_id_for(session_id)
                async with self.ctx.db.read() as s:
                    made_before = await s.get(SetupIntent, seti_id)
                if made_before is not None and made_before.account_id == account_id:
                    # A retry of a create that made its SetupIntent (and its customer)
                    # before it died: that one, never a second one or a second customer.
                    customer_id = made_before.customer_id
                elif customer_id is None:
                    # Saving a card needs a customer to save it for: Stripe's setup mode
                    # makes one (customer_creation), with the email given.
                    made_customer = await self.customers.create(
                        account_id,
                        CustomerParams(
                            email=p.customer_email,
                            metadata={"checkout_session": session_id},
                        ),
                    )
                    customer_id = str(made_customer["id"])
                made_si = await self.setup_intents.create(
                    account_id,
                    SetupParams(
                        customer=customer_id,
                        usage="off_session",
                        payment_method_types=types,
                        gateway=p.gateway,
                        metadata=p.intent_metadata,
                        id=seti_id,
                    ),
                )
                seti_id = str(made_si["id"])
        finally:
            current_claim.reset(token)

        now = self.ctx.now_us()
        row = CheckoutSession(
            id=session_id,
            account_id=account_id,
            livemode=livemode,
            mode=mode,
            status=rules.OPEN,
            payment_status="unpaid" if mode == "payment" else "no_payment_required",
            currency=currency,
            amount_subtotal=totals.subtotal if totals else None,
            amount_total=totals.total if totals else None,
            line_items=items,
            customer_id=customer_id,
            customer_email=p.customer_email,
            client_reference_id=p.client_reference_id,
            success_url=success_url,
            cancel_url=cancel_url,
            locale=p.locale,
            capture_method=p.capture_method,
            payment_method_types=types,
            payment_intent_id=pi_id,
            setup_intent_id=seti_id,
            metadata_=dict(p.metadata),
            expires_us=expires,
            completed_us=None,
            created_us=now,
            updated_us=now,
        )
        async with self.ctx.db.write() as s:
            s.add(row)
            await record_recovery_point(s, "created", session_id)
            view = self.view(row)
        return view

    async def _line_items(
        self, account_id: str, given: list[LineItemParams], now_us: int, livemode: bool
    ) -> list[dict[str, Any]]:
        if len(given) > rules.MAX_LINE_ITEMS:
            raise PaymuxError.of(
                "parameter_invalid",
                f"A checkout session takes at most {rules.MAX_LINE_ITEMS} line items.",
                param="line_items",
            )
        items = []
        async with self.ctx.db.read() as s:
            for n, item in enumerate(given):
                param = f"line_items[{n}]"
                if (item.price is None) == (item.price_data is None):
                    raise PaymuxError.of(
                        "parameter_missing" if item.price is None else "parameter_invalid",
                        "Each line item needs exactly one of price or price_data.",
                        param=f"{param}[price]",
                    )
                if item.price is not None:
                    price = await get_owned(
                        s, Price, item.price, account_id, param=f"{param}[price]"
                    )
                    if not price.active:
                        raise PaymuxError.of(
                            "parameter_invalid",
                            f"The price {price.id} is archived (active: false).",
                            param=f"{param}[price]",
                        )
                    product = await s.get(Product, price.product_id)
                    shown = price_view(price)
                    name = product.name if product is not None else price.id
                else:
                    assert item.price_data is not None
                    shown, name = await _inline_price(
                        s, account_id, item.price_data, param, now_us, livemode
                    )
                items.append(rules.line_item(new_id("li"), shown, item.quantity, name, param))
        return items

    # -- reads ------------------------------------------------------------------------------
    async def retrieve(self, account_id: str, cs_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            row = await _owned(s, account_id, cs_id)
            return self.view(row)

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        created: CreatedRange | None = None,
        status: str | None = None,
        customer: str | None = None,
        customer_email: str | None = None,
        payment_intent: str | None = None,
        setup_intent: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        m = CheckoutSession
        return await page_of(
            self.ctx,
            m,
            account_id,
            self.view,
            m.status == status if status else None,
            m.customer_id == customer if customer else None,
            m.customer_email == customer_email if customer_email else None,
            m.payment_intent_id == payment_intent if payment_intent else None,
            m.setup_intent_id == setup_intent if setup_intent else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    async def line_items(
        self,
        account_id: str,
        cs_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """The session's line items, in their order, a page at a time (cursors are ids)."""
        async with self.ctx.db.read() as s:
            row = await _owned(s, account_id, cs_id)
            items = list(row.line_items or [])
        ids = [str(i["id"]) for i in items]
        for cursor, param in ((starting_after, "starting_after"), (ending_before, "ending_before")):
            if cursor is not None and cursor not in ids:
                raise PaymuxError.of(
                    "resource_missing", f"No such line item: '{cursor}'", param=param
                )
        if starting_after is not None:
            items = items[ids.index(starting_after) + 1 :]
            return items[:limit], len(items) > limit
        if ending_before is not None:
            items = items[: ids.index(ending_before)]
            return items[-limit:], len(items) > limit
        return items[:limit], len(items) > limit

    # -- expiry -----------------------------------------------------------------------------
    async def expire(self, account_id: str, cs_id: str) -> dict[str, Any]:
        """Expire an open session: its intent canceled first (module docstring)."""
        async with self.ctx.db.read() as s:
            row = await _owned(s, account_id, cs_id)
        _require_open(row, "expire")
        if row.payment_intent_id is not None:
            await self._cancel_payment(account_id, row)
        if row.setup_intent_id is not None:
            await self._cancel_setup(account_id, row)
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            locked = await _owned(s, account_id, cs_id, lock=True)
            _require_open(locked, "expire")
            locked.status = rules.EXPIRED
            locked.updated_us = max(now, locked.updated_us)
            view = self.view(locked)
            await emit(s, account_id, "checkout.session.expired", view, now)
        return view

    async def _cancel_payment(self, account_id: str, row: CheckoutSession) -> None:
        assert row.payment_intent_id is not None
        async with self.ctx.db.read() as s:
            pi = await s.get(PaymentIntent, row.payment_intent_id)
        if pi is None or pi.status == "canceled":
            return
        if pi.status not in _CANCELABLE_PI:
            raise PaymuxError.of(
                "checkout_session_unexpected_state",
                f"This session's payment is {pi.status}: it cannot expire.",
            )
        mode = current_livemode.set(bool(row.livemode))
        try:
            await self.payments.cancel(account_id, pi.id, "abandoned")
        except PaymuxError as exc:
            raise PaymuxError.of(
                "checkout_session_unexpected_state",
                f"This session's payment could not be canceled ({exc.code}): it cannot expire.",
            ) from exc
        finally:
            current_livemode.reset(mode)

    async def _cancel_setup(self, account_id: str, row: CheckoutSession) -> None:
        assert row.setup_intent_id is not None
        async with self.ctx.db.read() as s:
            si = await s.get(SetupIntent, row.setup_intent_id)
        if si is None or si.status == "canceled":
            return
        if si.status not in _CANCELABLE_SI:
            raise PaymuxError.of(
                "checkout_session_unexpected_state",
                f"This session's setup is {si.status}: it cannot expire.",
            )
        mode = current_livemode.set(bool(row.livemode))
        try:
            await self.setup_intents.cancel(account_id, si.id, "abandoned")
        except PaymuxError as exc:
            raise PaymuxError.of(
                "checkout_session_unexpected_state",
                f"This session's setup could not be canceled ({exc.code}): it cannot expire.",
            ) from exc
        finally:
            current_livemode.reset(mode)

    async def expire_due(self, limit: int = EXPIRE_BATCH) -> int:
        """The sweep: first the repair (open sessions whose intent already settled, whose
        reaction was lost, are completed here: no gateway call), then one
        ``expire_checkout_session`` job per open session past ``expires_at`` (oldest first,
        at most ``limit``; deduplicated by ``cs-expire:{id}``). The job calls the gateway,
        with the queue's backoff when it fails; a session whose job is queued or running is
        not picked again, so stuck ones never starve the rest. Returns the jobs queued."""
        await self.repair_settled(limit)
        now = self.ctx.now_us()
        held = (
            select(Job.id)
            .where(
                Job.dedupe_key == literal(EXPIRE_JOB_PREFIX) + CheckoutSession.id,
                Job.status.in_((queue.QUEUED, queue.RUNNING)),
            )
            .exists()
        )
        async with self.ctx.db.write() as s:
            due = (
                await s.execute(
                    select(CheckoutSession.id, CheckoutSession.account_id)
                    .where(
                        CheckoutSession.status == rules.OPEN,
                        CheckoutSession.expires_us <= now,
                        ~held,
                    )
                    .order_by(CheckoutSession.expires_us, CheckoutSession.id)
                    .limit(limit)
                )
            ).all()
            queued = 0
            for cs_id, account_id in due:
                made = await queue.enqueue(
                    s,
                    EXPIRE_JOB,
                    {"account_id": account_id, "cs_id": cs_id},
                    now_us=now,
                    dedupe_key=EXPIRE_JOB_PREFIX + cs_id,
                    account_id=account_id,
                )
                queued += made is not None
        return queued

    async def expire_job(self, account_id: str, cs_id: str) -> None:
        """Job ``expire_checkout_session``: expire the session if it is still open. One whose
        payment is under way (processing) raises, so the job backs off and asks again later
        (the payment's settlement completes it meanwhile, or lets it expire)."""
        async with self.ctx.db.read() as s:
            row = await s.get(CheckoutSession, cs_id)
        if row is None or row.account_id != account_id or row.status != rules.OPEN:
            return
        await self.expire(account_id, cs_id)

    async def repair_settled(self, limit: int = EXPIRE_BATCH) -> int:
        """Complete open sessions whose intent already succeeded (or, for a manual capture,
        is authorized): the reaction that completes a session runs in the transaction that
        settles its intent, so this finds only sessions settled before that reaction
        existed or whose reaction failed (see ``_react``). Returns how many it completed."""
        now = self.ctx.now_us()
        done = 0
        async with self.ctx.db.write() as s:
            paid = (
                await s.execute(
                    select(CheckoutSession, PaymentIntent.status)
                    .join(PaymentIntent, PaymentIntent.id == CheckoutSession.payment_intent_id)
                    .where(
                        CheckoutSession.status == rules.OPEN,
                        PaymentIntent.status.in_(("succeeded", "requires_capture")),
                    )
                    .order_by(CheckoutSession.id)
                    .limit(limit)
                    .with_for_update(of=CheckoutSession)
                )
            ).all()
            saved = (
                await s.execute(
                    select(CheckoutSession, SetupIntent.status)
                    .join(SetupIntent, SetupIntent.id == CheckoutSession.setup_intent_id)
                    .where(
                        CheckoutSession.status == rules.OPEN,
                        SetupIntent.status == "succeeded",
                    )
                    .order_by(CheckoutSession.id)
                    .limit(limit)
                    .with_for_update(of=CheckoutSession)
                )
            ).all()
            for row, status in [*paid, *saved]:
                log.warning("checkout session %s completed by the repair sweep", row.id)
                await _complete(s, row, str(status), now)
                done += 1
        return done

    # -- the hosted page --------------------------------------------------------------------
    async def page_session(self, cs_id: str) -> CheckoutSession | None:
        """The session of a page URL (its id, 30 random characters after the prefix, is
        the page's secret)."""
        if not cs_id.startswith("cs_") or len(cs_id) > 80:
            return None
        async with self.ctx.db.read() as s:
            row: CheckoutSession | None = await s.get(CheckoutSession, cs_id)
            return row

    async def gateway_of(self, row: CheckoutSession) -> str | None:
        """The gateway the session's intent was routed to (whose card form the page needs)."""
        async with self.ctx.db.read() as s:
            if row.payment_intent_id is not None:
                pi = await s.get(PaymentIntent, row.payment_intent_id)
                return pi.gateway if pi is not None else None
            if row.setup_intent_id is not None:
                si = await s.get(SetupIntent, row.setup_intent_id)
                return si.gateway if si is not None else None
        return None

    def success_redirect(self, row: CheckoutSession) -> str | None:
        if row.success_url is None:
            return None
        return rules.redirect_after_success(row.success_url, row.id)

    async def pay_from_page(
        self,
        cs_id: str,
        card_token: str,
        return_url: str,
        *,
        verification_token: str | None = None,
    ) -> PageOutcome:
        """Confirm the session's intent with the token the gateway's card form made (for
        PayPal, the order the payer approved; for Square, with ``verification_token``, the
        Web Payments SDK's verifyBuyer token). A decline raises its card error (the session
        stays open for another try)."""
        row = await self.page_session(cs_id)
        if row is None:
            raise PaymuxError.of("resource_missing", "No such checkout session.", param="id")
        if row.status != rules.OPEN or self.ctx.now_us() >= row.expires_us:
            raise PaymuxError.of(
                "checkout_session_unexpected_state",
                "This checkout session is no longer open.",
            )
        rules.check_page_token(card_token)
        await self._check_tries(row)
        # The sandbox's challenge returns the payer to the page (return_url); Stripe's
        # 3-D Secure is Stripe.js's (next_action use_stripe_sdk), which takes none (and
        # localstripe refuses one).
        gateway = await self.gateway_of(row)
        back = return_url if gateway == "sandbox" else None
        # PayPal: the token is the order paymux opened with the payment, approved by the
        # payer in PayPal's window; only that order, and again after a refusal (the payer
        # picks another funding source for the same order), never another one.
        own_order = None
        if gateway == "paypal" and row.payment_intent_id is not None:
            own_order = await self._own_order(row.payment_intent_id, card_token)
        mode = current_livemode.set(bool(row.livemode))
        try:
            if gateway == "paypal" and row.setup_intent_id is not None:
                # Setup mode: the setup token the payer approved in PayPal's window (only the
                # one made for this session's SetupIntent); reading the SetupIntent settles
                # it by asking PayPal, which makes the payment token once it is approved.
                seti_id = await self._own_setup_token(row.setup_intent_id, card_token)
                view = await self.setup_intents.retrieve(row.account_id, seti_id)
                if not rules.completion_status(str(view.get("status"))):
                    return PageOutcome("open")  # not approved: the payer tries again
            elif row.payment_intent_id is not None:
                view = await self.payments.confirm(
                    row.account_id,
                    row.payment_intent_id,
                    payment_method=own_order,
                    payment_method_data=None if own_order else _token_data(card_token),
                    off_session=False,
                    return_url=back,
                    verification_token=verification_token,
                )
            else:
                assert row.setup_intent_id is not None
                view = await self.setup_intents.confirm(
                    row.account_id,
                    row.setup_intent_id,
                    payment_method_data=_token_data(card_token),
                    # Stripe's challenge is Stripe.js's (confirmCardSetup), as for a payment.
                    return_url=None if gateway == "stripe" else return_url,
                    verification_token=verification_token,
                )
        finally:
            current_livemode.reset(mode)
        status = str(view.get("status"))
        if rules.completion_status(status):
            return PageOutcome("complete", self.success_redirect(row))
        if status == "processing":  # the page asks again (``page_state``)
            return PageOutcome("processing")
        action = view.get("next_action") or {}
        url = (action.get("redirect_to_url") or {}).get("url")
        if status == "requires_action" and url:
            return PageOutcome("requires_action", str(url))
        if status == "requires_action" and action.get("type") == "use_stripe_sdk":
            secret = action.get("client_secret")
            kind = "payment_intent" if row.payment_intent_id else "setup_intent"
            back_to = f"{return_url}?{kind}={view.get('id')}"
            return PageOutcome("requires_action", None, str(secret) if secret else None, back_to)
        return PageOutcome("open")

    async def paypal_setup_token(self, cs_id: str, return_url: str) -> str:
        """Setup mode on PayPal: the setup token the payer approves in PayPal's window (the
        buttons' ``createVaultSetupToken``). The first call confirms the session's
        SetupIntent (PayPal makes the token, under the setup's own key); later calls, as
        the payer opens PayPal's window again, answer the same token."""
        row, si = await self._open_setup(cs_id)
        if si.status == "requires_action" and si.gateway_reference:
            return si.gateway_reference
        await self._check_tries(row)
        mode = current_livemode.set(bool(row.livemode))
        try:
            view = await self.setup_intents.confirm(row.account_id, si.id, return_url=return_url)
        finally:
            current_livemode.reset(mode)
        token = (view.get("next_action") or {}).get("paypal_setup_token")
        if not token:
            raise PaymuxError.of(
                "checkout_session_unexpected_state",
                "PayPal did not ask the payer to approve saving the wallet.",
            )
        return str(token)

    async def stripe_setup_secret(self, cs_id: str, return_url: str) -> PageOutcome:
        """Setup mode on Stripe: the client secret of Stripe's SetupIntent, which the page's
        Stripe.js confirms with its card Element (``confirmCardSetup``: Stripe.js makes the
        one PaymentMethod, confirms, runs 3-D Secure). The first call confirms the session's
        SetupIntent without a card (paymux makes Stripe's, keyed by our intent and attempt,
        no transaction open). An attempt still waiting (a reload, a second click) is asked
        at Stripe first: still waiting, its secret again; ended, a new attempt's."""
        row, si = await self._open_setup(cs_id)
        if si.status == "requires_action" and si.gateway_reference:
            await self._settle_setup(row, si.id)
            # Saved meanwhile (Stripe.js confirmed, the outcome's post lost, Save clicked
            # again): the session completed with that settle; where to go, not a refusal.
            settled = await self.page_session(cs_id)
            if settled is not None and settled.status == rules.COMPLETE:
                return PageOutcome("complete", self.success_redirect(settled))
            row, si = await self._open_setup(cs_id)
        if rules.completion_status(si.status):
            return PageOutcome("complete", self.success_redirect(row))
        back_to = f"{return_url}?setup_intent={si.id}"
        secret = (si.next_action or {}).get("client_secret")
        if si.status == "requires_action" and si.gateway_reference and secret:
            return PageOutcome("requires_action", None, str(secret), back_to)
        await self._check_tries(row)
        mode = current_livemode.set(bool(row.livemode))
        try:
            view = await self.setup_intents.confirm(row.account_id, si.id)
        finally:
            current_livemode.reset(mode)
        secret = (view.get("next_action") or {}).get("client_secret")
        if view.get("status") != "requires_action" or not secret:
            raise PaymuxError.of(
                "checkout_session_unexpected_state",
                "Stripe did not hand the card to Stripe.js.",
            )
        return PageOutcome("requires_action", None, str(secret), back_to)

    async def stripe_setup_outcome(self, cs_id: str) -> PageOutcome:
        """After Stripe.js's ``confirmCardSetup``: the outcome as Stripe has it (read now,
        never the browser's word): complete (the card saved for the customer); a decline or
        a failed challenge raises its card error (the session waits for another card);
        requires_action while Stripe still waits for the payer."""
        row = await self.page_session(cs_id)
        if row is None or row.setup_intent_id is None:
            raise PaymuxError.of("resource_missing", "No such checkout session.", param="id")
        if row.status == rules.COMPLETE:
            return PageOutcome("complete", self.success_redirect(row))
        await self._settle_setup(row, row.setup_intent_id)
        row = await self.page_session(cs_id)
        assert row is not None and row.setup_intent_id is not None
        async with self.ctx.db.read() as s:
            si = await s.get(SetupIntent, row.setup_intent_id)
        if si is None:
            raise PaymuxError.of("resource_missing", "No such checkout session.", param="id")
        if row.status == rules.COMPLETE or rules.completion_status(si.status):
            return PageOutcome("complete", self.success_redirect(row))
        failed = si.last_setup_error or {}
        if si.status == "requires_payment_method" and failed.get("gateway_code"):
            raise card_error(str(failed["gateway"]), str(failed["gateway_code"]))
        if si.status == "requires_payment_method" and failed.get("code"):
            raise PaymuxError.of(str(failed["code"]), str(failed.get("message") or ""))
        return PageOutcome(si.status if si.status == "requires_action" else "open")

    async def _open_setup(self, cs_id: str) -> tuple[CheckoutSession, SetupIntent]:
        row = await self.page_session(cs_id)
        if row is None or row.setup_intent_id is None:
            raise PaymuxError.of("resource_missing", "No such checkout session.", param="id")
        if row.status != rules.OPEN or self.ctx.now_us() >= row.expires_us:
            raise PaymuxError.of(
                "checkout_session_unexpected_state",
                "This checkout session is no longer open.",
            )
        async with self.ctx.db.read() as s:
            si = await s.get(SetupIntent, row.setup_intent_id)
        if si is None:
            raise PaymuxError.of("resource_missing", "No such checkout session.", param="id")
        return row, si

    async def _settle_setup(self, row: CheckoutSession, seti_id: str) -> None:
        """Ask the gateway where the session's setup stands (no transaction open); a gateway
        that cannot answer now leaves it as recorded (the webhook settles it)."""
        try:
            await self.setup_intents.settle_waiting(row.account_id, seti_id)
        except GatewayError as exc:
            log.warning("could not settle %s: %s", row.id, type(exc).__name__)

    async def _own_setup_token(self, seti_id: str, token: str) -> str:
        async with self.ctx.db.read() as s:
            si = await s.get(SetupIntent, seti_id)
        if si is None or not si.gateway_reference or token != si.gateway_reference:
            raise PaymuxError.of(
                "parameter_invalid",
                "This page saves with its own PayPal setup token only.",
                param="payment_method",
            )
        return si.id

    async def _own_order(self, pi_id: str, token: str) -> str:
        """The order the page may pay with: the one opened with the payment (the buttons'),
        or one its card fields opened (``paypal_card_order``), which PayPal says was opened
        for this payment (``custom_id``, read at PayPal: no call inside a transaction)."""
        async with self.ctx.db.read() as s:
            pi = await s.get(PaymentIntent, pi_id)
        order = (pi.gateway_client or {}).get("order_id") if pi is not None else None
        if order and token == order:
            return token
        if pi is not None and order and await self._card_order_of(pi, token):
            return token
        raise PaymuxError.of(
            "parameter_invalid",
            "This page pays with its payment's own PayPal order only.",
            param="payment_method",
        )

    async def _card_order_of(self, pi: PaymentIntent, token: str) -> bool:
        provider = await self.ctx.gateway_of(pi)
        if not isinstance(provider, CardOrders):
            return False
        try:
            return await provider.order_opened_for(token) == pi.id
        except GatewayInvalidRequest:  # not an order id PayPal takes
            return False
        except GatewayError as exc:  # PayPal not reachable: nothing done, the payer retries
            raise PaymuxError.of("gateway_unavailable") from exc

    async def paypal_card_order(self, cs_id: str) -> str:
        """PayPal's card fields on the page (``createOrder``): an order for the session's
        payment, opened at PayPal for a card entered in PayPal's own fields (``custom_id``
        our payment; 3-D Secure as the payment's ``request_three_d_secure`` asks, else
        SCA_WHEN_REQUIRED). Keyed by the payment and its confirmation count: asked again
        before a confirmation, the same order; after a refused one, a new order (the
        authentication or the decline of the last one stands on it). No transaction open."""
        row = await self.page_session(cs_id)
        if row is None or row.payment_intent_id is None:
            raise PaymuxError.of("resource_missing", "No such checkout session.", param="id")
        if row.status != rules.OPEN or self.ctx.now_us() >= row.expires_us:
            raise PaymuxError.of(
                "checkout_session_unexpected_state", "This checkout session is no longer open."
            )
        await self._check_tries(row)
        async with self.ctx.db.read() as s:
            pi = await s.get(PaymentIntent, row.payment_intent_id)
        if pi is None or pi.status not in _WAITS_FOR_CARD:
            raise PaymuxError.of(
                "checkout_session_unexpected_state", "This checkout's payment is under way."
            )
        mode = current_livemode.set(bool(row.livemode))
        try:
            provider = await self.ctx.gateway_of(pi)
            if not isinstance(provider, CardOrders):
                raise PaymuxError.of(
                    "checkout_session_unexpected_state", "This checkout takes no card here."
                )
            # The SDK on the page was loaded with the payment's intent: the order's the same.
            capture = (pi.gateway_client or {}).get("intent") != "authorize"
            return await provider.open_card_order(
                Money(int(pi.amount), pi.currency),
                pi.id,
                capture,
                requested_option(pi),
                idempotency_key=f"{pi.id}:open-card:{pi.confirm_count}",
            )
        except GatewayError as exc:
            log.warning("could not open a card order for %s: %s", pi.id, type(exc).__name__)
            raise PaymuxError.of("gateway_unavailable") from exc
        finally:
            current_livemode.reset(mode)

    async def page_state(self, cs_id: str) -> PageOutcome | None:
        """Where the session of a page stands, for a page that lost its answer, a second
        tab, or a payment still processing: complete (with where to go), processing (its
        intent is under way at the gateway), requires_action (it waits for the payer's
        authentication), expired, or open. None for no such session."""
        row = await self.page_session(cs_id)
        if row is None:
            return None
        if row.status == rules.COMPLETE:
            return PageOutcome("complete", self.success_redirect(row))
        if row.status == rules.EXPIRED:
            return PageOutcome("expired")
        async with self.ctx.db.read() as s:
            if row.payment_intent_id is not None:
                pi = await s.get(PaymentIntent, row.payment_intent_id)
                status = pi.status if pi is not None else None
            else:
                si = await s.get(SetupIntent, row.setup_intent_id)
                status = si.status if si is not None else None
        if status is not None and rules.completion_status(status):
            # Settled, its reaction not yet seen here (or lost: the sweep repairs it).
            return PageOutcome("complete", self.success_redirect(row))
        if status in ("processing", "requires_action"):
            return PageOutcome(status)  # under way at the gateway / waits for the payer
        return PageOutcome("open")

    async def _check_tries(self, row: CheckoutSession) -> None:
        """A page that anyone holding its URL can post cards to is a card tester's tool:
        at most ``PAGE_TRIES`` cards per session (Stripe limits its Checkout too)."""
        async with self.ctx.db.read() as s:
            if row.payment_intent_id is not None:
                pi = await s.get(PaymentIntent, row.payment_intent_id)
                tries = pi.confirm_count if pi is not None else 0
            else:
                si = await s.get(SetupIntent, row.setup_intent_id)
                tries = si.attempts if si is not None else 0
        if tries >= PAGE_TRIES:
            raise PaymuxError.of(
                "rate_limited",
                "Too many payment tries for this checkout. Ask the merchant for a new one.",
            )

    async def refresh_on_return(self, row: CheckoutSession) -> None:
        """The payer is back from the gateway's challenge: if the session's intent still
        waits, ask the gateway now rather than wait for its webhook (the reaction then
        completes the session). A page view never calls a gateway otherwise."""
        if row.status != rules.OPEN:
            return
        # A page reloaded in a loop (its return URL) asks the gateway once per
        # ``REFRESH_EVERY`` seconds per session at most; the webhook settles it anyway.
        now = time.monotonic()
        if now - self._refreshed.get(row.id, -REFRESH_EVERY) < REFRESH_EVERY:
            return
        if len(self._refreshed) >= 10_000:
            self._refreshed = {k: t for k, t in self._refreshed.items() if now - t < REFRESH_EVERY}
        self._refreshed[row.id] = now
        try:
            if row.payment_intent_id is not None:
                async with self.ctx.db.read() as s:
                    pi = await s.get(PaymentIntent, row.payment_intent_id)
                if pi is not None and pi.status == "requires_action":
                    await self.payments.engine.refresh_intent(pi.id)
            elif row.setup_intent_id is not None:
                await self.setup_intents.settle_waiting(row.account_id, row.setup_intent_id)
        except Exception as exc:  # the webhook settles it; the page shows what is known
            log.warning("could not refresh %s on return: %s", row.id, type(exc).__name__)


def _token_data(card_token: str) -> dict[str, Any]:
    """The page's card as ``payment_method_data``: a new payment method made from a fresh
    single-use token, never an existing one of the account (``payment_method_from_token``
    refuses a token that already made one)."""
    return {"card": {"token": card_token}}


# -- completion: reactions in the transaction that settles the intent --------------------
async def _complete(s: AsyncSession, row: CheckoutSession, intent_status: str, now_us: int) -> None:
    if row.status != rules.OPEN:
        if row.status == rules.EXPIRED:  # cannot happen: expiry cancels the intent first
            log.error("the intent of expired checkout session %s settled", row.id)
        return
    row.status = rules.COMPLETE
    row.payment_status = rules.payment_status_after(row.mode, intent_status)
    row.completed_us = now_us
    row.updated_us = max(now_us, row.updated_us)
    await emit(
        s, row.account_id, "checkout.session.completed", rules.session_view(row, None), now_us
    )


# The shape of every session's intent id (``rules.intent_id_for``: "pi_" and 24 hex digits).
_SESSION_INTENT_ID: Final = re.compile(r"pi_[0-9a-f]{24}")


def _may_be_sessions(intent: dict[str, Any], row: Any) -> bool:
    """``_on_payment_settled``'s gate (``react_to``'s ``when``): a session's intent always has
    an id of ``rules.intent_id_for``'s shape (its only maker, ``create``), and a random intent
    id (62 symbols a character) has it once in about 10^14; no query for any other intent."""
    return _SESSION_INTENT_ID.fullmatch(str(intent.get("id"))) is not None


async def _on_payment_settled(
    s: AsyncSession, account_id: str, intent: dict[str, Any], now_us: int
) -> None:
    status = str(intent.get("status"))
    if not rules.completion_status(status):
        return
    found = (
        await s.execute(
            select(CheckoutSession)
            .where(
                CheckoutSession.payment_intent_id == str(intent["id"]),
                CheckoutSession.account_id == account_id,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if found is not None:
        await _complete(s, found, status, now_us)


async def _on_setup_succeeded(
    s: AsyncSession, account_id: str, intent: dict[str, Any], now_us: int
) -> None:
    found = (
        await s.execute(
            select(CheckoutSession)
            .where(
                CheckoutSession.setup_intent_id == str(intent["id"]),
                CheckoutSession.account_id == account_id,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if found is not None:
        await _complete(s, found, "succeeded", now_us)


# -- helpers -------------------------------------------------------------------------------
async def _owned(
    s: AsyncSession, account_id: str, cs_id: str, *, lock: bool = False
) -> CheckoutSession:
    if not cs_id.startswith("cs_") or len(cs_id) > 80:
        raise PaymuxError.of(
            "resource_missing", f"No such checkout.session: '{cs_id}'", param="session"
        )
    try:
        return await get_owned(s, CheckoutSession, cs_id, account_id, param="session", lock=lock)
    except PaymuxError as exc:
        raise PaymuxError.of(
            "resource_missing", f"No such checkout.session: '{cs_id}'", param="session"
        ) from exc


def _require_open(row: CheckoutSession, action: str) -> None:
    if row.status != rules.OPEN:
        raise PaymuxError.of(
            "checkout_session_unexpected_state",
            f'Only Checkout Sessions with a status in ["open"] can be {action}d '
            f"(this one is {row.status}).",
        )


def _currency_or_none(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return Money(0, value).currency.lower()
    except MoneyError as exc:
        raise PaymuxError.of(exc.code, str(exc), param="currency") from exc


async def _inline_price(
    s: AsyncSession,
    account_id: str,
    data: dict[str, Any],
    param: str,
    now_us: int,
    livemode: bool,
) -> tuple[dict[str, Any], str]:
    """Stripe's ``price_data``: a one-time price made for this session only (its id is
    new; it is not in the catalog), with ``product`` (an id) or ``product_data[name]``."""
    where = f"{param}[price_data]"
    if data.get("recurring") is not None:
        raise PaymuxError.of(
            "parameter_invalid",
            "A recurring price needs mode subscription, which paymux's checkout does not "
            "offer yet.",
            param=f"{where}[recurring]",
        )
    raw_currency = data.get("currency")
    if not isinstance(raw_currency, str):
        raise PaymuxError.of(
            "parameter_missing", "Missing required param: currency.", param=f"{where}[currency]"
        )
    try:
        currency = Money(0, raw_currency).currency.lower()
    except MoneyError as exc:
        raise PaymuxError.of(exc.code, str(exc), param=f"{where}[currency]") from exc
    unit = data.get("unit_amount")
    if not isinstance(unit, int) or isinstance(unit, bool) or unit < 0:
        raise PaymuxError.of(
            "parameter_invalid" if unit is not None else "parameter_missing",
            "unit_amount must be a non-negative integer in minor units.",
            param=f"{where}[unit_amount]",
        )
    product_id = data.get("product")
    product_data = data.get("product_data")
    if (product_id is None) == (product_data is None):
        raise PaymuxError.of(
            "parameter_missing" if product_id is None else "parameter_invalid",
            "price_data needs exactly one of product or product_data.",
            param=f"{where}[product_data]",
        )
    if product_id is not None:
        product = await get_owned(
            s, Product, str(product_id), account_id, param=f"{where}[product]"
        )
        name = product.name
    else:
        name = str((product_data or {}).get("name") or "")
        if not name:
            raise PaymuxError.of(
                "parameter_missing",
                "Missing required param: product_data[name].",
                param=f"{where}[product_data][name]",
            )
        product_id = new_id("prod")
    price = {
        "id": new_id("price"),
        "object": "price",
        "active": False,
        "billing_scheme": "per_unit",
        "created": now_us // 1_000_000,
        "currency": currency,
        "livemode": livemode,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": str(product_id),
        "recurring": None,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "type": "one_time",
        "unit_amount": unit,
        "unit_amount_decimal": str(unit),
    }
    return price, name
