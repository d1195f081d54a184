"""Review findings on issue 13 (round 2): a rule nested beyond what the parser allows is a
positioned syntax error (never a rule that 500s every confirm), and a review's hold is
carried by the confirm's fraud decision, not by the merchant's capture_method."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymux.fraud.evaluate import compile_rule
from paymux.fraud.language import MAX_NESTING, RuleSyntaxError, parse_rule
from paymux.gateways.base import AuthorizeRequest
from paymux.gateways.stripe import transformers
from paymux.money import Money
from paymux.services.attempts import authorize_request, captures_at_once
from paymux.storage.models import PaymentIntent

FACTS: dict[str, Any] = {"livemode": False, "amount": 100}


def _nots(n: int) -> str:
    return "block if " + "not " * n + ":livemode:"


def _parens(n: int) -> str:
    return "block if " + "(" * n + ":amount: > 5" + ")" * n


def test_nesting_up_to_the_cap_parses_and_evaluates() -> None:
    # 32 nots of a false fact: even, so the rule is false; 31: true
    assert compile_rule(parse_rule(_nots(32)), id="r")(FACTS, {}) is False
    assert compile_rule(parse_rule(_nots(31)), id="r")(FACTS, {}) is True
    assert compile_rule(parse_rule(_parens(32)), id="r")(FACTS, {}) is True


def test_one_level_past_the_cap_is_an_error_at_that_position() -> None:
    with pytest.raises(RuleSyntaxError) as nots:
        parse_rule(_nots(33))
    # "block if " is 9 characters, each "not " 4: the 33rd not starts at 9 + 32 * 4
    assert nots.value.position == 9 + 32 * 4
    assert nots.value.expected == "at most 32 levels of 'not' and parentheses"
    with pytest.raises(RuleSyntaxError) as parens:
        parse_rule(_parens(33))
    assert parens.value.position == 9 + 32


def test_the_reviewers_rules_are_refused_not_crashing() -> None:
    for text in (_nots(200), _parens(240), "block if " + "not (" * 150 + ":livemode:" + ")" * 150):
        with pytest.raises(RuleSyntaxError):
            parse_rule(text)


_LEAF = st.sampled_from([":livemode:", ":amount: > 5", "is_missing(:email:)", ":amount: in (1, 2)"])


@st.composite
def _nested(draw: st.DrawFn) -> tuple[str, int]:
    """A random rule body and its nesting depth (nots and parentheses)."""
    depth = draw(st.integers(0, 60))
    text, level = draw(_LEAF), 0
    for _ in range(depth):
        kind = draw(st.sampled_from(["not", "paren", "and", "or"]))
        if kind == "not":
            text, level = f"not {text}", level + 1
        elif kind == "paren":
            text, level = f"({text})", level + 1
        else:
            text = f"({text} {kind} {draw(_LEAF)})"
            level += 1
    return text, level


@given(_nested())
def test_any_nesting_parses_and_compiles_within_the_cap_or_is_a_positioned_error(
    case: tuple[str, int],
) -> None:
    body, level = case
    text = f"block if {body}"
    if level <= MAX_NESTING:
        rule = compile_rule(parse_rule(text), id="r")
        assert rule(FACTS, {}) in (True, False)
    else:
        with pytest.raises(RuleSyntaxError) as err:
            parse_rule(text)
        assert 9 <= err.value.position < len(text)


def _intent(capture_method: str, fraud_outcome: dict[str, Any] | None) -> PaymentIntent:
    return PaymentIntent(
        id="pi_hold1",
        amount=7000,
        currency="usd",
        capture_method=capture_method,
        fraud_outcome=fraud_outcome,
        off_session=False,
    )


def test_a_review_hold_authorizes_only_without_touching_capture_method() -> None:
    held = _intent("automatic", {"hold": True, "outcome": {"type": "manual_review"}})
    assert captures_at_once(held) is False
    assert authorize_request(held, "tok", None).capture is False
    assert held.capture_method == "automatic"
    # the next confirm's decision (no hold) captures again; manual stays manual
    assert captures_at_once(_intent("automatic", {"hold": False})) is True
    assert captures_at_once(_intent("automatic", None)) is True
    assert captures_at_once(_intent("manual", {"hold": False})) is False


def _request(capture: bool) -> AuthorizeRequest:
    return AuthorizeRequest(
        amount=Money(7000, "USD"),
        payment_method_token="pm_card_visa",
        capture=capture,
        reference="pi_hold1",
        gateway_reference="pi_stripe1",
    )


def test_stripe_update_before_confirm_sets_manual_capture_when_authorizing_only() -> None:
    update, confirm = transformers.update_then_confirm_params(_request(False), "k1")
    assert update == {
        "payment_method": "pm_card_visa",
        "metadata": {"paymux_key": "k1"},
        "capture_method": "manual",
    }
    assert confirm == {}
    update, _ = transformers.update_then_confirm_params(_request(True), "k1")
    assert "capture_method" not in update  # as opened (the merchant's choice)


def test_cf_ipcountry_is_ignored_on_a_merchant_server_s_call_even_behind_proxies() -> None:
    from paymux.fraud.request import payer_from_headers

    headers = {"cf-ipcountry": "de", "paymux-payer-ip": "203.0.113.5"}
    server = payer_from_headers(headers, peer="10.0.0.9", from_browser=False,
                                behind_trusted_proxy=True)
    assert (server.ip_address, server.ip_country) == ("203.0.113.5", None)
    browser = payer_from_headers(headers, peer="198.51.100.1", from_browser=True,
                                 behind_trusted_proxy=True)
    assert (browser.ip_address, browser.ip_country) == ("198.51.100.1", "DE")


def test_fraud_settings_are_refused_at_start_not_at_a_payment(tmp_path: Any) -> None:
    from pydantic import ValidationError

    from paymux.config import Settings
    from paymux.fraud.rules import check_settings

    with pytest.raises(ValidationError, match=r"EUR:1\.08"):
        Settings(fraud_usd_rates="EUR:1.08")
    with pytest.raises(ValidationError, match="GBP=-2"):
        Settings(fraud_usd_rates="EUR=1.08,GBP=-2")
    with pytest.raises(ValueError, match="XXZ=1"):  # well formed, no such currency
        check_settings(Settings(fraud_usd_rates="XXZ=1"))
    with pytest.raises(ValueError, match="'card_testing_ipp'"):
        check_settings(Settings(fraud_disabled_defaults="card_testing_ip, card_testing_ipp"))
    missing = tmp_path / "nope.mmdb"
    with pytest.raises(ValueError, match="PAYMUX_FRAUD_GEOIP_DATABASE"):
        check_settings(Settings(fraud_geoip_database=str(missing)))
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"not a database")
    with pytest.raises(ValueError, match="PAYMUX_FRAUD_GEOIP_DATABASE"):
        check_settings(Settings(fraud_geoip_database=str(garbage)))
    check_settings(Settings(fraud_usd_rates="EUR=1.08", fraud_disabled_defaults="card_testing_ip"))


def test_a_browser_behind_an_undeclared_proxy_is_warned_about_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paymux.fraud import request

    monkeypatch.setattr(request, "_warned", [])
    with caplog.at_level("WARNING", logger="paymux.fraud.request"):
        request.payer_from_headers({}, peer="8.8.8.8", from_browser=True,
                                   behind_trusted_proxy=False)
        assert caplog.records == []  # a public address: the payer's own
        for _ in range(3):
            request.payer_from_headers({}, peer="10.1.2.3", from_browser=True,
                                       behind_trusted_proxy=False)
    assert len(caplog.records) == 1
    assert "PAYMUX_TRUSTED_PROXIES" in caplog.records[0].getMessage()


def test_request_3ds_on_a_gateway_paymux_cannot_ask_is_a_review_not_a_pass() -> None:
    from paymux.fraud.decisions import _fail_closed
    from paymux.fraud.evaluate import Decision
    from paymux.fraud.language import Action

    asks = compile_rule(parse_rule("request_3ds if :amount: > 5000"), id="frr_3ds")
    allowed = Decision(Action.ALLOW, None, asks)
    for gateway in ("square", "paypal", "some_plugin"):
        pi = PaymentIntent(id="pi_1", gateway=gateway, off_session=False)
        decided = _fail_closed(allowed, pi)
        assert (decided.action, decided.rule, decided.request_3ds) == (Action.REVIEW, asks, asks)
    for gateway in ("stripe", "sandbox"):  # asked at the gateway: no change
        pi = PaymentIntent(id="pi_1", gateway=gateway, off_session=False)
        assert _fail_closed(allowed, pi) is allowed
    off = PaymentIntent(id="pi_1", gateway="square", off_session=True)
    assert _fail_closed(allowed, off) is allowed  # no payer to authenticate
    blocked = Decision(Action.BLOCK, asks, asks)
    assert _fail_closed(blocked, PaymentIntent(id="pi_1", gateway="square")) is blocked


def test_velocity_keys_are_hmac_under_the_deployment_secret() -> None:
    import hashlib
    import hmac

    from paymux.fraud import velocity

    plain = hashlib.sha256(b"ip:198.51.100.7").hexdigest()
    keyed = hmac.new(b"s3cret", b"ip:198.51.100.7", hashlib.sha256).hexdigest()
    assert velocity.digest("ip", "198.51.100.7") == plain
    assert velocity.digest("ip", "198.51.100.7", b"s3cret") == keyed != plain
