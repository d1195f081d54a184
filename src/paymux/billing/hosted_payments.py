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
  payment service hears of it; one that waits for another 3-D Secure is canceled first. An
  intent in flight (processing) refuses the payment: it may yet succeed.
- A subscription's invoice is paid with ``setup_future_usage=off_session`` (not on Square,
  whose card is saved only from a verifyBuyer of intent STORE): the card the payer
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
    from paymux.services import Paymux

__all__ = [
    "PageGateway",
    "PageOutcome",
    "hosted_intent_id",
    "page_gateway",
    "pay_from_page",
    "refresh_on_return",
]

log = logging.getLogger(__name__)

_CONFIRMABLE = ("requires_payment_method", "requires_confirmation")
_IN_FLIGHT = ("processing", "requires_capture", "succeeded")
# Payments one invoice may have made in an hour before its page refuses new cards.
PAGE_TRIES_PER_HOUR = 10


def hosted_intent_id(invoice_id: str, token: str) -> str:
    """The intent of paying ``invoice_id`` with ``token`` from the page: the same for a resent
    form."""
    digest = hashlib.sha256(f"{invoice_id}:page:{token}".encode()).hexdigest()[:24]
    return f"pi_{digest}"


@dataclass(frozen=True)
class PageOutcome:
    status: str  # paid | requires_action | open
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
    invoice = await invoice_by_token(app, token)
    if invoice is None:
        raise PaymuxError.of("resource_missing", "No such invoice.", param="invoice")
    if invoice.status != "open" or invoice.amount_remaining <= 0:
        raise PaymuxError.of(
            "invoice_unexpected_state",
            f"This invoice is {invoice.status}: there is nothing to pay.",
            param="invoice",
        )
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
    back = None if gateway == "stripe" else return_url
    # A subscription's invoice saves the card for the customer (Square saves a card only from
    # a verifyBuyer of intent STORE, which this page does not ask for: not there).
    future = "off_session" if invoice.subscription_id and gateway != "square" else None
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
                    # A fresh single-use token only, never a stored payment method (H1, r6).
                    payment_method_data={"card": {"token": card_token}},
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
        async with app.ctx.db.write() as s:
            locked = await _locked_open(s, invoice_id)
            live = await live_intent(s, locked)
            wall = app.ctx.now_us()
            # A try's intent made and never confirmed, whose run died (its lease lapsed):
            # nothing of it reached a gateway, it holds nothing. This payment replaces it (its
            # start is refused from now on: ``payment_lease.check_start``); canceled below.
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
            ):
                raise PaymuxError.of(
                    "invoice_unexpected_state",
                    "Another payment of this invoice started meanwhile.",
                    param="invoice",
                )
            locked.payment_intent_id = pi_id  # noted before the payment service hears of it
            take_lease(locked, pi_id, wall, lease_seconds(app.ctx))
            amount, currency = locked.amount_remaining, locked.currency
            customer_id, number = locked.customer_id, locked.number
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
        except PaymuxError as exc:
            await _drop_if_overtaken(app, account_id, pi_id, exc)
            raise
        finally:
            await release_lease(app.ctx, invoice_id, pi_id)
            if abandoned is not None:
                await app.invoices.release(account_id, abandoned)  # no longer the invoice's
        return _outcome(view, return_url)
    finally:
        current_livemode.reset(mode)


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
    if locked.status != "open" or locked.amount_remaining <= 0:
        raise PaymuxError.of(
            "invoice_unexpected_state",
            f"This invoice is {locked.status}: there is nothing to pay.",
            param="invoice",
        )
    return locked


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
