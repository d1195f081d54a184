"""The rule language: Radar's syntax, parsed by hand into a small tree.

    rule       := ACTION "if" expr
    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" expr ")" | "is_missing" "(" ATTR ")" | operand [op operand]
    op         := "=" | "!=" | "<" | ">" | "<=" | ">=" | "in" | "not" "in"
    operand    := ATTR | STRING | NUMBER | "true" | "false" | LIST | "@" NAME
    LIST       := "(" literal ("," literal)* ")" | "[" literal ("," literal)* "]"

``ACTION`` is one of ``allow``, ``block``, ``review``, ``request_3ds``; ``ATTR`` is
``:name:`` from ``attributes.ATTRIBUTES``; keywords are case-insensitive. A bare boolean
attribute (``block if :is_disposable_email:``) is a condition of its own.

Every error is a ``RuleSyntaxError`` with the 0-based ``position`` in the text and what was
``expected`` there. Types are checked here too: ``<`` and friends take numbers, ``in`` takes a
list or an ``@list``, and both sides of ``=`` must be of one kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final

from paymux.fraud.attributes import ATTRIBUTES, Kind

__all__ = [
    "MAX_NESTING",
    "MAX_RULE_LENGTH",
    "Action",
    "And",
    "Attr",
    "Compare",
    "Expr",
    "IsMissing",
    "ListRef",
    "Literal",
    "Not",
    "Op",
    "Operand",
    "Or",
    "Rule",
    "RuleSyntaxError",
    "Truthy",
    "Value",
    "parse_rule",
]

MAX_RULE_LENGTH: Final = 2000
# How deep ``not`` and parentheses may nest: far beyond any real rule, and well inside what
# the parser (recursive) and the compiled Python expression (evaluate.py) can take.
MAX_NESTING: Final = 32

Value = str | int | Decimal | bool


class Action(StrEnum):
    REQUEST_3DS = "request_3ds"
    ALLOW = "allow"
    BLOCK = "block"
    REVIEW = "review"


class Op(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    GT = ">"
    LE = "<="
    GE = ">="
    IN = "in"
    NOT_IN = "not in"


@dataclass(frozen=True, slots=True)
class Attr:
    name: str
    kind: Kind


@dataclass(frozen=True, slots=True)
class Literal:
    value: Value | tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class ListRef:
    name: str


Operand = Attr | Literal | ListRef


@dataclass(frozen=True, slots=True)
class Compare:
    op: Op
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class IsMissing:
    attr: Attr


@dataclass(frozen=True, slots=True)
class Truthy:
    attr: Attr


@dataclass(frozen=True, slots=True)
class Not:
    inner: Expr


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Expr, ...]


Expr = Compare | IsMissing | Truthy | Not | And | Or


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    condition: Expr
    source: str
    predicate: str  # the condition as written (Stripe's ``outcome.rule.predicate``)

    @property
    def lists(self) -> frozenset[str]:
        """The ``@lists`` the rule names."""
        return frozenset(_lists_of(self.condition))


class RuleSyntaxError(ValueError):
    """A rule that doesn't parse or doesn't type-check; ``position`` is a 0-based offset."""

    def __init__(self, position: int, expected: str, found: str) -> None:
        self.position = position
        self.expected = expected
        self.found = found
        super().__init__(f"At position {position}: expected {expected}, found {found}.")


# -- tokens --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # word, attr, list, string, number, op, punct, end
    text: str
    pos: int
    value: Value | None = None


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<attr>:[A-Za-z_][A-Za-z0-9_]*:)
  | (?P<list>@[A-Za-z_][A-Za-z0-9_.-]*)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_.]))
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<punct>[()\[\],])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_UNESCAPE = re.compile(r"\\(.)")


def _describe(tok: _Tok) -> str:
    # Only the end has no text (each token pattern matches at least one character).
    return "the end of the rule" if tok.text == "" else repr(tok.text)


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] in ("'", '"'):
                raise RuleSyntaxError(pos, "a closing quote", "an unterminated string")
            raise RuleSyntaxError(
                pos,
                "an attribute (:name:), a value, an operator or a parenthesis",
                repr(text[pos]),
            )
        kind = m.lastgroup
        assert kind is not None
        raw = m.group()
        if kind == "string":
            out.append(_Tok(kind, raw, pos, _UNESCAPE.sub(r"\1", raw[1:-1])))
        elif kind == "number":  # digits, with a fractional part or not: the pattern's
            out.append(_Tok(kind, raw, pos, int(raw) if "." not in raw else Decimal(raw)))
        elif kind == "word":
            out.append(_Tok(kind, raw.lower(), pos))
        elif kind != "ws":
            out.append(_Tok(kind, raw, pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


# -- parser --------------------------------------------------------------------------------
_COMPARE_OPS: Final = {o.value: o for o in Op if o not in (Op.IN, Op.NOT_IN)}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def deeper(self) -> None:
        """One more level of ``not`` or ``(``: at most ``MAX_NESTING``."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail(f"at most {MAX_NESTING} levels of 'not' and parentheses")

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, expected: str) -> RuleSyntaxError:
        return RuleSyntaxError(self.tok.pos, expected, _describe(self.tok))

    def word(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text in words

    def punct(self, char: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == char

    def expect_punct(self, char: str, expected: str) -> None:
        if not self.punct(char):
            raise self.fail(expected)
        self.take()

    def rule(self, source: str) -> Rule:
        if not self.word(*(a.value for a in Action)):
            raise self.fail("an action (allow, block, review or request_3ds)")
        action = Action(self.take().text)
        if not self.word("if"):
            raise self.fail("'if'")
        self.take()
        start = self.tok.pos
        condition = self.expr()
        if self.tok.kind != "end":
            raise self.fail("'and', 'or' or the end of the rule")
        return Rule(action, condition, source, self.text[start:].strip())

    def expr(self) -> Expr:
        parts = [self.and_expr()]
        while self.word("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> Expr:
        parts = [self.not_expr()]
        while self.word("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def not_expr(self) -> Expr:
        if self.word("not"):
            self.deeper()
            self.take()
            inner = Not(self.not_expr())
            self.depth -= 1
            return inner
        return self.primary()

    def primary(self) -> Expr:
        if self.punct("("):
            self.deeper()
            self.take()
            inner = self.expr()
            self.expect_punct(")", "')' or an operator ('and', 'or')")
            self.depth -= 1
            return inner
        if self.word("is_missing"):
            self.take()
            self.expect_punct("(", "'(' after is_missing")
            if self.tok.kind != "attr":
                raise self.fail("an attribute (:name:)")
            attr = self.attr()
            self.expect_punct(")", "')'")
            return IsMissing(attr)
        start = self.tok
        left = self.operand()
        op: Op
        if self.tok.kind == "op":
            op = _COMPARE_OPS[self.take().text]
        elif self.word("in"):
            self.take()
            op = Op.IN
        elif (
            self.word("not")
            and self.toks[self.i + 1].kind == "word"
            and (self.toks[self.i + 1].text == "in")
        ):
            self.i += 2
            op = Op.NOT_IN
        elif isinstance(left, Attr) and left.kind is Kind.BOOLEAN:
            return Truthy(left)
        else:
            raise self.fail("an operator (=, !=, <, >, <=, >=, in, not in)")
        right_tok = self.tok
        right = self.operand(list_allowed=op in (Op.IN, Op.NOT_IN))
        return _typed(op, left, right, start, right_tok)

    def attr(self) -> Attr:
        tok = self.take()
        name = tok.text[1:-1]
        kind = ATTRIBUTES.get(name)
        if kind is None:
            raise RuleSyntaxError(tok.pos, "a known attribute (see docs/fraud.md)", repr(tok.text))
        return Attr(name, kind)

    def operand(self, *, list_allowed: bool = False) -> Operand:
        tok = self.tok
        if tok.kind == "attr":
            return self.attr()
        if tok.kind == "list":
            self.take()
            return ListRef(tok.text[1:])
        if list_allowed and tok.kind == "punct" and tok.text in ("(", "["):
            return self.list_literal()
        value = self.literal()
        if value is None:
            what = (
                "an attribute, a value, a list or an @list"
                if list_allowed
                else ("an attribute (:name:) or a value")
            )
            raise self.fail(what)
        return Literal(value)

    def literal(self) -> Value | None:
        tok = self.tok
        if tok.kind in ("string", "number"):
            self.take()
            assert tok.value is not None
            return tok.value
        if self.word("true", "false"):
            self.take()
            return tok.text == "true"
        return None

    def list_literal(self) -> Literal:
        close = ")" if self.take().text == "(" else "]"
        items: list[Value] = []
        while True:
            value = self.literal()
            if value is None:
                raise self.fail("a string or number in the list")
            items.append(value)
            if self.punct(","):
                self.take()
                continue
            self.expect_punct(close, f"',' or '{close}'")
            return Literal(tuple(items))


def _kind_of(operand: Operand) -> Kind | None:
    """The kind of one side, or None for a list (either literal or ``@list``)."""
    if isinstance(operand, Attr):
        return operand.kind
    if isinstance(operand, ListRef) or isinstance(operand.value, tuple):
        return None
    value = operand.value
    if isinstance(value, bool):
        return Kind.BOOLEAN
    return Kind.STRING if isinstance(value, str) else Kind.NUMBER


def _typed(op: Op, left: Operand, right: Operand, start: _Tok, right_tok: _Tok) -> Compare:
    lk, rk = _kind_of(left), _kind_of(right)
    if lk is None:
        raise RuleSyntaxError(start.pos, "an attribute or a value before the operator", "a list")
    if op in (Op.IN, Op.NOT_IN):
        if rk is not None:
            raise RuleSyntaxError(
                right_tok.pos, "a list ('a', 'b') or an @list after 'in'", _describe(right_tok)
            )
        if isinstance(right, Literal):
            assert isinstance(right.value, tuple)
            for item in right.value:
                item_kind = _kind_of(Literal(item))
                if item_kind is not lk:
                    raise RuleSyntaxError(
                        right_tok.pos, f"a list of {lk} values", f"the {item_kind} {item!r}"
                    )
        return Compare(op, left, right)
    if op in (Op.LT, Op.GT, Op.LE, Op.GE):
        if lk is not Kind.NUMBER:
            raise RuleSyntaxError(start.pos, f"a number on the left of {op.value}", f"a {lk}")
        if rk is not Kind.NUMBER:
            raise RuleSyntaxError(
                right_tok.pos, f"a number on the right of {op.value}", _describe(right_tok)
            )
        return Compare(op, left, right)
    if rk is not lk:
        raise RuleSyntaxError(
            right_tok.pos,
            f"a {lk} to compare with (both sides of {op.value} of one kind)",
            _describe(right_tok),
        )
    return Compare(op, left, right)


def _lists_of(expr: Expr) -> list[str]:
    match expr:
        case Compare(left=left, right=right):
            return [o.name for o in (left, right) if isinstance(o, ListRef)]
        case IsMissing() | Truthy():
            return []
        case Not(inner=inner):
            return _lists_of(inner)
        case And(parts=parts) | Or(parts=parts):
            return [name for part in parts for name in _lists_of(part)]


def parse_rule(text: str) -> Rule:
    """Parse and type-check one rule; raises ``RuleSyntaxError``."""
    if len(text) > MAX_RULE_LENGTH:
        raise RuleSyntaxError(MAX_RULE_LENGTH, f"at most {MAX_RULE_LENGTH} characters", "more")
    return _Parser(text).rule(text.strip())
