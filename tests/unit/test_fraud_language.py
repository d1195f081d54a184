"""The rule language: each operator, each action, precedence, and parse errors that name the
position and what was expected. Expected values are written out by hand."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymux.fraud.defaults import default_rules
from paymux.fraud.evaluate import compile_rule, decide
from paymux.fraud.language import Action, RuleSyntaxError, parse_rule
from paymux.fraud.rules import rules_from_file


def matches(
    text: str, facts: dict[str, Any], lists: dict[str, frozenset[str]] | None = None
) -> bool:
    return compile_rule(parse_rule(text), id="r")(facts, lists or {})


# -- operators -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rule", "facts", "expected"),
    [
        ("block if :card_country: = 'US'", {"card_country": "US"}, True),
        ("block if :card_country: = 'US'", {"card_country": "FR"}, False),
        ("block if :card_country: = 'us'", {"card_country": "US"}, True),  # case-insensitive
        ("block if :card_country: != 'US'", {"card_country": "FR"}, True),
        ("block if :card_country: != 'US'", {"card_country": "US"}, False),
        ("block if :amount: < 100", {"amount": 99}, True),
        ("block if :amount: < 100", {"amount": 100}, False),
        ("block if :amount: > 100", {"amount": 101}, True),
        ("block if :amount: > 100", {"amount": 100}, False),
        ("block if :amount: <= 100", {"amount": 100}, True),
        ("block if :amount: <= 100", {"amount": 101}, False),
        ("block if :amount: >= 100", {"amount": 100}, True),
        ("block if :amount: >= 100", {"amount": 99}, False),
        ("block if :amount_in_usd: > 10.5", {"amount_in_usd": Decimal("10.51")}, True),
        ("block if :amount_in_usd: > 10.5", {"amount_in_usd": Decimal("10.50")}, False),
        ("block if :card_country: in ('US', 'CA')", {"card_country": "CA"}, True),
        ("block if :card_country: in ['US', 'CA']", {"card_country": "FR"}, False),
        ("block if :card_country: not in ('US', 'CA')", {"card_country": "FR"}, True),
        ("block if :card_country: not in ('US', 'CA')", {"card_country": "US"}, False),
        ("block if :amount: in (1, 2, 3)", {"amount": 2}, True),
        ("block if :is_disposable_email: = true", {"is_disposable_email": True}, True),
        ("block if :is_disposable_email: = false", {"is_disposable_email": True}, False),
        ("block if :is_disposable_email:", {"is_disposable_email": True}, True),
        ("block if :is_disposable_email:", {"is_disposable_email": False}, False),
        (
            "block if :card_country: != :ip_country:",
            {"card_country": "US", "ip_country": "FR"},
            True,
        ),
        (
            "block if :card_country: != :ip_country:",
            {"card_country": "us", "ip_country": "US"},
            False,
        ),
    ],
)
def test_each_operator_compares_as_written(
    rule: str, facts: dict[str, Any], expected: bool
) -> None:
    assert matches(rule, facts) is expected


@pytest.mark.parametrize(
    ("rule", "a", "b", "expected"),
    [
        ("block if :amount: > 1 and :amount: < 10", 5, None, True),
        ("block if :amount: > 1 and :amount: < 10", 50, None, False),
        ("block if :amount: < 1 or :amount: > 10", 50, None, True),
        ("block if :amount: < 1 or :amount: > 10", 5, None, False),
        ("block if not :amount: > 10", 5, None, True),
        ("block if not :amount: > 10", 50, None, False),
        # and binds tighter than or: true or (false and false) is true
        ("block if :amount: = 5 or :amount: = 6 and :risk_score: = 1", 5, 2, True),
        # parentheses change it: (true or false) and false is false
        ("block if (:amount: = 5 or :amount: = 6) and :risk_score: = 1", 5, 2, False),
        ("block if not (:amount: = 5 or :amount: = 6)", 6, None, False),
    ],
)
def test_and_or_not_and_parentheses(rule: str, a: int, b: int | None, expected: bool) -> None:
    assert matches(rule, {"amount": a, "risk_score": b}) is expected


def test_a_missing_fact_matches_no_comparison_but_is_missing() -> None:
    for rule in (
        "block if :card_country: = 'US'",
        "block if :card_country: != 'US'",
        "block if :card_country: in ('US')",
        "block if :card_country: not in ('US')",
        "block if :amount: > 0",
        "block if :card_country: != :ip_country:",
    ):
        assert matches(rule, {"card_country": None, "ip_country": "US"}) is False, rule
    assert matches("block if is_missing(:card_country:)", {}) is True
    assert matches("block if is_missing(:card_country:)", {"card_country": "US"}) is False
    assert matches("block if not is_missing(:card_country:)", {"card_country": "US"}) is True


def test_value_lists_are_looked_up_by_alias() -> None:
    lists = {"blocked_emails": frozenset({"thief@example.com"})}
    rule = "block if :email: in @blocked_emails"
    assert matches(rule, {"email": "Thief@Example.com"}, lists) is True
    assert matches(rule, {"email": "someone@example.com"}, lists) is False
    assert matches("block if :email: not in @blocked_emails", {"email": "a@b.co"}, lists) is True
    # an unknown list is empty: nothing is in it
    assert matches("block if :email: in @nothing", {"email": "thief@example.com"}, lists) is False
    assert parse_rule("block if :email: in @blocked_emails or :ip_address: in @ips").lists == {
        "blocked_emails",
        "ips",
    }


def test_keywords_are_case_insensitive_and_strings_take_escapes() -> None:
    assert matches(
        "BLOCK IF :card_brand: = 'visa' AND NOT :amount: > 5", {"card_brand": "Visa", "amount": 1}
    )
    assert matches(r"block if :email: = 'o\'brien@example.com'", {"email": "o'brien@example.com"})
    assert matches('block if :email: = "a@b.co"', {"email": "a@b.co"})


# -- actions and order ---------------------------------------------------------------------
def test_each_action_parses() -> None:
    for text, action in (
        ("allow if :amount: < 1", Action.ALLOW),
        ("block if :amount: < 1", Action.BLOCK),
        ("review if :amount: < 1", Action.REVIEW),
        ("request_3ds if :amount: < 1", Action.REQUEST_3DS),
    ):
        assert parse_rule(text).action is action


def _rules(*texts: str) -> list[Any]:
    return [compile_rule(parse_rule(t), id=f"r{i}", priority=i) for i, t in enumerate(texts)]


def test_allow_wins_over_block_and_review() -> None:
    rules = _rules("block if :amount: > 10", "review if :amount: > 10", "allow if :amount: > 10")
    d = decide(rules, {"amount": 20}, {})
    assert (d.action, d.rule and d.rule.id) == (Action.ALLOW, "r2")


def test_block_wins_over_review() -> None:
    rules = _rules("review if :amount: > 10", "block if :amount: > 10")
    d = decide(rules, {"amount": 20}, {})
    assert (d.action, d.rule and d.rule.id) == (Action.BLOCK, "r1")


def test_review_when_only_review_matches() -> None:
    rules = _rules("review if :amount: > 10", "block if :amount: > 100")
    d = decide(rules, {"amount": 20}, {})
    assert (d.action, d.rule and d.rule.id) == (Action.REVIEW, "r0")


def test_nothing_matching_allows_with_no_rule() -> None:
    d = decide(_rules("block if :amount: > 100"), {"amount": 20}, {})
    assert (d.action, d.rule, d.request_3ds) == (Action.ALLOW, None, None)


def test_request_3ds_is_evaluated_first_and_evaluation_goes_on() -> None:
    rules = _rules("request_3ds if :amount: > 10", "review if :amount: > 10")
    d = decide(rules, {"amount": 20}, {})
    assert d.action is Action.REVIEW
    assert d.request_3ds is not None and d.request_3ds.id == "r0"


def test_first_rule_of_an_action_by_priority_decides() -> None:
    rules = [
        compile_rule(parse_rule("block if :amount: > 10"), id="late", priority=5),
        compile_rule(parse_rule("block if :amount: > 1"), id="early", priority=1),
    ]
    assert (d := decide(rules, {"amount": 20}, {})).rule is not None and d.rule.id == "early"


# -- errors: position and what was expected ------------------------------------------------
@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("", 0, "an action (allow, block, review or request_3ds)"),
        ("deny if :amount: > 1", 0, "an action (allow, block, review or request_3ds)"),
        ("block :amount: > 1", 6, "'if'"),
        ("block if", 8, "an attribute (:name:) or a value"),
        ("block if :amount: > 1 :amount:", 22, "'and', 'or' or the end of the rule"),
        ("block if :nope: = 1", 9, "a known attribute (see docs/fraud.md)"),
        ("block if :amount: > 'a'", 20, "a number on the right of >"),
        ("block if :card_country: > 1", 9, "a number on the left of >"),
        (
            "block if :card_country: = 1",
            26,
            "a string to compare with (both sides of = of one kind)",
        ),
        ("block if (:amount: > 1", 22, "')' or an operator ('and', 'or')"),
        ("block if :amount: in 5", 21, "a list ('a', 'b') or an @list after 'in'"),
        ("block if :card_country: in ('US' 'CA')", 33, "',' or ')'"),
        ("block if :card_country: in ('US', 3)", 27, "a list of string values"),
        ("block if :amount:", 17, "an operator (=, !=, <, >, <=, >=, in, not in)"),
        ("block if :amount: > 1 and", 25, "an attribute (:name:) or a value"),
        ("block if is_missing :amount:", 20, "'(' after is_missing"),
        ("block if :email: = 'open", 19, "a closing quote"),
        (
            "block if :amount: > 1 # x",
            22,
            "an attribute (:name:), a value, an operator or a parenthesis",
        ),
    ],
)
def test_a_parse_error_names_the_position_and_what_was_expected(
    text: str, position: int, expected: str
) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rule(text)
    assert (caught.value.position, caught.value.expected) == (position, expected)
    assert str(caught.value).startswith(f"At position {position}: expected {expected}, found ")


def test_a_rule_too_long_is_refused() -> None:
    with pytest.raises(RuleSyntaxError):
        parse_rule("block if " + " or ".join([":amount: = 1"] * 200))


# -- properties ----------------------------------------------------------------------------
@given(st.integers(-(10**9), 10**9), st.integers(-(10**9), 10**9))
def test_ordering_operators_agree_with_integers(amount: int, limit: int) -> None:
    assert matches(f"block if :amount: < {limit}", {"amount": amount}) is (amount < limit)
    assert matches(f"block if :amount: >= {limit}", {"amount": amount}) is (amount >= limit)
    assert matches(f"block if not :amount: < {limit}", {"amount": amount}) is (amount >= limit)


@given(st.text(alphabet="abcXYZ '\"\\", max_size=12))
def test_a_quoted_string_round_trips(value: str) -> None:
    quoted = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    assert matches(f"block if :email: = {quoted}", {"email": value}) is True


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_a_positioned_error(text: str) -> None:
    try:
        parse_rule(text)
    except RuleSyntaxError as exc:
        assert 0 <= exc.position <= len(text)


# -- deployment rules from a file ----------------------------------------------------------
def test_a_rules_file_is_read_line_by_line_and_an_error_names_the_line(tmp_path: Any) -> None:
    good = tmp_path / "rules.txt"
    good.write_text("# deployment rules\n\nblock if :amount: > 100\nreview if :amount: > 50\n")
    rules = rules_from_file(str(good))
    assert [(r.id, r.action, r.predicate) for r in rules] == [
        ("config:3", Action.BLOCK, ":amount: > 100"),
        ("config:4", Action.REVIEW, ":amount: > 50"),
    ]
    assert decide(rules, {"amount": 70}, {}).action is Action.REVIEW
    bad = tmp_path / "bad.txt"
    bad.write_text("block if :amount: > 1\nblock if :amount >\n")
    with pytest.raises(ValueError, match=r"bad.txt, line 2: At position 9: expected "):
        rules_from_file(str(bad))
    listed = tmp_path / "lists.txt"
    listed.write_text("block if :email: in @blocked_emails\n")
    with pytest.raises(ValueError, match="line 1: a deployment rule can't name value lists"):
        rules_from_file(str(listed))
    assert rules_from_file("") == []


# -- the built-in rules: their stated thresholds --------------------------------------------
@pytest.mark.parametrize(
    ("facts", "blocked_by"),
    [
        ({"declines_per_ip_10m": 4}, None),
        ({"declines_per_ip_10m": 5}, "default:card_testing_ip"),
        ({"declines_per_ip_hourly": 3, "distinct_cards_per_ip_hourly": 4}, None),
        ({"declines_per_ip_hourly": 2, "distinct_cards_per_ip_hourly": 5}, None),
        (
            {"declines_per_ip_hourly": 3, "distinct_cards_per_ip_hourly": 5},
            "default:card_testing_cards",
        ),
        ({"declines_per_card_fingerprint_daily": 9}, None),
        ({"declines_per_card_fingerprint_daily": 10}, "default:card_testing_card"),
        ({"email": "a@b.co"}, None),
    ],
)
def test_the_card_testing_defaults_block_at_their_stated_thresholds(
    facts: dict[str, Any], blocked_by: str | None
) -> None:
    decision = decide(default_rules(), facts, {})
    assert (decision.rule.id if decision.rule else None) == blocked_by
    assert decision.action is (Action.BLOCK if blocked_by else Action.ALLOW)


def test_defaults_can_be_turned_off_whole_or_by_name_and_an_allow_rule_wins() -> None:
    facts = {"declines_per_ip_10m": 9, "customer": "cus_vip"}
    assert decide(default_rules(enabled=False), facts, {}).action is Action.ALLOW
    only = default_rules(disabled=frozenset({"card_testing_ip"}))
    assert decide(only, facts, {}).action is Action.ALLOW
    mine = compile_rule(parse_rule("allow if :customer: = 'cus_vip'"), id="mine")
    assert decide([mine, *default_rules()], facts, {}).action is Action.ALLOW
    lists = {"blocked_emails": frozenset({"a@b.co"})}
    assert decide(default_rules(), {"email": "A@B.co"}, lists).action is Action.BLOCK
