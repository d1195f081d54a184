"""Signals: amount in USD from the operator's rates, email domain and disposable domains, the
payer's IP (from the browser, or the merchant's header, never the merchant's own address),
IP country from a MaxMind-format file and from a trusted proxy's header, and the risk score."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from paymux.fraud.geo import country_of_ip
from paymux.fraud.request import PayerRequest, payer_from_headers
from paymux.fraud.score import risk_level, risk_score
from paymux.fraud.signals import amount_in_usd, email_domain, facts_of, parse_usd_rates


def test_amount_in_usd_uses_the_rate_table_and_the_currency_exponent() -> None:
    rates = parse_usd_rates("EUR=1.08, jpy=0.0067")
    assert amount_in_usd(10000, "eur", rates) == Decimal("108.00")  # 100.00 EUR
    assert amount_in_usd(10000, "JPY", rates) == Decimal("67.00")  # JPY has no minor unit
    assert amount_in_usd(1999, "usd", rates) == Decimal("19.99")
    assert amount_in_usd(1000, "gbp", rates) is None  # no rate: no amount_in_usd


@pytest.mark.parametrize("bad", ["EUR", "EUR=abc", "EUR=-1", "XXQ=1.0"])
def test_a_malformed_rate_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="PAYMUX_FRAUD_USD_RATES"):
        parse_usd_rates(bad)


def test_email_domain_and_disposable_domains() -> None:
    assert email_domain("Someone@Example.COM") == "example.com"
    assert email_domain("no-at-sign") is None
    common: dict[str, Any] = {
        "amount": 100,
        "currency": "usd",
        "livemode": False,
        "off_session": None,
        "card": {},
        "billing_country": None,
        "shipping_country": None,
        "customer_id": None,
        "customer_created_us": None,
        "payer": PayerRequest(),
        "ip_country": None,
        "velocity": {},
        "rates": {},
        "now_us": 0,
    }
    throwaway = facts_of(customer_email="x@mailinator.com", **common)
    assert (throwaway["email_domain"], throwaway["is_disposable_email"]) == (
        "mailinator.com",
        True,
    )
    real = facts_of(customer_email="x@example.com", **common)
    assert real["is_disposable_email"] is False
    none = facts_of(customer_email=None, **common)
    assert "email" not in none and "is_disposable_email" not in none


def test_customer_age_is_whole_days() -> None:
    day = 86_400 * 1_000_000
    facts = facts_of(
        amount=1,
        currency="usd",
        livemode=False,
        off_session=False,
        card={"country": "us"},
        billing_country="fr",
        shipping_country=None,
        customer_id="cus_1",
        customer_email=None,
        customer_created_us=0,
        payer=PayerRequest(),
        ip_country=None,
        velocity={"declines_per_ip_hourly": 2},
        rates={},
        now_us=3 * day + 5,
    )
    assert facts["customer_age_days"] == 3
    assert facts["billing_address_country"] == "FR"
    assert facts["declines_per_ip_hourly"] == 2
    assert "shipping_address_country" not in facts


def test_the_payer_ip_comes_from_the_browser_or_the_merchants_header_only() -> None:
    headers = {"user-agent": "Browser/1", "paymux-payer-ip": "203.0.113.5"}
    browser = payer_from_headers(
        headers, peer="198.51.100.1", from_browser=True, behind_trusted_proxy=False
    )
    assert (browser.ip_address, browser.user_agent) == ("198.51.100.1", "Browser/1")
    server = payer_from_headers(
        {**headers, "paymux-payer-user-agent": "Payer/2"},
        peer="10.0.0.9",
        from_browser=False,
        behind_trusted_proxy=False,
    )
    assert (server.ip_address, server.user_agent) == ("203.0.113.5", "Payer/2")
    # a server call without the header has no payer IP: never the merchant server's address
    bare = payer_from_headers({}, peer="10.0.0.9", from_browser=False, behind_trusted_proxy=False)
    assert bare.ip_address is None
    junk = payer_from_headers(
        {"paymux-payer-ip": "not an ip"}, peer=None, from_browser=False, behind_trusted_proxy=False
    )
    assert junk.ip_address is None


def test_cf_ipcountry_is_believed_only_behind_trusted_proxies() -> None:
    headers = {"cf-ipcountry": "de"}
    assert (
        payer_from_headers(headers, peer=None, from_browser=True, behind_trusted_proxy=True)
    ).ip_country == "DE"
    assert (
        payer_from_headers(headers, peer=None, from_browser=True, behind_trusted_proxy=False)
    ).ip_country is None
    unknown = payer_from_headers(
        {"cf-ipcountry": "XX1"}, peer=None, from_browser=True, behind_trusted_proxy=True
    )
    assert unknown.ip_country is None


def test_ip_country_from_a_maxmind_format_database(tmp_path: Path) -> None:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "NZ"}})
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country": {"iso_code": "br"}})
    path = tmp_path / "countries.mmdb"
    writer.to_db_file(str(path))
    assert country_of_ip(str(path), "203.0.113.77") == "NZ"
    assert country_of_ip(str(path), "198.51.100.1") == "BR"
    assert country_of_ip(str(path), "192.0.2.1") is None  # not in the file
    assert country_of_ip("", "203.0.113.77") is None  # no database configured


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"customer_age_days": 30}, 0),
        ({}, 5),  # no customer
        ({"customer_age_days": 30, "card_country": "US", "ip_country": "FR"}, 20),
        ({"customer_age_days": 30, "card_country": "US", "ip_country": "us"}, 0),
        ({"customer_age_days": 30, "is_disposable_email": True}, 25),
        ({"customer_age_days": 30, "cvc_check": "fail"}, 30),
        ({"customer_age_days": 30, "declines_per_ip_hourly": 3}, 15),
        ({"customer_age_days": 30, "declines_per_ip_hourly": 9}, 25),  # capped at 25
        ({"customer_age_days": 30, "distinct_cards_per_ip_hourly": 4}, 10),
        ({"customer_age_days": 30, "amount_in_usd": Decimal("1000.01")}, 10),
        ({"customer_age_days": 30, "amount_in_usd": Decimal("1000.00")}, 0),
        # a gateway's risk output is not in the score (it comes after the decision)
        ({"customer_age_days": 30, "gateway_risk_level": "highest"}, 0),
        (
            {
                "cvc_check": "fail",
                "is_disposable_email": True,
                "card_country": "US",
                "ip_country": "FR",
                "declines_per_ip_hourly": 5,
            },
            100,  # 30 + 25 + 20 + 25 + 5 = 105, capped
        ),
    ],
)
def test_the_risk_score_model(facts: dict[str, Any], expected: int) -> None:
    assert risk_score(facts) == expected


def test_risk_levels_at_stripes_thresholds() -> None:
    assert [risk_level(s) for s in (0, 64, 65, 74, 75, 100)] == [
        "normal",
        "normal",
        "elevated",
        "elevated",
        "highest",
        "highest",
    ]
