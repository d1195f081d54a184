"""The evaluator: pure, facts in, decision out.

A parsed rule is compiled once into nested closures (``compile_rule``), so evaluating a rule
is a handful of Python calls with no tree walking. ``decide`` applies Radar's order:
``request_3ds`` rules first (the first match asks for 3-D Secure, and evaluation goes on),
then ``allow`` (the first match allows and stops), ``block`` (the first match blocks and
stops), ``review`` (the first match reviews). Within one action, rules run by ascending
``priority`` (then by id), so which rule is reported is deterministic.

Semantics of a missing fact (the payment has no such value): every comparison with it is
false, ``in`` and ``not in`` included; ``is_missing(:x:)`` is true; ``not`` negates whatever
its operand gave. Strings compare case-insensitively (``'US' = 'us'``); value lists are held
case-folded by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from paymux.fraud.language import (
    Action,
    And,
    Attr,
    Compare,
    Expr,
    IsMissing,
    ListRef,
    Not,
    Op,
    Operand,
    Or,
    Rule,
    Truthy,
)

__all__ = ["CompiledRule", "Decision", "Facts", "Lists", "RuleSet", "compile_rule", "decide"]

Facts = Mapping[str, Any]
Lists = Mapping[str, frozenset[str]]
_Pred = Callable[[Facts, Lists], bool]

_NUMBERS: Final = frozenset({int, Decimal, float})
_EMPTY: Final[frozenset[str]] = frozenset()
_PY_OPS: Final = {
    Op.EQ: "==",
    Op.NE: "!=",
    Op.LT: "<",
    Op.GT: ">",
    Op.LE: "<=",
    Op.GE: ">=",
    Op.IN: "in",
    Op.NOT_IN: "not in",
}


def _norm(value: Any) -> Any:
    """Strings fold case; numbers and booleans stay as they are."""
    return value.casefold() if isinstance(value, str) else value


def normalized(facts: Facts) -> dict[str, Any]:
    """The facts as rules compare them: strings case-folded (once per payment)."""
    return {k: (v.casefold() if isinstance(v, str) else v) for k, v in facts.items()}


class _Source:
    """One rule as the body of a Python function ``(f, l) -> bool``: an expression over the
    facts ``f`` (normalized) and the lists ``l``. Attribute and list names come from the
    parser (known attributes, names matching its pattern) and are written with ``repr``;
    every literal is passed in as a constant (``k0``, ``k1``...), never written as text."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}

    def constant(self, value: Any) -> str:
        name = f"k{len(self.constants)}"
        self.constants[name] = value
        return name

    def expr(self, expr: Expr) -> str:
        match expr:
            case Compare(op=op, left=left, right=right):
                return self.compare(op, left, right)
            case IsMissing(attr=attr):
                return f"(f.get({attr.name!r}) is None)"
            case Truthy(attr=attr):
                return f"(f.get({attr.name!r}) is True)"
            case Not(inner=inner):
                return f"(not {self.expr(inner)})"
            case And(parts=parts):
                return "(" + " and ".join(self.expr(p) for p in parts) + ")"
            case Or(parts=parts):
                return "(" + " or ".join(self.expr(p) for p in parts) + ")"

    def operand(self, operand: Operand, checks: list[str], numeric: bool) -> str:
        """The operand's value; a fact adds the checks that it is there (and a number)."""
        if isinstance(operand, Attr):
            # The fact's value, named after it (a fact named twice is one value: each
            # comparison binds what it reads before it compares).
            name = f"v_{operand.name}"
            checks.append(f"({name} := f.get({operand.name!r})) is not None")
            if numeric:
                checks.append(f"{name}.__class__ in _NUMBERS")
            return name
        if isinstance(operand, ListRef):
            return f"l.get({operand.name!r}, _EMPTY)"
        value = operand.value
        if isinstance(value, tuple):
            return self.constant(frozenset(_norm(v) for v in value))
        return self.constant(_norm(value))

    def compare(self, op: Op, left: Operand, right: Operand) -> str:
        checks: list[str] = []
        numeric = op in (Op.LT, Op.GT, Op.LE, Op.GE)
        a = self.operand(left, checks, numeric)
        b = self.operand(right, checks, numeric)
        return "(" + " and ".join([*checks, f"{a} {_PY_OPS[op]} {b}"]) + ")"


def _compile(expr: Expr) -> _Pred:
    source = _Source()
    body = source.expr(expr)
    namespace: dict[str, Any] = {"_NUMBERS": _NUMBERS, "_EMPTY": _EMPTY, **source.constants}
    exec(f"def _rule(f, l):\n    return bool({body})\n", namespace)  # noqa: S102
    rule: _Pred = namespace["_rule"]
    return rule


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    action: Action
    predicate: str
    priority: int
    matches: _Pred
    lists: frozenset[str] = frozenset()  # the @lists it names

    def __call__(self, facts: Facts, lists: Lists) -> bool:
        """Whether the rule matches (``facts`` as signals give them)."""
        return self.matches(normalized(facts), lists)


def compile_rule(rule: Rule, *, id: str, priority: int = 0) -> CompiledRule:
    return CompiledRule(
        id, rule.action, rule.predicate, priority, _compile(rule.condition), rule.lists
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """``action`` is allow, block or review; ``request_3ds`` the rule that asked for 3-D
    Secure, if one did; ``rule`` the rule that decided ``action`` (None: nothing matched)."""

    action: Action
    rule: CompiledRule | None = None
    request_3ds: CompiledRule | None = None


def _by_action(rules: Sequence[CompiledRule]) -> dict[Action, list[CompiledRule]]:
    grouped: dict[Action, list[CompiledRule]] = {a: [] for a in Action}
    for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
        grouped[rule.action].append(rule)
    return grouped


class RuleSet:
    """Rules grouped by action and sorted once; ``decide`` is then a straight scan."""

    __slots__ = ("grouped",)

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.grouped = _by_action(rules)

    def decide(self, facts: Facts, lists: Lists) -> Decision:
        f = normalized(facts)
        three_ds = next((r for r in self.grouped[Action.REQUEST_3DS] if r.matches(f, lists)), None)
        for action in (Action.ALLOW, Action.BLOCK, Action.REVIEW):
            for rule in self.grouped[action]:
                if rule.matches(f, lists):
                    return Decision(action, rule, three_ds)
        return Decision(Action.ALLOW, None, three_ds)


def decide(rules: Sequence[CompiledRule], facts: Facts, lists: Lists) -> Decision:
    return RuleSet(rules).decide(facts, lists)
