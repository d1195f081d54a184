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

# Longest first (seconds of a quiet CI run, both databases together, roughly).
LONG_FILES = (
    "tests/e2e/test_ops_shutdown.py",  # SIGTERM under load, restarts (~120 s)
    "tests/integration/test_webhook_crash_and_concurrency.py",  # kill -9, 2 workers (~70 s)
    "tests/e2e/test_ops_metrics.py",  # several servers, caches waited out (~70 s)
    "tests/e2e/test_scale_out.py",  # four API processes (~50 s)
    "tests/integration/test_crash_recovery.py",  # kill -9 and restart (~40 s)
    "tests/integration/test_kill9_burst.py",  # (~35 s)
    "tests/e2e/test_outbound_webhooks.py",  # kill -9 mid burst, CLI (~35 s)
    "tests/integration/test_renewals_exactly_once.py",  # two workers and a kill -9 (~30 s)
    "tests/e2e/test_stripe_node.py",  # node runs stripe-node
    "tests/browser/test_dashboard_browser.py",
    "tests/browser/test_checkout_embed_browser.py",
    "tests/browser/test_checkout_browser.py",
    "tests/browser/test_dashboard_pages_browser.py",
    "tests/e2e/test_ops_tls.py",
    "tests/e2e/test_plugin_connector.py",  # pip install --target, a server
    "tests/e2e/test_readme_walkthrough.py",
    "tests/e2e/test_cli_messages.py",
    "tests/e2e/test_outbound_listen.py",
    "tests/integration/test_fault_injection.py",
    "tests/e2e/test_stripe_params_metadata.py",
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
