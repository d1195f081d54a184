"""The billing catalog over HTTP (products, prices, coupons, promotion codes, tax rates) on a
real server, SQLite and PostgreSQL: create, retrieve, update, list and delete with Stripe's
field values stated literally; JSON and form-encoded (bracket notation) bodies; bad input as a
400 with a stable code and the exact parameter; and the coupon redemption limit under
concurrent redemptions, through the service other billing services call."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from conftest import Api, RunningServer
from paymux.billing.catalog import coupon_terms, price_terms, tax_terms
from paymux.billing.rules.pricing import PriceTerms, Tier, amount_for
from paymux.billing.rules.totals import CouponTerms, TaxTerms
from paymux.domain.errors import PaymuxError
from paymux.services import Paymux
from support.errors import error_of


def form(api: Api, path: str, fields: dict[str, str]) -> dict[str, Any]:
    """A form-encoded POST (as Stripe's SDKs send), answered 200."""
    return api.ok("POST", path, data=fields)


def event_types(api: Api, object_id: str) -> list[str]:
    events = api.ok("GET", "/v1/events", params={"limit": 100})["data"]
    return sorted(e["type"] for e in events if e["data"]["object"]["id"] == object_id)


def product(api: Api, name: str = "T-shirt") -> dict[str, Any]:
    return api.ok("POST", "/v1/products", {"name": name})


# -- products ---------------------------------------------------------------------------------
def test_a_product_with_default_price_data_is_made_retrieved_updated_and_listed(api: Api) -> None:
    made = form(api, "/v1/products", {
        "name": "Gold plan", "description": "All features", "unit_label": "seat",
        "metadata[tier]": "gold",
        "default_price_data[currency]": "EUR", "default_price_data[unit_amount]": "1500",
        "default_price_data[recurring][interval]": "month",
    })
    assert made["id"].startswith("prod_") and made["object"] == "product"
    assert (made["name"], made["description"], made["unit_label"]) == (
        "Gold plan", "All features", "seat")
    assert made["active"] is True and made["livemode"] is False
    assert made["metadata"] == {"tier": "gold"} and made["images"] == []
    price = api.ok("GET", f"/v1/prices/{made['default_price']}")
    assert price["product"] == made["id"] and price["currency"] == "eur"
    assert price["unit_amount"] == 1500 and price["unit_amount_decimal"] == "1500"
    assert price["type"] == "recurring" and price["billing_scheme"] == "per_unit"
    assert price["recurring"] == {"interval": "month", "interval_count": 1, "meter": None,
                                  "trial_period_days": None, "usage_type": "licensed"}
    assert api.ok("GET", f"/v1/products/{made['id']}") == made

    updated = api.ok("POST", f"/v1/products/{made['id']}",
                     {"name": "Gold", "active": False, "metadata": {"tier": "", "x": "1"}})
    assert updated["name"] == "Gold" and updated["active"] is False
    assert updated["metadata"] == {"x": "1"} and updated["description"] == "All features"
    other = product(api, "Silver")
    active = api.ok("GET", "/v1/products", params={"active": "true"})["data"]
    assert [p["id"] for p in active] == [other["id"]]
    everything = api.ok("GET", "/v1/products")["data"]
    assert [p["id"] for p in everything] == [other["id"], made["id"]]
    assert event_types(api, made["id"]) == ["product.created", "product.updated"]
    assert event_types(api, price["id"]) == ["price.created"]


def test_a_product_with_prices_cannot_be_deleted_one_without_can(api: Api) -> None:
    with_price = product(api)
    api.ok("POST", "/v1/prices", {"product": with_price["id"], "currency": "usd",
                                  "unit_amount": 500})
    r = api.http.delete(f"/v1/products/{with_price['id']}")
    assert error_of(r)["code"] == "resource_in_use"
    empty = product(api, "Nothing yet")
    gone = api.ok("DELETE", f"/v1/products/{empty['id']}")
    assert gone == {"id": empty["id"], "object": "product", "deleted": True}
    assert error_of(api.get(f"/v1/products/{empty['id']}"), 404)["code"] == "resource_missing"


def test_a_default_price_must_be_an_active_price_of_the_product(api: Api) -> None:
    first, second = product(api, "A"), product(api, "B")
    price = api.ok("POST", "/v1/prices", {"product": second["id"], "currency": "usd",
                                          "unit_amount": 100})
    r = api.post(f"/v1/products/{first['id']}", {"default_price": price["id"]})
    assert error_of(r)["param"] == "default_price"
    own = api.ok("POST", "/v1/prices", {"product": first["id"], "currency": "usd",
                                        "unit_amount": 100})
    assert api.ok("POST", f"/v1/products/{first['id']}",
                  {"default_price": own["id"]})["default_price"] == own["id"]
    expanded = api.ok("GET", f"/v1/prices/{own['id']}", params={"expand[]": "product"})
    assert expanded["product"]["id"] == first["id"]
    assert expanded["product"]["default_price"] == own["id"]


# -- prices -----------------------------------------------------------------------------------
def test_a_price_is_made_updated_archived_and_its_money_terms_stay_fixed(api: Api) -> None:
    prod = product(api)
    price = api.ok("POST", "/v1/prices", {
        "product": prod["id"], "currency": "USD", "unit_amount": 2000, "nickname": "Monthly",
        "recurring": {"interval": "month", "interval_count": 3}, "lookup_key": "gold_q",
        "tax_behavior": "exclusive", "metadata": {"k": "v"}})
    assert price["id"].startswith("price_") and price["object"] == "price"
    assert (price["currency"], price["unit_amount"], price["nickname"]) == ("usd", 2000, "Monthly")
    assert price["recurring"]["interval_count"] == 3 and price["lookup_key"] == "gold_q"
    assert price["tax_behavior"] == "exclusive" and price["tiers_mode"] is None
    assert price["custom_unit_amount"] is None and price["transform_quantity"] is None

    updated = api.ok("POST", f"/v1/prices/{price['id']}", {"active": False, "nickname": "Old"})
    assert updated["active"] is False and updated["nickname"] == "Old"
    assert api.ok("GET", f"/v1/prices/{price['id']}") == updated  # archived: still there
    r = api.post(f"/v1/prices/{price['id']}", {"unit_amount": 1})
    assert (error_of(r)["code"], error_of(r)["param"]) == ("parameter_unknown", "unit_amount")
    r = api.post(f"/v1/prices/{price['id']}", {"tax_behavior": "inclusive"})
    assert error_of(r)["param"] == "tax_behavior"
    assert event_types(api, price["id"]) == ["price.created", "price.updated"]


def test_a_tiered_price_takes_stripes_form_brackets_with_inf(api: Api) -> None:
    prod = product(api)
    price = form(api, "/v1/prices", {
        "product": prod["id"], "currency": "usd", "billing_scheme": "tiered",
        "tiers_mode": "graduated", "recurring[interval]": "month",
        "tiers[0][up_to]": "5", "tiers[0][unit_amount]": "500",
        "tiers[1][up_to]": "10", "tiers[1][unit_amount_decimal]": "400",
        "tiers[2][up_to]": "inf", "tiers[2][unit_amount]": "300", "tiers[2][flat_amount]": "100",
    })
    assert price["billing_scheme"] == "tiered" and price["tiers_mode"] == "graduated"
    assert price["unit_amount"] is None
    assert price["tiers"] == [
        {"flat_amount": None, "flat_amount_decimal": None, "unit_amount": 500,
         "unit_amount_decimal": "500", "up_to": 5},
        {"flat_amount": None, "flat_amount_decimal": None, "unit_amount": 400,
         "unit_amount_decimal": "400", "up_to": 10},
        {"flat_amount": 100, "flat_amount_decimal": "100", "unit_amount": 300,
         "unit_amount_decimal": "300", "up_to": None},
    ]
    shown = api.ok("GET", f"/v1/prices/{price['id']}", params={"expand[]": "tiers"})
    assert shown == price


def test_prices_are_listed_by_product_currency_type_lookup_key_and_interval(api: Api) -> None:
    prod, other = product(api), product(api, "Other")
    monthly = api.ok("POST", "/v1/prices", {"product": prod["id"], "currency": "usd",
                                            "unit_amount": 1000, "lookup_key": "m",
                                            "recurring": {"interval": "month"}})
    yearly_eur = api.ok("POST", "/v1/prices", {"product": prod["id"], "currency": "eur",
                                               "unit_amount": 9000, "lookup_key": "y",
                                               "recurring": {"interval": "year"}})
    once = api.ok("POST", "/v1/prices", {"product": other["id"], "currency": "usd",
                                         "unit_amount": 300})

    def ids(**params: Any) -> list[str]:
        return [p["id"] for p in api.ok("GET", "/v1/prices", params=params)["data"]]

    assert ids() == [once["id"], yearly_eur["id"], monthly["id"]]
    assert ids(product=prod["id"]) == [yearly_eur["id"], monthly["id"]]
    assert ids(currency="usd") == [once["id"], monthly["id"]]
    assert ids(type="one_time") == [once["id"]]
    assert ids(**{"recurring[interval]": "year"}) == [yearly_eur["id"]]
    assert ids(**{"lookup_keys[]": ["m", "y"]}) == [yearly_eur["id"], monthly["id"]]
    page = api.ok("GET", "/v1/prices", params={"limit": 2})
    assert page["has_more"] is True and page["url"] == "/v1/prices"
    rest = api.ok("GET", "/v1/prices", params={"starting_after": page["data"][1]["id"]})
    assert [p["id"] for p in rest["data"]] == [monthly["id"]] and rest["has_more"] is False


def test_a_lookup_key_is_taken_once_and_moves_with_transfer_lookup_key(api: Api) -> None:
    prod = product(api)
    first = api.ok("POST", "/v1/prices", {"product": prod["id"], "currency": "usd",
                                          "unit_amount": 100, "lookup_key": "std"})
    r = api.post("/v1/prices", {"product": prod["id"], "currency": "usd", "unit_amount": 200,
                                "lookup_key": "std"})
    assert (error_of(r)["code"], error_of(r)["param"]) == ("resource_already_exists",
                                                          "lookup_key")
    second = api.ok("POST", "/v1/prices", {"product": prod["id"], "currency": "usd",
                                           "unit_amount": 200, "lookup_key": "std",
                                           "transfer_lookup_key": True})
    assert second["lookup_key"] == "std"
    assert api.ok("GET", f"/v1/prices/{first['id']}")["lookup_key"] is None


def test_a_price_with_product_data_makes_its_product(api: Api) -> None:
    price = form(api, "/v1/prices", {"product_data[name]": "Add-on", "currency": "gbp",
                                     "unit_amount": "250"})
    made = api.ok("GET", f"/v1/products/{price['product']}")
    assert made["name"] == "Add-on" and made["default_price"] is None


BAD_PRICES: list[tuple[dict[str, Any], str, str]] = [
        ({"currency": "usd", "unit_amount": 100}, "parameter_missing", "product"),
        ({"product": "P", "currency": "usd", "unit_amount": 100,
          "recurring": {"interval": "fortnight"}}, "parameter_invalid", "recurring[interval]"),
        ({"product": "P", "currency": "usd", "unit_amount": 100,
          "recurring": {"interval": "month", "interval_count": 37}},
         "parameter_invalid", "recurring[interval_count]"),
        ({"product": "P", "currency": "usd", "unit_amount": 100,
          "recurring": {"interval": "day", "interval_count": 1096}},
         "parameter_invalid", "recurring[interval_count]"),
        ({"product": "P", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume",
          "tiers": [{"up_to": 10, "unit_amount": 5}, {"up_to": 5, "unit_amount": 4},
                    {"up_to": "inf", "unit_amount": 3}]}, "parameter_invalid", "tiers[1][up_to]"),
        ({"product": "P", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume",
          "tiers": [{"up_to": 10, "unit_amount": 5}, {"up_to": 20, "unit_amount": 4}]},
         "parameter_invalid", "tiers[1][up_to]"),
        ({"product": "P", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume",
          "tiers": [{"up_to": "inf"}]}, "parameter_missing", "tiers[0][unit_amount]"),
        ({"product": "P", "currency": "usd", "unit_amount": 100, "colour": "red"},
         "parameter_unknown", "colour"),
        ({"product": "P", "currency": "usd", "unit_amount": 10.5}, "parameter_invalid",
         "unit_amount"),
        ({"product": "P", "currency": "usd", "unit_amount": -1}, "parameter_invalid",
         "unit_amount"),
        ({"product": "P", "currency": "usd", "unit_amount_decimal": "10.5"},
         "parameter_invalid", "unit_amount_decimal"),
        ({"product": "P", "currency": "usd"}, "parameter_missing", "unit_amount"),
        ({"product": "P", "currency": "zzz", "unit_amount": 1}, "currency_unknown", "currency"),
        ({"product": "P", "currency": "usd", "unit_amount": 1,
          "recurring": {"interval": "month", "usage_type": "metered"}},
         "parameter_missing", "recurring[meter]"),
        ({"product": "P", "currency": "usd", "unit_amount": 1,
          "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_nope"}},
         "resource_missing", "recurring[meter]"),
        ({"product": "prod_nope", "currency": "usd", "unit_amount": 1},
         "resource_missing", "product"),
]


