"""Products and their prices (``/v1/products``, ``/v1/prices``).

A price's money terms (currency, amounts, tiers, interval) never change once made, as on
Stripe: a new price is made instead, and the old one archived (``active`` false), which keeps
the subscriptions already on it. A product with prices cannot be deleted (archive it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.catalog_checks import (
    currency_code,
    invalid,
    recurring_fields,
    tier_rows,
    whole_amount,
)
from paymux.billing.catalog_rows import price_row, product_row
from paymux.billing.catalog_views import price_view, product_view
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
from paymux.storage.models import Meter, Price, Product

__all__ = ["ProductsAndPrices"]


def _lookup_key_taken(key: str) -> PaymuxError:
    return PaymuxError.of(
        "resource_already_exists",
        f"A price already uses the lookup key '{key}': send transfer_lookup_key=true to move "
        "it to this price.",
        param="lookup_key",
    )


class ProductsAndPrices:
    ctx: Context

    # -- products ---------------------------------------------------------------------------
    async def create_product(self, account_id: str, p: Mapping[str, Any]) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            product = Product(
                id=new_id("prod", 14),
                account_id=account_id,
                livemode=request_livemode(),
                name=p["name"],
                description=p.get("description"),
                active=p.get("active", True),
                unit_label=p.get("unit_label"),
                metadata_=p.get("metadata") or {},
                deleted=False,
                created_us=now,
                updated_us=now,
            )
            s.add(product)
            data = p.get("default_price_data")
            if data is not None:
                await s.flush()  # the price refers to the product
                price = await self._new_price(
                    s, account_id, product, data, now, prefix="default_price_data", announce=False
                )
                product.default_price_id = price.id
            # The product's event first, then its price's (a consumer meets the product first).
            await emit(s, account_id, "product.created", product_view(product), now)
            if data is not None:
                await emit(s, account_id, "price.created", price_view(price), now)
            return product_view(product)

    async def retrieve_product(self, account_id: str, product_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return product_view(await product_row(s, account_id, product_id, param="id"))

    async def update_product(
        self, account_id: str, product_id: str, p: Mapping[str, Any]
    ) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            product = await product_row(s, account_id, product_id, param="id", lock=True)
            for name in ("name", "description", "active", "unit_label"):
                if name in p and p[name] is not None:
                    setattr(product, name, p[name] if p[name] != "" else None)
            if product.name is None:
                raise invalid("A product's name cannot be removed.", "name")
            if p.get("metadata") is not None:
                product.metadata_ = merge_metadata(product.metadata_, p["metadata"])
            if "default_price" in p and p["default_price"] is not None:
                product.default_price_id = await self._default_price(
                    s, account_id, product, p["default_price"]
                )
            product.updated_us = now
            await emit(s, account_id, "product.updated", product_view(product), now)
            return product_view(product)

    async def _default_price(
        self, s: AsyncSession, account_id: str, product: Product, price_id: str
    ) -> str | None:
        if price_id == "":
            return None
        price = await price_row(s, account_id, price_id, param="default_price")
        if price.product_id != product.id:
            raise invalid(
                f"Price '{price_id}' belongs to another product, not '{product.id}'.",
                "default_price",
            )
        if not price.active:
            raise invalid("The default price must be an active price.", "default_price")
        return price.id

    async def delete_product(self, account_id: str, product_id: str) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            product = await product_row(s, account_id, product_id, param="id", lock=True)
            has_price = (
                await s.execute(select(Price.id).where(Price.product_id == product.id).limit(1))
            ).first()
            if has_price is not None:
                raise PaymuxError.of(
                    "resource_in_use",
                    "This product cannot be deleted because it has one or more prices: "
                    "archive it instead (active=false).",
                    param="id",
                )
            product.deleted = True
            product.updated_us = now
            await emit(s, account_id, "product.deleted", product_view(product), now)
            return product_view(product)

    async def list_products(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        active: bool | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            Product,
            account_id,
            product_view,
            Product.deleted.is_(False),
            None if active is None else Product.active.is_(active),
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    # -- prices -----------------------------------------------------------------------------
    async def create_price(self, account_id: str, p: Mapping[str, Any]) -> dict[str, Any]:
        now = self.ctx.now_us()
        if p.get("product") and p.get("product_data"):
            raise PaymuxError.of(
                "parameters_exclusive", "Use product or product_data, not both.", param="product"
            )
        if not p.get("product") and not p.get("product_data"):
            raise PaymuxError.of(
                "parameter_missing", "Missing required param: product.", param="product"
            )
        try:
            async with self.ctx.db.write() as s:
                if p.get("product"):
                    product = await product_row(s, account_id, p["product"])
                else:
                    product = await self._product_from_data(s, account_id, p["product_data"], now)
                price = await self._new_price(s, account_id, product, p, now)
                return price_view(price)
        except IntegrityError:  # a concurrent price took the lookup key first
            if not p.get("lookup_key"):
                raise
            raise _lookup_key_taken(str(p.get("lookup_key"))) from None

    async def _product_from_data(
        self, s: AsyncSession, account_id: str, data: Mapping[str, Any], now: int
    ) -> Product:
        product = Product(
            id=new_id("prod", 14),
            account_id=account_id,
            livemode=request_livemode(),
            name=data["name"],
            active=data.get("active", True),
            unit_label=data.get("unit_label"),
            metadata_=data.get("metadata") or {},
            deleted=False,
            created_us=now,
            updated_us=now,
        )
        s.add(product)
        await s.flush()
        await emit(s, account_id, "product.created", product_view(product), now)
        return product

    async def _new_price(
        self,
        s: AsyncSession,
        account_id: str,
        product: Product,
        p: Mapping[str, Any],
        now: int,
        *,
        prefix: str = "",
        announce: bool = True,
    ) -> Price:
        """A new price of ``product`` from Stripe's price parameters (``prefix``: where they
        sit in the request, ``default_price_data``), with its event (``announce``; else the
        caller emits it)."""

        def name(field: str) -> str:
            return f"{prefix}[{field}]" if prefix else field

        def nested(field: str) -> str:  # "unit_amount" -> default_price_data[unit_amount]
            head, _, rest = field.partition("[")
            return f"{prefix}[{head}]" + (f"[{rest}" if rest else "") if prefix else field

        scheme = p.get("billing_scheme") or "per_unit"
        unit_amount = whole_amount(
            p.get("unit_amount"), p.get("unit_amount_decimal"), name("unit_amount")
        )
        tiers = None
        if scheme == "tiered":
            if unit_amount is not None:
                raise invalid("A tiered price takes tiers, not unit_amount.", name("unit_amount"))
            if not p.get("tiers_mode"):
                raise PaymuxError.of(
                    "parameter_missing",
                    "A tiered price needs tiers_mode (graduated or volume).",
                    param=name("tiers_mode"),
                )
            tiers = tier_rows(p.get("tiers") or [])
        else:
            if p.get("tiers") or p.get("tiers_mode"):
                raise invalid(
                    "tiers and tiers_mode go with billing_scheme=tiered only.",
                    name("tiers" if p.get("tiers") else "tiers_mode"),
                )
            if unit_amount is None:
                raise PaymuxError.of(
                    "parameter_missing",
                    "Missing required param: unit_amount.",
                    param=name("unit_amount"),
                )
        recurring: dict[str, Any] = {}
        if p.get("recurring") is not None:
            recurring = recurring_fields(p["recurring"], nested("recurring"))
            meter = recurring["recurring_meter_id"]
            if meter:
                await get_owned(s, Meter, meter, account_id, param=nested("recurring[meter]"))
        lookup_key = p.get("lookup_key")
        if lookup_key:
            await self._claim_lookup_key(
                s, account_id, lookup_key, bool(p.get("transfer_lookup_key")), now
            )
        price = Price(
            id=new_id("price"),
            account_id=account_id,
            livemode=request_livemode(),
            product_id=product.id,
            active=p.get("active", True),
            currency=currency_code(p["currency"], name("currency")),
            type="recurring" if recurring else "one_time",
            billing_scheme=scheme,
            unit_amount=unit_amount,
            tiers_mode=p.get("tiers_mode") if scheme == "tiered" else None,
            tiers=tiers,
            lookup_key=lookup_key or None,
            nickname=p.get("nickname"),
            tax_behavior=p.get("tax_behavior") or "unspecified",
            metadata_=p.get("metadata") or {},
            created_us=now,
            updated_us=now,
            **recurring,
        )
        s.add(price)
        await s.flush()
        if announce:
            await emit(s, account_id, "price.created", price_view(price), now)
        return price

    async def _claim_lookup_key(
        self, s: AsyncSession, account_id: str, key: str, transfer: bool, now: int
    ) -> None:
        """Free ``key`` for a price of ours: taken from its current price when ``transfer``,
        else refused while another price has it."""
        holder = (
            (await s.execute(scoped(Price, account_id).where(Price.lookup_key == key)))
            .scalars()
            .first()
        )
        if holder is None:
            return
        if not transfer:
            raise _lookup_key_taken(key)
        holder.lookup_key = None
        holder.updated_us = now
        await s.flush()  # the unique (account, lookup_key) is free before the new row is
        await emit(s, account_id, "price.updated", price_view(holder), now)

    async def retrieve_price(self, account_id: str, price_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return price_view(await price_row(s, account_id, price_id, param="id"))

    async def update_price(
        self, account_id: str, price_id: str, p: Mapping[str, Any]
    ) -> dict[str, Any]:
        """What a price lets change: active, nickname, lookup_key, metadata, and its
        tax_behavior while unspecified. Its money terms are immutable."""
        now = self.ctx.now_us()
        try:
            async with self.ctx.db.write() as s:
                price = await price_row(s, account_id, price_id, param="id", lock=True)
                if p.get("active") is not None:
                    price.active = p["active"]
                if p.get("nickname") is not None:
                    price.nickname = p["nickname"] or None
                if p.get("metadata") is not None:
                    price.metadata_ = merge_metadata(price.metadata_, p["metadata"])
                behavior = p.get("tax_behavior")
                if behavior is not None and behavior != price.tax_behavior:
                    if price.tax_behavior != "unspecified":
                        raise invalid(
                            "A price's tax_behavior cannot change once it is inclusive or "
                            "exclusive.",
                            "tax_behavior",
                        )
                    price.tax_behavior = behavior
                key = p.get("lookup_key")
                if key is not None and key != price.lookup_key:
                    if key:
                        await self._claim_lookup_key(
                            s, account_id, key, bool(p.get("transfer_lookup_key")), now
                        )
                    price.lookup_key = key or None
                price.updated_us = now
                await emit(s, account_id, "price.updated", price_view(price), now)
                return price_view(price)
        except IntegrityError:
            if not p.get("lookup_key"):
                raise
            raise _lookup_key_taken(str(p.get("lookup_key"))) from None

    async def list_prices(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        active: bool | None = None,
        currency: str | None = None,
        product: str | None = None,
        type: str | None = None,
        lookup_keys: list[str] | None = None,
        interval: str | None = None,
        usage_type: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            Price,
            account_id,
            price_view,
            None if active is None else Price.active.is_(active),
            None if currency is None else Price.currency == currency.lower(),
            None if product is None else Price.product_id == product,
            None if type is None else Price.type == type,
            None if not lookup_keys else Price.lookup_key.in_(lookup_keys),
            None if interval is None else Price.recurring_interval == interval,
            None if usage_type is None else Price.recurring_usage_type == usage_type,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )
