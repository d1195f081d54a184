"""Updating or deleting a customer while another transaction changes its row (PostgreSQL,
where writers run in parallel): the request waits for the row, then builds its response and
its event from the row as the other transaction left it, never from a read taken before
(which would report, and deliver, values the database no longer holds)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from paymux.security.envelope import generate_key_entry
from support.databases import migrated_database_fixture
from support.harness import Harness

db = migrated_database_fixture("customer_row_lock", ["postgres"])


async def _waiting_on_a_lock(h: Harness) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        [[n]] = await h.sql("select count(*) from pg_locks where not granted")
        if n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the request never waited for the row")


async def _racing(h: Harness, cus: str, request: Any) -> httpx.Response:
    """Run ``request`` while another transaction has renamed the customer, uncommitted."""
    async with h.app.ctx.db.write() as other:
        await other.execute(text("update customers set name = 'Mid' where id = :id"), {"id": cus})
        task = asyncio.create_task(request)
        await _waiting_on_a_lock(h)
    return await asyncio.wait_for(task, 30)


async def _event(h: Harness, cus: str, type_: str) -> tuple[dict[str, Any], Any]:
    [(data, previous)] = await h.sql(
        "select cast(data as text), cast(previous_attributes as text) from events"
        " where object_id = :o and type = :t",
        o=cus,
        t=type_,
    )
    return json.loads(data), json.loads(previous) if previous is not None else None


def test_update_reads_the_row_after_a_concurrent_change(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, encryption_keys=generate_key_entry("k1")) as h:
            made = await h.post("/v1/customers", {"email": "a@example.com", "name": "Ann"})
            assert made.status_code == 200, made.text
            cus = made.json()["id"]
            r = await _racing(h, cus, h.post(f"/v1/customers/{cus}", {"email": "b@example.com"}))
            assert r.status_code == 200, r.text
            assert (r.json()["name"], r.json()["email"]) == ("Mid", "b@example.com")
            [[name, email]] = await h.sql(
                "select name, email from customers where id = :id", id=cus
            )
            assert (name, email) == ("Mid", "b@example.com")
            data, previous = await _event(h, cus, "customer.updated")
            assert (data["name"], data["email"]) == ("Mid", "b@example.com")
            # Against the last event (created: Ann): the rename shows as a change from Ann.
            assert previous["email"] == "a@example.com"
            assert previous["name"] == "Ann"

    asyncio.run(main())


def test_delete_reads_the_row_after_a_concurrent_change(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, encryption_keys=generate_key_entry("k1")) as h:
            made = await h.post("/v1/customers", {"email": "a@example.com", "name": "Ann"})
            assert made.status_code == 200, made.text
            cus = made.json()["id"]
            r = await _racing(h, cus, h.http.delete(f"/v1/customers/{cus}"))
            assert r.status_code == 200, r.text
            assert r.json() == {"id": cus, "object": "customer", "deleted": True}
            data, _ = await _event(h, cus, "customer.deleted")
            assert data["name"] == "Mid"

    asyncio.run(main())