def test_bad_price_input_is_a_400_naming_the_parameter(api: Api) -> None:
    prod = product(api)["id"]
    for body, code, param in BAD_PRICES:
        if body.get("product") == "P":
            body = {**body, "product": prod}
        r = api.post("/v1/prices", body)
        assert r.status_code == (404 if code == "resource_missing" else 400), (body, r.text)
        error = r.json()["error"]
        assert (error["code"], error["param"]) == (code, param), (body, error)
    assert api.ok("GET", "/v1/prices")["data"] == []  # nothing was made


def test_a_form_price_with_a_fraction_or_a_bad_tier_names_the_bracket_param(api: Api) -> None:
    prod = product(api)
    r = api.http.post("/v1/prices", data={"product": prod["id"], "currency": "usd",
                                          "unit_amount": "12.5"})
    assert error_of(r)["param"] == "unit_amount"
    r = api.http.post("/v1/prices", data={
        "product": prod["id"], "currency": "usd", "billing_scheme": "tiered",
        "tiers_mode": "graduated", "tiers[0][up_to]": "ten", "tiers[0][unit_amount]": "1",
        "tiers[1][up_to]": "inf", "tiers[1][unit_amount]": "1"})
    assert error_of(r)["param"] == "tiers[0][up_to]"


def test_another_accounts_product_and_price_are_missing(server: RunningServer) -> None:
    mine, theirs = Api(server), Api(server)
    try:
        prod = product(theirs)
        price = theirs.ok("POST", "/v1/prices", {"product": prod["id"], "currency": "usd",
                                                 "unit_amount": 100})
        r = mine.post("/v1/prices", {"product": prod["id"], "currency": "usd", "unit_amount": 1})
        assert (error_of(r, 404)["code"], error_of(r, 404)["param"]) == ("resource_missing",
                                                                        "product")
        assert error_of(mine.get(f"/v1/prices/{price['id']}"), 404)["code"] == "resource_missing"
        assert error_of(mine.get(f"/v1/products/{prod['id']}"), 404)["code"] == "resource_missing"
    finally:
        mine.close()
        theirs.close()


