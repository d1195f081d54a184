"""The billing catalog: products, prices, coupons, promotion codes and tax rates.

``CatalogService`` is ``Paymux.catalog``. It serves the catalog's API (the ``*_product``,
``*_price``, ``*_coupon``, ``*_promotion_code`` and ``*_tax_rate`` methods, one module per
resource family: catalog_products, catalog_discounts, catalog_tax_rates) and gives the other
billing services what they need of the catalog inside their own transactions:

- ``price_row``, ``coupon_row``, ``promotion_code_row``, ``tax_rate_row``: the account's
  row, or a 404 ``resource_missing`` naming the caller's parameter;
- ``price_terms``, ``coupon_terms``, ``tax_terms``: rows as the pure rules' terms
  (billing/rules/pricing.py and totals.py);
- ``redeem_coupon``: one redemption counted, never beyond ``max_redemptions``.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing import catalog_rows
from paymux.billing.catalog_discounts import Discounts
from paymux.billing.catalog_products import ProductsAndPrices
from paymux.billing.catalog_rows import coupon_terms, price_terms, tax_terms
from paymux.billing.catalog_tax_rates import TaxRates
from paymux.services.context import Context
from paymux.storage.models import Coupon, Price, Product, PromotionCode, TaxRate

__all__ = ["CatalogService", "coupon_terms", "price_terms", "tax_terms"]


class CatalogService(ProductsAndPrices, Discounts, TaxRates):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # The rules' terms of a row (pure conversions; also importable from this module).
    coupon_terms = staticmethod(coupon_terms)
    price_terms = staticmethod(price_terms)
    tax_terms = staticmethod(tax_terms)

    async def product_row(
        self, s: AsyncSession, account_id: str, product_id: str, *, param: str = "product"
    ) -> Product:
        return await catalog_rows.product_row(s, account_id, product_id, param=param)

    async def price_row(
        self, s: AsyncSession, account_id: str, price_id: str, *, param: str = "price"
    ) -> Price:
        """The account's price, archived or not (refusing an archived price for a new
        subscription is the subscriptions service's rule: ``price.active``)."""
        return await catalog_rows.price_row(s, account_id, price_id, param=param)

    async def coupon_row(
        self, s: AsyncSession, account_id: str, coupon_id: str, *, param: str = "coupon"
    ) -> Coupon:
        return await catalog_rows.coupon_row(s, account_id, coupon_id, param=param)

    async def promotion_code_row(
        self,
        s: AsyncSession,
        account_id: str,
        promo_id_or_code: str,
        *,
        param: str = "promotion_code",
    ) -> PromotionCode:
        """By id (``promo_...``) or by the customer-facing code, case-insensitive."""
        return await catalog_rows.promotion_code_row(s, account_id, promo_id_or_code, param=param)

    async def tax_rate_row(
        self, s: AsyncSession, account_id: str, tax_rate_id: str, *, param: str = "tax_rate"
    ) -> TaxRate:
        return await catalog_rows.tax_rate_row(s, account_id, tax_rate_id, param=param)

    async def redeem_coupon(
        self,
        s: AsyncSession,
        account_id: str,
        coupon_id: str,
        promotion_code_id: str | None,
        now_us: int,
        *,
        customer_id: str | None = None,
    ) -> None:
        """Count one redemption in the caller's transaction (see
        ``catalog_rows.redeem_coupon``): ``coupon_expired`` / ``promotion_code_invalid``
        when it can't be redeemed."""
        await catalog_rows.redeem_coupon(
            s, account_id, coupon_id, promotion_code_id, now_us, customer_id=customer_id
        )
