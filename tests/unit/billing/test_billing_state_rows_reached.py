"""Every row of the subscription state table is fired by a service and tested through the HTTP
API (issue 11: "every status transition is tested"). The test that fires each row is named
here by hand; a row added to the table without one, a row removed but still listed, or a
named test that is gone (renamed, deleted) or is not an HTTP one fails this file.

A row's test is an HTTP one when it takes the ``api`` fixture (the client of a real server,
tests/conftest.py); it must also state the row's resulting status as a literal."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from paymux.billing.rules.states import SUBSCRIPTION_TRANSITIONS

TESTS = Path(__file__).resolve().parents[2]

_API = "e2e/test_subscriptions_api.py"
_DUNNING = "e2e/test_dunning.py"
_ROWS = "e2e/test_subscriptions_state_rows.py"

# (status, trigger) -> (resulting status, "file::test" that fires it through the API).
FIRED_BY: dict[tuple[str, str], tuple[str, str]] = {
    ("incomplete", "invoice_paid"): (
        "active",
        f"{_API}::test_incomplete_paid_within_23_hours_becomes_active",
    ),
    ("incomplete", "first_payment_failed"): (
        "incomplete",
        f"{_API}::test_declined_first_payment_leaves_incomplete_then_expires",
    ),
    ("incomplete", "first_payment_requires_action"): (
        "incomplete",
        f"{_DUNNING}::test_three_d_secure_needed_off_session_moves_as_the_table_says",
    ),
    ("incomplete", "incomplete_expired"): (
        "incomplete_expired",
        f"{_API}::test_declined_first_payment_leaves_incomplete_then_expires",
    ),
    ("incomplete", "canceled"): (
        "canceled",
        f"{_ROWS}::test_an_incomplete_subscription_is_canceled_by_delete_or_by_error_if_incomplete",
    ),
    ("active", "trial_started"): (
        "trialing",
        f"{_API}::test_an_active_subscription_can_be_put_on_trial",
    ),
    ("trialing", "trial_started"): (
        "trialing",
        f"{_DUNNING}::test_remaining_status_moves_through_the_api",
    ),
    ("trialing", "invoice_paid"): (
        "trialing",
        f"{_API}::test_trial_then_renewal_and_trial_will_end",
    ),
    ("trialing", "trial_ended"): (
        "active",
        f"{_API}::test_trial_then_renewal_and_trial_will_end",
    ),
    ("trialing", "paused"): (
        "paused",
        f"{_API}::test_trial_end_without_a_payment_method_pauses_then_resume",
    ),
    ("trialing", "canceled"): (
        "canceled",
        f"{_API}::test_trial_end_without_a_payment_method_can_cancel",
    ),
    ("active", "invoice_paid"): (
        "active",
        f"{_API}::test_jan_31_anchor_renews_on_feb_28_then_mar_31_on_a_clock",
    ),
    ("active", "renewal_failed"): (
        "past_due",
        f"{_DUNNING}::test_failed_renewal_is_retried_then_recovered_by_a_new_card",
    ),
    ("active", "renewal_requires_action"): (
        "past_due",
        f"{_DUNNING}::test_authentication_required_asks_for_action_and_is_not_retried",
    ),
    ("active", "canceled"): (
        "canceled",
        f"{_API}::test_cancel_now_with_prorated_credit",
    ),
    ("past_due", "invoice_paid"): (
        "active",
        f"{_DUNNING}::test_failed_renewal_is_retried_then_recovered_by_a_new_card",
    ),
    ("past_due", "renewal_failed"): (
        "past_due",
        f"{_DUNNING}::test_failed_renewal_is_retried_then_recovered_by_a_new_card",
    ),
    ("past_due", "renewal_requires_action"): (
        "past_due",
        f"{_DUNNING}::test_three_d_secure_needed_off_session_moves_as_the_table_says",
    ),
    ("past_due", "retries_exhausted_cancel"): (
        "canceled",
        f"{_DUNNING}::test_retries_run_out_after_eight_tries_in_two_weeks_and_cancel",
    ),
    ("past_due", "retries_exhausted_unpaid"): (
        "unpaid",
        f"{_ROWS}::test_retries_running_out_end_as_configured",
    ),
    ("past_due", "retries_exhausted_past_due"): (
        "past_due",
        f"{_ROWS}::test_retries_running_out_end_as_configured",
    ),
    ("past_due", "canceled"): (
        "canceled",
        f"{_DUNNING}::test_remaining_status_moves_through_the_api",
    ),
    ("unpaid", "invoice_paid"): (
        "active",
        f"{_ROWS}::test_an_unpaid_subscription_is_active_once_paid_or_canceled_by_delete",
    ),
    ("unpaid", "canceled"): (
        "canceled",
        f"{_ROWS}::test_an_unpaid_subscription_is_active_once_paid_or_canceled_by_delete",
    ),
    ("paused", "resumed"): (
        "active",
        f"{_API}::test_trial_end_without_a_payment_method_pauses_then_resume",
    ),
    ("paused", "canceled"): (
        "canceled",
        f"{_DUNNING}::test_remaining_status_moves_through_the_api",
    ),
    ("canceled", "invoice_paid"): (
        "canceled",
        f"{_DUNNING}::test_remaining_status_moves_through_the_api",
    ),
}


@cache
def _tests_in(path: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse((TESTS / path).read_text(encoding="utf-8"))
    return {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_every_row_of_the_table_names_its_api_test_and_no_other_row_is_listed() -> None:
    table = {(str(s), str(t)) for s, t in SUBSCRIPTION_TRANSITIONS}
    assert sorted(table - FIRED_BY.keys()) == [], "rows with no API test named here"
    assert sorted(FIRED_BY.keys() - table) == [], "listed here, not rows of the table"


@pytest.mark.parametrize(("row", "fired"), sorted(FIRED_BY.items()))
def test_the_named_test_exists_goes_through_http_and_states_the_status(
    row: tuple[str, str], fired: tuple[str, str]
) -> None:
    status, where = fired
    path, name = where.split("::")
    assert path.startswith("e2e/"), f"{row}: {where} is not an end-to-end (HTTP) test"
    found = _tests_in(path).get(name)
    assert found is not None, f"{row}: {where} is gone"
    assert "api" in [a.arg for a in found.args.args], f"{row}: {where} takes no api client"
    literals = {
        node.value
        for node in ast.walk(found)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert status in literals, f"{row}: {where} never states {status!r}"


def test_the_listed_outcomes_are_the_tables() -> None:
    """The resulting status listed above, written by hand, is the table's."""
    table = {(str(s), str(t)): str(n) for (s, t), n in SUBSCRIPTION_TRANSITIONS.items()}
    assert {row: status for row, (status, _) in FIRED_BY.items()} == table
