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
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Boolean, bindparam, select, union_all
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from paymux.domain.errors import PaymuxError, card_error
from paymux.domain.ids import new_id
from paymux.gateways.base import CardDetails, Decline, Gateway, GatewayInvalidRequest
from paymux.services.context import (
    Context,
    CreatedRange,
    Routed,
    current_livemode,
    emit,
    get_owned,
    merge_metadata,
    page_of,
    ref_key,
    request_livemode,
    scoped,
)
from paymux.services.gateway_calls import call_with_retries
from paymux.services.idempotency import current_claim
from paymux.services.token_owners import claim_token_or_refuse
from paymux.services.views import customer_view, payment_method_view
from paymux.storage import driver
from paymux.storage.models import Customer, GatewayTokenOwner, PaymentMethod

__all__ = [
    "CustomerParams",
    "CustomersService",
    "TokenData",
    "account_fingerprint",
    "contact",
    "find_payment_method",
    "look_up",
    "payment_method_from_token",
    "payment_method_id_of_request",
    "require_customer",
    "resolve_payment_method",
    "take_card_details",
]

log = logging.getLogger(__name__)


def account_fingerprint(account_id: str, gateway_fingerprint: str | None) -> str | None:
    """The fingerprint paymux shows for a card: the gateway's (one per card number) made
    particular to the account, so two accounts can't match their customers' cards."""
    if not gateway_fingerprint:
        return None
    return hashlib.sha256(f"{account_id}:{gateway_fingerprint}".encode()).hexdigest()[:16]


# A customer's owner, mode and deletion: ``require_customer``'s one statement on the driver.
_CUSTOMER_OWNER = driver.Statement(
    "SELECT account_id, livemode, deleted FROM customers WHERE id = :id",
    results=(None, Boolean(), Boolean()),
)


async def require_customer(
    ctx: Context, account_id: str, customer_id: str, *, param: str = "customer"
) -> None:
    """404 unless the account has this customer, not deleted and of the request key's mode:
    ``get_owned(s, Customer, ...)``'s rule, as one statement outside any transaction
    (``driver.first_row``) where nothing else is read with it."""
    row = await driver.first_row(ctx.db.reader, _CUSTOMER_OWNER, {"id": customer_id})
    owner, livemode, deleted = row if row is not None else (None, None, None)
    mode = current_livemode.get()
    if owner != account_id or (mode is not None and bool(livemode) != mode) or deleted:
        raise PaymuxError.of("resource_missing", f"No such customer: '{customer_id}'", param=param)


# The lookups of a payment method reference, built once (bound values, cache keys memoized):
# ``find_payment_method``'s by the request key's mode (None: any mode, as ``scoped`` does).
# Two look-ups by key in one UNION ALL: by the primary key alone (the account is checked on
# the row, in ``find_payment_method``), and by the gateway's token. A condition the planner
# can use as an index's first column makes it walk every payment method of the account
# through that index: ``account_id = :a AND (id = :ref OR ...)`` was run so, the OR kept as
# a filter, and so was ``id = :ref AND account_id = :a`` in the generic plan PostgreSQL
# keeps for a prepared statement (asyncpg's) while the table has no statistics yet, through
# the (account, gateway, token) unique index: 574 pages for an account of 600 payment
# methods, where the primary key's look-up takes 3 (issue 10's bench with distinct cards;
# tests/integration/test_key_lookup_plans.py).
# A row of them is the ``__dict__`` of a loaded payment method (``_loaded``).
_PM_ATTRIBUTES: Final = driver.attribute_columns(PaymentMethod)


def _find_in(mode: bool | None) -> driver.Statement:
    by_id = select(*_PM_ATTRIBUTES).where(PaymentMethod.id == bindparam("ref"))
    by_token = select(*_PM_ATTRIBUTES).where(
        PaymentMethod.account_id == bindparam("account_id"),
        PaymentMethod.gateway == bindparam("gateway"),
        PaymentMethod.token == bindparam("ref"),
    )
    if mode is not None:
        by_id = by_id.where(PaymentMethod.livemode.is_(mode))
        by_token = by_token.where(PaymentMethod.livemode.is_(mode))
    return driver.Statement.of(union_all(by_id, by_token))  # type: ignore[arg-type]