# -- coupons ----------------------------------------------------------------------------------
def test_a_coupon_with_its_own_id_is_made_updated_listed_and_deleted(api: Api) -> None:
    redeem_by = int(time.time()) + 86_400
    made = form(api, "/v1/coupons", {
        "id": "SUMMER25", "percent_off": "25.5", "duration": "repeating",
        "duration_in_months": "3", "max_redemptions": "100", "redeem_by": str(redeem_by),
        "name": "Summer", "metadata[campaign]": "s25"})
    assert made == {
        "id": "SUMMER25", "object": "coupon", "amount_off": None, "created": made["created"],
        "currency": None, "duration": "repeating", "duration_in_months": 3, "livemode": False,
        "max_redemptions": 100, "metadata": {"campaign": "s25"}, "name": "Summer",
        "percent_off": 25.5, "redeem_by": redeem_by, "times_redeemed": 0, "valid": True,
    }
    assert api.ok("GET", "/v1/coupons/SUMMER25") == made
    r = api.post("/v1/coupons", {"id": "SUMMER25", "percent_off": 10})
    assert (error_of(r)["code"], error_of(r)["param"]) == ("resource_already_exists", "id")
    updated = api.ok("POST", "/v1/coupons/SUMMER25", {"name": "Summer sale"})
    assert updated["name"] == "Summer sale" and updated["percent_off"] == 25.5
    r = api.post("/v1/coupons/SUMMER25", {"percent_off": 50})
    assert error_of(r)["code"] == "parameter_unknown"

    fixed = api.ok("POST", "/v1/coupons", {"amount_off": 500, "currency": "USD",
                                           "duration": "forever"})
    assert len(fixed["id"]) == 8 and fixed["amount_off"] == 500 and fixed["currency"] == "usd"
    assert fixed["percent_off"] is None and fixed["duration_in_months"] is None
    listed = api.ok("GET", "/v1/coupons")["data"]
    assert [c["id"] for c in listed] == [fixed["id"], "SUMMER25"]
    first = api.ok("GET", "/v1/coupons", params={"limit": 1})
    assert first["has_more"] is True
    second = api.ok("GET", "/v1/coupons", params={"limit": 1,
                                                  "starting_after": first["data"][0]["id"]})
    assert [c["id"] for c in second["data"]] == ["SUMMER25"] and second["has_more"] is False

    assert api.ok("DELETE", "/v1/coupons/SUMMER25") == {"id": "SUMMER25", "object": "coupon",
                                                       "deleted": True}
    assert error_of(api.get("/v1/coupons/SUMMER25"), 404)["code"] == "resource_missing"
    assert event_types(api, "SUMMER25") == ["coupon.created", "coupon.deleted", "coupon.updated"]


