"""A backlog of provider events about payments completed at the provider, for the tests of
the worker's apply path (batches, top-ups, traces): each payment waits in requires_action
(3-D Secure), then the payer completes it at the provider."""

from __future__ import annotations

from support.fake_gateway import Outcome
from support.harness import Harness


async def completed_at_provider(h: Harness, n: int, *, amount: int = 2500) -> list[str]:
    """``n`` payments in requires_action; the payer then completes each at the provider: the
    provider's events about the completions are pending delivery (not delivered yet)."""
    ids = []
    for _ in range(n):
        h.gw.script("authorize", Outcome.requires_action())
        r = await h.post(
            "/v1/payment_intents",
            {"amount": amount, "currency": "usd", "confirm": True, "payment_method": "tok_visa"},
        )
        assert h.body(r)["status"] == "requires_action", r.text
        ids.append(h.body(r)["id"])
    h.gw.take_webhooks()  # what the provider said before: not part of this backlog
    for pi in ids:
        h.gw.complete_action(pi)
    return ids


async def stored_completions(h: Harness, n: int) -> list[str]:
    """``completed_at_provider``, its events then delivered and stored, not applied: ``n``
    queued apply_webhook jobs."""
    ids = await completed_at_provider(h, n)
    for ev in h.gw.take_webhooks():
        await h.gw.deliver_webhook(h.app.webhooks, ev, apply=False)
    return ids
