"""The compiled evaluator against a reference interpreter written here from the documented
semantics (docs/fraud.md: a missing fact makes every comparison false, ``not`` negates,
strings fold case), over random rules and random facts (hypothesis). The rules are printed
as text and parsed, so the parser's precedence is checked on the way too."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from paymux.fraud.evaluate import compile_rule
from paymux.fraud.language import parse_rule

NUMBERS = ("amount", "risk_score", "customer_age_days")
STRINGS = ("card_country", "ip_country", "email_domain")
WORDS = ("us", "FR", "de", "example.com")

# A random condition as (text, reference function of (facts, lists)).
Cond = tuple[str, Any]


def _fold(v: Any) -> Any:
    return v.casefold() if isinstance(v, str) else v


def _get(facts: dict[str, Any], name: str) -> Any:
    return facts.get(name)


number_cmp = st.builds(
    lambda name, op, n: (
        f":{name}: {op} {n}",
        lambda f, lists, name=name, op=op, n=n: (
            _get(f, name) is not None
            and {
                "=": _get(f, name) == n,
                "!=": _get(f, name) != n,
                "<": _get(f, name) < n,
                ">": _get(f, name) > n,
                "<=": _get(f, name) <= n,
                ">=": _get(f, name) >= n,
            }[op]
        ),
    ),
    st.sampled_from(NUMBERS),
    st.sampled_from(["=", "!=", "<", ">", "<=", ">="]),
    st.integers(-1, 1),
)
string_cmp = st.builds(
    lambda name, op, w: (
        f":{name}: {op} '{w}'",
        lambda f, lists, name=name, op=op, w=w: (
            _get(f, name) is not None and ((_fold(_get(f, name)) == _fold(w)) is (op == "="))
        ),
    ),
    st.sampled_from(STRINGS),
    st.sampled_from(["=", "!="]),
    st.sampled_from(WORDS),
)
attr_cmp = st.builds(
    lambda a, b, op: (
        f":{a}: {op} :{b}:",
        lambda f, lists, a=a, b=b, op=op: (
            _get(f, a) is not None
            and _get(f, b) is not None
            and ((_fold(_get(f, a)) == _fold(_get(f, b))) is (op == "="))
        ),
    ),
    st.sampled_from(STRINGS),
    st.sampled_from(STRINGS),
    st.sampled_from(["=", "!="]),
)
membership = st.builds(
    lambda name, op, items, use_list: (
        f":{name}: {op} "
        + ("@words" if use_list else "(" + ", ".join(f"'{w}'" for w in items) + ")"),
        lambda f, lists, name=name, op=op, items=items, use_list=use_list: (
            _get(f, name) is not None
            and (
                (
                    _fold(_get(f, name))
                    in (lists["words"] if use_list else {_fold(w) for w in items})
                )
                is (op == "in")
            )
        ),
    ),
    st.sampled_from(STRINGS),
    st.sampled_from(["in", "not in"]),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
    st.booleans(),
)
missing = st.builds(
    lambda name: (f"is_missing(:{name}:)", lambda f, lists, name=name: _get(f, name) is None),
    st.sampled_from(NUMBERS + STRINGS),
)
leaf = st.one_of(number_cmp, string_cmp, attr_cmp, membership, missing)


def _combine(children: st.SearchStrategy[Cond]) -> st.SearchStrategy[Cond]:
    both = st.tuples(children, children)
    return st.one_of(
        st.builds(
            lambda ab: (
                f"({ab[0][0]} and {ab[1][0]})",
                lambda f, lists, ab=ab: ab[0][1](f, lists) and ab[1][1](f, lists),
            ),
            both,
        ),
        st.builds(
            lambda ab: (
                f"({ab[0][0]} or {ab[1][0]})",
                lambda f, lists, ab=ab: ab[0][1](f, lists) or ab[1][1](f, lists),
            ),
            both,
        ),
        st.builds(lambda c: (f"not {c[0]}", lambda f, lists, c=c: not c[1](f, lists)), children),
    )


conditions = st.recursive(leaf, _combine, max_leaves=6)
# Every attribute present (most often) or missing (None), values from a small range so
# that equal values, the boundary of every ordering, come up often.
facts = st.fixed_dictionaries(
    {
        **{n: st.sampled_from([None, -1, 0, 1, Decimal("0.5")]) for n in NUMBERS},
        **{s: st.sampled_from([None, *WORDS, "US", "Fr"]) for s in STRINGS},
    }
)


@settings(max_examples=400, deadline=None)
@given(conditions, facts)
def test_the_compiled_rule_agrees_with_the_reference_semantics(
    cond: Cond, given_facts: dict[str, Any]
) -> None:
    text, reference = cond
    lists = {"words": frozenset({"us", "example.com"})}
    rule = compile_rule(parse_rule(f"block if {text}"), id="r")
    assert rule(given_facts, lists) is bool(reference(given_facts, lists)), text


@settings(max_examples=300, deadline=None)
@given(leaf, facts)
def test_each_comparison_agrees_with_the_reference_semantics(
    cond: Cond, given_facts: dict[str, Any]
) -> None:
    text, reference = cond
    lists = {"words": frozenset({"us", "example.com"})}
    rule = compile_rule(parse_rule(f"block if {text}"), id="r")
    assert rule(given_facts, lists) is bool(reference(given_facts, lists)), text
