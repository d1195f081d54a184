"""The event catalog (paymux.domain.events) is the one list of event types: every ``emit(``
call site in src/ names a listed type (read from the source by AST, so a new call site with
a new type fails here until the catalog has it), ``emit`` refuses an unlisted type at run
time, an endpoint's ``enabled_events`` may name only listed types, and the committed
docs/events.md is exactly what the catalog generates."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path
from typing import Any, cast

import pytest

from paymux.domain.errors import PaymuxError
from paymux.domain.events import EVENT_CATALOG, EVENT_TYPES, changed_attributes, render_markdown
from paymux.outbound.endpoints import _check_events
from paymux.services.context import emit

SRC = Path(__file__).resolve().parents[2] / "src" / "paymux"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"

# Call sites whose type is a variable, and the modules the variable's values come from:
# every event-shaped string constant of those modules must be in the catalog.
DYNAMIC_SOURCES = {
    ("services/attempts.py", "event"): "domain/attempts.py",
    ("billing/subscription_views.py", "event"): "billing/subscription_views.py",
    ("billing/meters.py", "kind"): "billing/meters.py",
}
EVENT_SHAPED = re.compile(r"(payment_intent|customer\.subscription|billing\.meter)\.[a-z_]+")


def _emit_calls() -> list[tuple[str, ast.Call, ast.FunctionDef | ast.AsyncFunctionDef | None]]:
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents: dict[ast.AST, ast.AST] = {
            child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name != "emit" or len(node.args) < 3:
                continue
            up: ast.AST | None = node
            while up is not None and not isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef):
                up = parents.get(up)
            calls.append((str(path.relative_to(SRC)), node, up))
    return calls


def _assigned_strings(func: ast.AST | None, name: str) -> set[str]:
    """String constants in the values assigned to ``name`` inside ``func``."""
    found: set[str] = set()
    for node in ast.walk(func) if func is not None else ():
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            found |= {
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
    return found


def test_every_emit_call_site_names_a_catalogued_type() -> None:
    calls = _emit_calls()
    assert len(calls) > 50  # the walk found the call sites (72 when this was written)
    unknown, unexplained = [], []
    for where, call, func in calls:
        arg = call.args[2]
        at = f"{where}:{call.lineno}"
        if isinstance(arg, ast.Constant):
            if arg.value not in EVENT_TYPES:
                unknown.append(f"{at} {arg.value!r}")
        elif isinstance(arg, ast.JoinedStr):  # f"billing.meter.{kind}"
            holes = [v for v in arg.values if isinstance(v, ast.FormattedValue)]
            assert len(holes) == 1 and isinstance(holes[0].value, ast.Name), at
            hole = holes[0].value.id
            if (where, hole) not in DYNAMIC_SOURCES:
                unexplained.append(at)
                continue
            fills = _assigned_strings(func, hole)
            assert fills, f"{at}: no values found for {hole}"
            for fill in fills:
                text = "".join(
                    fill if isinstance(v, ast.FormattedValue) else str(cast(Any, v).value)
                    for v in arg.values
                )
                if text not in EVENT_TYPES:
                    unknown.append(f"{at} {text!r}")
        elif isinstance(arg, ast.Name) and (where, arg.id) in DYNAMIC_SOURCES:
            for fill in _assigned_strings(func, arg.id):
                if EVENT_SHAPED.fullmatch(fill) and fill not in EVENT_TYPES:
                    unknown.append(f"{at} {fill!r}")
        else:
            unexplained.append(at)
    assert unknown == [], "emitted but not in paymux.domain.events"
    assert unexplained == [], "emit with a computed type: add its source to DYNAMIC_SOURCES"


@pytest.mark.parametrize("module", ["domain/attempts.py", "billing/subscription_views.py"])
def test_event_names_in_the_modules_computed_types_come_from_are_catalogued(module: str) -> None:
    tree = ast.parse((SRC / module).read_text())
    names = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and EVENT_SHAPED.fullmatch(n.value)
    }
    assert names, "the module no longer names event types: update DYNAMIC_SOURCES"
    assert sorted(names - EVENT_TYPES) == []


def test_emit_refuses_a_type_not_in_the_catalog() -> None:
    session = cast(Any, object())  # never reached: the type is checked first
    obj = {"id": "cus_1", "object": "customer"}
    with pytest.raises(ValueError, match=r"charge\.succeeded"):
        asyncio.run(emit(session, "acct_1", "charge.succeeded", obj, 0))


def test_enabled_events_accept_catalogued_types_and_star() -> None:
    assert _check_events(["customer.created", "*", "customer.created"]) == [
        "customer.created",
        "*",
    ]
    for bad in (["charge.exploded"], ["customer.created", "customer.created.x"], ["nope"]):
        with pytest.raises(PaymuxError) as caught:
            _check_events(bad)
        assert caught.value.param == "enabled_events"


def test_catalog_entries_are_consistent() -> None:
    assert "payment_intent.succeeded" in EVENT_TYPES
    assert EVENT_CATALOG["customer.subscription.deleted"].object == "subscription"
    assert EVENT_CATALOG["charge.dispute.created"].object == "dispute"
    for type_, entry in EVENT_CATALOG.items():
        assert entry.type == type_
        assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", type_), type_
        assert entry.description.endswith("."), type_


def test_docs_events_md_is_the_generated_file() -> None:
    expected = render_markdown()
    assert DOCS.read_text() == expected, (
        "docs/events.md is stale: .venv/bin/python -m paymux.domain.events > docs/events.md"
    )
    for type_ in EVENT_TYPES:
        assert f"`{type_}`" in expected


def test_previous_attributes_are_the_changed_fields_old_values() -> None:
    before = {"id": "cus_1", "email": "a@x.test", "name": "Ann", "metadata": {"a": "1", "c": "3"}}
    after = {
        "id": "cus_1",
        "email": "b@x.test",
        "name": "Ann",
        "metadata": {"a": "1", "b": "2", "c": "4"},
        "phone": None,  # a field the older snapshot lacked: not a known change
    }
    assert changed_attributes(before, after) == {
        "email": "a@x.test",
        "metadata": {"b": None, "c": "3"},
    }
    assert changed_attributes(after, after) == {}
    assert changed_attributes({"status": "open"}, {"status": None}) == {"status": "open"}


def test_enabled_events_take_stripe_types_paymux_never_sends_and_refuse_made_up_ones() -> None:
    """A merchant's Stripe code may register ``payout.paid`` (a Stripe type paymux has no
    payouts for): accepted, so that code keeps working, and never delivered. A name neither
    paymux nor Stripe has is a 400 naming ``enabled_events``."""
    assert "payout.paid" not in EVENT_TYPES
    assert _check_events(["payout.paid", "payment_intent.succeeded", "payout.paid"]) == [
        "payout.paid", "payment_intent.succeeded"]
    for made_up in (["payout.exploded"], ["payment_intent.succeeded", "Payout.Paid"]):
        with pytest.raises(PaymuxError) as caught:
            _check_events(made_up)
        assert caught.value.param == "enabled_events"
