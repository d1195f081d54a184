"""``InvoicesService`` (``Paymux.invoices``): the invoices core (invoice_core.py: drafts,
finalization, numbering, void, uncollectible) and their payment (invoice_payments.py: pay,
the settled-payment hook, dunning retries). The /v1/invoices routes call these methods."""

from __future__ import annotations

from paymux.billing.invoice_core import DraftLine, invoice_prefix
from paymux.billing.invoice_payments import InvoicePayments, attempt_intent_id
from paymux.services.context import Context
from paymux.services.payments import PaymentsService

__all__ = ["DraftLine", "InvoicesService", "attempt_intent_id", "invoice_prefix"]


class InvoicesService(InvoicePayments):
    def __init__(self, ctx: Context, payments: PaymentsService) -> None:
        super().__init__(ctx)
        self.payments = payments
