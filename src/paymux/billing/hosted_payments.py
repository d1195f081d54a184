"""Paying an invoice from its hosted page: the payer's card, on-session, with 3-D Secure.

The page hands over a token the gateway's own card form made (the sandbox's hosted form,
Stripe.js's card Element, Square's card form with its verifyBuyer token: the card number
never reaches paymux's page), for the gateway ``page_gateway`` names: the invoice's waiting
intent's, else where the account's routing sends a payment of what is due. The payment is
a PaymentIntent on the invoice, like every invoice payment, so its outcome reaches the
invoice through the invoices core's one hook (``InvoicePayments.on_intent_settled``) in
the transaction that settles the intent, whichever path settles it: this request, the
gateway's webhook after the challenge, or the refresh the page asks for when the payer comes
back from the challenge.

- The invoice's intent waits for a payment method (a declined off-session try): it is
  confirmed with the payer's card, ``return_url`` the invoice page.
- Otherwise a new intent is made, its id derived from the invoice and the token (a resent
  form resumes it, never a second charge), noted on the invoice under its lock BEFORE the
  payment service hears of it (and taken off again if its create fails before the intent is
  made: the invoice never names an intent that does not exist); one that waits for another
  3-D Secure is canceled first. An intent in flight (processing) refuses the payment: it
  may yet succeed.
- PayPal (``paypal_order``): the buttons' ``createOrder`` asks the page for the order; a new
  intent is made for what is due (its id derived from the invoice, what is due and how many
  intents it has had, so a lost answer or a crash reopens the same order under the same
  idempotency key), noted on the invoice under its lock, and the payment service opens its
  order at PayPal outside any transaction; asked again, the same order is answered. The
  approved order pays through ``pay_from_page`` (the token: that order's id, only the one
  opened for the invoice's intent; PayPal's own ``foreign_order`` check refuses an order
  opened for another payment at the connector too).
- A subscription's invoice is paid with ``setup_future_usage=off_session`` (not on Square,
  whose card is saved only from a verifyBuyer of intent STORE, nor on PayPal, whose page
  order saves no wallet): the card the payer
  authenticated is saved to the customer. It does not become the subscription's default:
  renewals keep charging the default payment method, as Stripe's hosted invoice page does
  unless ``save_default_payment_method`` is set.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.invoice_payments import TRY_KIND, live_intent, never_started, replaceable
from paymux.billing.payment_lease import (
    held_by_other,
    lease_live,
    lease_seconds,
    release_lease,
    take_lease,
)
from paymux.domain.attempts import Operation
from paymux.domain.errors import PaymuxError
from paymux.money import Money
from paymux.services.context import current_livemode
from paymux.services.payments import CreateParams
from paymux.services.routing import choose_gateway
from paymux.storage.models import GatewayAttempt, Invoice, PaymentIntent

if TYPE_CHECKING:
    from paymux.root import Paymux

__all__ = [
    "PageGateway",
    "PageOutcome",
    "hosted_intent_id",
    "page_gateway",
    "pay_from_page",
    "paypal_order",
    "refresh_on_return",
]

log = logging.getLogger(__name__)

_PAYPAL = "paypal"  # its buttons pay the order the page opened (``paypal_order``)
_CONFIRMABLE = ("requires_payment_method", "requires_confirmation")
_IN_FLIGHT = ("processing", "requires_capture", "succeeded")
# Payments one invoice may have made in an hour before its page refuses new cards.
PAGE_TRIES_PER_HOUR = 10


def hosted_intent_id(invoice_id: str, token: str) -> str:
    """The intent of paying ``invoice_id`` with ``token`` from the page: the same for a resent
    form."""
    digest = hashlib.sha256(f"{invoice_id}:page:{token}".encode()).hexdigest()[:24]
    return f"pi_{digest}"


def paypal_intent_id(invoice_id: str, amount: int, made: int) -> str:
    """The intent whose PayPal order the page opens for ``amount`` due on ``invoice_id``,
    which has had ``made`` intents so far: the same for a createOrder asked again (or after a
    lost answer), a new one once that intent is gone (canceled, the amount changed)."""
    seed = f"{invoice_id}:paypal-order:{amount}:{made}"
    return f"pi_{hashlib.sha256(seed.encode()).hexdigest()[:24]}"


@dataclass(frozen=True)
class _Noted:
    """What the invoice's lock gave a new page intent: what is due and whose, and the
    never-started intent it replaced (canceled once the new one is made), if any."""

    amount: int
    currency: str
    customer_id: str
    number: str | None
    abandoned: str | None


@dataclass(frozen=True)
class PageOutcome:
    status: str  # paid | requires_action | processing | open
    redirect_url: str | None = None
    # Stripe's 3-D Secure (next_action use_stripe_sdk): Stripe.js shows the challenge with
    # the secret, then the page goes back to ``return_url`` (which asks Stripe).
    client_secret: str | None = None
    return_url: str | None = None


@dataclass(frozen=True)
class PageGateway:
    """The gateway whose card-entry component takes the payer's card on the invoice's page,
    and what it gives the browser (the connector's ``browser_params``, with the waiting
    intent's ``gateway_client``: Stripe's publishable key, Square's ids)."""

    name: str
    client: dict[str, Any]


async def page_gateway(app: Paymux, invoice: Invoice) -> PageGateway | None:
    """The gateway of the invoice's intent where it waits for a payment method (a declined
    try: the page confirms it with the payer's card), else the one the account's routing
    picks for a payment of what is due; None where none takes it. Nothing is sent to a
    gateway here."""
    mode = current_livemode.set(bool(invoice.livemode))
    try:
        async with app.ctx.db.read() as s:
            pi = (
                await s.get(PaymentIntent, invoice.payment_intent_id)
                if invoice.payment_intent_id
                else None
            )
        if (
            pi is not None
            and pi.status == "requires_payment_method"
            and pi.amount == invoice.amount_remaining
        ):
            gateway = await app.ctx.gateway_of(pi)
            client = {**gateway.browser_params(pi.id), **(pi.gateway_client or {})}
            return PageGateway(pi.gateway, client)
        routed = await choose_gateway(
            app.ctx,
            invoice.account_id,
            None,
            Money(invoice.amount_remaining, invoice.currency),
            livemode=bool(invoice.livemode),
        )
        return PageGateway(routed.gateway.name, routed.gateway.browser_params(invoice.id))
    except PaymuxError:  # no connection takes it here: the page says to contact the merchant
        return None
    finally:
        current_livemode.reset(mode)


async def invoice_by_token(app: Paymux, token: str) -> Invoice | None:
    async with app.ctx.db.read() as s:
        row: Invoice | None = (
            await s.execute(select(Invoice).where(Invoice.hosted_token == token))
        ).scalar_one_or_none()
        return None if row is None or row.status == "draft" else row


async def _payable(app: Paymux, token: str) -> Invoice:
    """The invoice of hosted ``token``, refused unless it is open with something to pay."""
    invoice = await invoice_by_token(app, token)
    if invoice is None:
        raise PaymuxError.of("resource_missing", "No such invoice.", param="invoice")
    return _open_to_pay(invoice)


def _open_to_pay(invoice: Invoice) -> Invoice:
    """``invoice``, refused unless it is open with something to pay."""
    if invoice.status != "open" or invoice.amount_remaining <= 0:
        raise PaymuxError.of(
            "invoice_unexpected_state",
            f"This invoice is {invoice.status}: there is nothing to pay.",
            param="invoice",
        )
    return invoice


def _outcome(view: dict[str, Any], return_url: str) -> PageOutcome:
    if view.get("status") == "succeeded":
        return PageOutcome("paid")
    action = view.get("next_action") or {}
    url = (action.get("redirect_to_url") or {}).get("url")
    if view.get("status") == "requires_action" and url:
        return PageOutcome("requires_action", str(url))
    if view.get("status") == "requires_action" and action.get("type") == "use_stripe_sdk":
        secret = action.get("client_secret")
        back = f"{return_url}?payment_intent={view.get('id')}"
        return PageOutcome("requires_action", None, str(secret) if secret else None, back)
    if view.get("status") == "processing":  # sent, its answer not known yet (lost, slow)
        return PageOutcome("processing")
    return PageOutcome("open")


async def pay_from_page(
    app: Paymux,
    token: str,
    card_token: str,
    return_url: str,
    *,
    verification_token: str | None = None,
    form_gateway: str | None = None,
) -> PageOutcome:
    """Pay the invoice of hosted ``token`` with ``card_token`` (see the module docstring),
    made by the card form of ``page_gateway``'s gateway; ``verification_token``: Square's
    verifyBuyer token; ``form_gateway``: the gateway whose form the page mounted (a payment
    routed to another since is refused: "reload the page", and no try is counted). A decline
    raises the card error (the invoice stays open, the try counted)."""
    invoice = await _payable(app, token)
    account_id, invoice_id = invoice.account_id, invoice.id
    found = await page_gateway(app, invoice)
    if found is None:
        raise PaymuxError.of(
            "invoice_unexpected_state", "This invoice cannot be paid here.", param="invoice"
        )
    gateway = found.name
    if form_gateway is not None and form_gateway != gateway:
        raise PaymuxError.of(
            "invoice_unexpected_state",
            "This invoice's payment has moved to another payment form: reload the page.",
            param="invoice",
        )
    await _check_page_tries(app, invoice_id)
    # The sandbox's challenge is a page that returns to the invoice's; Stripe's is Stripe.js's
    # on the page itself (next_action use_stripe_sdk), which takes no return_url.
    paypal = gateway == _PAYPAL
    back = None if gateway in ("stripe", _PAYPAL) else return_url
    # A subscription's invoice saves the card for the customer (Square saves a card only from
    # a verifyBuyer of intent STORE, which this page does not ask for: not there; PayPal's
    # order opened by the page vaults no wallet: not there either).
    future = (
        "off_session" if invoice.subscription_id and gateway not in ("square", _PAYPAL) else None
    )
    mode = current_livemode.set(bool(invoice.livemode))
    try:
        async with app.ctx.db.read() as s:
            pi = (
                await s.get(PaymentIntent, invoice.payment_intent_id)
                if invoice.payment_intent_id
                else None
            )
        if pi is not None and pi.status in _IN_FLIGHT and not replaceable(pi, invoice):
            raise PaymuxError.of(
                "invoice_unexpected_state",
                "A payment of this invoice is already under way.",
                param="invoice",
            )
        if paypal and _page_order(pi, invoice.amount_remaining) != card_token:
            # Only the order opened with the invoice's intent (``paypal_order``), approved by
            # the payer: never another payment's, nor one opened for another amount.
            raise PaymuxError.of(
                "parameter_invalid",
                "This page pays with its invoice's own PayPal order only.",
                param="payment_method",
            )
        # An intent made for another amount (a credit note changed what is due) is never
        # confirmed: it is canceled and a new one made for what is due now.
        stale = pi is not None and pi.amount != invoice.amount_remaining
        if pi is not None and pi.status in _CONFIRMABLE and pi.gateway == gateway and not stale:
            async with app.ctx.db.write() as s:
                # Under the invoice's lock, as attempt() reserves: still the invoice's intent,
                # still waiting, and no other payment (a dunning retry) started meanwhile.
                locked = await _locked_open(s, invoice_id)
                current = await s.get(PaymentIntent, pi.id, populate_existing=True)
                wall = app.ctx.now_us()
                if (
                    locked.payment_intent_id != pi.id
                    or current is None
                    or current.status not in _CONFIRMABLE
                    or current.amount != locked.amount_remaining
                    or held_by_other(locked, pi.id, wall)
                    # A try's intent, made and not yet confirmed by a run that is alive (its
                    # lease): that run confirms it now, never the page beside it.
                    or (never_started(current) and lease_live(locked, wall))
                ):
                    raise PaymuxError.of(
                        "invoice_unexpected_state",
                        "Another payment of this invoice started meanwhile.",
                        param="invoice",
                    )
                # Held until the confirm has answered: no dunning try starts beside it.
                take_lease(locked, pi.id, wall, lease_seconds(app.ctx))
            try:
                view = await app.payments.confirm(
                    account_id,
                    pi.id,
                    # PayPal: the approved order (checked above). Else a fresh single-use
                    # token only, never a stored payment method (H1, r6).
                    payment_method=card_token if paypal else None,
                    payment_method_data=None if paypal else {"card": {"token": card_token}},
                    off_session=False,
                    return_url=back,
                    setup_future_usage=future,
                    verification_token=verification_token,
                )
            except PaymuxError as exc:
                await _drop_if_overtaken(app, account_id, pi.id, exc)
                raise
            finally:
                await release_lease(app.ctx, invoice_id, pi.id)
            return _outcome(view, return_url)
        if pi is not None and (
            pi.status == "requires_action" or (stale and pi.status in _CONFIRMABLE)
        ):
            await app.payments.cancel(account_id, pi.id, "abandoned")
        pi_id = hosted_intent_id(invoice_id, card_token)
        noted = await _note_new(app, invoice_id, pi, pi_id)
        abandoned = noted.abandoned
        amount, currency = noted.amount, noted.currency
        customer_id, number = noted.customer_id, noted.number
        try:
            # With Square's verification token, made then confirmed with it (a create takes
            # none); the lease covers both, and a crash between them leaves an intent that
            # never started, which the next try replaces.
            verified = verification_token is not None
            view = await app.payments.create(
                account_id,
                CreateParams(
                    id=pi_id,
                    invoice_id=invoice_id,
                    amount=amount,
                    currency=currency,
                    customer=customer_id,
                    payment_method_data=None if verified else {"card": {"token": card_token}},
                    gateway=gateway,
                    confirm=not verified,
                    off_session=False,
                    setup_future_usage=future,
                    return_url=back,
                    description=f"Invoice {number}" if number else None,
                    metadata={"invoice": invoice_id, TRY_KIND: "manual"},  # the payer's own
                ),
            )
            if verified:
                view = await app.payments.confirm(
                    account_id,
                    pi_id,
                    payment_method_data={"card": {"token": card_token}},
                    off_session=False,
                    return_url=back,
                    verification_token=verification_token,
                )
        except Exception as exc:
            if isinstance(exc, PaymuxError):
                await _drop_if_overtaken(app, account_id, pi_id, exc)
            await _unnote(app, invoice_id, pi_id)
            raise
        finally:
            await release_lease(app.ctx, invoice_id, pi_id)
            if abandoned is not None:
                await app.invoices.release(account_id, abandoned)  # no longer the invoice's
        await _renote(app, invoice_id, pi_id)
        return _outcome(view, return_url)
    finally:
        current_livemode.reset(mode)


async def _note_new(
    app: Paymux, invoice_id: str, pi: PaymentIntent | None, pi_id: str, due: int | None = None
) -> _Noted:
    """Note the new intent ``pi_id`` on the invoice under its lock, with its lease, BEFORE
    the payment service hears of it; ``pi``: the invoice's intent read before (``due``: the
    amount ``pi_id`` was derived from, which must still be what is due). Refused when
    another payment of the invoice started meanwhile."""
    async with app.ctx.db.write() as s:
        locked = await _locked_open(s, invoice_id)
        live = await live_intent(s, locked)
        wall = app.ctx.now_us()
        # A try's intent made and never confirmed, whose run died (its lease lapsed):
        # nothing of it reached a gateway, it holds nothing. This payment replaces it (its
        # start is refused from now on: ``payment_lease.check_start``); canceled after.
        abandoned: str | None = None
        if live is not None and never_started(live) and not lease_live(locked, wall):
            abandoned, live = live.id, None
        # A noted intent that was never made (its create refused the card before any
        # gateway call, e.g. a token that is not a fresh one) holds nothing.
        noted = locked.payment_intent_id
        if noted not in (None, pi_id) and await s.get(PaymentIntent, noted) is None:
            noted = None
        if (
            (noted not in (None, pi_id) and (pi is None or noted != pi.id))
            or (live is not None and live.id != pi_id)
            or held_by_other(locked, pi_id, wall)
            or (due is not None and locked.amount_remaining != due)
        ):
            raise PaymuxError.of(
                "invoice_unexpected_state",
                "Another payment of this invoice started meanwhile.",
                param="invoice",
            )
        locked.payment_intent_id = pi_id  # noted before the payment service hears of it
        take_lease(locked, pi_id, wall, lease_seconds(app.ctx))
        return _Noted(
            locked.amount_remaining, locked.currency, locked.customer_id, locked.number, abandoned
        )


async def _unnote(app: Paymux, invoice_id: str, pi_id: str) -> None:
    """The create of the noted intent ``pi_id`` failed: if it was never made (PayPal down
    while its order opened, a card refused before any gateway call), the invoice names no
    intent again, so no view shows one that does not exist. The one it named before, if
    any, was canceled or abandoned for this one: not put back (a twin's start would be
    refused, ``payment_lease.superseded``; ``release`` cancels an abandoned one). Under the
    invoice's lock, after the intent's absence is read there: a twin click making the same
    ``pi_id`` either committed it first (it is seen, the invoice keeps naming it) or names
    it again after (``_renote``). A failure here is logged, not raised (the create's is the
    error; the next try replaces a noted, never-made intent: ``_note_new``)."""
    try:
        async with app.ctx.db.read() as s:
            if await s.get(PaymentIntent, pi_id) is not None:
                return  # made (then declined, say): the invoice rightly names it
        async with app.ctx.db.write() as s:
            locked = await s.get(Invoice, invoice_id, with_for_update=True, populate_existing=True)
            if (
                locked is not None
                and locked.payment_intent_id == pi_id
                and await s.get(PaymentIntent, pi_id) is None
            ):
                locked.payment_intent_id = None
    except Exception as exc:
        log.warning("invoice %s still names %s: %s", invoice_id, pi_id, type(exc).__name__)


async def _renote(app: Paymux, invoice_id: str, pi_id: str) -> None:
    """The intent ``pi_id`` is made: if a twin click's failure (``_unnote``) took it off the
    invoice meanwhile, the invoice names ``pi_id`` again, unless another intent was noted
    since. Under the invoice's lock, always: a twin's ``_unnote`` that read the intent's
    absence before it was made may commit after, and only the lock orders this after it.
    Only while the invoice is open: one paid another way (a credit note for what is left)
    names no intent either, and naming this one would make its later success look like the
    invoice's payment, kept instead of returned. A failure is logged, not raised: the payment
    is made (a card payment's start named it already: ``payment_lease.check_start``)."""
    try:
        async with app.ctx.db.write() as s:
            locked = await s.get(Invoice, invoice_id, with_for_update=True, populate_existing=True)
            if locked is not None and locked.payment_intent_id is None and locked.status == "open":
                locked.payment_intent_id = pi_id
    except Exception as exc:
        log.warning("invoice %s not pointed at %s again: %s", invoice_id, pi_id, type(exc).__name__)


async def paypal_order(app: Paymux, token: str) -> str:
    """The PayPal order the buttons of the invoice of hosted ``token`` hand PayPal (their
    ``createOrder``): the one opened with the invoice's waiting PayPal intent for what is
    due, else a new intent's (see the module docstring). Refused where the invoice is not
    open, not paid through PayPal here, or a payment of it is under way."""
    invoice = await _payable(app, token)
    found = await page_gateway(app, invoice)
    if found is None or found.name != _PAYPAL:
        raise PaymuxError.of(
            "invoice_unexpected_state", "This invoice is not paid with PayPal.", param="invoice"
        )
    account_id, invoice_id, due = invoice.account_id, invoice.id, invoice.amount_remaining
    async with app.ctx.db.read() as s:
        pi = (
            await s.get(PaymentIntent, invoice.payment_intent_id)
            if invoice.payment_intent_id
            else None
        )
        made = (
            await s.execute(
                select(func.count())
                .select_from(PaymentIntent)
                .where(PaymentIntent.invoice_id == invoice_id)
            )
        ).scalar_one()
    order = _page_order(pi, due)
    if order is not None:
        return order  # asked again (another click, after a refusal): the same order
    if pi is not None and pi.status in _IN_FLIGHT and not replaceable(pi, invoice):
        raise PaymuxError.of(
            "invoice_unexpected_state",
            "A payment of this invoice is already under way.",
            param="invoice",
        )
    await _check_page_tries(app, invoice_id)
    mode = current_livemode.set(bool(invoice.livemode))
    try:
        # One that waits (for a payment method, for 3-D Secure) has no order of this page's
        # to approve: canceled, and a new one made whose order the payer approves.
        if pi is not None and pi.status in ("requires_action", "requires_payment_method"):
            await app.payments.cancel(account_id, pi.id, "abandoned")
        pi_id = paypal_intent_id(invoice_id, due, int(made))
        noted = await _note_new(app, invoice_id, pi, pi_id, due)
        try:
            await app.payments.create(
                account_id,
                CreateParams(
                    id=pi_id,
                    invoice_id=invoice_id,
                    amount=noted.amount,
                    currency=noted.currency,
                    customer=noted.customer_id,
                    gateway=_PAYPAL,
                    confirm=False,  # the order is opened; the payer approves it, then pays
                    off_session=False,
                    description=f"Invoice {noted.number}" if noted.number else None,
                    metadata={"invoice": invoice_id, TRY_KIND: "manual"},
                ),
            )
        except Exception as exc:
            if isinstance(exc, PaymuxError):
                await _drop_if_overtaken(app, account_id, pi_id, exc)
            await _unnote(app, invoice_id, pi_id)
            raise
        finally:
            await release_lease(app.ctx, invoice_id, pi_id)
            if noted.abandoned is not None:
                await app.invoices.release(account_id, noted.abandoned)
    finally:
        current_livemode.reset(mode)
    await _renote(app, invoice_id, pi_id)  # made: the create answered
    async with app.ctx.db.read() as s:
        made_pi = await s.get(PaymentIntent, pi_id)
    order = _page_order(made_pi, due)
    if order is None:
        raise PaymuxError.of(
            "invoice_unexpected_state",
            "This invoice's PayPal order could not be opened: reload the page.",
            param="invoice",
        )
    return order


def _page_order(pi: PaymentIntent | None, due: int) -> str | None:
    """The PayPal order opened with ``pi`` if the page may have its payer approve it: a
    PayPal intent that waits for its order's approval, for what is due."""
    if pi is None or pi.gateway != _PAYPAL or pi.status not in _CONFIRMABLE or pi.amount != due:
        return None
    order = (pi.gateway_client or {}).get("order_id")
    return str(order) if order else None


async def _drop_if_overtaken(app: Paymux, account_id: str, pi_id: str, exc: PaymuxError) -> None:
    """The payment's start was refused because another path took the invoice meanwhile (the
    payment service's ``start_guard``): the intent made for it, never started, is canceled
    (``release`` cancels only an intent its invoice no longer wants)."""
    if exc.code == "invoice_unexpected_state":
        await app.invoices.release(account_id, pi_id)


async def _check_page_tries(app: Paymux, invoice_id: str) -> None:
    """At most ``PAGE_TRIES_PER_HOUR`` cards tried on one invoice in the last hour (the
    authorizations sent to a gateway for its payments, whoever made them): the page needs no
    API key, so without this anyone holding its link could test stolen cards through it.
    Counted from the gateway attempts themselves (found through the invoice's intents, both
    indexed), so every process agrees."""
    since = app.ctx.now_us() - 3_600_000_000
    async with app.ctx.db.read() as s:
        recent = (
            await s.execute(
                select(func.count())
                .select_from(GatewayAttempt)
                .join(PaymentIntent, PaymentIntent.id == GatewayAttempt.object_id)
                .where(
                    PaymentIntent.invoice_id == invoice_id,
                    GatewayAttempt.operation == Operation.AUTHORIZE.value,
                    GatewayAttempt.created_us >= since,
                )
            )
        ).scalar_one()
    if recent >= PAGE_TRIES_PER_HOUR:
        raise PaymuxError.of(
            "rate_limited",
            "Too many payment tries for this invoice. Try again in an hour, or contact the "
            "merchant.",
            retry_after=3600,
        )


async def _locked_open(s: AsyncSession, invoice_id: str) -> Invoice:
    """The invoice under its row lock, if it is still open with something to pay."""
    locked = await s.get(Invoice, invoice_id, with_for_update=True, populate_existing=True)
    assert locked is not None
    return _open_to_pay(locked)


async def refresh_on_return(app: Paymux, invoice: Invoice, pi_id: str) -> None:
    """The payer is back from the gateway's challenge for ``pi_id``: if it is the invoice's
    intent and still waits, ask the gateway now rather than wait for its webhook (the hook
    then settles the invoice). Only then: a page view never calls a gateway otherwise."""
    if invoice.status != "open" or pi_id != invoice.payment_intent_id:
        return
    async with app.ctx.db.read() as s:
        pi = await s.get(PaymentIntent, pi_id)
        if pi is None or pi.status != "requires_action":
            return
    try:
        await app.engine.refresh_intent(pi_id)
    except Exception as exc:  # the webhook will settle it; the page shows what is known
        log.warning("could not refresh %s on return: %s", pi_id, type(exc).__name__)
