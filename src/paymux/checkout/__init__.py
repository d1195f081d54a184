"""Hosted checkout (Stripe's Checkout Sessions): a page at paymux's own origin that shows the
order and takes the card through the gateway's own form, so card data never reaches paymux
or the merchant.

- ``rules.py``    pure: parameter checks, expiry bounds, totals, ids, the Stripe-shaped views
- ``service.py``  the use cases: create (with its PaymentIntent or SetupIntent), retrieve,
  list, line items, expire (and the sweep of sessions past ``expires_at``), paying from the
  page, and completing a session when its intent succeeds (an in-transaction reaction to the
  intent's event, so the browser's return and a lone webhook complete it the same way)
"""

from __future__ import annotations

__all__: list[str] = []
