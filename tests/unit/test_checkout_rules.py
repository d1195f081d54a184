"""Checkout's pure rules (src/paymux/checkout/rules.py), with literal expectations."""

from __future__ import annotations

import pytest

from paymux.checkout import rules
from paymux.domain.errors import PaymuxError

NOW_S = 1_800_000_000
NOW_US = NOW_S * 1_000_000


def _price(unit: int, currency: str = "usd", type_: str = "one_time") -> dict[str, object]:
    return {"id": "price_1", "object": "price", "unit_amount": unit, "currency": currency,
            "type": type_}


def test_expiry_defaults_to_24_hours_and_keeps_stripes_bounds() -> None:
    assert rules.expires_us(NOW_US, None) == (NOW_S + 86_400) * 1_000_000
    assert rules.expires_us(NOW_US, NOW_S + 1800) == (NOW_S + 1800) * 1_000_000
    assert rules.expires_us(NOW_US, NOW_S + 86_400) == (NOW_S + 86_400) * 1_000_000
    for bad in (NOW_S + 1799, NOW_S + 86_401, NOW_S - 1):
        with pytest.raises(PaymuxError) as caught:
            rules.expires_us(NOW_US, bad)
        assert (caught.value.code, caught.value.param) == ("parameter_invalid", "expires_at")


def test_the_intent_id_is_the_sessions_own_and_no_other_sessions() -> None:
    one = rules.intent_id_for("cs_test_a")
    assert one == rules.intent_id_for("cs_test_a")
    assert one != rules.intent_id_for("cs_test_b")
    # sha256("cs_test_a:payment_intent"), its first 24 hex digits, from sha256sum.
    assert one == "pi_6061731b0b454e846b731620"


def test_success_url_gets_the_session_id_where_stripe_puts_it() -> None:
    assert rules.redirect_after_success(
        "https://s.example/ok?id={CHECKOUT_SESSION_ID}", "cs_test_x"
    ) == "https://s.example/ok?id=cs_test_x"
    assert rules.redirect_after_success("https://s.example/ok", "cs_test_x") == (
        "https://s.example/ok")


def test_a_line_item_multiplies_and_refuses_what_cannot_be_sold() -> None:
    item = rules.line_item("li_1", _price(1500), 3, "Shirt")
    assert (item["amount_subtotal"], item["amount_total"], item["currency"]) == (4500, 4500, "usd")
    for price, quantity, param in (
        (_price(1500), 0, "line_items[quantity]"),
        (_price(1500, type_="recurring"), 1, "line_items[price]"),
        ({**_price(0), "unit_amount": None}, 1, "line_items[price]"),
    ):
        with pytest.raises(PaymuxError) as caught:
            rules.line_item("li_1", price, quantity, "x")
        assert caught.value.param == param


def test_totals_need_one_currency_and_a_chargeable_sum() -> None:
    a = rules.line_item("li_1", _price(1000), 1, "a")
    b = rules.line_item("li_2", _price(250), 2, "b")
    assert rules.line_totals([a, b]) == rules.LineTotals("usd", 1500, 1500)
    with pytest.raises(PaymuxError) as caught:
        rules.line_totals([a, rules.line_item("li_3", _price(5, "eur"), 1, "c")])
    assert caught.value.code == "currency_mismatch"
    with pytest.raises(PaymuxError) as caught:
        rules.line_totals([rules.line_item("li_4", _price(0), 1, "free")])
    assert caught.value.code == "amount_invalid"
    with pytest.raises(PaymuxError) as caught:
        rules.line_totals([])
    assert (caught.value.code, caught.value.param) == ("parameter_missing", "line_items")


def test_completion_and_payment_status_follow_stripe() -> None:
    assert rules.completion_status("succeeded") and rules.completion_status("requires_capture")
    for status in ("requires_action", "processing", "requires_payment_method", "canceled"):
        assert not rules.completion_status(status)
    assert rules.payment_status_after("payment", "succeeded") == "paid"
    assert rules.payment_status_after("payment", "requires_capture") == "unpaid"
    assert rules.payment_status_after("setup", "succeeded") == "no_payment_required"


def test_urls_must_be_absolute_http() -> None:
    assert rules.check_url("https://a.example/x", "success_url", required=True) == (
        "https://a.example/x")
    assert rules.check_url(None, "cancel_url", required=False) is None
    for bad in ("/relative", "javascript:alert(1)", "ftp://a.example/", "https://a .example"):
        with pytest.raises(PaymuxError) as caught:
            rules.check_url(bad, "success_url", required=True)
        assert (caught.value.code, caught.value.param) == ("parameter_invalid", "success_url")


def test_the_page_takes_no_stored_objects_id() -> None:
    for ref in ("src_123", "ba_123", "pi_123", "seti_123", "cus_123"):
        with pytest.raises(PaymuxError) as caught:
            rules.check_page_token(ref)
        assert (caught.value.code, caught.value.param) == ("parameter_invalid", "payment_method")
    for fresh in ("pm_1Abc", "tok_1Abc", "card_1Abc", "cnon:abc"):
        rules.check_page_token(fresh)  # what card forms make: passes


def test_the_pages_origin_check_compares_as_browsers_do() -> None:
    base = "https://pay.example"
    for same in ("https://pay.example", "https://PAY.Example", "https://pay.example:443",
                 "HTTPS://pay.example"):
        assert rules.same_origin(same, base), same
    for other in ("https://pay.example:8443", "http://pay.example", "https://evil.example",
                  "null", "", "https://pay.example.evil.example", "https://pay.example:x"):
        assert not rules.same_origin(other, base), other
    assert rules.same_origin("http://127.0.0.1:8080", "http://127.0.0.1:8080/")
    assert rules.same_origin("http://localhost", "http://LOCALHOST:80")
