"""The order test files are handed to the xdist processes in (``make test``: ``-n 2 --dist
loadfile --no-loadscope-reorder``).

xdist hands out whole files, in the collection's order, one at a time to whichever process is
free. Its default order (most tests first) leaves the files of a few long tests (servers
started, processes killed and restarted, leases waited out) for last, so one process runs
them alone at the end while the other idles. Here those go first, the longest first, and
the rest follows by number of tests, so the run ends on the small files, both processes
busy. Which files are long is stated below from ``--durations`` of clean-clone CI runs;
a file missing from the list only costs some time, never a result.
"""

from __future__ import annotations

from collections import Counter

import pytest

__all__ = ["LONG_FILES", "order_files"]

# Longest first: every file of about 10 s or more, in seconds of a quiet CI run (both
# databases together; estimated from --durations and a full run's JUnit times, less this
# round's cuts). A file left out is shorter, or new: it follows by its number of tests.
LONG_FILES = (
    "tests/e2e/test_schemathesis.py",  # ~79 s
    "tests/e2e/test_ops_shutdown.py",  # ~75 s: SIGTERM under load, restarts
    "tests/integration/test_webhook_crash_and_concurrency.py",  # ~75 s: kill -9, 2 workers
    "tests/e2e/test_scale_out.py",  # ~50 s: four API processes
    "tests/browser/test_dashboard_browser.py",  # ~40 s
    "tests/e2e/test_outbound_webhooks.py",  # ~40 s: kill -9 mid burst, CLI
    "tests/browser/test_checkout_embed_browser.py",  # ~35 s
    "tests/integration/test_crash_recovery.py",  # ~32 s: kill -9 and restart
    "tests/integration/test_kill9_burst.py",  # ~32 s
    "tests/e2e/test_test_cards.py",  # ~31 s
    "tests/e2e/test_ops_metrics.py",  # ~30 s: several servers
    "tests/integration/test_renewals_exactly_once.py",  # ~30 s: two workers and a kill -9
    "tests/e2e/test_no_card_data_leaks.py",  # ~28 s
    "tests/e2e/test_request_hardening.py",  # ~27 s
    "tests/browser/test_dashboard_pages_browser.py",  # ~27 s
    "tests/e2e/test_account_walk_billing.py",  # ~26 s
    "tests/e2e/test_ops_tls.py",  # ~25 s: a TLS server (set-up 23 s in CI)
    "tests/integration/test_fault_injection.py",  # ~25 s
    "tests/integration/test_dashboard_payments.py",  # ~25 s
    "tests/integration/test_settle_paths.py",  # ~25 s
    "tests/e2e/test_token_owners.py",  # ~24 s
    "tests/e2e/test_cli_messages.py",  # ~22 s
    "tests/e2e/test_stripe_params_publishable.py",  # ~22 s
    "tests/e2e/test_checkout_sessions.py",  # ~21 s
    "tests/e2e/test_outbound_listen.py",  # ~21 s
    "tests/e2e/test_account_walk_disputes.py",  # ~21 s
    "tests/e2e/test_stripe_node.py",  # ~20 s: node runs stripe-node
    "tests/e2e/test_stripe_params_metadata.py",  # ~20 s
    "tests/browser/test_checkout_browser.py",  # ~20 s
    "tests/e2e/test_reconcile.py",  # ~20 s
    "tests/integration/test_ops_outbound_delivery.py",  # ~19 s
    "tests/e2e/test_fraud.py",  # ~19 s
    "tests/integration/test_subscriptions_due_notices.py",  # ~19 s
    "tests/e2e/test_browser_pages.py",  # ~18 s
    "tests/e2e/test_invoice_money_safety.py",  # ~18 s
    "tests/e2e/test_sandbox_hardening.py",  # ~17 s
    "tests/e2e/test_stripe_params_old_lists.py",  # ~17 s
    "tests/e2e/test_invalid_requests.py",  # ~17 s
    "tests/e2e/test_subscriptions_api.py",  # ~17 s
    "tests/e2e/test_account_walk.py",  # ~16 s
    "tests/integration/test_outbound_delivery.py",  # ~15 s
    "tests/e2e/test_hosted_invoice.py",  # ~15 s
    "tests/integration/test_migrations.py",  # ~15 s
    "tests/integration/test_token_owner_race.py",  # ~14 s
    "tests/e2e/test_docs_csp.py",  # ~14 s
    "tests/e2e/test_stripe_python_billing.py",  # ~13 s
    "tests/e2e/test_gateway_faults.py",  # ~13 s
    "tests/e2e/test_rate_limits.py",  # ~13 s
    "tests/integration/test_dashboard_input.py",  # ~12 s
    "tests/e2e/test_credit_note_crash.py",  # ~12 s
    "tests/e2e/test_square_flows.py",  # ~12 s
    "tests/e2e/test_readme_walkthrough.py",  # ~12 s
    "tests/integration/test_dashboard_users.py",  # ~11 s
    "tests/integration/test_dashboard_pages.py",  # ~11 s
    "tests/e2e/test_dunning.py",  # ~11 s
    "tests/e2e/test_demo_cli.py",  # ~11 s
    "tests/e2e/test_inbound_webhooks.py",  # ~11 s
    "tests/e2e/test_stripe_python.py",  # ~11 s
    "tests/e2e/test_checkout_card_testing.py",  # ~10 s
    "tests/e2e/test_paypal_flows.py",  # ~10 s
    "tests/e2e/test_idempotency.py",  # ~10 s
    "tests/e2e/test_plugin_connector.py",  # ~10 s: pip install --target, a server
)


def order_files(items: list[pytest.Item]) -> None:
    """Sort ``items`` in place: the long files first (in ``LONG_FILES``' order), then the
    others by their number of tests, most first; a file's tests keep their order and stay
    together (a stable sort on a key of the file alone)."""
    counts = Counter(_file_of(item) for item in items)
    rank = {name: i for i, name in enumerate(LONG_FILES)}

    def key(item: pytest.Item) -> tuple[int, int, str]:
        name = _file_of(item)
        if name in rank:
            return (0, rank[name], name)
        return (1, -counts[name], name)

    items.sort(key=key)


def _file_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]