BAD_COUPONS: list[tuple[dict[str, Any], str, str]] = [
        ({"percent_off": 10, "amount_off": 100, "currency": "usd"}, "parameters_exclusive",
         "amount_off"),
        ({"duration": "once"}, "parameter_missing", "percent_off"),
        ({"percent_off": 0}, "parameter_invalid", "percent_off"),
        ({"percent_off": 100.5}, "parameter_invalid", "percent_off"),
        ({"percent_off": "12.345"}, "parameter_invalid", "percent_off"),
        ({"amount_off": 100}, "parameter_missing", "currency"),
        ({"amount_off": -5, "currency": "usd"}, "amount_invalid", "amount_off"),
        ({"percent_off": 10, "duration": "repeating"}, "parameter_missing",
         "duration_in_months"),
        ({"percent_off": 10, "duration_in_months": 3}, "parameter_invalid",
         "duration_in_months"),
        ({"percent_off": 10, "redeem_by": 1_000_000}, "parameter_invalid", "redeem_by"),
        ({"percent_off": 10, "max_redemptions": 0}, "parameter_invalid", "max_redemptions"),
        ({"percent_off": 10, "duration": "weekly"}, "parameter_invalid", "duration"),
        ({"percent_off": 10, "applies_to": {"products": ["prod_nope"]}}, "resource_missing",
         "applies_to[products][0]"),
]


