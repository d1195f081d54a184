"""What a delivered event carries beside its object (Stripe's shape): ``request`` names the
API request that caused it (its ``req_`` id, as the ``Request-Id`` response header shows,
and its Idempotency-Key) and is null for an event a worker caused; ``*.updated`` events carry
``data.previous_attributes``, the changed fields with their old values (for metadata, only
the changed keys). paymux in-process (support/harness.py) on SQLite and PostgreSQL, the
delivery loop run by hand, a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from conftest import migrated_database_url
from paymux.outbound.delivery import DeliveryRunner
from paymux.security.envelope import generate_key_entry
from support.harness import Harness
from support.pgcluster import PgCluster
from support.webhook_receiver import Receiver


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    name = f"event_request_{request.param}_{uuid.uuid4().hex[:12]}"
    return migrated_database_url(request.param, tmp_path, pg_cluster, name)


def test_events_carry_their_request_and_an_updates_previous_attributes(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        # The first delivery is answered 410: the endpoint is disabled by the worker, whose
        # webhook_endpoint.disabled event (caused by no request) goes to a second endpoint.
        with Receiver() as rx, Receiver(lambda n: (410, "gone")) as gone:
            async with Harness.open(db, tmp_path, encryption_keys=generate_key_entry("k1")) as h:
                runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
                try:
                    listening = {"url": rx.url, "enabled_events": ["*"]}
                    assert (await h.post("/v1/webhook_endpoints", listening)).status_code == 200
                    made = await h.post(
                        "/v1/customers",
                        {"email": "a@example.com", "name": "Ann", "metadata": {"a": "1"}},
                        key="create-ann-1",
                    )
                    assert made.status_code == 200
                    cus = made.json()["id"]
                    changed = await h.post(
                        f"/v1/customers/{cus}",
                        {"email": "b@example.com", "metadata": {"b": "2"}},
                    )
                    assert changed.status_code == 200
                    await runner.drain()
                    # Deliveries run concurrently: they may arrive in either order.
                    by_type = {r.event["type"]: r.event for r in rx.requests()}
                    assert len(rx.requests()) == len(by_type) == 2
                    created, updated = by_type["customer.created"], by_type["customer.updated"]
                    assert created["type"] == "customer.created"
                    assert created["request"] == {
                        "id": made.headers["request-id"],
                        "idempotency_key": "create-ann-1",
                    }
                    assert "previous_attributes" not in created["data"]
                    assert updated["type"] == "customer.updated"
                    assert updated["request"] == {
                        "id": changed.headers["request-id"],
                        "idempotency_key": None,
                    }
                    assert updated["data"]["object"]["email"] == "b@example.com"
                    previous = updated["data"]["previous_attributes"]
                    assert previous["email"] == "a@example.com"
                    assert previous["metadata"] == {"b": None}  # only the changed key
                    # Unchanged fields are not listed. (The customer view's ``balance`` is
                    # null when created and 0 afterwards: that difference is listed too.)
                    assert not {"id", "name", "object", "created"} & set(previous)
                    # /v1/events shows the same fields as the deliveries.
                    listed = await h.http.get(f"/v1/events/{updated['id']}")
                    assert listed.status_code == 200
                    assert listed.json()["request"] == updated["request"]
                    assert listed.json()["data"]["previous_attributes"] == previous
                    first = (await h.http.get(f"/v1/events/{created['id']}")).json()
                    assert first["request"]["idempotency_key"] == "create-ann-1"
                    assert "previous_attributes" not in first["data"]

                    ep = await h.post(
                        "/v1/webhook_endpoints",
                        {"url": gone.url, "enabled_events": ["customer.deleted"]},
                    )
                    assert ep.status_code == 200
                    deleted = await h.http.delete(f"/v1/customers/{cus}")
                    assert deleted.status_code == 200
                    await runner.drain()
                    disabled = [
                        r.event for r in rx.requests() if r.event["type"].endswith(".disabled")
                    ]
                    assert len(disabled) == 1
                    assert disabled[0]["request"] == {"id": None, "idempotency_key": None}
                finally:
                    await runner.client.aclose()

    asyncio.run(main())
