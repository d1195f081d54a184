"""API representations of the catalog's objects, in Stripe's shapes (its example objects list
the fields): products, prices, coupons, promotion codes and tax rates. Events snapshot these.

Fields Stripe has but paymux does not model (a product's images, a price's
``transform_quantity``, ...) are shown with Stripe's empty value, so an SDK's typed object
finds every attribute it expects. Decimal rates are stored as exact decimal text and shown as
JSON numbers (``25.5``, ``8.875``), as Stripe shows them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from paymux.domain.clock import seconds
from paymux.storage.models import Coupon, Price, Product, PromotionCode, TaxRate

__all__ = [
    "coupon_valid",
    "coupon_view",
    "decimal_number",
    "price_view",
    "product_view",
    "promotion_code_view",
    "tax_rate_view",
    "tiers_view",
]



def decimal_number(text: str | None) -> int | float | None:
    """Exact decimal text as a JSON number: an int when whole (``"19"`` -> 19), else the
    float whose shortest repr is that text (``"8.875"`` -> 8.875: at most 4 places, so the
    round trip is exact)."""
    if text is None:
        return None
    value = Decimal(text)
    if value == value.to_integral_value():
        return int(value)
    return float(text)


def product_view(p: Product) -> dict[str, Any]:
    if p.deleted:
        return {"id": p.id, "object": "product", "deleted": True}
    return {
        "id": p.id,
        "object": "product",
        "active": bool(p.active),
        "created": seconds(p.created_us),
        "default_price": p.default_price_id,
        "description": p.description,
        "images": [],
        "livemode": bool(p.livemode),
        "marketing_features": [],
        "metadata": p.metadata_ or {},
        "name": p.name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": p.unit_label,
        "updated": seconds(p.updated_us),
        "url": None,
    }


def tiers_view(tiers: list[Any] | None) -> list[dict[str, Any]]:
    return [
        {
            "flat_amount": t.get("flat_amount"),
            "flat_amount_decimal": _decimal_text(t.get("flat_amount")),
            "unit_amount": t.get("unit_amount"),
            "unit_amount_decimal": _decimal_text(t.get("unit_amount")),
            "up_to": t.get("up_to"),
        }
        for t in tiers or []
    ]


def _decimal_text(amount: int | None) -> str | None:
    return None if amount is None else str(amount)


def price_view(p: Price) -> dict[str, Any]:
    """A price. ``tiers`` is shown for a tiered price (Stripe shows it only when asked with
    ``expand[]=tiers``; the routers accept that expand and ignore it)."""
    recurring = None
    if p.type == "recurring":
        recurring = {
            "interval": p.recurring_interval,
            "interval_count": p.recurring_interval_count,
            "meter": p.recurring_meter_id,
            "trial_period_days": None,
            "usage_type": p.recurring_usage_type,
        }
    view: dict[str, Any] = {
        "id": p.id,
        "object": "price",
        "active": bool(p.active),
        "billing_scheme": p.billing_scheme,
        "created": seconds(p.created_us),
        "currency": p.currency,
        "custom_unit_amount": None,
        "livemode": bool(p.livemode),
        "lookup_key": p.lookup_key,
        "metadata": p.metadata_ or {},
        "nickname": p.nickname,
        "product": p.product_id,
        "recurring": recurring,
        "tax_behavior": p.tax_behavior,
        "tiers_mode": p.tiers_mode,
        "transform_quantity": None,
        "type": p.type,
        "unit_amount": p.unit_amount,
        "unit_amount_decimal": _decimal_text(p.unit_amount),
    }
    if p.billing_scheme == "tiered":
        view["tiers"] = tiers_view(p.tiers)
    return view


def coupon_valid(c: Coupon, now_us: int) -> bool:
    """Whether the coupon can still be redeemed (Stripe's ``valid``)."""
    if c.deleted:
        return False
    if c.redeem_by_us is not None and now_us >= c.redeem_by_us:
        return False
    return c.max_redemptions is None or c.times_redeemed < c.max_redemptions


def coupon_view(c: Coupon, now_us: int) -> dict[str, Any]:
    if c.deleted:
        return {"id": c.id, "object": "coupon", "deleted": True}
    view: dict[str, Any] = {
        "id": c.id,
        "object": "coupon",
        "amount_off": c.amount_off,
        "created": seconds(c.created_us),
        "currency": c.currency,
        "duration": c.duration,
        "duration_in_months": c.duration_in_months,
        "livemode": bool(c.livemode),
        "max_redemptions": c.max_redemptions,
        "metadata": c.metadata_ or {},
        "name": c.name,
        "percent_off": decimal_number(c.percent_off),
        "redeem_by": seconds(c.redeem_by_us),
        "times_redeemed": c.times_redeemed,
        "valid": coupon_valid(c, now_us),
    }
    if c.applies_to_products is not None:
        view["applies_to"] = {"products": list(c.applies_to_products)}
    return view


def promotion_code_view(p: PromotionCode, coupon: Coupon, now_us: int) -> dict[str, Any]:
    """A promotion code, its coupon embedded (``coupon``, as Stripe's API versions before
    2025-09 show it) and named (``promotion``, as the current ones do)."""
    restrictions = p.restrictions or {}
    return {
        "id": p.id,
        "object": "promotion_code",
        "active": bool(p.active),
        "code": p.code,
        "coupon": coupon_view(coupon, now_us),
        "created": seconds(p.created_us),
        "customer": p.customer_id,
        "customer_account": None,
        "expires_at": seconds(p.expires_at_us),
        "livemode": bool(p.livemode),
        "max_redemptions": p.max_redemptions,
        "metadata": p.metadata_ or {},
        "promotion": {"coupon": p.coupon_id, "type": "coupon"},
        "restrictions": {
            "first_time_transaction": bool(restrictions.get("first_time_transaction", False)),
            "minimum_amount": restrictions.get("minimum_amount"),
            "minimum_amount_currency": restrictions.get("minimum_amount_currency"),
        },
        "times_redeemed": p.times_redeemed,
    }


def tax_rate_view(t: TaxRate) -> dict[str, Any]:
    percentage = decimal_number(t.percentage)
    return {
        "id": t.id,
        "object": "tax_rate",
        "active": bool(t.active),
        "country": t.country,
        "created": seconds(t.created_us),
        "description": t.description,
        "display_name": t.display_name,
        "effective_percentage": percentage,
        "flat_amount": None,
        "inclusive": bool(t.inclusive),
        "jurisdiction": t.jurisdiction,
        "jurisdiction_level": None,
        "livemode": bool(t.livemode),
        "metadata": t.metadata_ or {},
        "percentage": percentage,
        "rate_type": "percentage",
        "state": t.state,
        "tax_type": t.tax_type,
    }
