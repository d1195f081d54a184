"""What mutation testing (mutmut, docs/mutation.md) found the evaluator's tests did not pin
down: a number comparison with a fact that is not a number (on either side) is false, never a
TypeError; a compiled rule's default priority and its lists; a request_3ds rule reading a value
list; and the decision when only request_3ds matched. Expected values are written by hand."""

from __future__ import annotations

from typing import Any

import pytest

from paymux.fraud.evaluate import Decision, compile_rule, decide
from paymux.fraud.language import Action, parse_rule


def matches(text: str, facts: dict[str, Any]) -> bool:
    return compile_rule(parse_rule(text), id="r")(facts, {})


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        # A numeric attribute whose fact is a string or a boolean (not a number): false.
        ("block if :amount: > 5", {"amount": "10"}),
        ("block if :amount: < 5", {"amount": True}),
        ("block if :amount: >= 0", {"amount": False}),
        # Two attributes: each side is checked.
        ("block if :risk_score: < :amount:", {"risk_score": "1", "amount": 10}),
        ("block if :risk_score: < :amount:", {"risk_score": 1, "amount": "10"}),
    ],
)
def test_a_number_comparison_with_a_fact_that_is_not_a_number_is_false(
    text: str, facts: dict[str, Any]
) -> None:
    assert matches(text, facts) is False


def test_the_same_comparisons_with_numbers_match() -> None:
    assert matches("block if :amount: > 5", {"amount": 10}) is True
    assert matches("block if :risk_score: < :amount:", {"risk_score": 1, "amount": 10}) is True
    assert matches("block if :amount: > :amount:", {"amount": 3}) is False
    assert matches("block if :amount: = :amount: and :amount: > 2", {"amount": 3}) is True


def test_a_compiled_rule_keeps_its_lists_and_has_priority_zero_unless_told() -> None:
    rule = compile_rule(
        parse_rule("block if :card_fingerprint: in @blocked_cards or :email: in @bad"), id="r1"
    )
    assert rule.priority == 0
    assert rule.lists == frozenset({"blocked_cards", "bad"})
    assert compile_rule(parse_rule("block if :amount: > 1"), id="r2").lists == frozenset()


def test_a_rule_without_a_priority_runs_before_one_with_priority_one() -> None:
    late = compile_rule(parse_rule("block if :amount: > 1"), id="a", priority=1)
    default = compile_rule(parse_rule("block if :amount: > 2"), id="b")
    decision = decide([late, default], {"amount": 10}, {})
    assert decision.rule is default


def test_request_3ds_rules_read_the_value_lists() -> None:
    asks = compile_rule(parse_rule("request_3ds if :card_fingerprint: in @risky"), id="r3")
    lists = {"risky": frozenset({"fp_1"})}
    assert decide([asks], {"card_fingerprint": "fp_1"}, lists) == Decision(Action.ALLOW, None, asks)
    assert decide([asks], {"card_fingerprint": "fp_2"}, lists) == Decision(Action.ALLOW)


def test_only_request_3ds_matching_allows_without_a_deciding_rule() -> None:
    asks = compile_rule(parse_rule("request_3ds if :amount: > 500"), id="r3")
    blocks = compile_rule(parse_rule("block if :amount: > 5000"), id="r4")
    decision = decide([asks, blocks], {"amount": 600}, {})
    assert (decision.action, decision.rule, decision.request_3ds) == (Action.ALLOW, None, asks)
    decision = decide([asks, blocks], {"amount": 6000}, {})
    assert (decision.action, decision.rule, decision.request_3ds) == (Action.BLOCK, blocks, asks)
