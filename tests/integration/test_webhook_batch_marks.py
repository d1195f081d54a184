"""A batch of inbound events with one the connector ignores is applied as one batch.

The worker applies claimed ``apply_webhook`` jobs together (``InboundWebhooks.apply_many``).
An event its connector reads as nothing to act on (the fake provider's ``payment.created``)
is marked ``ignored`` beside the others' ``applied`` marks, in the same statement. The
apply-lag figure of each mark is taken from the inbox rows read, so an ignored event's mark
is counted like the others' (it once raised a ``KeyError`` there: the batch failed and every
job ran again alone, logged as a failed batch). SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from conftest import migrated_database_url
from support.fake_gateway import Outcome, ProviderEvent
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"whmarks_{next(_names)}")


def test_an_ignored_event_is_marked_in_its_batch_without_failing_it(
    db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, worker_batch_size=50) as h:
            ids = []
            for _ in range(2):
                h.gw.script("authorize", Outcome.requires_action())
                r = await h.post(
                    "/v1/payment_intents",
                    {
                        "amount": 1500,
                        "currency": "usd",
                        "confirm": True,
                        "payment_method": "tok_visa",
                    },
                )
                assert h.body(r)["status"] == "requires_action", r.text
                ids.append(h.body(r)["id"])
            h.gw.take_webhooks()  # what the provider said before: not delivered here
            for pi in ids:
                h.gw.complete_action(pi)
            events = h.gw.take_webhooks()
            assert [e.type for e in events] == ["payment.updated", "payment.updated"]
            ignored = ProviderEvent(
                id="evt_nothing_to_act_on",
                type="payment.created",
                created=h.gw.now(),
                object={"object": "payment", "id": "pay_elsewhere", "status": "created"},
            )
            for ev in [*events, ignored]:
                headers, body = h.gw.webhook_request(ev)
                r = await h.http.post(f"/webhooks/{h.gw.name}", content=body, headers=headers)
                assert r.status_code == 200, r.text
            with caplog.at_level(logging.INFO, logger="paymux"):
                assert await h.worker.run_once() == 3
            marks = dict(await h.sql("select event_id, status from webhook_inbox"))
            assert marks == {
                events[0].id: "applied",
                events[1].id: "applied",
                "evt_nothing_to_act_on": "ignored",
            }
            for pi in ids:
                assert (await h.get(f"/v1/payment_intents/{pi}"))["status"] == "succeeded"
            # Applied as one batch: neither taken apart per event nor run one job at a time.
            said = [rec.getMessage() for rec in caplog.records]
            assert not [m for m in said if "one at a time" in m or "one savepoint" in m], said
            rows = await h.sql("select status, count(*) from jobs group by status")
            assert dict(rows) == {"done": 3}

    asyncio.run(main())
