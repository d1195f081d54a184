"""The catalog's rows as other billing services use them, inside their own transactions:
lookups scoped to an account (a 404 ``resource_missing`` naming the caller's parameter, never
a leak of another account's object), the conversion of rows into the pure rules' terms, and a
coupon redemption that cannot exceed ``max_redemptions`` under concurrency."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy import func, or_, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.rules.pricing import PriceTerms, Tier
from paymux.billing.rules.totals import CouponTerms, TaxTerms
from paymux.domain.errors import PaymuxError
from paymux.services.context import current_livemode, get_owned, scoped
from paymux.storage.models import Coupon, Price, Product, PromotionCode, TaxRate

__all__ = [
    "coupon_row",
    "coupon_terms",
    "price_row",
    "price_terms",
    "product_row",
    "promotion_code_row",
    "redeem_coupon",
    "tax_rate_row",
    "tax_terms",
]


def _missing(kind: str, object_id: str, param: str) -> PaymuxError:
    return PaymuxError.of("resource_missing", f"No such {kind}: '{object_id}'", param=param)


async def product_row(
    s: AsyncSession, account_id: str, product_id: str, *, param: str = "product", lock: bool = False
) -> Product:
    """The account's product (not deleted)."""
    try:
        return await get_owned(s, Product, product_id, account_id, param=param, lock=lock)
    except PaymuxError:
        raise _missing("product", product_id, param) from None


async def price_row(
    s: AsyncSession, account_id: str, price_id: str, *, param: str = "price", lock: bool = False
) -> Price:
    """The account's price, archived (active false) or not: an archived price stays usable
    by what already uses it; refusing it for new uses is the caller's rule."""
    try:
        return await get_owned(s, Price, price_id, account_id, param=param, lock=lock)
    except PaymuxError:
        raise _missing("price", price_id, param) from None


async def coupon_row(
    s: AsyncSession,
    account_id: str,
    coupon_id: str,
    *,
    param: str = "coupon",
    lock: bool = False,
    include_deleted: bool = False,
) -> Coupon:
    """The account's coupon by its id (unique per account: the key is (account, id))."""
    row = await s.get(
        Coupon, {"account_id": account_id, "id": coupon_id}, with_for_update=lock or None
    )
    mode = current_livemode.get()
    if (
        row is None
        or (mode is not None and bool(row.livemode) != mode)
        or (row.deleted and not include_deleted)
    ):
        raise _missing("coupon", coupon_id, param)
    return row


async def promotion_code_row(
    s: AsyncSession, account_id: str, promo_id_or_code: str, *, param: str = "promotion_code"
) -> PromotionCode:
    """The account's promotion code by id (``promo_...``) or by its code, case-insensitive
    (an active code first: a code is unique among active codes only)."""
    row = await s.get(PromotionCode, promo_id_or_code)
    mode = current_livemode.get()
    if (
        row is not None
        and row.account_id == account_id
        and (mode is None or bool(row.livemode) == mode)
    ):
        return row
    found: PromotionCode | None = (
        (
            await s.execute(
                scoped(PromotionCode, account_id)
                .where(func.lower(PromotionCode.code) == promo_id_or_code.lower())
                .order_by(PromotionCode.active.desc(), PromotionCode.created_us.desc())
                .limit(1)
            )
        )
        .scalars()
        .first()
    )
    if found is None:
        raise _missing("promotion_code", promo_id_or_code, param)
    return found


async def tax_rate_row(
    s: AsyncSession, account_id: str, tax_rate_id: str, *, param: str = "tax_rate"
) -> TaxRate:
    try:
        return await get_owned(s, TaxRate, tax_rate_id, account_id, param=param)
    except PaymuxError:
        raise _missing("tax_rate", tax_rate_id, param) from None


def coupon_terms(c: Coupon) -> CouponTerms:
    """A coupon as the invoice totals rule takes it."""
    return CouponTerms(
        id=c.id,
        percent_off=None if c.percent_off is None else Decimal(c.percent_off),
        amount_off=c.amount_off,
    )


def tax_terms(t: TaxRate) -> TaxTerms:
    return TaxTerms(id=t.id, percentage=Decimal(t.percentage), inclusive=bool(t.inclusive))


