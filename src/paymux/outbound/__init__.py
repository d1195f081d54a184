"""Outbound webhooks: the events an account's state changes record, delivered to the
endpoints the merchant registers (docs/webhooks.md).

- ``endpoints``: the /v1/webhook_endpoints resource (secrets sealed at rest);
- ``dispatch``: the events table is the outbox; the dispatcher turns each new event into
  one delivery per matching endpoint, and marks the event, in one transaction;
- ``delivery``: sends due deliveries (signed, SSRF-checked, time-limited), records every
  attempt, retries on the schedule in ``schedule``; ``claims``: which due deliveries a
  worker leases (a few per endpoint with room, the limit counted across workers);
  ``batches``: a batch of rows written in one fixed statement;
- ``http1``: the lean HTTP/1.1 client deliveries are sent with (kept-alive connections,
  each opened to an address ``ssrf`` checked then);
- ``listen``: ``paymux listen --forward-to`` (new events forwarded to a developer's URL);
- ``prune``: deleting attempts older than the retention;
- ``signing`` (Standard Webhooks or Stripe's scheme), ``ssrf`` (which addresses an endpoint
  may reach), ``schedule`` (retry delays): pure rules.
"""
