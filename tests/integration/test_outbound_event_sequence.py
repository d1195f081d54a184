"""``data.previous_attributes`` of an ``*.updated`` event is the diff against the object's
PREVIOUS event in the object's own sequence (``events.object_seq``, numbered by ``emit`` in
the emitting transaction), not the latest by time: two events in the same microsecond (the
harness's frozen clock) and an event stamped earlier than the one before it (a test clock's
simulated time, behind the wall clock) are both diffed against the right snapshot. paymux
in-process (support/harness.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import text

from paymux.services.context import emit
from support.databases import migrated_database_fixture
from support.harness import Harness

DAY_US = 24 * 3600 * 1_000_000


def _changed(previous: dict[str, Any]) -> dict[str, Any]:
    """previous_attributes without ``balance`` (the customer view's is null when created and
    0 once updated through the API: a difference listed as well, not the one looked at)."""
    return {k: v for k, v in previous.items() if k != "balance"}


db = migrated_database_fixture("outbound_event_seq")


async def _events_of(h: Harness, object_id: str) -> list[dict[str, Any]]:
    """The object's events in the order they were emitted (the test's own record of that
    order is the emails it wrote; this reads the rows by their sequence number)."""
    rows = await h.sql(
        "select type, object_seq, created_us, id from events"
        " where object_id = :o order by object_seq",
        o=object_id,
    )
    found = []
    for row in rows:
        event = await h.get(f"/v1/events/{row[3]}")
        found.append({"type": row[0], "seq": row[1], "created_us": row[2], "event": event})
    return found


def test_updates_in_the_same_microsecond_diff_against_the_one_before(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            made = await h.post("/v1/customers", {"email": "e0@example.com"})
            cus = h.body(made)["id"]
            for i in range(1, 7):  # the harness's clock does not move: one microsecond
                r = await h.post(f"/v1/customers/{cus}", {"email": f"e{i}@example.com"})
                assert r.status_code == 200
            events = await _events_of(h, cus)
            assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6, 7]
            assert len({e["created_us"] for e in events}) == 1  # all in the same microsecond
            assert [e["type"] for e in events] == ["customer.created"] + ["customer.updated"] * 6
            for i, e in enumerate(events[1:], start=1):
                data = e["event"]["data"]
                assert data["object"]["email"] == f"e{i}@example.com"
                assert _changed(data["previous_attributes"]) == {"email": f"e{i - 1}@example.com"}

    asyncio.run(main())


def test_an_event_stamped_earlier_than_the_last_one_still_follows_it(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            made = await h.post("/v1/customers", {"email": "a@example.com"})
            cus = h.body(made)
            # A change stamped with a test clock's simulated time, ten days behind the wall
            # clock the customer was created at (as billing's renewals on a clock are).
            backdated = h.clock.now_us() - 10 * DAY_US
            async with h.app.ctx.db.write() as s:
                await emit(
                    s,
                    h.account,
                    "customer.updated",
                    {**cus, "email": "b@example.com"},
                    backdated,
                )
            # Then a change through the API, at the wall clock again.
            r = await h.post(f"/v1/customers/{cus['id']}", {"email": "c@example.com"})
            assert r.status_code == 200
            events = await _events_of(h, cus["id"])
            assert [(e["type"], e["seq"]) for e in events] == [
                ("customer.created", 1),
                ("customer.updated", 2),
                ("customer.updated", 3),
            ]
            assert events[1]["created_us"] < events[0]["created_us"] == events[2]["created_us"]
            second, third = events[1]["event"]["data"], events[2]["event"]["data"]
            assert _changed(second["previous_attributes"]) == {"email": "a@example.com"}
            # Diffed against the backdated event (b), the one before it, not the created
            # event (a), the latest by time.
            assert third["object"]["email"] == "c@example.com"
            assert _changed(third["previous_attributes"]) == {"email": "b@example.com"}

    asyncio.run(main())


def test_an_event_without_a_number_written_by_the_previous_release_is_the_last_one(
    db: str, tmp_path: Path
) -> None:
    """During a rolling upgrade the previous release still writes events, without
    ``object_seq`` (NULL). The next change diffs against the newest by time when that one has
    no number (the previous release's rule), and numbers on after the highest given."""

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            made = await h.post("/v1/customers", {"email": "a@example.com"})
            cus = h.body(made)
            r = await h.post(f"/v1/customers/{cus['id']}", {"email": "b@example.com"})
            assert r.status_code == 200
            h.clock.advance(1)
            # The previous release changes the email to c and writes its event, unnumbered.
            async with h.app.ctx.db.write() as s:
                await s.execute(
                    text("update customers set email = 'c@example.com' where id = :id"),
                    {"id": cus["id"]},
                )
                await emit(
                    s,
                    h.account,
                    "customer.updated",
                    {**h.body(r), "email": "c@example.com"},
                    h.clock.now_us(),
                )
                await s.execute(
                    text("update events set object_seq = null where object_seq = 3")
                )
            h.clock.advance(1)
            r = await h.post(f"/v1/customers/{cus['id']}", {"email": "d@example.com"})
            assert r.status_code == 200
            rows = await h.sql(
                "select object_seq, id from events where object_id = :o order by created_us",
                o=cus["id"],
            )
            assert [seq for seq, _ in rows] == [1, 2, None, 3]
            last = await h.get(f"/v1/events/{rows[-1][1]}")
            assert last["data"]["object"]["email"] == "d@example.com"
            # Against the unnumbered event (c), not the last numbered one (b).
            assert _changed(last["data"]["previous_attributes"]) == {"email": "c@example.com"}

    asyncio.run(main())
