"""Recurring billing: the catalog, subscriptions, invoices, usage meters, dunning, test clocks
and the scheduler that renews subscriptions.

``billing/rules/`` holds the pure rules (period arithmetic, proration, prices, invoice
totals, the subscription and invoice state tables, the retry schedule): plain values in, plain
values out; they import only ``money`` and ``domain``. The other modules here are the
services that apply them: they open transactions, emit events and queue jobs, as the payment
services do, and charge invoices through the same payment services and gateways."""
