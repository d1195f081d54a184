"""What mutation testing (mutmut, docs/mutation.md) found the parser's tests did not pin down:
the ``found`` part of every syntax error (the end of the rule, a token as written, a list),
and the errors of a list literal and of a list on the left of an operator. Positions,
expectations and messages are written out by hand from the grammar (language.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from paymux.fraud.attributes import Kind
from paymux.fraud.language import (
    MAX_NESTING,
    And,
    Attr,
    Compare,
    Literal,
    Not,
    Op,
    Or,
    RuleSyntaxError,
    parse_rule,
)

# A string token is named as written, quotes included, and quoted again (repr).
STRING_US = "\"'US'\""
STRING_X = "\"'x'\""


@pytest.mark.parametrize(
    ("text", "position", "expected", "found"),
    [
        # Nothing after 'if': the end of the rule is named as such.
        ("block if ", 9, "an attribute (:name:) or a value", "the end of the rule"),
        ("block if :amount: >", 19, "an attribute (:name:) or a value", "the end of the rule"),
        # A token: named as written, quoted.
        ("block if :amount: > 5 )", 22, "'and', 'or' or the end of the rule", "')'"),
        ("block when :amount: > 5", 6, "'if'", "'when'"),
        # A list literal with a hole in it.
        ("block if :card_country: in ('US', )", 34, "a string or number in the list", "')'"),
        ("block if :card_country: in [)", 28, "a string or number in the list", "')'"),
        # 'in' wants a list; a list wants items of the attribute's kind.
        (
            "block if :card_country: in 'US'",
            27,
            "a list ('a', 'b') or an @list after 'in'",
            STRING_US,
        ),
        ("block if :amount: in (1, 'x')", 21, "a list of number values", "the string 'x'"),
        (
            "block if :card_country: in",
            26,
            "an attribute, a value, a list or an @list",
            "the end of the rule",
        ),
        # A list only after 'in' / 'not in'.
        ("block if :amount: = (1)", 20, "an attribute (:name:) or a value", "'('"),
        ("block if :amount: < [1]", 20, "an attribute (:name:) or a value", "'['"),
        # Number comparisons want numbers on both sides; '=' wants one kind on both.
        ("block if :card_country: < 5", 9, "a number on the left of <", "a string"),
        ("block if :amount: < 'x'", 20, "a number on the right of <", STRING_X),
        (
            "block if :amount: = 'x'",
            20,
            "a number to compare with (both sides of = of one kind)",
            STRING_X,
        ),
        # Text no token starts with; a string never closed (either quote).
        (
            "block if :amount: > 5 $",
            22,
            "an attribute (:name:), a value, an operator or a parenthesis",
            "'$'",
        ),
        ("block if :email: = 'a@b", 19, "a closing quote", "an unterminated string"),
        ('block if :email: = "a@b', 19, "a closing quote", "an unterminated string"),
        # A number token where a string was wanted: named as written.
        (
            "block if :card_country: = 5",
            26,
            "a string to compare with (both sides of = of one kind)",
            "'5'",
        ),
        # is_missing takes one attribute, closed.
        ("block if is_missing(5)", 20, "an attribute (:name:)", "'5'"),
        ("block if is_missing(:email: 5", 28, "')'", "'5'"),
        # An attribute the table doesn't know: named as written.
        ("block if :nope: > 1", 9, "a known attribute (see docs/fraud.md)", "':nope:'"),
        # A list before the operator: the position is the list's, and what was found "a list".
        (
            "block if @blocked_cards = 'x'",
            9,
            "an attribute or a value before the operator",
            "a list",
        ),
    ],
)
def test_a_syntax_error_names_its_position_what_was_expected_and_what_was_found(
    text: str, position: int, expected: str, found: str
) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rule(text)
    error = caught.value
    assert (error.position, error.expected, error.found) == (position, expected, found)
    assert str(error) == f"At position {position}: expected {expected}, found {found}."


def test_one_condition_is_itself_not_an_and_or_an_or_of_one() -> None:
    amount_over_1 = Compare(Op.GT, Attr("amount", Kind.NUMBER), Literal(1))
    amount_under_9 = Compare(Op.LT, Attr("amount", Kind.NUMBER), Literal(9))
    assert parse_rule("block if :amount: > 1").condition == amount_over_1
    assert parse_rule("block if (:amount: > 1)").condition == amount_over_1
    assert parse_rule("block if :amount: > 1 and :amount: < 9").condition == And(
        (amount_over_1, amount_under_9)
    )
    assert parse_rule("block if :amount: > 1 or not :amount: < 9").condition == Or(
        (amount_over_1, Not(amount_under_9))
    )


NOT_FIRST = "block if not :is_disposable_email: and "  # 39 characters
PARENS_FIRST = "block if (:is_disposable_email:) and "  # 37 characters


@pytest.mark.parametrize("before", [NOT_FIRST, PARENS_FIRST])
def test_a_closed_not_or_parenthesis_gives_back_exactly_one_level(before: str) -> None:
    """After a ``not`` or a parenthesis closed, the nesting is 0 again: 32 levels more parse,
    33 are refused at the 33rd opening parenthesis."""
    assert MAX_NESTING == 32
    inner = ":amount: > 1"
    parse_rule(before + "(" * 32 + inner + ")" * 32)
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rule(before + "(" * 33 + inner + ")" * 33)
    error = caught.value
    assert (error.position, error.expected, error.found) == (
        len(before) + 32,
        "at most 32 levels of 'not' and parentheses",
        "'('",
    )
    assert len(NOT_FIRST) == 39 and len(PARENS_FIRST) == 37


def test_a_rule_of_2000_characters_is_taken_and_one_longer_is_refused() -> None:
    rule = "block if :amount: > 1"
    assert len(parse_rule(rule + " " * (2000 - len(rule))).predicate) == len(":amount: > 1")
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rule(rule + " " * (2001 - len(rule)))
    error = caught.value
    assert (error.position, error.expected, error.found) == (
        2000,
        "at most 2000 characters",
        "more",
    )


def test_a_rule_keeps_its_text_trimmed_as_its_source() -> None:
    parsed = parse_rule("  block if :amount: > 1  ")
    assert parsed.source == "block if :amount: > 1"
    assert parsed.predicate == ":amount: > 1"


def test_a_whole_number_is_an_int_and_a_fraction_a_decimal() -> None:
    whole = parse_rule("block if :amount: > 5").condition
    fraction = parse_rule("block if :amount: > 5.25").condition
    assert isinstance(whole, Compare) and isinstance(fraction, Compare)
    assert isinstance(whole.right, Literal) and isinstance(fraction.right, Literal)
    assert type(whole.right.value) is int and whole.right.value == 5
    assert type(fraction.right.value) is Decimal and fraction.right.value == Decimal("5.25")