def test_bad_coupon_input_is_a_400_naming_the_parameter(api: Api) -> None:
    for body, code, param in BAD_COUPONS:
        r = api.post("/v1/coupons", body)
        assert r.status_code == (404 if code == "resource_missing" else 400), (body, r.text)
        error = r.json()["error"]
        assert (error["code"], error["param"]) == (code, param), (body, error)
    assert api.ok("GET", "/v1/coupons")["data"] == []


# -- promotion codes --------------------------------------------------------------------------
def test_promotion_codes_take_the_coupon_either_way_and_are_unique_among_active(api: Api) -> None:
    coupon = api.ok("POST", "/v1/coupons", {"id": "TEN", "percent_off": 10})
    customer = api.ok("POST", "/v1/customers", {"email": "a@example.com"})
    promo = form(api, "/v1/promotion_codes", {
        "promotion[type]": "coupon", "promotion[coupon]": "TEN", "code": "Fall20",
        "customer": customer["id"], "max_redemptions": "5",
        "restrictions[minimum_amount]": "1000", "restrictions[minimum_amount_currency]": "usd",
        "restrictions[first_time_transaction]": "true"})
    assert promo["id"].startswith("promo_") and promo["object"] == "promotion_code"
    assert promo["code"] == "Fall20" and promo["active"] is True
    assert promo["coupon"] == coupon and promo["promotion"] == {"coupon": "TEN", "type": "coupon"}
    assert promo["customer"] == customer["id"] and promo["max_redemptions"] == 5
    assert promo["restrictions"] == {"first_time_transaction": True, "minimum_amount": 1000,
                                     "minimum_amount_currency": "usd"}
    assert promo["times_redeemed"] == 0 and promo["expires_at"] is None

    r = api.post("/v1/promotion_codes", {"coupon": "TEN", "code": "FALL20"})
    assert (error_of(r)["code"], error_of(r)["param"]) == ("resource_already_exists", "code")
    off = api.ok("POST", f"/v1/promotion_codes/{promo['id']}",
                 {"active": False, "metadata": {"k": "v"}})
    assert off["active"] is False and off["metadata"] == {"k": "v"}
    again = api.ok("POST", "/v1/promotion_codes", {"coupon": "TEN", "code": "FALL20"})
    assert again["coupon"]["id"] == "TEN"
    r = api.post(f"/v1/promotion_codes/{promo['id']}", {"active": True})
    assert error_of(r)["code"] == "resource_already_exists"
    generated = api.ok("POST", "/v1/promotion_codes", {"coupon": "TEN"})
    assert len(generated["code"]) == 8 and generated["code"].isalnum()

    def codes(**params: Any) -> list[str]:
        return [p["code"] for p in
                api.ok("GET", "/v1/promotion_codes", params=params)["data"]]

    assert codes() == [generated["code"], "FALL20", "Fall20"]
    assert codes(code="fall20") == ["FALL20", "Fall20"]
    assert codes(active="false") == ["Fall20"]
    assert codes(customer=customer["id"]) == ["Fall20"]
    assert codes(coupon="NOPE") == []
    shown = api.ok("GET", f"/v1/promotion_codes/{promo['id']}",
                   params={"expand[]": "promotion.coupon"})
    assert shown["promotion"]["coupon"] == shown["coupon"] and shown["coupon"]["id"] == "TEN"
    assert event_types(api, promo["id"]) == ["promotion_code.created", "promotion_code.updated"]


