"""Payment intents: create, update, confirm, capture, cancel, expire.

Every gateway call that moves money goes through the attempt engine (services/attempts.py):
the intent moves to ``processing`` and the attempt is recorded in one committed transaction,
the call runs with no transaction open, and its outcome is applied in another, by the same
pure rule the webhooks, recovery jobs and the reconciler use.

Requests under an Idempotency-Key record recovery points (services/idempotency.py): the
intent's id before anything is opened at a provider, and each attempt as it starts. A retry
after a crash resumes there: it never creates a second intent, and answers with the intent's
real state once the provider has been asked.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol, cast

from sqlalchemy import bindparam, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.attempts import CANCELLATION_REASONS, Operation
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.domain.states import PaymentIntentStatus as S
from paymux.domain.states import check_operation
from paymux.gateways.base import AuthorizeRequest, Gateway, GatewayInvalidRequest
from paymux.money import Money, MoneyError, max_charge_amount, min_charge_amount
from paymux.services.attempts import (
    AttemptEngine,
    customer_token_for,
    intent_view,
    opened_reference,
)
from paymux.services.audit import audit_in
from paymux.services.context import (
    Context,
    CreatedRange,
    Routed,
    current_livemode,
    emit,
    get_owned,
    merge_metadata,
    page_of,
    request_livemode,
)
from paymux.services.customers import (
    TokenData,
    claim_deferred,
    contact,
    existing_usable,
    look_up,
    needs_claim,
    payment_method_from_token,
    payment_method_id_of_request,
    require_customer,
    resolve_payment_method,
)
from paymux.services.gateway_calls import call_with_retries
from paymux.services.idempotency import current_claim, record_recovery_point
from paymux.services.routing import (
    choose_gateway,
    connector_types,
    open_payment,
    require_capability,
)
from paymux.services.three_d_secure import card_options
from paymux.storage import driver
from paymux.storage.models import Customer, GatewayAttempt, PaymentIntent, PaymentMethod

__all__ = [
    "CreateParams",
    "IntentMoved",
    "PaymentsService",
    "Screen",
    "UpdateParams",
    "amount_from",
    "charge_amount",
    "check_currency",
]

log = logging.getLogger(__name__)


class IntentMoved(Exception):
    """The confirm's intent changed after the read its decision was made on (``Screen``'s
    ``as_read``): nothing of the decision may be kept."""


# The fraud decision, in the transaction that starts the attempt (fraud/decisions.py
# ``FraudEngine.screen_in``): the intent changes to commit with the attempt and None, or a
# block's card error (the block recorded in the session: commit it, start nothing, raise).
# ``as_read``: the intent is the confirm's earlier read, not locked yet (PostgreSQL: the
# decision's call locks it if it is still as read, else raises ``IntentMoved``).
class Screen(Protocol):
    def __call__(
        self,
        s: AsyncSession,
        account_id: str,
        pi: PaymentIntent,
        pm: PaymentMethod,
        *,
        as_read: bool = False,
    ) -> Awaitable[tuple[dict[str, Any], PaymuxError | None]]: ...


# The recovery point of a create about to open its payment at a connection: ``open:{id}``.
# A recovery point holds 32 characters: a longer id (an environment gateway's with a long
# name) is kept as a digest, which only that connection, routed again, matches.
_OPENING = "open:"


def _opening_point(connection_id: str) -> str:
    point = _OPENING + connection_id
    if len(point) <= 32:
        return point
    return _OPENING + "#" + hashlib.sha256(connection_id.encode()).hexdigest()[:26]


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
    statement_descriptor_suffix: str | None = None
    receipt_email: str | None = None
    payment_method_types: list[str] | None = None
    automatic_payment_methods: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # An id the caller reserved (billing: the n-th payment attempt of an invoice): if an
    # intent with it exists, the create resumes it instead of making another.
    id: str | None = None
    invoice_id: str | None = None  # the invoice this payment pays (Stripe's ``invoice``)
    # Stripe's: a payment method made from a token and used (``payment_method_from_token``),
    # and the shipping details (stored as given).
    payment_method_data: dict[str, Any] | None = None
    shipping: dict[str, Any] | None = None
    payment_method_options: dict[str, Any] | None = None  # 3-D Secure (three_d_secure.py)


@dataclass
class UpdateParams:
    amount: int | None = None
    currency: str | None = None
    customer: str | None = None
    payment_method: str | None = None
    description: str | None = None
    statement_descriptor: str | None = None
    statement_descriptor_suffix: str | None = None
    receipt_email: str | None = None
    payment_method_types: list[str] | None = None
    metadata: dict[str, str] | None = None
    setup_future_usage: str | None = None
    capture_method: str | None = None
    # Changes in any state, like metadata (a tracking number comes after the payment);
    # "" removes it.
    shipping: dict[str, Any] | str | None = None

    def only_annotations(self) -> bool:
        """Whether it changes only what Stripe lets change in any state: metadata, the
        description and where the receipt goes (nothing about the money or the payer)."""
        return all(getattr(self, name) is None for name in _MONEY_FIELDS)


# What an update may change only before the payment is tried.
_MONEY_FIELDS = (
    "amount",
    "currency",
    "customer",
    "payment_method",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "payment_method_types",
    "setup_future_usage",
    "capture_method",
)


@dataclass(frozen=True, slots=True)
class _Start:
    """What a confirm starts its authorize attempt with (``_start_authorize``, ``_start_in``):
    the intent as the confirm read it (its status and count: the start's UPDATE condition),
    the payment method (``fresh``: a shared test token's use, recorded with the attempt),
    the intent's changes to commit with the attempt, and the 3-D Secure token."""

    account_id: str
    pi_id: str
    pm: PaymentMethod
    fresh: bool
    read_status: str
    read_count: int
    changes: dict[str, Any]
    verification_token: str | None
    # The intent as this transaction made it (a create with ``confirm=true``), else None.
    made: PaymentIntent | None = None


# A confirmation's attempt started: the intent, the attempt, the gateway call's request.
_Begun = tuple[PaymentIntent, GatewayAttempt, AuthorizeRequest]
# ``_start_screened_in``'s outcome: the attempt started, or a block's card error.
_Started = tuple[_Begun | None, PaymuxError | None]


class PaymentsService:
    def __init__(self, ctx: Context, engine: AttemptEngine | None = None) -> None:
        self.ctx = ctx
        self.engine = engine or AttemptEngine(ctx)
        # The fraud decision before any gateway call (fraud/decisions.py, wired by Paymux):
        # intent changes to commit with the attempt, or it raises a block's card error.
        self.screen: Screen | None = None
        # The invoice's payment lease (billing/payment_lease.py, wired by Paymux): run in the
        # start's transaction for an intent of an invoice; raises if another path took it.
        self.start_guard: Callable[[AsyncSession, PaymentIntent], Awaitable[None]] | None = None

    # -- reads ------------------------------------------------------------------------------
    async def retrieve(self, account_id: str, pi_id: str) -> dict[str, Any]:
        """One intent by id, of the account (and of the request key's mode): a Core SELECT
        rendered once, run on the database driver (``Database.one_row``: on PostgreSQL a
        pooled connection taken without the pool's ping, the read run again once on a pinged
        one if that connection was closed) with no ORM session and no SQLAlchemy execution
        layers, its row viewed as it is. A single SELECT: its own snapshot, no BEGIN,
        nothing to commit."""
        return intent_view(self.ctx, await self._read_intent(account_id, pi_id))

    async def _read_intent(self, account_id: str, pi_id: str) -> PaymentIntent:
        """``retrieve``'s read: the intent's row (a named tuple of the model's attributes),
        one statement outside any transaction; 404 as ``get_owned`` answers it."""
        statement = _OWNED_INTENT_DRIVER[current_livemode.get()]
        return _of_account(
            await self.ctx.db.one_row(statement, {"pi_id": pi_id}), account_id, pi_id
        )

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
            PaymentIntent,
            account_id,
            self._view,
            PaymentIntent.customer_id == customer if customer else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    def _view(self, pi: PaymentIntent) -> dict[str, Any]:
        return intent_view(self.ctx, pi)

    # -- create / update --------------------------------------------------------------------
    async def create(self, account_id: str, p: CreateParams) -> dict[str, Any]:
        money = charge_amount(p.amount, p.currency)
        routed = await choose_gateway(
            self.ctx,
            account_id,
            p.gateway,
            money,
            livemode=request_livemode(),
            # A connection that takes the types and can capture later, if asked (routing.py).
            payment_method_types=p.payment_method_types,
            needs=frozenset({"manual_capture"}) if p.capture_method == "manual" else frozenset(),
        )
        gateway = routed.gateway
        if p.off_session and not p.confirm:
            raise PaymuxError.of(
                "parameter_invalid",
                "off_session is only allowed together with confirm=true.",
                param="off_session",
            )
        claim = current_claim.get()
        if p.id is not None:
            if await self._exists(p.id):
                return await self._resume_create(account_id, p.id, p)
            pi_id = p.id
        else:
            pi_id = claim.object_id if claim is not None and claim.object_id else new_id("pi")
        if p.id is None and claim is not None and claim.resumed and await self._exists(pi_id):
            return await self._resume_create(account_id, pi_id, p)
        # A retry of a create whose first run was about to open its payment at a connection
        # (and never recorded the intent): that connection again, whatever routes now.
        opening = claim.recovery_point if p.id is None and claim is not None else None
        if (
            opening is not None
            and opening.startswith(_OPENING)
            and opening != _opening_point(routed.connection_id)
        ):
            routed = await self._route_again(account_id, opening, money, p)
            gateway = routed.gateway
        if p.customer:  # before a payment method is made: bad input writes nothing
            await require_customer(self.ctx, account_id, p.customer)
        pm_id: str | None = None
        resolved: PaymentMethod | None = None  # the payment method, for the confirm below
        if p.payment_method_data is not None:
            pm_id = (
                await _from_data(
                    self.ctx,
                    account_id,
                    gateway.name,
                    routed.connection_id,
                    p,
                    made_as=payment_method_id_of_request("payment_intents.create"),
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
                # A payment method made now (a shared test token's use, a token new to the
                # account, with its claim) is recorded with the intent (below).
                defer_new=True,
                gateway=gateway,
            )
            pm_id = pm.id
            resolved = pm
        opened = None
        if not p.confirm:

            async def opening_at(tried: Routed) -> None:
                """The id is ours, and the connection, before the provider hears of it: a
                retry opens the same payment at the same connection (a short write)."""
                if claim is not None:
                    async with self.ctx.db.write() as s:
                        await record_recovery_point(s, _opening_point(tried.connection_id), pi_id)

            # Gateways whose browser SDK confirms (Stripe.js) need their payment now. One
            # nothing binds to its connection yet may fail over (routing.open_payment): not
            # one naming a gateway, a payment method or a customer (whose saved cards are at
            # its connection), nor a caller's reserved id or a retry (its first run may have
            # reached the connection it tried).
            opened, routed = await open_payment(
                self.ctx,
                account_id,
                routed,
                money,
                pi_id,
                p.capture_method != "manual",
                may_fail_over=(
                    p.gateway is None
                    and pm_id is None
                    and p.customer is None
                    and p.id is None
                    and not (claim is not None and claim.resumed)
                ),
                livemode=request_livemode(),
                payment_method_types=p.payment_method_types,
                needs=frozenset({"manual_capture"} if p.capture_method == "manual" else ()),
                before_each=opening_at,
            )
            gateway = routed.gateway
        now = self.ctx.now_us()
        started: _Started | None = None
        # The intent's values but its payment method and status (set in the transaction,
        # below: a retry may record the payment method as another row).
        fields: dict[str, Any] = {
            "id": pi_id,
            "client_secret": new_id(f"{pi_id}_secret", 24),  # {pi_id}_secret_{24 random}
            "gateway_reference": opened.reference if opened else None,
            "gateway_client": opened.client if opened else None,
            "account_id": account_id,
            "amount": money.amount,
            "currency": money.currency,
            "amount_capturable": 0,
            "amount_received": 0,
            "amount_refunded": 0,
            "amount_refund_pending": 0,
            "capture_method": p.capture_method,
            "customer_id": p.customer,
            "setup_future_usage": p.setup_future_usage,
            "off_session": p.off_session,
            "gateway": gateway.name,
            "connection_id": routed.connection_id,
            "livemode": request_livemode(),
            "return_url": p.return_url,
            "description": p.description,
            "statement_descriptor": p.statement_descriptor,
            "statement_descriptor_suffix": p.statement_descriptor_suffix,
            "receipt_email": p.receipt_email,
            "payment_method_types": _payment_method_types(gateway.name, p.payment_method_types),
            "automatic_payment_methods": (
                bool(p.automatic_payment_methods.get("enabled"))
                if p.automatic_payment_methods is not None
                else None
            ),
            "metadata_": p.metadata,
            "confirm_count": 0,
            "invoice_id": p.invoice_id,
            "shipping": contact(p.shipping),
            "payment_method_options": card_options(p.payment_method_options),
            "created_us": now,
            "updated_us": now,
        }
        # A shared test token's new use, on PostgreSQL: its payment method's INSERT is held
        # (``driver.later``) and rides on the transaction's next statement, one round trip
        # fewer (issue 10). If the account had that token already, nothing is inserted and
        # the intent's reference to it fails the statement (its foreign key): the whole
        # transaction is rolled back and made again, the payment method recorded as it is
        # otherwise (``_record_payment_method``: the account's row of that token).
        hold = (
            resolved is not None
            and not self.ctx.db.is_sqlite
            and _may_hold(resolved, p.payment_method)
        )
        while True:
            try:
                async with self.ctx.db.write() as s:
                    if resolved is not None and inspect(resolved).transient:
                        if hold:
                            await _hold_payment_method(s, resolved)
                        else:
                            resolved = await _record_payment_method(
                                s, resolved, self.ctx.db.is_sqlite
                            )
                        pm_id = resolved.id
                    values = {
                        **fields,
                        "status": S.REQUIRES_CONFIRMATION if pm_id else S.REQUIRES_PAYMENT_METHOD,
                        "payment_method_id": pm_id,
                    }
                    # One INSERT on the database driver, and the intent as a row (as ``retrieve``
                    # reads it): no ORM object, no unit of work; nothing reads it back.
                    pi = _intent_row(values)
                    if p.id is None:
                        await driver.later(s, _PI_CREATE, values)
                    elif await driver.fetchrow(s, _PI_CREATE_NEW, values) is None:
                        raise _ReservedIdTaken  # nothing of this create is kept (rolled back)
                    await record_recovery_point(s, "created", pi_id)
                    view = self._view(pi)
                    await emit(s, account_id, "payment_intent.created", view, now)
                    if not p.confirm:  # the answer: audited with it (a confirm audits its own)
                        await audit_in(s, view, now)
                    elif resolved is not None and p.id is None and p.invoice_id is None:
                        started = await self._start_created(s, pi, resolved, gateway, p.off_session)
            except _ReservedIdTaken:
                # A caller's reserved id (an invoice's try) that another request made first,
                # after the read above: that request's intent (of this account, else a 404),
                # resumed, never a 500. Only that id's clash: any other unique violation in the
                # transaction is raised as it is, never taken for it.
                return await self._resume_create(account_id, pi_id, p)
            except IntegrityError as error:
                if not (hold and _names_constraint(error, _PI_PAYMENT_METHOD_FK)):
                    raise
                assert resolved is not None
                _TOKENS_RECORDED.add((resolved.gateway, resolved.token))
                hold, started = False, None
                continue
            break
        if started is not None:
            begun, blocked = started
            if blocked is not None:
                raise blocked  # its decision committed with the intent
            assert begun is not None
            _, attempt, request = begun
            return await self._authorize(account_id, pi_id, gateway, attempt, request)
        if p.confirm:
            return await self.confirm(
                account_id, pi.id, off_session=p.off_session, recorded=resolved, created=pi
            )
        return self._view(pi)

    async def _start_created(
        self,
        s: AsyncSession,
        pi: PaymentIntent,
        recorded: PaymentMethod,
        gateway: Gateway,
        off_session: bool | None,
    ) -> _Started | None:
        """A create with ``confirm=true`` and the payment method it resolved: the
        confirmation's start (the fraud decision, the intent to ``processing``, the attempt)
        in the create's own transaction ``s``, as ``confirm`` would start it right after
        the create's commit: one transaction less per payment (issue 10). None, with
        nothing written, if the payment method is not usable for this intent: the create
        commits alone and ``confirm`` raises that error, as before. A block's card error
        is returned, its decision written in ``s``: the caller commits, then raises it.
        Any other error rolls the create back with it: none is expected of an intent this
        transaction made (its status and count are the ones just written)."""
        check_operation("confirm", pi.status)
        try:  # known: no statement, only the checks of its use (``_usable``)
            pm = await self._confirmed_with(pi, recorded.id, recorded, gateway)
        except PaymuxError:
            return None
        start = _Start(
            pi.account_id,
            pi.id,
            pm,
            False,
            str(pi.status),
            pi.confirm_count,
            _confirm_changes(None, off_session, None, None),
            None,
            made=pi,
        )
        # Decided on the intent as made: no lock to take (``as_read`` would take it in the
        # decision's call, whose writes of the intent then could not ride on it).
        return await self._start_screened_in(s, start, pi, as_read=False)

    async def _confirmed_with(
        self,
        pi: PaymentIntent,
        pm_ref: str,
        known: PaymentMethod | None,
        gateway: Gateway,
        elsewhere: bool | None = None,
    ) -> PaymentMethod:
        """The payment method a confirmation of ``pi`` uses: ``pm_ref``, of which ``known``
        is what a look-up found (None: nothing) and ``elsewhere`` whether another account
        owns it, if the look-up asked (``look_up``; ``resolve_payment_method``)."""
        return await resolve_payment_method(
            self.ctx,
            pi.account_id,
            gateway.name,
            pm_ref,
            customer_id=pi.customer_id,
            known=known,
            looked_up=True,
            elsewhere=elsewhere,
            connection_id=pi.connection_id,
            defer_new=True,
            gateway=gateway,
        )

    def _decides_on_read(self) -> bool:
        """Whether a confirmation's fraud decision is first made on the intent as read, its
        lock taken by the decision's own call (PostgreSQL with screening on)."""
        screened = self.screen is not None and self.ctx.settings.fraud_enabled
        return screened and not self.ctx.db.is_sqlite

    async def _exists(self, pi_id: str) -> bool:
        """Whether an intent has this id (any account's: ``_resume_create`` answers another
        account's with a 404): one statement on the driver, outside any transaction."""
        return await driver.first_row(self.ctx.db.reader, _INTENT_ID, {"id": pi_id}) is not None

    async def _route_again(
        self, account_id: str, opening: str, money: Money, p: CreateParams
    ) -> Routed:
        """The connection a retried create's first run was opening its payment at (its
        recovery point ``opening``), checked as any named connection is."""
        connection_id = opening.removeprefix(_OPENING)
        if connection_id.startswith("#"):  # a digest: only the connection routed now matches
            raise PaymuxError.of(
                "gateway_unknown",
                "This request's first try went to a connection that no longer takes this "
                "payment; the payment may exist there. Check that connection before retrying.",
                param="gateway",
            )
        return await choose_gateway(
            self.ctx,
            account_id,
            connection_id,
            money,
            livemode=request_livemode(),
            payment_method_types=p.payment_method_types,
            needs=frozenset({"manual_capture"}) if p.capture_method == "manual" else frozenset(),
        )

    async def _resume_create(self, account_id: str, pi_id: str, p: CreateParams) -> dict[str, Any]:
        """A retry of a create whose first run made ``pi_id``: finish what it started."""
        async with self.ctx.db.read() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            unconfirmed = pi.confirm_count == 0 and pi.status in (
                S.REQUIRES_PAYMENT_METHOD,
                S.REQUIRES_CONFIRMATION,
            )
        if p.confirm and unconfirmed:
            return await self.confirm(account_id, pi_id, off_session=p.off_session)
        return await self.outcome(account_id, pi_id)

    async def outcome(self, account_id: str, pi_id: str) -> dict[str, Any]:
        """The intent's real state, once any call of ours still in flight has been settled by
        asking the provider; a decline is answered as the first request answered it."""
        async with self.ctx.db.read() as s:
            await get_owned(s, PaymentIntent, pi_id, account_id)
            pending = list(
                (
                    await s.execute(
                        select(GatewayAttempt.id).where(
                            GatewayAttempt.object_id == pi_id, GatewayAttempt.status == "pending"
                        )
                    )
                ).scalars()
            )
        for attempt_id in pending:
            await self.engine.recover(attempt_id)
        async with self.ctx.db.read() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            latest = (
                await s.execute(
                    select(GatewayAttempt)
                    .where(GatewayAttempt.object_id == pi_id)
                    .order_by(GatewayAttempt.created_us.desc(), GatewayAttempt.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            self._raise_if_declined(pi, latest)
            return self._view(pi)

    @staticmethod
    def _declined(pi: PaymentIntent, attempt: GatewayAttempt | None) -> bool:
        return (
            attempt is not None
            and attempt.operation == Operation.AUTHORIZE
            and pi.status == S.REQUIRES_PAYMENT_METHOD
            and bool(pi.last_payment_error)
        )

    def _raise_if_declined(self, pi: PaymentIntent, attempt: GatewayAttempt | None) -> None:
        """An authorization that ended in a decline is answered with the card error (402),
        carrying the intent, as Stripe does."""
        if not self._declined(pi, attempt):
            return
        last = pi.last_payment_error
        assert last is not None
        error = PaymuxError.of(
            last["code"],
            last["message"],
            param=last.get("param"),
            decline_code=last.get("decline_code"),
            gateway=last.get("gateway"),
            gateway_code=last.get("gateway_code"),
        )
        error.extra = {"payment_intent": self._view(pi)}
        raise error

    async def update(self, account_id: str, pi_id: str, p: UpdateParams) -> dict[str, Any]:
        if p.only_annotations():
            return await self._annotate(account_id, pi_id, p)
        async with self.ctx.db.read() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            check_operation("update", pi.status)
            gateway_name, connection_id = pi.gateway, pi.connection_id
            customer = p.customer or pi.customer_id
            money = charge_amount(
                p.amount if p.amount is not None else pi.amount, p.currency or pi.currency
            )
            capture = (p.capture_method or pi.capture_method) != "manual"
            types = p.payment_method_types or pi.payment_method_types
            provider_change = (
                money.amount != pi.amount
                or money.currency != pi.currency
                or capture != (pi.capture_method != "manual")
            )
            reference = pi.gateway_reference
            version = pi.updated_us  # one key per state updated from: A->B->A->B sends each
        if money.currency != pi.currency:
            # A new currency is routed again, and must be one the gateway takes.
            routed = await choose_gateway(
                self.ctx,
                account_id,
                None,
                money,
                livemode=request_livemode(),
                # as at create: a connection that takes its types and can capture later
                payment_method_types=types,
                needs=frozenset() if capture else frozenset({"manual_capture"}),
            )
            if routed.connection_id != connection_id and reference is not None:
                raise PaymuxError.of(
                    "payment_intent_update_unsupported",
                    f"A payment in {money.currency} goes to the {routed.gateway.name} gateway, "
                    "but this "
                    f"PaymentIntent is already open at {gateway_name}. Cancel it and create a "
                    "new one.",
                    param="currency",
                )
            gateway_name, connection_id = routed.gateway.name, routed.connection_id
        await choose_gateway(
            self.ctx,
            account_id,
            connection_id or gateway_name,
            money,
            livemode=request_livemode(),
        )
        if provider_change and reference is not None:
            key = f"{pi_id}:update:{version}"
            gateway = await self.ctx.gateway(
                gateway_name, account_id=account_id, connection_id=connection_id
            )
            await self._update_at_provider(gateway, key, reference, money, capture, p)
        pm_id = None
        if p.payment_method:
            pm = await resolve_payment_method(
                self.ctx,
                account_id,
                gateway_name,
                p.payment_method,
                customer_id=customer,
                connection_id=connection_id,
            )
            pm_id = pm.id
        async with self.ctx.db.write() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            check_operation("update", pi.status)
            pi.amount, pi.currency, pi.gateway = money.amount, money.currency, gateway_name
            pi.connection_id = connection_id
            if p.customer is not None:
                await get_owned(s, Customer, p.customer, account_id, param="customer")
                pi.customer_id = p.customer
            if pm_id is not None:
                pi.payment_method_id = pm_id
                pi.status = S.REQUIRES_CONFIRMATION
            if p.payment_method_types is not None:
                pi.payment_method_types = _payment_method_types(
                    gateway_name, p.payment_method_types
                )
            for name in (
                "statement_descriptor",
                "statement_descriptor_suffix",
                "setup_future_usage",
                "capture_method",
            ):
                value = getattr(p, name)
                if value is not None:
                    setattr(pi, name, value)
            _take_annotations(pi, p)
            pi.updated_us = self.ctx.now_us()
            return self._view(pi)

    async def _annotate(self, account_id: str, pi_id: str, p: UpdateParams) -> dict[str, Any]:
        """Metadata, description and receipt email change in any state, as on Stripe."""
        async with self.ctx.db.write() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id, lock=True)
            _take_annotations(pi, p)
            pi.updated_us = max(self.ctx.now_us(), pi.updated_us)
            return self._view(pi)

    async def _update_at_provider(
        self,
        gateway: Gateway,
        key: str,
        reference: str,
        money: Money,
        capture: bool,
        p: UpdateParams,
    ) -> None:
        """Send a new amount, currency or capture method to the provider's open payment (so
        what the payer confirms is what we record), or refuse the update."""
        gateway_name = gateway.name
        try:
            await call_with_retries(
                self.ctx.settings,
                lambda: gateway.update_payment(reference, money, capture, idempotency_key=key),
            )
        except GatewayInvalidRequest as exc:
            param = (
                "capture_method"
                if p.capture_method is not None and p.amount is None and p.currency is None
                else ("currency" if p.currency is not None else "amount")
            )
            raise PaymuxError.of(
                "payment_intent_update_unsupported",
                f"The {gateway_name} gateway can't change this payment: {exc}",
                param=param,
                gateway=gateway_name,
                gateway_code=exc.code,
            ) from exc

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
        verification_token: str | None = None,
        payment_method_data: dict[str, Any] | None = None,
        payment_method_options: dict[str, Any] | None = None,
        recorded: PaymentMethod | None = None,
        created: PaymentIntent | None = None,
    ) -> dict[str, Any]:
        """``recorded``: the payment method this request's create just resolved and recorded
        (create with ``confirm=true``): not read again. ``created``: the intent that create
        just committed, as it wrote it: not read again either (no read transaction). The
        start's UPDATE is conditional on the status and count read (here: written), so an
        intent moved meanwhile is read again under the write lock, as after any read."""
        if payment_method_data is not None and payment_method is not None:
            raise _both_payment_methods()
        claim = current_claim.get()
        if (
            claim is not None
            and claim.object_id == pi_id
            and claim.recovery_point == f"{Operation.AUTHORIZE}_started"
        ):
            return await self.outcome(account_id, pi_id)  # this key's confirm already ran
        elsewhere: bool | None = None  # another account owns ``pm_ref`` (None: not asked)
        if created is not None and created.id == pi_id and payment_method is None:
            pi = created
            check_operation("confirm", pi.status)
            pm_ref = pi.payment_method_id
            known: PaymentMethod | None = None
            if recorded is not None and pm_ref == recorded.id:
                known = recorded
            elif pm_ref:
                async with self.ctx.db.read() as s:
                    known, elsewhere = await look_up(s, account_id, pi.gateway, pm_ref)
        else:
            # The intent: one statement on the driver, outside any transaction (as
            # ``retrieve``); the payment method, if one of ours must be looked up, in a read
            # of its own (the start's UPDATE is conditional on what was read here anyway).
            pi = await self._read_intent(account_id, pi_id)
            check_operation("confirm", pi.status)
            pm_ref = payment_method or pi.payment_method_id
            at_hand = self.ctx.cached_gateway(pi)
            known = None
            if recorded is not None and pm_ref == recorded.id:
                known = recorded  # no second read of the same row
            elif pm_ref and at_hand is not None and at_hand.reusable_test_token(pm_ref):
                known = None  # a shared test token is never one of ours: no lookup
            elif pm_ref:
                async with self.ctx.db.read() as s:
                    known, elsewhere = await look_up(s, account_id, pi.gateway, pm_ref)
        if payment_method_data is not None:  # a payment method made from a token, used now
            made = await payment_method_from_token(
                self.ctx,
                account_id,
                pi.gateway,
                TokenData.of(payment_method_data, "payment_method_data"),
                connection_id=pi.connection_id,
                param="payment_method_data[card][token]",
                made_as=payment_method_id_of_request(f"payment_intents.confirm:{pi_id}"),
            )
            pm_ref, known = made.id, made
        gateway = await self.ctx.gateway_of(pi)
        if not pm_ref:
            raise PaymuxError.of(
                "parameter_missing",
                "You must provide a payment_method to confirm this PaymentIntent.",
                param="payment_method",
            )
        pm = await self._confirmed_with(pi, pm_ref, known, gateway, elsewhere)
        changes = _confirm_changes(
            payment_method_options, off_session, return_url, setup_future_usage
        )
        read_status, read_count = str(pi.status), pi.confirm_count
        # A payment method made now (a shared test token's use, a token new to the account),
        # recorded with the start (the create's, ``recorded``, is recorded already).
        fresh = inspect(pm).transient and pm is not recorded
        try:
            pi, attempt, request = await self._start_authorize(
                _Start(
                    account_id,
                    pi_id,
                    pm,
                    fresh,
                    read_status,
                    read_count,
                    changes,
                    verification_token,
                ),
                read=pi,
            )
        except PaymuxError:
            if fresh:  # refused: the use is still a payment method of its own, as before
                async with self.ctx.db.write() as s:
                    await _record_payment_method(s, pm, self.ctx.db.is_sqlite)
            raise
        return await self._authorize(account_id, pi_id, gateway, attempt, request)

    async def _authorize(
        self,
        account_id: str,
        pi_id: str,
        gateway: Gateway,
        attempt: GatewayAttempt,
        request: AuthorizeRequest,
    ) -> dict[str, Any]:
        """A confirm's gateway call, its attempt committed (``_start_authorize``), and the
        settle of its answer; the answer (a decline raised as its card error)."""
        key = attempt.idempotency_key
        result = await self.engine.execute(
            attempt, lambda: gateway.authorize(request, idempotency_key=key)
        )
        if result is None:
            return await self.retrieve(account_id, pi_id)
        answer: dict[str, Any] = {}

        async def answered(s: AsyncSession, settled: PaymentIntent) -> None:
            # The answer, and its audit entry in the same transaction, unless it is a decline
            # (answered with an error, which is not audited).
            if not self._declined(settled, attempt):
                answer.update(self._view(settled))
                await audit_in(s, answer, self.ctx.now_us())

        pi = await self.engine.settle_payment(attempt.id, result, object_id=pi_id, then=answered)
        self._raise_if_declined(pi, attempt)
        return answer or self._view(pi)

    async def _start_authorize(self, start: _Start, *, read: PaymentIntent) -> _Begun:
        """The confirmation's attempt, committed before the call: the fraud decision
        (``screen``), the intent to ``processing``, the attempt, and a fresh payment method
        (``fresh``) in one write transaction. A block commits its record alone (no attempt,
        no payment method) and raises its card error.

        The decision is made on the intent as it is now, not as ``read`` (an earlier
        transaction) saw it: the row is read again under its lock first (FOR UPDATE on
        PostgreSQL; SQLite's writer holds the database), so an amount changed meanwhile is
        the amount decided on and charged (with screening off nothing is decided on it, and
        the start's conditional UPDATE alone guards the race). Lock order: the intent row,
        then the velocity keys' locks and buckets (``screen``).

        On PostgreSQL that lock is taken by the decision's own call (one round trip less),
        if the intent is still as ``read`` saw it; if it is not, the transaction is rolled
        back (nothing of the decision kept) and the decision is made again as above, on the
        intent read under its lock."""
        if self._decides_on_read():
            try:
                return await self._start_screened(start, read, as_read=True)
            except IntentMoved:
                pass
        return await self._start_screened(start, read, as_read=False)

    async def _start_screened(self, start: _Start, read: PaymentIntent, *, as_read: bool) -> _Begun:
        """``_start_authorize``'s transaction: the decision on ``read`` itself (``as_read``,
        locked by the decision's call) or on the intent read again under its lock."""
        async with self.ctx.db.write() as s:
            started, blocked = await self._start_screened_in(s, start, read, as_read=as_read)
        if blocked is not None:
            raise blocked
        assert started is not None
        return started

    async def _start_screened_in(
        self, s: AsyncSession, start: _Start, read: PaymentIntent, *, as_read: bool
    ) -> _Started:
        """``_start_screened``'s work in ``s``: the attempt started, or a block's card error
        (its decision recorded in ``s``; the caller commits it, then raises it)."""
        if self.screen is not None:
            decided_on = read
            if self.ctx.settings.fraud_enabled and not as_read and start.made is None:
                # (disabled: nothing read from it; an intent this transaction made is as
                # ``read`` holds it, and no one else can lock it)
                decided_on = await _owned_intent(s, start.account_id, start.pi_id, lock=True)
                check_operation("confirm", decided_on.status)
                start = replace(
                    start,
                    read_status=decided_on.status,
                    read_count=decided_on.confirm_count,
                )
            decided, blocked = await self.screen(
                s, start.account_id, decided_on, start.pm, as_read=as_read
            )
            start.changes.update(decided)
            if blocked is not None:
                return None, blocked
        return await self._start_in(s, start), None

    async def _start_in(self, s: AsyncSession, start: _Start) -> _Begun:
        """``_start_authorize``'s writes once the decision allows the attempt (in ``s``)."""
        account_id, pi_id, pm, changes = start.account_id, start.pi_id, start.pm, start.changes
        read_status, read_count = start.read_status, start.read_count
        if start.fresh:
            pm = await _record_payment_method(s, pm, self.ctx.db.is_sqlite)
        changes["payment_method_id"] = pm.id
        customer_token = await customer_token_for(s, pm)
        call = {
            "token": pm.token,
            "customer_token": customer_token,
            "verification_token": start.verification_token,
            "network_transaction_id": pm.network_transaction_id,
        }
        key = f"{pi_id}:authorize:{read_count + 1}"
        # The count it is moved from is the one read (the UPDATE's condition).
        moved = {**changes, "confirm_count": read_count + 1}
        started: tuple[PaymentIntent, GatewayAttempt] | None
        if start.made is not None:  # made in ``s``: nobody else can have moved it
            started = await self.engine.start_made(
                s, start.made, Operation.AUTHORIZE, idempotency_key=key, request=call, changes=moved
            )
        else:  # the intent as the read above saw it, if nobody moved it since: one UPDATE
            started = await self.engine.start_if_unchanged(
                s,
                pi_id,
                account_id,
                Operation.AUTHORIZE,
                status=read_status,
                confirm_count=read_count,
                idempotency_key=key,
                request=call,
                changes=moved,
            )
        if started is None:  # it moved: read it again under the write lock
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            started = await self.engine.start_on_intent(
                s,
                pi,
                Operation.AUTHORIZE,
                allowed_from=(S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION),
                idempotency_key=f"{pi.id}:authorize:{pi.confirm_count + 1}",
                request=call,
                changes=changes,
                check="confirm",
            )
        pi, attempt = started
        if self.start_guard is not None and pi.invoice_id is not None:
            await self.start_guard(s, pi)  # billing: this path still holds the invoice
        request = await self.engine.authorize_request(s, pi, attempt)
        assert request is not None
        return pi, attempt, request

    # -- capture / cancel -------------------------------------------------------------------
    async def capture(
        self,
        account_id: str,
        pi_id: str,
        amount_to_capture: int | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        if self._resuming(pi_id, Operation.CAPTURE):
            return await self.outcome(account_id, pi_id)
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
            if amount < pi.amount_capturable:  # a 400 here, not the gateway's 500
                require_capability(pi.gateway, "partial_capture", param="amount_to_capture")
            key = await self._step_key(s, pi.id, Operation.CAPTURE)
            pi, attempt = await self.engine.start_on_intent(
                s,
                pi,
                Operation.CAPTURE,
                allowed_from=(S.REQUIRES_CAPTURE,),
                idempotency_key=key,
                request={"amount": amount},
            )
            reference, money = pi.gateway_reference, Money(amount, pi.currency)
        gateway = await self.ctx.gateway_of(pi)
        assert reference is not None
        return await self._run(
            account_id,
            attempt,
            lambda: gateway.capture(reference, money, idempotency_key=key),
            then=self._answered,
        )

    def _resuming(self, pi_id: str, operation: Operation) -> bool:
        claim = current_claim.get()
        return (
            claim is not None
            and claim.object_id == pi_id
            and claim.recovery_point == f"{operation}_started"
        )

    async def _step_key(self, s: AsyncSession, pi_id: str, operation: Operation) -> str:
        """``pi:capture``, then ``pi:capture:2`` for a second capture after a refused one."""
        earlier = (
            await s.execute(
                select(GatewayAttempt.id).where(
                    GatewayAttempt.object_id == pi_id, GatewayAttempt.operation == operation
                )
            )
        ).all()
        return f"{pi_id}:{operation}" + (f":{len(earlier) + 1}" if earlier else "")

    async def _run(
        self,
        account_id: str,
        attempt: GatewayAttempt,
        call: Any,
        *,
        then: Callable[[AsyncSession, PaymentIntent], Awaitable[None]],
    ) -> dict[str, Any]:
        """Make a capture's or a cancel's call and settle it; ``then`` adds the answer's audit
        entry in the settling transaction. An outcome still unknown is answered as it stands
        (the API layer audits that answer after it)."""
        result = await self.engine.execute(attempt, call)
        if result is None:
            return await self.retrieve(account_id, attempt.object_id)
        return self._view(await self.engine.settle_payment(attempt.id, result, then=then))

    async def _answered(self, s: AsyncSession, settled: PaymentIntent) -> None:
        """The request's audit entry, in the transaction that records what its answer shows."""
        await audit_in(s, self._view(settled), self.ctx.now_us())

    async def _cancel_answered(self, s: AsyncSession, settled: PaymentIntent) -> None:
        # Paid at the provider before the void: the cancel is answered with an error, which
        # is not audited (``_cancel_outcome``).
        if settled.status != S.SUCCEEDED:
            await self._answered(s, settled)

    async def cancel(
        self, account_id: str, pi_id: str, cancellation_reason: str | None = None
    ) -> dict[str, Any]:
        """Cancel at the provider first (void the authorization, cancel the opened payment),
        then record it. If the provider says the payment already succeeded, the intent shows
        that and the cancel fails."""
        if cancellation_reason is not None and cancellation_reason not in (
            *CANCELLATION_REASONS,
            "automatic",
        ):
            raise PaymuxError.of(
                "parameter_invalid",
                f"cancellation_reason must be one of {', '.join(CANCELLATION_REASONS)}.",
                param="cancellation_reason",
            )
        if self._resuming(pi_id, Operation.CANCEL):
            return await self._cancel_outcome(account_id, pi_id)
        now = self.ctx.now_us()
        reason = cancellation_reason or "requested_by_customer"
        async with self.ctx.db.write() as s:
            pi = await get_owned(s, PaymentIntent, pi_id, account_id)
            check_operation("cancel", pi.status)
            if opened_reference(pi) is None and pi.status in (
                S.REQUIRES_PAYMENT_METHOD,
                S.REQUIRES_CONFIRMATION,
            ):
                # Nothing live at any provider (no payment opened for the browser; at most a
                # declined one): a local cancel is the whole truth.
                pi.status = S.CANCELED
                pi.cancellation_reason = reason
                pi.canceled_us = now
                pi.updated_us = now
                view = self._view(pi)
                await emit(s, account_id, "payment_intent.canceled", view, now, subject=pi)
                await audit_in(s, view, now)
                return view
            key = await self._step_key(s, pi.id, Operation.CANCEL)
            pi, attempt = await self.engine.start_on_intent(
                s,
                pi,
                Operation.CANCEL,
                allowed_from=(
                    S.REQUIRES_PAYMENT_METHOD,
                    S.REQUIRES_CONFIRMATION,
                    S.REQUIRES_ACTION,
                    S.REQUIRES_CAPTURE,
                ),
                idempotency_key=key,
                request={"reason": reason},
                changes={"cancellation_reason": reason},
            )
            reference = pi.gateway_reference
        gateway = await self.ctx.gateway_of(pi)
        assert reference is not None
        await self._run(
            account_id,
            attempt,
            lambda: gateway.void(reference, idempotency_key=key),
            then=self._cancel_answered,
        )
        return await self._cancel_outcome(account_id, pi_id)

    async def _cancel_outcome(self, account_id: str, pi_id: str) -> dict[str, Any]:
        view = await self.outcome(account_id, pi_id)
        if view["status"] == S.SUCCEEDED:
            error = PaymuxError.of(
                "payment_intent_unexpected_state",
                "This PaymentIntent was paid at the provider before it could be canceled. "
                "Refund it instead.",
                status=S.SUCCEEDED,
            )
            error.extra = {"payment_intent": view}
            raise error
        return view

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

    async def expired_authorizations(self) -> list[tuple[str, str]]:
        cutoff = self.ctx.now_us() - self.ctx.settings.authorization_expiry_seconds * 1_000_000
        async with self.ctx.db.read() as s:
            rows = await s.execute(
                select(PaymentIntent.id, PaymentIntent.account_id)
                .where(
                    PaymentIntent.status == S.REQUIRES_CAPTURE,
                    PaymentIntent.authorized_us < cutoff,
                )
                .order_by(PaymentIntent.authorized_us)
                .limit(500)
            )
            return [(str(a), str(b)) for a, b in rows.all()]

    # -- recovery ---------------------------------------------------------------------------
    async def stale_attempts(self, limit: int = 500) -> list[tuple[str, str]]:
        """Pending attempts nobody has heard about for a while, the longest-waiting first
        (each recovery moves its attempt to the back)."""
        cutoff = self.ctx.now_us() - int(self.ctx.settings.attempt_settle_after_seconds * 1e6)
        async with self.ctx.db.read() as s:
            rows = await s.execute(
                select(GatewayAttempt.id, GatewayAttempt.account_id)
                .where(GatewayAttempt.status == "pending", GatewayAttempt.updated_us < cutoff)
                .order_by(GatewayAttempt.updated_us, GatewayAttempt.id)
                .limit(limit)
            )
            return [(str(a), str(b)) for a, b in rows.all()]

    async def stuck_intents(self, limit: int = 500) -> list[tuple[str, str]]:
        """Intents in processing or requires_action, unchanged for reconcile_after_seconds
        (a lost webhook, or a payer who never came back): oldest first."""
        cutoff = self.ctx.now_us() - int(self.ctx.settings.reconcile_after_seconds * 1e6)
        async with self.ctx.db.read() as s:
            rows = await s.execute(
                select(PaymentIntent.id, PaymentIntent.account_id)
                .where(
                    PaymentIntent.status.in_([S.PROCESSING, S.REQUIRES_ACTION]),
                    PaymentIntent.updated_us < cutoff,
                )
                .order_by(PaymentIntent.updated_us, PaymentIntent.id)
                .limit(limit)
            )
            return [(str(a), str(b)) for a, b in rows.all()]


# An intent by id, as a row whose names are PaymentIntent's attributes (so the view reads it
# as it reads the model), for each request mode (None: any, outside a request). By the
# primary key alone: the account is checked on the row (``_of_account``), as ``get_owned``
# checks it. With ``account_id = :a`` in the statement, the generic plan PostgreSQL keeps for
# the prepared statement (asyncpg's, after five runs) on a table without statistics (a new
# deployment's, until autovacuum's first ANALYZE) used the (account, created) index on the
# account alone, the id as a filter: a walk of every intent of the account per GET (885
# pages a GET after 4,000 payments in issue 10's bench; tests/integration/
# test_key_lookup_plans.py).
_INTENT_ROW = select(*driver.attribute_columns(PaymentIntent)).where(
    PaymentIntent.id == bindparam("pi_id")
)
_OWNED_INTENT = {
    None: _INTENT_ROW,
    True: _INTENT_ROW.where(PaymentIntent.livemode.is_(True)),
    False: _INTENT_ROW.where(PaymentIntent.livemode.is_(False)),
}


# The same SELECT on the database driver (storage/driver.py): for the GET of one intent (no
# SQLAlchemy execution layers around its one statement: issue 10, they were 43 % of a GET),
# and in a confirm's transactions (``_owned_intent``), with FOR UPDATE where it locks.
_OWNED_INTENT_DRIVER = {mode: driver.Statement.of(row) for mode, row in _OWNED_INTENT.items()}
_OWNED_INTENT_LOCKED_DRIVER = {
    mode: driver.Statement.of(row.with_for_update()) for mode, row in _OWNED_INTENT.items()
}


_INTENT_ID = driver.Statement("SELECT id FROM payment_intents WHERE id = :id")


async def _owned_intent(
    s: AsyncSession, account_id: str, pi_id: str, *, lock: bool = False
) -> PaymentIntent:
    """An account's intent as ``retrieve`` reads it (a Core SELECT built once, the request
    key's mode applied), in the caller's transaction, on the database driver (a named tuple
    of the model's attributes, as ``retrieve``'s); 404 as ``get_owned`` answers it. A row to
    read, never to change (the session does not know it). ``lock``: FOR UPDATE on
    PostgreSQL (SQLite's writer holds the database anyway), as ``get_owned(..., lock=True)``."""
    statement = (_OWNED_INTENT_LOCKED_DRIVER if lock else _OWNED_INTENT_DRIVER)[
        current_livemode.get()
    ]
    return _of_account(await driver.fetchrow(s, statement, {"pi_id": pi_id}), account_id, pi_id)


def _of_account(row: driver.Row | None, account_id: str, pi_id: str) -> PaymentIntent:
    """The intent read by id if it is the account's; else 404 as ``get_owned`` answers it
    (another account's intent is as unknown as one that never existed)."""
    intent = cast(PaymentIntent | None, row)
    if intent is None or intent.account_id != account_id:
        raise PaymuxError.of("resource_missing", f"No such payment_intent: '{pi_id}'", param="id")
    return intent


# A confirmation's count, as an UPDATE sets it when the intent is read again under the lock
# (``start_on_intent``): built once (``start_if_unchanged`` takes the value read + 1).
_CONFIRM_COUNT_NEXT = PaymentIntent.confirm_count + 1
# What a create gives a new intent (``PaymentsService.create``'s ``values``); the others
# (a decline, 3-D Secure, the fraud outcome, cancellation...) stay NULL until they happen.
_PI_CREATED = (
    "id",
    "client_secret",
    "gateway_reference",
    "gateway_client",
    "account_id",
    "status",
    "amount",
    "currency",
    "amount_capturable",
    "amount_received",
    "amount_refunded",
    "amount_refund_pending",
    "capture_method",
    "customer_id",
    "payment_method_id",
    "setup_future_usage",
    "off_session",
    "gateway",
    "connection_id",
    "livemode",
    "return_url",
    "description",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "receipt_email",
    "payment_method_types",
    "automatic_payment_methods",
    "metadata_",
    "confirm_count",
    "invoice_id",
    "shipping",
    "payment_method_options",
    "created_us",
    "updated_us",
)
_PI_CREATE = driver.insert_of(PaymentIntent, _PI_CREATED)
# A caller's reserved id (``CreateParams.id``): inserted unless an intent has that id already,
# then no row comes back.
_PI_CREATE_NEW = driver.insert_of(PaymentIntent, _PI_CREATED, conflict="id")
# The intent's attributes, in the order of ``retrieve``'s row (``_OWNED_INTENT_DRIVER``).
_PI_KEYS = tuple(attr.key for attr in inspect(PaymentIntent).column_attrs)
_PI_ROW = _OWNED_INTENT_DRIVER[None].row
assert _PI_ROW is not None


def _intent_row(values: dict[str, Any]) -> PaymentIntent:
    """A new intent as ``retrieve`` would read it back: its row (a named tuple of the model's
    attributes, the ones not given None), to view and to confirm; never to change."""
    assert _PI_ROW is not None
    return cast(PaymentIntent, _PI_ROW([values.get(key) for key in _PI_KEYS]))


class _ReservedIdTaken(Exception):
    """The create's reserved intent id was taken, after its read, by another request."""


_PM_KEYS = tuple(attr.key for attr in inspect(PaymentMethod).column_attrs)
# The Python defaults a Core INSERT would give a payment method's attributes not given
# (``type``, ``livemode``, ``metadata_``): given here, as values of the driver's INSERT.
_PM_DEFAULTS = tuple(
    (attr.key, default)
    for attr in inspect(PaymentMethod).column_attrs
    if (default := attr.columns[0].default) is not None
)
# Driver INSERTs of a payment method, one per set of attributes given (a handful: each way a
# payment method is made gives its own), built on first use: inserted unless the account has
# the token already, then no row comes back.
_PM_INSERTS: dict[tuple[str, ...], driver.Statement] = {}
_PM_CONFLICT = "account_id, gateway, token"  # the UniqueConstraint of PaymentMethod
_PM_OF_TOKEN = select(PaymentMethod).where(
    PaymentMethod.account_id == bindparam("account_id"),
    PaymentMethod.gateway == bindparam("gateway"),
    PaymentMethod.token == bindparam("token"),
)


# The foreign key from an intent to its payment method (migration 0001).
_PI_PAYMENT_METHOD_FK: Final = "payment_intents_payment_method_id_fkey"
# Tokens a shared test token's use was answered with that an account had recorded already
# (a gateway that answers one with the same token every time, under another name than the
# shared one): never held again in this process (``_may_hold``). A handful at most: the
# gateways' shared test tokens are a short published list.
_TOKENS_RECORDED: set[tuple[str, str | None]] = set()


def _may_hold(pm: PaymentMethod, named: str | None) -> bool:
    """Whether ``pm``, a payment method the create is to record, may be inserted held: a
    new use of a shared test token (no token to claim: ``needs_claim``) that its gateway
    answered with a token of its own, not the shared one the request named (Square's test
    nonces are their own token: a second use finds the first's row), nor one an account
    was found to have already."""
    return (
        inspect(pm).transient
        and not needs_claim(pm)
        and pm.token != named
        and (pm.gateway, pm.token) not in _TOKENS_RECORDED
    )


def _names_constraint(error: IntegrityError, name: str) -> bool:
    """Whether ``error`` is PostgreSQL's violation of the constraint ``name`` (asyncpg's
    error, under the DBAPI's and SQLAlchemy's)."""
    cause = getattr(error.orig, "__cause__", None)
    return getattr(cause, "constraint_name", None) == name


def _payment_method_insert(pm: PaymentMethod) -> tuple[driver.Statement, dict[str, Any]]:
    """The driver INSERT of a new (transient) payment method and its values: inserted unless
    the account has the token already (then no row comes back)."""
    given = inspect(pm).dict
    values = {key: given[key] for key in _PM_KEYS if key in given}
    for key, default in _PM_DEFAULTS:
        if key not in values:
            values[key] = default.arg(None) if default.is_callable else default.arg
    keys = tuple(values)
    statement = _PM_INSERTS.get(keys)
    if statement is None:
        statement = _PM_INSERTS[keys] = driver.insert_of(PaymentMethod, keys, conflict=_PM_CONFLICT)
    return statement, values


async def _hold_payment_method(s: AsyncSession, pm: PaymentMethod) -> None:
    """``pm``'s INSERT held in the caller's transaction (``driver.later``), sent with its
    next statement; if the account has the token already nothing is inserted, and the
    intent that names ``pm`` fails on its foreign key (the caller's ``create``)."""
    statement, values = _payment_method_insert(pm)
    await driver.later(s, statement, values)


async def _record_payment_method(
    s: AsyncSession, pm: PaymentMethod, is_sqlite: bool
) -> PaymentMethod:
    """Insert a new (transient) payment method in the caller's transaction, its token
    claimed first if it is new to the account (``claim_deferred``: refused if another
    account owns it); if the account has the token already (a gateway that answers a shared
    token with the same token every time, another request of the account that recorded the
    same new token meanwhile), that row, as ``resolve_payment_method`` does. One statement on
    the database driver (two with a claim), no savepoint; the object stays transient (the
    session never sees it).
    ``is_sqlite``: unused now (the driver renders for the session's database); kept for the
    callers and tests that pass it."""
    await claim_deferred(s, pm)
    statement, values = _payment_method_insert(pm)
    if await driver.fetchrow(s, statement, values) is not None:
        return pm
    existing: PaymentMethod = (
        await s.execute(
            _PM_OF_TOKEN,
            {"account_id": pm.account_id, "gateway": pm.gateway, "token": pm.token},
        )
    ).scalar_one()
    return existing_usable(pm, existing)


def _both_payment_methods() -> PaymuxError:
    return PaymuxError.of(
        "parameters_exclusive",
        "Send payment_method or payment_method_data, not both.",
        param="payment_method_data",
    )


async def _from_data(
    ctx: Context,
    account_id: str,
    gateway: str,
    connection_id: str | None,
    p: CreateParams,
    *,
    made_as: str | None = None,
) -> PaymentMethod:
    """``payment_method_data`` of a create: a new payment method of the account, made through
    the connection the payment was routed to."""
    assert p.payment_method_data is not None
    if p.payment_method:
        raise _both_payment_methods()
    return await payment_method_from_token(
        ctx,
        account_id,
        gateway,
        TokenData.of(p.payment_method_data, "payment_method_data"),
        connection_id=connection_id,
        param="payment_method_data[card][token]",
        made_as=made_as,
    )


def _take_annotations(pi: PaymentIntent, p: UpdateParams) -> None:
    if p.shipping is not None:
        pi.shipping = contact(p.shipping) if isinstance(p.shipping, dict) else None
    if p.description is not None:
        pi.description = p.description or None  # "" clears, as on Stripe
    if p.receipt_email is not None:
        pi.receipt_email = p.receipt_email or None
    if p.metadata is not None:
        pi.metadata_ = merge_metadata(pi.metadata_, p.metadata)


def _payment_method_types(gateway: str, wanted: list[str] | None) -> list[str] | None:
    """What the payment may be paid with (Stripe's payment_method_types): only types its
    gateway's connector declares (``Connector.payment_method_types``)."""
    if wanted is None:
        return None
    allowed = sorted(connector_types(gateway))
    for kind in wanted:
        if kind not in allowed:
            raise PaymuxError.of(
                "parameter_invalid",
                f"The {gateway} gateway does not take payment method type {kind!r}; it takes "
                f"{', '.join(allowed)}.",
                param="payment_method_types",
            )
    return list(dict.fromkeys(wanted))


def _confirm_changes(
    payment_method_options: dict[str, Any] | None,
    off_session: bool | None,
    return_url: str | None,
    setup_future_usage: str | None,
) -> dict[str, Any]:
    """What a confirmation changes on its intent, committed with its attempt."""
    changes: dict[str, Any] = {
        "confirm_count": _CONFIRM_COUNT_NEXT,
        "last_payment_error": None,
        "next_action": None,
        "three_d_secure": None,  # this confirmation's, once its gateway answers
        # The gateway's risk level is this confirmation's too (an earlier card's must
        # not be recorded against this one when this gateway's answer carries none).
        "risk_level": None,
        "gateway_risk_score": None,
    }
    if payment_method_options is not None:
        changes["payment_method_options"] = card_options(payment_method_options)
    if off_session is not None:
        changes["off_session"] = off_session
    if return_url is not None:
        changes["return_url"] = return_url
    if setup_future_usage is not None:
        changes["setup_future_usage"] = setup_future_usage
    return changes
