"""issue 11 (helper H2): billing fixes -- a no-op, on purpose

The fixes of this round need no schema change: the payment's start checks the invoice's
payment lease with the columns of 0021, the invoice preview became a read, and a test clock's
put-off payment try is a clock step (``invoices.next_payment_attempt_us``).

Subscriptions made before ``invoice.upcoming`` (0021) have a ``next_due_us`` later than their
notice. That is repaired by the worker, not here: the notice's time depends on a setting
(``PAYMUX_BILLING_UPCOMING_INVOICE_DAYS``) that a migration does not know and that may change
later too, so each worker's first sweep brings ``next_due_us`` forward under the setting it
runs with (``BillingScheduler.catch_up_upcoming``).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-02 17:40:00.000000
"""

from __future__ import annotations

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