BAD_PROMOTION_CODES: list[tuple[dict[str, Any], str, str]] = [
        ({}, "parameter_missing", "coupon"),
        ({"promotion": {"type": "coupon"}}, "parameter_missing", "promotion[coupon]"),
        ({"coupon": "NOPE"}, "resource_missing", "coupon"),
        ({"promotion": {"type": "coupon", "coupon": "NOPE"}}, "resource_missing",
         "promotion[coupon]"),
        ({"coupon": "C", "code": "no spaces"}, "parameter_invalid", "code"),
        ({"coupon": "C", "expires_at": 1_000_000}, "parameter_invalid", "expires_at"),
        ({"coupon": "C", "restrictions": {"minimum_amount": 100}}, "parameter_missing",
         "restrictions[minimum_amount_currency]"),
        ({"coupon": "C", "customer": "cus_nope"}, "resource_missing", "customer"),
]


def test_bad_promotion_code_input_is_a_400_naming_the_parameter(api: Api) -> None:
    api.ok("POST", "/v1/coupons", {"id": "C", "percent_off": 5})
    for body, code, param in BAD_PROMOTION_CODES:
        r = api.post("/v1/promotion_codes", body)
        assert r.status_code == (404 if code == "resource_missing" else 400), (body, r.text)
        error = r.json()["error"]
        assert (error["code"], error["param"]) == (code, param), (body, error)
    assert api.ok("GET", "/v1/promotion_codes")["data"] == []