_FIND_IN_MODE: dict[bool | None, driver.Statement] = {
    mode: _find_in(mode) for mode in (None, True, False)
}
# Another account owns the token: its claim, or its payment method with it.
_OWNED_ELSEWHERE: Final = driver.Statement(
    "SELECT gateway_token_owners.account_id FROM gateway_token_owners "
    "WHERE gateway_token_owners.gateway = :gateway AND gateway_token_owners.token = :token "
    "AND gateway_token_owners.account_id != :account_id "
    "UNION ALL SELECT payment_methods.account_id FROM payment_methods "
    "WHERE payment_methods.gateway = :gateway AND payment_methods.token = :token "
    "AND payment_methods.account_id != :account_id LIMIT 1"
)


def _loaded(row: driver.Row) -> PaymentMethod:
    """The payment method of ``row`` (all its columns), as a read session leaves one it
    loaded: detached (persistent once added to a session, never inserted again), its
    attributes as read, no change pending."""
    pm = _deferred_payment_method(**row._asdict())  # type: ignore[attr-defined]
    make_transient_to_detached(pm)
    return pm


async def find_payment_method(
    s: AsyncSession, account_id: str, gateway_name: str, ref: str
) -> PaymentMethod | None:
    """One of ours by id (preferred), else our record of the gateway token ``ref``: one
    statement, on the database driver (as a read session loads it and leaves it detached:
    ``_loaded``, without the ORM's execution layers). Another account's payment method of
    that id is none of ours (the statement's look-up by id does not name the account: see
    ``_find_in``)."""
    rows = await driver.fetch(
        s,
        _FIND_IN_MODE[current_livemode.get()],
        {"account_id": account_id, "ref": ref, "gateway": gateway_name},
    )
    found = [pm for pm in map(_loaded, rows) if pm.account_id == account_id]
    return next((m for m in found if m.id == ref), found[0] if found else None)


async def _find_ref(
    s: AsyncSession,
    account_id: str,
    ref: str,
    gateway_name: str | None,
    fallback: Routed | None,
) -> PaymentMethod | None:
    """``find_payment_method``'s one look-up of ``ref``: one of ours by id (whatever its
    gateway), else a token of ``gateway_name``, or (none named) of the default connection's
    gateway (``fallback``; with none, by id only). None without a look-up for the default
    gateway's shared test token: each use of it is a payment method of its own."""
    if gateway_name is None and fallback is not None:
        if fallback.gateway.reusable_test_token(ref):
            return None
        gateway_name = fallback.gateway.name
    return await find_payment_method(s, account_id, gateway_name or "", ref)


async def look_up(
    s: AsyncSession, account_id: str, gateway_name: str, ref: str
) -> tuple[PaymentMethod | None, bool | None]:
    """``find_payment_method`` in the caller's read ``s``, and if it finds nothing, whether
    another account owns ``ref`` (None: not asked), in the same read: what
    ``resolve_payment_method`` takes as ``known`` and ``elsewhere``."""
    pm = await find_payment_method(s, account_id, gateway_name, ref)
    if pm is not None:
        return pm, None
    return None, await _owned_elsewhere_in(s, account_id, gateway_name, ref)


async def _owned_elsewhere(ctx: Context, account_id: str, gateway: str, token: str) -> bool:
    """Another account owns the token: it claimed it (``gateway_token_owners``), or it has a
    payment method with it (a token recorded before owners were, or a vault token a gateway
    issued to that account). A fast refusal only: the claim itself is ``_claim``."""
    async with ctx.db.read() as s:
        return await _owned_elsewhere_in(s, account_id, gateway, token)


async def _owned_elsewhere_in(s: AsyncSession, account_id: str, gateway: str, token: str) -> bool:
    params = {"gateway": gateway, "token": token, "account_id": account_id}
    return await driver.fetchrow(s, _OWNED_ELSEWHERE, params) is not None


def _claim(pm: PaymentMethod, now: int) -> GatewayTokenOwner:
    """The row that makes ``pm``'s account its token's owner: added in the transaction that
    records ``pm``, so of two accounts racing for one token only the first commits."""
    return GatewayTokenOwner(
        gateway=pm.gateway, token=pm.token, account_id=pm.account_id, created_us=now
    )


async def _owner_of(ctx: Context, gateway: str, token: str) -> str | None:
    async with ctx.db.read() as s:
        row = await driver.fetchrow(s, _OWNER_ROW, {"gateway": gateway, "token": token})
    return None if row is None else str(row[0])


