"""The official stripe-node SDK (tests/sdk/node, its version pinned in package-lock.json) runs
tests/sdk/node/flows.mjs against a real paymux server, SQLite and PostgreSQL, pointed at it
by host, port and protocol only: payment intents (confirm, expand, auto-paging, metadata,
manual capture, cancel, setup_future_usage, payment_method_data), charges (shipping),
refunds, disputes, customers, payment methods (from a token), events, idempotency keys,
SetupIntents, products, prices, coupons, promotion codes, tax rates, a subscription with
its invoices and items, invoice items, invoices, credit notes, test clocks, meters and meter
events, customer balance transactions, webhook endpoints (and ``webhooks.constructEvent``),
Checkout Sessions, Radar value lists,
an old pinned ``apiVersion`` (``charges`` on a PaymentIntent), and the SDK's error classes. The script prints one JSON line per check and stops at the first
failure; this test asserts every check passed and which ones ran.

``make test`` installs the SDK (``npm ci --prefix tests/sdk/node``) when npm is there. Without
node, npm or the installed SDK the test fails in CI (CI=true or PAYMUX_TEST_SANDBOXES=required)
and is skipped elsewhere. The script talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    RunningServer,
    free_port,
    make_settings,
    migrated_database_url,
    sandboxes_required,
)
from paymux.security.envelope import generate_key_entry
from support.pgcluster import PgCluster

SDK_DIR = Path(__file__).resolve().parents[1] / "sdk" / "node"
SCRIPT = SDK_DIR / "flows.mjs"
CHECKS = [
    "create_and_confirm_payment_intent",
    "retrieve_with_expand_latest_charge",
    "list_with_auto_paging_over_pages",
    "update_metadata",
    "manual_capture_partial",
    "cancel",
    "refunds_partial_then_full_and_list_by_payment_intent",
    "customers_create_update_list_delete",
    "payment_method_attach_detach",
    "events_list",
    "idempotency_key_replay",
    "setup_future_usage_saves_the_card_with_the_payment",
    "setup_intent_saves_a_card_for_off_session_payments",
    "subscription_create_update_cancel_and_invoices_auto_paging",
    "charges_retrieve_list_update_with_shipping",
    "refunds_retrieve_update_and_disputes_list",
    "payment_methods_create_from_token_and_update",
    "setup_intent_retrieve_update_cancel_and_payment_method_data",
    "catalog_products_prices_coupons_promotion_codes_tax_rates",
    "invoices_invoice_items_credit_notes_and_subscription_items",
    "test_clocks_meters_and_customer_balance",
    "webhook_endpoints_create_retrieve_update_list_delete",
    "checkout_sessions_create_retrieve_list_line_items_expire",
    "radar_value_lists_and_items",
    "old_pinned_version_gets_charges_on_the_intent",
    "declined_card_raises_card_error",
    "unknown_id_raises_invalid_request_404",
    "bad_parameter_raises_invalid_request_with_param",
    "bad_key_raises_authentication_error",
]


def node_or_skip() -> str:
    """The node binary, with the pinned stripe package installed beside the script."""
    node = shutil.which("node")
    if node is None:
        reason = "node is not installed (Debian: apt-get install nodejs npm)"
    elif not (SDK_DIR / "node_modules" / "stripe" / "package.json").is_file():
        reason = (
            "stripe-node is not installed: run `make test`, or "
            "`npm ci --prefix tests/sdk/node --no-audit --no-fund`"
        )
    else:
        return node
    if sandboxes_required():
        pytest.fail(f"stripe-node is required here (CI or PAYMUX_TEST_SANDBOXES): {reason}")
    pytest.skip(reason)


def run_flows(node: str, base_url: str, key: str) -> tuple[int, list[dict[str, Any]], str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PAYMUX_URL": base_url,
        "PAYMUX_API_KEY": key,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    try:
        done = subprocess.run(
            [node, str(SCRIPT)], cwd=SDK_DIR, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        printed = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"flows.mjs still running after 60 s; it had printed:\n{printed[-3000:]}")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, lines, done.stderr


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    """A server with an encryption key, which webhook endpoints need for their secrets."""
    tmp: Path = tmp_path_factory.mktemp(f"node-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"node_{request.param}")
    # No rate limit: the SDK's flows are sequential requests with one key, and a server fast
    # enough answers more than the default 100 a second (429 rate_limited). Rate limits have
    # tests of their own (test_rate_limits.py).
    running = RunningServer(make_settings(
        url, tmp, free_port(), encryption_keys=generate_key_entry("k1"),
        rate_limit_requests=0)).start()
    try:
        yield running
    finally:
        running.stop()


def test_stripe_node_drives_paymux_by_its_host_and_port_alone(server: RunningServer) -> None:
    node = node_or_skip()
    assert server.url.startswith("http://127.0.0.1:")
    _, key = server.new_key()
    code, lines, stderr = run_flows(node, server.url, key)
    failed = [line for line in lines if line.get("ok") is False]
    assert code == 0 and not failed, f"exit {code}: {failed or lines[-1:]}\n{stderr[-2000:]}"
    assert [line["check"] for line in lines if "check" in line] == CHECKS
    summary = lines[-1]
    assert summary["done"] is True and summary["checks"] == len(CHECKS)
    assert summary["stripe_node"] == json.loads(
        (SDK_DIR / "package.json").read_text())["dependencies"]["stripe"]
    by_check = {line["check"]: line for line in lines if "check" in line}
    assert by_check["create_and_confirm_payment_intent"]["status"] == "succeeded"
    assert by_check["declined_card_raises_card_error"] == {
        "check": "declined_card_raises_card_error", "ok": True,
        "code": "card_declined", "decline_code": "insufficient_funds"}
    assert by_check["unknown_id_raises_invalid_request_404"]["statusCode"] == 404
    assert by_check["bad_key_raises_authentication_error"]["statusCode"] == 401
    assert by_check["idempotency_key_replay"]["replayed"] is True
    assert by_check["list_with_auto_paging_over_pages"]["seen"] == 5
    assert by_check["setup_future_usage_saves_the_card_with_the_payment"]["customer"] is True
    seti = by_check["setup_intent_saves_a_card_for_off_session_payments"]
    assert (seti["status"], seti["last4"], seti["declined"]) == ("succeeded", "4242", "card_declined")
    assert by_check["old_pinned_version_gets_charges_on_the_intent"]["charges"] == 1
    assert by_check["webhook_endpoints_create_retrieve_update_list_delete"]["status"] == (
        "disabled")
    assert by_check["test_clocks_meters_and_customer_balance"]["balance"] == -400
    sub = by_check["subscription_create_update_cancel_and_invoices_auto_paging"]
    assert (sub["status"], sub["amount_paid"], sub["invoices"]) == ("canceled", 3000, 1)