# -- tax rates --------------------------------------------------------------------------------
def test_a_tax_rate_is_made_updated_and_listed_with_its_percentage_exact(api: Api) -> None:
    vat = form(api, "/v1/tax_rates", {
        "display_name": "VAT", "percentage": "19", "inclusive": "true", "country": "de",
        "jurisdiction": "DE", "description": "VAT Germany", "tax_type": "vat"})
    assert vat["id"].startswith("txr_") and vat["object"] == "tax_rate"
    assert vat["percentage"] == 19 and vat["effective_percentage"] == 19
    assert (vat["inclusive"], vat["country"], vat["tax_type"]) == (True, "DE", "vat")
    nyc = api.ok("POST", "/v1/tax_rates", {"display_name": "Sales tax", "percentage": 8.875,
                                           "inclusive": False, "state": "NY"})
    assert nyc["percentage"] == 8.875 and nyc["inclusive"] is False and nyc["active"] is True
    updated = api.ok("POST", f"/v1/tax_rates/{nyc['id']}",
                     {"display_name": "NY sales tax", "active": False})
    assert updated["display_name"] == "NY sales tax" and updated["active"] is False
    assert updated["percentage"] == 8.875
    r = api.post(f"/v1/tax_rates/{nyc['id']}", {"percentage": 9})
    assert (error_of(r)["code"], error_of(r)["param"]) == ("parameter_unknown", "percentage")
    for bad, param in (({"percentage": 100.5}, "percentage"),
                       ({"percentage": "1.23456"}, "percentage"),
                       ({"percentage": -1}, "percentage")):
        r = api.post("/v1/tax_rates", {"display_name": "X", "inclusive": False, **bad})
        assert (error_of(r)["code"], error_of(r)["param"]) == ("parameter_invalid", param)

    def ids(**params: Any) -> list[str]:
        return [t["id"] for t in api.ok("GET", "/v1/tax_rates", params=params)["data"]]

    assert ids() == [nyc["id"], vat["id"]]
    assert ids(inclusive="true") == [vat["id"]]
    assert ids(active="true") == [vat["id"]]
    assert event_types(api, nyc["id"]) == ["tax_rate.created", "tax_rate.updated"]


# -- the service other billing services call --------------------------------------------------
def test_ten_concurrent_redemptions_of_a_three_use_coupon_leave_exactly_three(
    api: Api, server: RunningServer
) -> None:
    api.ok("POST", "/v1/coupons", {"id": "THREE", "percent_off": 50, "max_redemptions": 3})
    promo = api.ok("POST", "/v1/promotion_codes", {"coupon": "THREE", "code": "TWICE",
                                                   "max_redemptions": 2})
    account = api.account_id

    async def run() -> tuple[list[str], list[str]]:
        app = Paymux(server.settings)
        try:
            async def redeem(promo_id: str | None) -> str:
                try:
                    async with app.ctx.db.write() as s:
                        await app.catalog.redeem_coupon(s, account, "THREE", promo_id,
                                                        app.ctx.now_us())
                    return "ok"
                except PaymuxError as exc:
                    return exc.code

            via_code = await asyncio.gather(*(redeem(promo["id"]) for _ in range(5)))
            direct = await asyncio.gather(*(redeem(None) for _ in range(10)))
            return list(via_code), list(direct)
        finally:
            await app.close()

    via_code, direct = asyncio.run(run())
    assert sorted(via_code) == ["ok", "ok"] + ["promotion_code_invalid"] * 3
    assert sorted(direct) == ["coupon_expired"] * 9 + ["ok"]  # 2 + 1 = the coupon's 3
    coupon = api.ok("GET", "/v1/coupons/THREE")
    assert coupon["times_redeemed"] == 3 and coupon["valid"] is False
    assert api.ok("GET", f"/v1/promotion_codes/{promo['id']}")["times_redeemed"] == 2


