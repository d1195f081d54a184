"""The payments page's filters, read from a query string (pure)."""

from __future__ import annotations

from paymux.dashboard.filters import parse_filters


def test_every_filter_is_read() -> None:
    f = parse_filters({
        "status": "failed", "currency": "eur", "gateway": "stripe", "customer": "cus_123",
        "amount_min": "10.5", "amount_max": "20", "created_from": "2026-12-01",
        "created_to": "2026-12-02", "metadata": "order_id = 1042"})
    assert f.errors == {}
    assert (f.status, f.currency, f.gateway, f.customer) == ("failed", "EUR", "stripe", "cus_123")
    assert (f.amount_min, f.amount_max) == (1050, 2000)
    # 2026-12-01T00:00:00Z and 2026-12-02T23:59:59Z
    assert (f.created_gte, f.created_lte) == (1_796_083_200, 1_796_255_999)
    assert (f.metadata_key, f.metadata_value) == ("order_id", "1042")


def test_a_zero_decimal_currency_takes_whole_units() -> None:
    f = parse_filters({"currency": "JPY", "amount_min": "500"})
    assert f.amount_min == 500
    assert parse_filters({"currency": "JPY", "amount_min": "5.5"}).errors == {
        "amount_min": "An amount such as 10.50."}


def test_bad_values_are_reported_and_ignored() -> None:
    f = parse_filters({
        "status": "lost", "currency": "XXQ", "gateway": "bank", "customer": "cus 1;drop",
        "amount_min": "10", "created_from": "12/01/2026", "metadata": "no-equals-sign"})
    assert set(f.errors) == {
        "status", "currency", "gateway", "customer", "amount_min", "created_from", "metadata"}
    assert f.amount_min is None and f.status is None and f.metadata_key is None


def test_the_pager_keeps_the_filters() -> None:
    f = parse_filters({"status": "succeeded", "currency": "usd"})
    assert f.query(starting_after="pi_1") == "status=succeeded&currency=usd&starting_after=pi_1"
    assert parse_filters({}).query() == ""
