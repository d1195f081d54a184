"""stripe-python drives the billing catalog on a real server (SQLite and PostgreSQL), pointed at
it by its base address only (``StripeClient(base_addresses={"api": url})``,
``max_network_retries=0``): products (with ``default_price_data``), prices (per unit,
recurring, and tiered with ``up_to="inf"``), coupons, promotion codes (the SDK's current
``promotion[coupon]`` shape) and tax rates are created and read back as the SDK's typed
objects; lists auto-paginate; a bad parameter raises ``stripe.InvalidRequestError`` naming
it. Expectations are Stripe's documented values, stated literally."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from conftest import RunningServer


@pytest.fixture
def sdk(server: RunningServer) -> stripe.StripeClient:
    _, key = server.new_key()
    return stripe.StripeClient(
        api_key=key, base_addresses={"api": server.url}, max_network_retries=0
    )


def test_a_product_with_default_price_data_and_its_prices(sdk: stripe.StripeClient) -> None:
    product = sdk.v1.products.create(params={
        "name": "Gold plan", "description": "Everything", "metadata": {"plan": "gold"},
        "default_price_data": {"currency": "usd", "unit_amount": 2000,
                               "recurring": {"interval": "month"}}})
    assert isinstance(product, stripe.Product)
    assert (product.object, product.name, product.active) == ("product", "Gold plan", True)
    assert product.metadata.to_dict() == {"plan": "gold"}
    assert isinstance(product.default_price, str)

    price = sdk.v1.prices.retrieve(product.default_price, params={"expand": ["product"]})
    assert isinstance(price, stripe.Price) and isinstance(price.product, stripe.Product)
    assert price.product.id == product.id
    assert (price.currency, price.unit_amount, price.type) == ("usd", 2000, "recurring")
    assert price.recurring is not None
    assert (price.recurring.interval, price.recurring.interval_count) == ("month", 1)
    assert price.recurring.usage_type == "licensed"

    tiered = sdk.v1.prices.create(params={
        "product": product.id, "currency": "eur", "billing_scheme": "tiered",
        "tiers_mode": "graduated", "recurring": {"interval": "year", "interval_count": 2},
        "tiers": [{"up_to": 10, "unit_amount": 500},
                  {"up_to": "inf", "unit_amount": 400, "flat_amount": 1000}],
        "lookup_key": "gold_tiered", "nickname": "Tiered"})
    assert tiered.billing_scheme == "tiered" and tiered.tiers_mode == "graduated"
    assert tiered.tiers is not None
    assert [(t.up_to, t.unit_amount, t.flat_amount) for t in tiered.tiers] == [
        (10, 500, None), (None, 400, 1000)]
    found = sdk.v1.prices.list(params={"lookup_keys": ["gold_tiered"]})
    assert [p.id for p in found.data] == [tiered.id]

    archived = sdk.v1.prices.update(tiered.id, params={"active": False, "metadata": {"a": "b"}})
    assert archived.active is False and archived.metadata.to_dict() == {"a": "b"}
    renamed = sdk.v1.products.update(product.id, params={"name": "Gold"})
    assert renamed.name == "Gold" and renamed.default_price == price.id


def test_lists_auto_paginate_across_pages(sdk: stripe.StripeClient) -> None:
    product = sdk.v1.products.create(params={"name": "Paged"})
    made = [
        sdk.v1.prices.create(params={"product": product.id, "currency": "usd",
                                     "unit_amount": 100 + i}).id
        for i in range(5)
    ]
    seen = [p.id for p in
            sdk.v1.prices.list(params={"limit": 2, "product": product.id}).auto_paging_iter()]
    assert seen == list(reversed(made))
    for i in range(3):
        sdk.v1.coupons.create(params={"percent_off": 5 + i, "duration": "once"})
    coupons = list(sdk.v1.coupons.list(params={"limit": 2}).auto_paging_iter())
    assert [c.percent_off for c in coupons] == [7, 6, 5]


def test_coupons_promotion_codes_and_tax_rates(sdk: stripe.StripeClient) -> None:
    coupon = sdk.v1.coupons.create(params={
        "id": "WINTER", "percent_off": 12.5, "duration": "repeating", "duration_in_months": 3,
        "max_redemptions": 10, "name": "Winter"})
    assert isinstance(coupon, stripe.Coupon)
    assert (coupon.id, coupon.percent_off, coupon.duration) == ("WINTER", 12.5, "repeating")
    assert (coupon.duration_in_months, coupon.valid, coupon.times_redeemed) == (3, True, 0)
    assert sdk.v1.coupons.update("WINTER", params={"name": "Winter sale"}).name == "Winter sale"

    promo = sdk.v1.promotion_codes.create(params={
        "promotion": {"type": "coupon", "coupon": "WINTER"}, "code": "SNOW",
        "restrictions": {"minimum_amount": 5000, "minimum_amount_currency": "usd"}})
    assert isinstance(promo, stripe.PromotionCode)
    assert (promo.code, promo.active, promo.times_redeemed) == ("SNOW", True, 0)
    assert promo.promotion.type == "coupon" and promo.promotion.coupon == "WINTER"
    assert promo.restrictions.minimum_amount == 5000
    assert promo.restrictions.minimum_amount_currency == "usd"
    listed = sdk.v1.promotion_codes.list(params={"code": "snow"})
    assert [p.id for p in listed.data] == [promo.id]
    assert sdk.v1.promotion_codes.update(promo.id, params={"active": False}).active is False

    rate = sdk.v1.tax_rates.create(params={
        "display_name": "VAT", "percentage": 19.5, "inclusive": False, "country": "DE",
        "tax_type": "vat"})
    assert isinstance(rate, stripe.TaxRate)
    assert (rate.percentage, rate.inclusive, rate.country) == (19.5, False, "DE")
    assert sdk.v1.tax_rates.retrieve(rate.id).display_name == "VAT"
    assert sdk.v1.tax_rates.update(rate.id, params={"active": False}).active is False

    deleted = sdk.v1.coupons.delete("WINTER")
    assert deleted.id == "WINTER" and deleted.deleted is True


@pytest.mark.parametrize(
    ("create", "param"),
    [
        (lambda sdk, prod: sdk.v1.prices.create(params={
            "product": prod, "currency": "usd", "unit_amount": 100,
            "recurring": {"interval": "fortnight"}}), "recurring[interval]"),
        (lambda sdk, prod: sdk.v1.prices.create(params={
            "product": prod, "currency": "usd", "billing_scheme": "tiered",
            "tiers_mode": "volume",
            "tiers": [{"up_to": 5, "unit_amount": 1}, {"up_to": 3, "unit_amount": 1},
                      {"up_to": "inf", "unit_amount": 1}]}), "tiers[1][up_to]"),
        (lambda sdk, prod: sdk.v1.coupons.create(params={
            "percent_off": 10, "amount_off": 100, "currency": "usd"}), "amount_off"),
    ],
)
def test_a_bad_parameter_raises_invalid_request_error_naming_it(
    sdk: stripe.StripeClient, create: Any, param: str
) -> None:
    product = sdk.v1.products.create(params={"name": "P"})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        create(sdk, product.id)
    assert raised.value.http_status == 400
    assert raised.value.param == param
    with pytest.raises(stripe.InvalidRequestError) as missing:
        sdk.v1.prices.retrieve("price_nope")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
