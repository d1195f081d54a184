"""Coupons and promotion codes (``/v1/coupons``, ``/v1/promotion_codes``).

A coupon's id may be the merchant's own (``SUMMER25``): unique per account, so a second
coupon with the same id is a 400 ``resource_already_exists``. Its discount (``percent_off``
as exact decimal text, or ``amount_off`` with its currency) and duration never change once
made; only its name and metadata do. A promotion code is a customer-facing code for a coupon,
unique among the account's active codes regardless of case. Redemptions are counted by
``catalog_rows.redeem_coupon``, never here."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.catalog_checks import currency_code, decimal_rate, future_seconds, invalid
from paymux.billing.catalog_rows import coupon_row, product_row
from paymux.billing.catalog_views import coupon_view, promotion_code_view
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.services.context import (
    Context,
    CreatedRange,
    emit,
    get_owned,
    merge_metadata,
    page_of,
    request_livemode,
    scoped,
)
from paymux.storage.models import Account, Coupon, Customer, PromotionCode

__all__ = ["Discounts"]

_CODE_ALPHABET = string.ascii_uppercase + string.digits


def _random_code(length: int = 8) -> str:
    """A generated coupon id or promotion code (Stripe's look: ``Z4OV52SU``)."""
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(length))


class Discounts:
    ctx: Context

    # -- coupons ----------------------------------------------------------------------------
    async def create_coupon(self, account_id: str, p: Mapping[str, Any]) -> dict[str, Any]:
        now = self.ctx.now_us()
        percent, amount = p.get("percent_off"), p.get("amount_off")
        if percent is not None and amount is not None:
            raise PaymuxError.of(
                "parameters_exclusive",
                "A coupon has percent_off or amount_off, not both.",
                param="amount_off",
            )
        if percent is None and amount is None:
            raise PaymuxError.of(
                "parameter_missing",
                "A coupon needs percent_off, or amount_off with currency.",
                param="percent_off",
            )
        percent_text = None
        currency = None
        if percent is not None:
            percent_text = decimal_rate(
                Decimal(percent),
                "percent_off",
                places=2,
                low=Decimal(0),
                high=Decimal(100),
                low_open=True,
            )
            if p.get("currency") is not None:
                currency = currency_code(p["currency"])
        else:
            assert amount is not None
            if amount <= 0:
                raise PaymuxError.of(
                    "amount_invalid", "amount_off must be a positive integer.", param="amount_off"
                )
            if not p.get("currency"):
                raise PaymuxError.of(
                    "parameter_missing",
                    "amount_off needs currency: the currency of the amount.",
                    param="currency",
                )
            currency = currency_code(p["currency"])
        duration = p.get("duration") or "once"
        months = p.get("duration_in_months")
        if duration == "repeating" and months is None:
            raise PaymuxError.of(
                "parameter_missing",
                "A repeating coupon needs duration_in_months.",
                param="duration_in_months",
            )
        if duration != "repeating" and months is not None:
            raise invalid(
                "duration_in_months goes with duration=repeating only.", "duration_in_months"
            )
        redeem_by = p.get("redeem_by")
        redeem_by_us = None if redeem_by is None else future_seconds(redeem_by, now, "redeem_by")
        products = (p.get("applies_to") or {}).get("products")
        async with self.ctx.db.write() as s:
            for i, product_id in enumerate(products or []):
                await product_row(s, account_id, product_id, param=f"applies_to[products][{i}]")
            coupon_id = p.get("id") or await self._free_coupon_id(s, account_id)
            taken = await s.get(Coupon, {"account_id": account_id, "id": coupon_id})
            if taken is not None:
                raise PaymuxError.of(
                    "resource_already_exists",
                    f"Coupon already exists: '{coupon_id}'.",
                    param="id",
                )
            coupon = Coupon(
                account_id=account_id,
                id=coupon_id,
                livemode=request_livemode(),
                name=p.get("name"),
                percent_off=percent_text,
                amount_off=amount,
                currency=currency,
                duration=duration,
                duration_in_months=months,
                max_redemptions=p.get("max_redemptions"),
                times_redeemed=0,
                redeem_by_us=redeem_by_us,
                applies_to_products=None if products is None else list(products),
                metadata_=p.get("metadata") or {},
                deleted=False,
                created_us=now,
            )
            s.add(coupon)
            await s.flush()  # a concurrent create of the same id fails here (the key)
            await emit(s, account_id, "coupon.created", coupon_view(coupon, now), now)
            return coupon_view(coupon, now)

    async def _free_coupon_id(self, s: AsyncSession, account_id: str) -> str:
        while True:
            candidate = _random_code()
            if await s.get(Coupon, {"account_id": account_id, "id": candidate}) is None:
                return candidate

    async def retrieve_coupon(self, account_id: str, coupon_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            coupon = await coupon_row(s, account_id, coupon_id, param="id")
            return coupon_view(coupon, self.ctx.now_us())

    async def update_coupon(
        self, account_id: str, coupon_id: str, p: Mapping[str, Any]
    ) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            coupon = await coupon_row(s, account_id, coupon_id, param="id", lock=True)
            if p.get("name") is not None:
                coupon.name = p["name"] or None
            if p.get("metadata") is not None:
                coupon.metadata_ = merge_metadata(coupon.metadata_, p["metadata"])
            await emit(s, account_id, "coupon.updated", coupon_view(coupon, now), now)
            return coupon_view(coupon, now)

    async def delete_coupon(self, account_id: str, coupon_id: str) -> dict[str, Any]:
        """Deleted: no new redemption; what already has it keeps its discount (Stripe's)."""
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            coupon = await coupon_row(s, account_id, coupon_id, param="id", lock=True)
            coupon.deleted = True
            await emit(s, account_id, "coupon.deleted", coupon_view(coupon, now), now)
            return coupon_view(coupon, now)

    async def list_coupons(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first by (created, id), as every list; the cursors are coupon ids (the
        shared ``paginate`` looks cursors up by a one-column key, a coupon's has two)."""
        now = self.ctx.now_us()
        query = scoped(Coupon, account_id).where(Coupon.deleted.is_(False))
        if created is not None:
            query = query.where(*created.clauses(Coupon.created_us))
        key = tuple_(Coupon.created_us, Coupon.id)
        async with self.ctx.db.read() as s:
            if ending_before:
                cursor = await coupon_row(s, account_id, ending_before, param="ending_before")
                query = query.where(key > tuple_(cursor.created_us, cursor.id))
                order = (Coupon.created_us.asc(), Coupon.id.asc())
            else:
                if starting_after:
                    cursor = await coupon_row(s, account_id, starting_after, param="starting_after")
                    query = query.where(key < tuple_(cursor.created_us, cursor.id))
                order = (Coupon.created_us.desc(), Coupon.id.desc())
            rows = list((await s.execute(query.order_by(*order).limit(limit + 1))).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        if ending_before:
            rows.reverse()
        return [coupon_view(c, now) for c in rows], more

    # -- promotion codes --------------------------------------------------------------------
    async def create_promotion_code(self, account_id: str, p: Mapping[str, Any]) -> dict[str, Any]:
        now = self.ctx.now_us()
        promotion = p.get("promotion") or {}
        coupon_id, param = p.get("coupon"), "coupon"
        if promotion.get("coupon"):
            if coupon_id and coupon_id != promotion["coupon"]:
                raise PaymuxError.of(
                    "parameters_exclusive",
                    "Use promotion[coupon] or coupon, not both.",
                    param="promotion[coupon]",
                )
            coupon_id, param = promotion["coupon"], "promotion[coupon]"
        if not coupon_id:
            raise PaymuxError.of(
                "parameter_missing",
                "Missing required param: promotion[coupon] (or coupon).",
                param="promotion[coupon]" if promotion else "coupon",
            )
        expires_at = p.get("expires_at")
        expires_us = None if expires_at is None else future_seconds(expires_at, now, "expires_at")
        restrictions = _restrictions(p.get("restrictions") or {})
        async with self.ctx.db.write() as s:
            coupon = await coupon_row(s, account_id, coupon_id, param=param)
            if coupon.redeem_by_us is not None and expires_us is not None:
                if expires_us > coupon.redeem_by_us:
                    raise invalid(
                        "expires_at cannot be after the coupon's redeem_by.", "expires_at"
                    )
            if coupon.max_redemptions is not None and p.get("max_redemptions") is not None:
                if p["max_redemptions"] > coupon.max_redemptions:
                    raise invalid(
                        "max_redemptions cannot be more than the coupon's.", "max_redemptions"
                    )
            if p.get("customer"):
                await get_owned(s, Customer, p["customer"], account_id, param="customer")
            active = p.get("active", True)
            code = p.get("code") or _random_code()
            if active:
                await self._check_code_free(s, account_id, code)
            promo = PromotionCode(
                id=new_id("promo"),
                account_id=account_id,
                livemode=request_livemode(),
                coupon_id=coupon.id,
                code=code,
                active=active,
                customer_id=p.get("customer"),
                max_redemptions=p.get("max_redemptions"),
                times_redeemed=0,
                expires_at_us=expires_us,
                restrictions=restrictions,
                metadata_=p.get("metadata") or {},
                created_us=now,
            )
            s.add(promo)
            await s.flush()
            view = promotion_code_view(promo, coupon, now)
            await emit(s, account_id, "promotion_code.created", view, now)
            return view

    async def _check_code_free(
        self, s: AsyncSession, account_id: str, code: str, *, other_than: str | None = None
    ) -> None:
        """Refuse a code an active code of the account already has, whatever its case. The
        account row is locked first (PostgreSQL), so two concurrent requests for one code
        cannot both pass (SQLite has one writer at a time anyway)."""
        await s.execute(select(Account.id).where(Account.id == account_id).with_for_update())
        query = scoped(PromotionCode, account_id).where(
            func.lower(PromotionCode.code) == code.lower(), PromotionCode.active.is_(True)
        )
        if other_than is not None:
            query = query.where(PromotionCode.id != other_than)
        if (await s.execute(query.limit(1))).scalars().first() is not None:
            raise PaymuxError.of(
                "resource_already_exists",
                f"An active promotion code '{code}' already exists.",
                param="code",
            )

    async def retrieve_promotion_code(self, account_id: str, promo_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            promo = await get_owned(s, PromotionCode, promo_id, account_id)
            coupon = await coupon_row(s, account_id, promo.coupon_id, include_deleted=True)
            return promotion_code_view(promo, coupon, self.ctx.now_us())

    async def update_promotion_code(
        self, account_id: str, promo_id: str, p: Mapping[str, Any]
    ) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            promo = await get_owned(s, PromotionCode, promo_id, account_id, lock=True)
            if p.get("active") is not None and p["active"] != promo.active:
                if p["active"]:
                    await self._check_code_free(s, account_id, promo.code, other_than=promo.id)
                promo.active = p["active"]
            if p.get("metadata") is not None:
                promo.metadata_ = merge_metadata(promo.metadata_, p["metadata"])
            if p.get("restrictions") is not None:
                merged = {**(promo.restrictions or {}), **p["restrictions"]}
                promo.restrictions = _restrictions(merged)
            coupon = await coupon_row(s, account_id, promo.coupon_id, include_deleted=True)
            view = promotion_code_view(promo, coupon, now)
            await emit(s, account_id, "promotion_code.updated", view, now)
            return view

    async def list_promotion_codes(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        code: str | None = None,
        coupon: str | None = None,
        active: bool | None = None,
        customer: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        now = self.ctx.now_us()
        found: dict[str, Coupon] = {}  # each listed code's coupon, loaded in one query

        def view(promo: PromotionCode) -> dict[str, Any]:
            return promotion_code_view(promo, found[promo.coupon_id], now)

        rows, more = await page_of(
            self.ctx,
            PromotionCode,
            account_id,
            lambda promo: {"promo": promo},
            None if code is None else func.lower(PromotionCode.code) == code.lower(),
            None if coupon is None else PromotionCode.coupon_id == coupon,
            None if active is None else PromotionCode.active.is_(active),
            None if customer is None else PromotionCode.customer_id == customer,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )
        promos: list[PromotionCode] = [row["promo"] for row in rows]
        wanted = {promo.coupon_id for promo in promos}
        if wanted:
            async with self.ctx.db.read() as s:
                query = select(Coupon).where(Coupon.account_id == account_id, Coupon.id.in_(wanted))
                found.update({c.id: c for c in (await s.execute(query)).scalars()})
        return [view(promo) for promo in promos], more


def _restrictions(r: Mapping[str, Any]) -> dict[str, Any]:
    """A promotion code's restrictions: a minimum amount goes with its currency."""
    minimum, currency = r.get("minimum_amount"), r.get("minimum_amount_currency")
    if minimum is not None and minimum < 0:
        raise PaymuxError.of(
            "amount_invalid",
            "restrictions[minimum_amount] must not be negative.",
            param="restrictions[minimum_amount]",
        )
    if (minimum is None) != (currency is None):
        missing = "minimum_amount_currency" if currency is None else "minimum_amount"
        raise PaymuxError.of(
            "parameter_missing",
            "restrictions[minimum_amount] and restrictions[minimum_amount_currency] go together.",
            param=f"restrictions[{missing}]",
        )
    return {
        "first_time_transaction": bool(r.get("first_time_transaction", False)),
        "minimum_amount": minimum,
        "minimum_amount_currency": (
            None
            if currency is None
            else currency_code(currency, "restrictions[minimum_amount_currency]")
        ),
    }