async def resolve_payment_method(
    ctx: Context,
    account_id: str,
    gateway_name: str,
    ref: str,
    *,
    customer_id: str | None,
    known: PaymentMethod | None = None,
    looked_up: bool = False,
    elsewhere: bool | None = None,
    connection_id: str | None = None,
    defer_new: bool = False,
    billing_details: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
    pm_id: str | None = None,
    gateway: Gateway | None = None,
) -> PaymentMethod:
    """Our PaymentMethod for ``ref``: one of ours by id, or a gateway token we record now.

    ``known``: what ``find_payment_method`` already found in the caller's transaction
    (``looked_up``: it looked, and ``known`` None means it found nothing); ``elsewhere``:
    whether another account owns ``ref``, if the caller asked in the same read
    (``look_up``), else None (asked here when it matters).
    ``connection_id``: the connection the payment goes through; a new token is described by,
    and recorded as, that connection's.
    ``defer_new``: a payment method made now is returned unsaved (transient), for the caller
    to record in its own write transaction (services/payments.py ``_record_payment_method``,
    with the token's claim, ``claim_deferred``): a use of a shared test token (a fresh token
    of its own, which no other request can record), or a token new to this account (the
    ownership check is then a read before the gateway call, and the claim that decides is
    made in the caller's transaction: one write transaction less per payment with a new
    token, and nothing recorded if that transaction rolls back).
    ``billing_details``, ``metadata``: what a payment method made now starts with.
    ``pm_id``: the id a payment method made now takes (else a new random one).
    ``gateway``: the gateway of ``gateway_name`` at ``connection_id``, if the caller has it:
    a shared test token is then known as one before any lookup, and none is made (such a
    token is never one of our ids, and each use of it is a payment method of its own).
    """
    shared_token = gateway is not None and gateway.reusable_test_token(ref)
    pm = None if shared_token else known
    if pm is None and not looked_up and not shared_token:
        async with ctx.db.read() as s:
            if gateway is None:
                pm = await find_payment_method(s, account_id, gateway_name, ref)
            else:  # no shared test token: whether another account owns it, in the same read
                pm, elsewhere = await look_up(s, account_id, gateway_name, ref)
    if pm is None or pm.id != ref:
        if gateway is None:
            gateway = await ctx.gateway(
                gateway_name, account_id=account_id, connection_id=connection_id
            )
        if pm is not None and gateway.reusable_test_token(ref):
            pm = None  # a shared test token: each use is a payment method of its own
    if pm is not None:
        return _usable(pm, gateway_name, connection_id, customer_id)
    assert gateway is not None
    if not gateway.reusable_test_token(ref) and (
        elsewhere
        if elsewhere is not None
        else await _owned_elsewhere(ctx, account_id, gateway_name, ref)
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

    def made(pm_id: str, *, deferred: bool = False) -> PaymentMethod:
        return (_deferred_payment_method if deferred else _payment_method)(
            id=pm_id,
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
            card_bin=details.bin,
            card_cvc_check=details.cvc_check,
            card_address_line1_check=details.address_line1_check,
            card_address_zip_check=details.address_zip_check,
            metadata_=dict(metadata or {}),
            billing_details=billing_details or None,
            created_us=now,
        )

    shared = gateway.reusable_test_token(ref)
    if defer_new:
        deferred = made(pm_id or new_id("pm"), deferred=True)
        if not shared:
            _UNCLAIMED[deferred] = _NewToken(ref, customer_id, connection_id)
        return deferred
    pm = made(pm_id or new_id("pm"))
    try:
        await _record(ctx, pm, shared, now)
        return pm
    except IntegrityError:  # the id, or the token, was recorded by another request first
        pass
    if pm_id is not None:
        async with ctx.db.read() as s:
            same = await s.get(PaymentMethod, pm_id)
        if same is not None and same.account_id == account_id and same.token == details.token:
            return same  # this request's own first run made it
    owner = None if shared else await _owner_of(ctx, gateway_name, details.token)
    if owner is not None and owner != account_id:
        # Another account won the race for this token: it is theirs, unknown here.
        raise PaymuxError.of(
            "resource_missing", f"No such payment_method: '{ref}'", param="payment_method"
        )
    async with ctx.db.read() as s:
        existing: PaymentMethod | None = (
            (
                await s.execute(
                    scoped(PaymentMethod, account_id).where(
                        PaymentMethod.gateway == gateway_name, PaymentMethod.token == details.token
                    )
                )
            )
            .scalars()
            .first()
        )
    if existing is not None:
        # The account already has the token (another request recorded it first, or ``ref``
        # is another name the gateway gives a saved card): as usable as if named by its id.
        return _usable(existing, gateway_name, connection_id, customer_id)
    # Only the id was taken (by something this request did not make): a random one.
    pm = made(new_id("pm"))
    await _record(ctx, pm, shared, now)
    return pm


def _usable(
    pm: PaymentMethod, gateway_name: str, connection_id: str | None, customer_id: str | None
) -> PaymentMethod:
    """``pm`` if a payment of ``customer_id`` through ``gateway_name`` (and ``connection_id``)
    may use it; else 400 ``payment_method_unexpected_state``."""
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


def _payment_method(**values: Any) -> PaymentMethod:
    """A new payment method through the ORM's constructor (for a session to add)."""
    return PaymentMethod(**values)


# The mapped class's instrumentation: a new instance with its state, without its
# constructor (``_deferred_payment_method``).
_PM_MANAGER: Any = sa_inspect(PaymentMethod).class_manager


def _deferred_payment_method(**values: Any) -> PaymentMethod:
    """A new payment method that no session will hold (a use of a shared test token, which
    its caller inserts itself on the database driver: services/payments.py
    ``_record_payment_method``): the attributes given set in its ``__dict__`` at once, the
    same dict the ORM's constructor makes (``inspect(pm).dict``, ``transient``), without its
    per-attribute set events and change history (about 190 Python calls a payment: issue
    10), which nothing reads of an object never flushed."""
    pm: PaymentMethod = _PM_MANAGER.new_instance()
    pm.__dict__.update(values)
    return pm


@dataclass(frozen=True, slots=True)
class _NewToken:
    """What a payment method made from a token new to the account needs when it is recorded:
    the reference the request named (a refusal names it), and the payment's customer and
    connection (if the account turns out to have the token already, that row must be usable
    for them: ``existing_usable``)."""

    named: str
    customer_id: str | None
    connection_id: str | None


# Payment methods ``resolve_payment_method`` deferred (``defer_new``) that were made from a
# token new to the account, not a shared test token: their token is claimed when they are
# recorded (``claim_deferred``).
_UNCLAIMED: weakref.WeakKeyDictionary[PaymentMethod, _NewToken] = weakref.WeakKeyDictionary()
_CLAIM: Final = driver.Statement(
    "INSERT INTO gateway_token_owners (gateway, token, account_id, created_us) "
    "VALUES (:gateway, :token, :account_id, :created_us) "
    "ON CONFLICT (gateway, token) DO NOTHING RETURNING account_id"
)
_OWNER_ROW: Final = driver.Statement(
    "SELECT account_id FROM gateway_token_owners WHERE gateway = :gateway AND token = :token"
)


def needs_claim(pm: PaymentMethod) -> bool:
    """Whether recording ``pm`` claims its token first (``claim_deferred``): a payment method
    ``resolve_payment_method`` deferred, made from a token new to the account."""
    return pm in _UNCLAIMED


async def claim_deferred(s: AsyncSession, pm: PaymentMethod) -> None:
    """In the write transaction ``s`` that records ``pm``: if ``resolve_payment_method``
    deferred it with a token new to the account, make the account the token's owner, or
    refuse (404 ``resource_missing`` on ``payment_method``, naming what the request named,
    as the ownership check does) if another account owns it: the transaction then records
    nothing. Of two accounts racing for one token, the second's claim waits for the first's
    transaction (the owner row's primary key) and then finds it. A payment method of any
    other kind: nothing (a shared test token is no one's; one made by ``_record`` claimed
    its token already)."""
    new = _UNCLAIMED.get(pm)
    if new is None:
        return
    params = {"gateway": pm.gateway, "token": pm.token, "account_id": pm.account_id}
    claimed = await driver.fetchrow(s, _CLAIM, {**params, "created_us": pm.created_us})
    if claimed is None:
        owner = await driver.fetchrow(s, _OWNER_ROW, params)
        if owner is None or owner[0] != pm.account_id:
            raise PaymuxError.of(
                "resource_missing", f"No such payment_method: '{new.named}'", param="payment_method"
            )


def existing_usable(made: PaymentMethod, existing: PaymentMethod) -> PaymentMethod:
    """The account's own payment method ``existing`` with the token of ``made``, which was not
    recorded because of it. Made from a token new to the account (another request of the
    account recorded it meanwhile, or the gateway's other name for a saved card): usable
    only as if named by its id, for the payment's customer and connection (``_usable``,
    400 ``payment_method_unexpected_state`` otherwise), as ``resolve_payment_method`` finds it."""
    new = _UNCLAIMED.get(made)
    if new is None:
        return existing
    return _usable(existing, made.gateway, new.connection_id, new.customer_id)


async def _record(ctx: Context, pm: PaymentMethod, shared: bool, now: int) -> None:
    """Write a new payment method and, unless its token is a shared test token, its
    account's claim on the token (``IntegrityError`` if either is taken)."""
    async with ctx.db.write() as s:
        s.add(pm)
        if not shared:
            s.add(_claim(pm, now))


def contact(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """An address, shipping or billing_details as stored: the fields given (nested ones too),
    None when nothing is."""
    if not value:
        return None
    kept: dict[str, Any] = {}
    for name, item in value.items():
        item = contact(item) if isinstance(item, dict) else item
        if item is not None:
            kept[name] = item
    return kept or None


@dataclass(frozen=True)
class TokenData:
    """A payment method to make from a gateway token (``card[token]``), with what Stripe
    lets it carry: the payer's billing details and metadata. Never card data."""

    token: str
    billing_details: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None

    @classmethod
    def of(cls, data: dict[str, Any], param: str = "") -> TokenData:
        """From ``payment_method_data`` (``param``: its name) or the body of
        ``POST /v1/payment_methods``; a 400 without ``card[token]``."""
        token = (data.get("card") or {}).get("token")
        if not token:
            name = f"{param}[card][token]" if param else "card[token]"
            raise PaymuxError.of(
                "parameter_missing", f"Missing required param: {name}.", param=name
            )
        return cls(
            token=str(token),
            billing_details=contact(data.get("billing_details")),
            metadata=dict(data.get("metadata") or {}),
        )


def payment_method_id_of_request(step: str) -> str | None:
    """The id of the payment method that ``payment_method_data`` makes in this request,
    derived from its Idempotency-Key (account, mode, key, and when the key's row was made)
    and ``step`` (which request made it): a retry after a crash or a lost answer finds the
    payment method its first run made from the same single-use token, and resumes, instead
    of being refused for the token's second use. The key's row's age is in it because a key
    used again after the 24 h purge is a new request (Stripe's rule), whose payment method
    is a new one. None without a key (a request without one is not retried as the same)."""
    claim = current_claim.get()
    if claim is None:
        return None
    seed = "\x1f".join(
        (claim.account_id, str(claim.livemode), claim.key, str(claim.created_us), step)
    )
    return "pm_" + hashlib.sha256(seed.encode()).hexdigest()[:24]


async def payment_method_from_token(
    ctx: Context,
    account_id: str,
    gateway_name: str,
    data: TokenData,
    *,
    connection_id: str | None,
    param: str,
    made_as: str | None = None,
) -> PaymentMethod:
    """A new, detached payment method of the account from a gateway token, recorded as a
    ``payment_method`` reference is (``resolve_payment_method``): a shared test token
    (``tok_visa``) gives a fresh one each time; any other token becomes the account's
    (``gateway_token_owners``), so another account using it, or the new ``pm_`` id, gets a
    404. A token that is already one of the account's payment methods, or a ``pm_`` id, is
    refused: a token makes one payment method, once (Stripe's tokens are single-use too).

    ``made_as``: the id the payment method takes, derived by the caller from its request's
    Idempotency-Key; a retry of that request whose first run already made it from this
    token (and then crashed, or lost its answer) gets that one back and resumes."""
    async with ctx.db.read() as s:
        mine: PaymentMethod | None = None
        if made_as is not None:
            query = scoped(PaymentMethod, account_id).where(PaymentMethod.id == made_as)
            mine = (await s.execute(query)).scalar_one_or_none()
        known = await find_payment_method(s, account_id, gateway_name, data.token)
    if mine is not None and mine.gateway == gateway_name:
        # This request's own first run made it. By its id: a shared test token's payment
        # method (``tok_visa``) has a fresh token of its own, and a saved card's token is
        # the gateway's vault token now.
        return mine
    if known is not None and known.id == data.token:
        raise PaymuxError.of(
            "parameter_invalid",
            f"{param} takes a gateway token (such as tok_visa), not a payment method id: "
            "send payment_method instead.",
            param=param,
        )
    try:
        pm = await resolve_payment_method(
            ctx,
            account_id,
            gateway_name,
            data.token,
            customer_id=None,
            known=known,
            looked_up=True,
            connection_id=connection_id,
            billing_details=data.billing_details,
            metadata=data.metadata,
            pm_id=made_as,
        )
    except PaymuxError as exc:
        if exc.param == "payment_method":  # the token was sent as ``param`` here
            exc.param = param
        raise
    if known is not None and pm.id == known.id:
        raise PaymuxError.of(
            "payment_method_unexpected_state",
            f"This token was already used to make payment method {known.id}: use that as "
            "payment_method.",
            param=param,
        )
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
    row.card_bin = details.bin or row.card_bin
    row.card_cvc_check = details.cvc_check or row.card_cvc_check
    row.card_address_line1_check = details.address_line1_check or row.card_address_line1_check
    row.card_address_zip_check = details.address_zip_check or row.card_address_zip_check


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
    # Stripe's contact fields; on an update "" removes one.
    phone: str | None = None
    address: dict[str, Any] | str | None = None
    shipping: dict[str, Any] | str | None = None
    # Create only: a payment method (or test token) attached to the new customer, as attach.
    payment_method: str | None = None

    def default_method(self) -> str | None:
        """The default payment method asked for: the top-level one, else invoice_settings'."""
        if self.default_payment_method is not None:
            return self.default_payment_method
        return (self.invoice_settings or {}).get("default_payment_method")


# Gateway answers to a detach meaning the card is not attached there: the detach's goal.
_ALREADY_DETACHED = frozenset({"payment_method_not_attached", "resource_missing"})


# Billing's parts of a customer (billing imports services: the composition root, paymux.root,
# hands them in): the check of the test clock a new customer is created on, and what a new
# default payment method sets off (the retry of the customer's failed invoices).
ClockCheck = Callable[[AsyncSession, str, str], Awaitable[object]]
DefaultChanged = Callable[[AsyncSession, str, str, int], Awaitable[None]]


class CustomersService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.check_test_clock: ClockCheck | None = None
        self.default_changed: DefaultChanged | None = None

    async def create(self, account_id: str, p: CustomerParams) -> dict[str, Any]:
        wanted = p.default_method()
        if wanted and wanted != p.payment_method:
            # A new customer has only the payment method it is created with (if any): attach
            # another (or save one with a SetupIntent), then make it the default with an update.
            raise PaymuxError.of(
                "payment_method_unexpected_state",
                "The default payment method must be attached to this customer.",
                param="invoice_settings[default_payment_method]",
            )
        if p.payment_method:
            return await self._create_with_payment_method(account_id, p, default=bool(wanted))
        return await self._insert(account_id, p)

    async def _default_connection(self, account_id: str) -> tuple[Routed | None, Exception | None]:
        """The account's default connection, for a reference that may be its gateway's token;
        else why there is none, raised only where the reference is not one of our ids (one
        named by its id never needs the default: a broken default surfaces nowhere then)."""
        try:
            return await self.ctx.named(account_id, None), None
        except Exception as exc:
            return None, exc

    async def _create_with_payment_method(
        self, account_id: str, p: CustomerParams, *, default: bool
    ) -> dict[str, Any]:
        """Stripe's ``payment_method`` on create: the customer, with it attached (and its
        default, with ``invoice_settings[default_payment_method]`` naming the same one).

        The payment method is found (or made, for a test token) before the customer is
        recorded, so an unknown one, another account's or another customer's is refused as
        attach refuses it, and no customer is left behind. The gateway's part of attaching
        runs after, with no transaction open; if the gateway refuses it (a card declined
        when saved), the new customer is deleted (``customer.deleted`` follows its
        ``customer.created``) and the error is answered."""
        ref = p.payment_method
        assert ref is not None
        # One look-up: one of ours by id (whatever its gateway), else the account's default
        # gateway's token (none for a shared test token: each use is a payment method of its
        # own). A payment method named by its id goes through its own connection; anything
        # else through the default one, which must then exist.
        fallback, unrouted = await self._default_connection(account_id)
        async with self.ctx.db.read() as s:
            known = await _find_ref(s, account_id, ref, None, fallback)
        if known is not None and known.id == ref:
            routed = Routed(await self.ctx.gateway_of(known), known.connection_id or "")
        elif fallback is not None:
            routed = fallback
        else:
            assert unrouted is not None
            raise unrouted
        pm = await resolve_payment_method(
            self.ctx,
            account_id,
            routed.gateway.name,
            ref,
            customer_id=None,
            known=known,
            looked_up=True,
            connection_id=routed.connection_id or None,
            gateway=routed.gateway,
        )
        view = await self._insert(account_id, p)
        try:
            await self.attach(account_id, pm.id, view["id"])
        except PaymuxError:
            await self.delete(account_id, view["id"])
            raise
        if default:
            return await self.update(
                account_id,
                view["id"],
                CustomerParams(invoice_settings={"default_payment_method": pm.id}),
            )
        return await self.retrieve(account_id, view["id"])

    async def _insert(self, account_id: str, p: CustomerParams) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            if p.test_clock is not None:
                if self.check_test_clock is None:  # a CustomersService built without billing
                    raise PaymuxError.of(
                        "parameter_invalid", "Test clocks are not available.", param="test_clock"
                    )
                await self.check_test_clock(s, account_id, p.test_clock)
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
                phone=p.phone or None,
                address=contact(p.address) if isinstance(p.address, dict) else None,
                shipping=contact(p.shipping) if isinstance(p.shipping, dict) else None,
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
            # Locked: the view (and the event's previous_attributes) is built from this read,
            # which must come after any concurrent change to the row, not before it.
            c = await get_owned(s, Customer, customer_id, account_id, lock=True)
            for name in ("email", "name", "description"):
                if getattr(p, name) is not None:
                    setattr(c, name, getattr(p, name))
            if p.metadata is not None:
                c.metadata_ = merge_metadata(c.metadata_, p.metadata)
            if p.phone is not None:
                c.phone = p.phone or None  # "" removes it
            if p.address is not None:
                c.address = contact(p.address) if isinstance(p.address, dict) else None
            if p.shipping is not None:
                c.shipping = contact(p.shipping) if isinstance(p.shipping, dict) else None
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
                if c.default_payment_method != pm.id and self.default_changed is not None:
                    await self.default_changed(s, account_id, c.id, now)
                c.default_payment_method = pm.id
            c.updated_us = now
            await emit(s, account_id, "customer.updated", customer_view(c), now)
            return customer_view(c)

    async def delete(self, account_id: str, customer_id: str) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            # Locked: the view (and the event's previous_attributes) is built from this read,
            # which must come after any concurrent change to the row, not before it.
            c = await get_owned(s, Customer, customer_id, account_id, lock=True)
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
    async def create_payment_method(
        self, account_id: str, data: TokenData, gateway_name: str | None = None
    ) -> dict[str, Any]:
        """``POST /v1/payment_methods``: a detached payment method from a gateway token,
        through the account's connection for ``gateway_name`` (its default one if None)."""
        routed = await self.ctx.named(account_id, gateway_name)
        pm = await payment_method_from_token(
            self.ctx,
            account_id,
            routed.gateway.name,
            data,
            connection_id=routed.connection_id or None,
            param="card[token]",
            made_as=payment_method_id_of_request("payment_methods.create"),
        )
        return payment_method_view(pm)

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
        self,
        account_id: str,
        ref: str,
        customer_id: str,
        gateway_name: str | None = None,
        *,
        held: bool = False,
    ) -> dict[str, Any]:
        """Attach a payment method to a customer: at the gateway first (outside any
        transaction, key ``<pm>:attach:<customer>``), then in paymux.

        A payment method the customer already held when this began (the job that saves a
        card a payment was made with: job ``attach_payment_method``) and that was detached
        while the gateway call was in flight stays detached: the detach wins. Checked under
        the row's lock after the call; the gateway's attach is then undone (key
        ``<pm>:attach:<customer>:undo``), and nothing is attached in paymux again. ``held``:
        the caller saw the customer hold it (the job's own check, which a detach may follow
        before this reads it again)."""
        # One look-up (as the create's): one of ours by id, else the named gateway's token or,
        # none named, the default connection's.
        fallback, unrouted = (
            (None, None) if gateway_name else await self._default_connection(account_id)
        )
        async with self.ctx.db.read() as s:
            customer = await get_owned(s, Customer, customer_id, account_id, param="customer")
            known = await _find_ref(s, account_id, ref, gateway_name, fallback)
        # Found by our id (or as the named gateway's token): a saved card stays with the
        # connection that saved it. The default gateway's token goes through the default
        # connection, as it did when it was looked up there second.
        own = known if known is not None and (known.id == ref or gateway_name) else None
        held = held or (own is not None and own.customer_id == customer_id)
        if own is not None:
            routed = Routed(await self.ctx.gateway_of(own), own.connection_id or "")
        elif fallback is not None:
            routed = fallback
        elif unrouted is not None:
            raise unrouted
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
            looked_up=True,
            connection_id=routed.connection_id or None,
            gateway=gateway,
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
            row = await get_owned(s, PaymentMethod, pm.id, account_id, lock=True)
            moved = held and row.customer_id != customer_id
            if not moved:
                return await self._attached(s, row, outcome, account_id, customer_id, now)
            view, owner_now = payment_method_view(row), row.customer_id
        # A detach landed while our attach was in flight: it wins. Undone at the gateway only
        # while the card belongs to nobody: if it went on to another customer, that attach
        # is theirs, and a detach (which names no customer) would take it from them.
        if owner_now is None:
            await self._undo_attach(gateway, outcome.token, pm.id, customer_id)
        return view

    async def _attached(
        self,
        s: AsyncSession,
        row: PaymentMethod,
        outcome: CardDetails,
        account_id: str,
        customer_id: str,
        now: int,
    ) -> dict[str, Any]:
        """Record in ``s`` the gateway's attach of ``row`` to the customer."""
        if outcome.token != row.token:
            # The gateway saved the card under a new token (Square: a card on file
            # replaces the single-use browser token): charge that one from now on.
            # The new token is the account's, as the first was; another account's is a 400
            # that rolls this back (the row keeps its token and customer) and names only ours.
            await claim_token_or_refuse(
                s,
                gateway=row.gateway,
                token=outcome.token,
                account_id=account_id,
                now=now,
                named=row.id,
            )
            take_card_details(row, outcome)
        if row.customer_id != customer_id:
            row.customer_id = customer_id
            await emit(s, account_id, "payment_method.attached", payment_method_view(row), now)
        return payment_method_view(row)

    async def _undo_attach(
        self, gateway: Gateway, token: str, pm_id: str, customer_id: str
    ) -> None:
        """Detach at the gateway a card our attach put back after the customer detached it
        (``attach``). Already detached there (the detach's own call came after ours) is
        the goal, not an error."""
        log.warning(
            "%s was detached from %s while the gateway attached it: detaching it there again",
            pm_id,
            customer_id,
        )
        try:
            await call_with_retries(
                self.ctx.settings,
                lambda: gateway.detach_payment_method(
                    token, idempotency_key=f"{pm_id}:attach:{customer_id}:undo"
                ),
            )
        except GatewayInvalidRequest as exc:
            log.info("%s is not attached at the gateway any more: %s", pm_id, exc.code)

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
        try:
            await call_with_retries(
                self.ctx.settings,
                lambda: gateway.detach_payment_method(
                    pm.token, idempotency_key=f"{pm.id}:detach:{customer_id}"
                ),
            )
        except GatewayInvalidRequest as exc:
            if exc.code not in _ALREADY_DETACHED:
                raise PaymuxError.of(
                    "payment_method_unexpected_state",
                    f"The {gateway.name} gateway refused to detach the payment method: {exc}",
                    param="payment_method",
                    gateway=gateway.name,
                    gateway_code=exc.code,
                ) from exc
            # Not attached (or gone) at the gateway: what a detach wants is already true
            # there, so our record follows.
            log.info("%s is not attached at the gateway: %s", pm_id, exc.code)
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            row = await get_owned(s, PaymentMethod, pm_id, account_id)
            row.customer_id = None
            customer = await s.get(Customer, customer_id)
            if customer is not None and customer.default_payment_method == pm_id:
                customer.default_payment_method = None
            await emit(s, account_id, "payment_method.detached", payment_method_view(row), now)
            return payment_method_view(row)