def test_rows_are_the_accounts_and_convert_to_the_rules_terms(
    api: Api, server: RunningServer
) -> None:
    prod = product(api)
    price = api.ok("POST", "/v1/prices", {
        "product": prod["id"], "currency": "usd", "billing_scheme": "tiered",
        "tiers_mode": "volume", "tiers": [{"up_to": 10, "unit_amount": 400},
                                          {"up_to": "inf", "unit_amount": 300}]})
    api.ok("POST", "/v1/coupons", {"id": "HALF", "percent_off": "12.5"})
    rate = api.ok("POST", "/v1/tax_rates", {"display_name": "T", "percentage": "8.875",
                                            "inclusive": True})
    promo = api.ok("POST", "/v1/promotion_codes", {"coupon": "HALF", "code": "half-off"})
    other = Api(server)
    account = api.account_id

    async def run() -> list[Any]:
        app = Paymux(server.settings)
        try:
            async with app.ctx.db.read() as s:
                terms = [
                    price_terms(await app.catalog.price_row(s, account, price["id"])),
                    coupon_terms(await app.catalog.coupon_row(s, account, "HALF")),
                    tax_terms(await app.catalog.tax_rate_row(s, account, rate["id"])),
                    (await app.catalog.promotion_code_row(s, account, "HALF-OFF")).id,
                ]
                try:
                    await app.catalog.price_row(s, other.account_id, price["id"], param="items")
                except PaymuxError as exc:
                    terms.append((exc.code, exc.param))
            async with app.ctx.db.write() as s:  # a caller's rows show the redemption
                coupon = await app.catalog.coupon_row(s, account, "HALF")
                code = await app.catalog.promotion_code_row(s, account, promo["id"])
                await app.catalog.redeem_coupon(s, account, "HALF", promo["id"], app.ctx.now_us())
                terms.append((coupon.times_redeemed, code.times_redeemed))
            return terms
        finally:
            await app.close()

    try:
        terms = asyncio.run(run())
    finally:
        other.close()
    assert terms[0] == PriceTerms("tiered", None, "volume", (Tier(10, 400), Tier(None, 300)))
    assert amount_for(terms[0], 12) == 3600
    assert terms[1] == CouponTerms("HALF", Decimal("12.5"), None)
    assert terms[2] == TaxTerms(rate["id"], Decimal("8.875"), True)
    assert terms[3] == promo["id"]
    assert terms[4] == ("resource_missing", "items")
    assert terms[5] == (1, 1)
    assert api.ok("GET", "/v1/coupons/HALF")["times_redeemed"] == 1


def test_concurrent_creates_of_one_code_leave_one_active_promotion_code(
    api: Api, server: RunningServer
) -> None:
    api.ok("POST", "/v1/coupons", {"id": "ONCE", "percent_off": 5})
    account = api.account_id

    async def run() -> list[str]:
        app = Paymux(server.settings)
        try:
            async def create(code: str) -> str:
                try:
                    await app.catalog.create_promotion_code(
                        account, {"coupon": "ONCE", "code": code})
                    return "ok"
                except PaymuxError as exc:
                    return exc.code

            return list(await asyncio.gather(*(create(c) for c in ["Dup", "DUP", "dup"] * 2)))
        finally:
            await app.close()

    outcomes = asyncio.run(run())
    assert sorted(outcomes) == ["ok"] + ["resource_already_exists"] * 5
    listed = api.ok("GET", "/v1/promotion_codes", params={"code": "dup"})["data"]
    assert len(listed) == 1 and listed[0]["active"] is True