def price_terms(p: Price) -> PriceTerms:
    """A price as the pricing rule takes it (``amount_for(terms, quantity)``)."""
    tiers = tuple(
        Tier(
            up_to=t.get("up_to"),
            unit_amount=t.get("unit_amount"),
            flat_amount=t.get("flat_amount"),
        )
        for t in (p.tiers or [])
    )
    scheme = cast(Literal["per_unit", "tiered"], p.billing_scheme)
    mode = cast(Literal["graduated", "volume"] | None, p.tiers_mode)
    return PriceTerms(
        billing_scheme=scheme, unit_amount=p.unit_amount, tiers_mode=mode, tiers=tiers
    )


async def _conditional_increment(s: AsyncSession, statement: Any) -> bool:
    """Run an ``UPDATE ... SET times_redeemed = times_redeemed + 1 WHERE <still redeemable>``:
    True if it matched. On PostgreSQL a concurrent redemption holds the row until it commits,
    and the WHERE is re-checked against the committed count, so N concurrent redemptions of a
    coupon with max_redemptions 3 leave exactly 3 winners; SQLite has one writer at a time."""
    result = cast(
        CursorResult[Any], await s.execute(statement.execution_options(synchronize_session=False))
    )
    return bool(result.rowcount == 1)


async def redeem_coupon(
    s: AsyncSession,
    account_id: str,
    coupon_id: str,
    promotion_code_id: str | None,
    now_us: int,
    *,
    customer_id: str | None = None,
) -> None:
    """Count one redemption of the coupon (and of the promotion code it came through), in the
    caller's transaction, or raise: ``coupon_expired`` (deleted, past ``redeem_by``, or at its
    ``max_redemptions``; param ``coupon``) or ``promotion_code_invalid`` (inactive, expired,
    used up, another customer's, or not this coupon's; param ``promotion_code``).

    The counts only ever go up by a conditional UPDATE, so concurrent redemptions cannot
    exceed the limits. The caller's transaction rolling back undoes the count too."""
    coupon = await coupon_row(s, account_id, coupon_id)
    stale: list[Any] = [coupon]
    if promotion_code_id is not None:
        promo = await promotion_code_row(s, account_id, promotion_code_id)
        stale.append(promo)
        if promo.coupon_id != coupon.id:
            raise PaymuxError.of(
                "promotion_code_invalid",
                f"Promotion code '{promo.code}' is for coupon '{promo.coupon_id}', not "
                f"'{coupon.id}'.",
                param="promotion_code",
            )
        if promo.customer_id is not None and promo.customer_id != customer_id:
            raise PaymuxError.of(
                "promotion_code_invalid",
                f"Promotion code '{promo.code}' is restricted to another customer.",
                param="promotion_code",
            )
        redeemed = await _conditional_increment(
            s,
            update(PromotionCode)
            .where(
                PromotionCode.id == promo.id,
                PromotionCode.active.is_(True),
                or_(PromotionCode.expires_at_us.is_(None), PromotionCode.expires_at_us > now_us),
                or_(
                    PromotionCode.max_redemptions.is_(None),
                    PromotionCode.times_redeemed < PromotionCode.max_redemptions,
                ),
            )
            .values(times_redeemed=PromotionCode.times_redeemed + 1),
        )
        if not redeemed:
            raise PaymuxError.of(
                "promotion_code_invalid",
                f"Promotion code '{promo.code}' is inactive, expired or used up.",
                param="promotion_code",
            )
    redeemed = await _conditional_increment(
        s,
        update(Coupon)
        .where(
            Coupon.account_id == account_id,
            Coupon.id == coupon.id,
            Coupon.deleted.is_(False),
            or_(Coupon.redeem_by_us.is_(None), Coupon.redeem_by_us > now_us),
            or_(Coupon.max_redemptions.is_(None), Coupon.times_redeemed < Coupon.max_redemptions),
        )
        .values(times_redeemed=Coupon.times_redeemed + 1),
    )
    if not redeemed:
        raise PaymuxError.of(
            "coupon_expired",
            f"Coupon '{coupon.id}' can no longer be redeemed (past its redeem_by, or at its "
            "max_redemptions).",
            param="coupon",
        )
    # The rows loaded above are stale now (the UPDATEs bypassed the session): reloaded here,
    # not expired (an expired row would load lazily on its next read, which async can't).
    for row in stale:
        await s.refresh(row)
