"""Group commit of inbound webhooks (webhooks/ingest.py), on SQLite and PostgreSQL.

The deliveries that arrive together share one transaction, and none is answered before that
transaction commits. Shown here with real databases and, over HTTP, a real uvicorn server
(no worker, so the ``apply_webhook`` jobs stay queued and can be counted):

1. 200 concurrent deliveries (160 events, 40 of them twice): every one answered 200, each
   event answered as new exactly once, one inbox row and one job per event.
2. The same event twice in one batch (in process, both queued before the flusher runs): one
   row, one job, one answer ``duplicate: true`` with the same inbox id.
3. A commit that fails (a trigger on ``jobs`` makes every insert fail, after the inbox rows
   of the batch were written): every delivery answered 5xx, no inbox row and no job left;
   redelivered after the fault, each is stored once.
4. One event whose insert fails (a trigger refusing its event id) among others of the same
   batch: that one fails, the others are stored.
5. Deliveries after the flusher went idle are stored (no lost wakeup).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from conftest import free_port, make_settings, migrated_database_url
from paymux.api.app import create_app
from paymux.config import Settings
from paymux.gateways.sandbox.processor import SandboxProcessor
from paymux.gateways.signing import sign_header
from paymux.services import Paymux
from paymux.storage.db import Database
from paymux.webhooks.inbound import Received
from support.pgcluster import PgCluster

POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)
SIGNATURE = "paymux-sandbox-signature"


# -- helpers -------------------------------------------------------------------------------------
def event(event_id: str) -> bytes:
    """A sandbox event (the body is stored, not applied: no worker runs here)."""
    charge = {"object": "charge", "reference": f"ch_{event_id}", "status": "succeeded"}
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "charge.updated",
            "created": int(time.time()),
            "data": {"object": charge},
        }
    ).encode()


def new_ids(prefix: str, n: int) -> list[str]:
    run = uuid.uuid4().hex[:10]
    return [f"evt_{prefix}_{run}_{i}" for i in range(n)]


async def stored(db: Database, event_ids: list[str]) -> tuple[Counter[str], Counter[str]]:
    """(inbox rows per event id, apply_webhook jobs per event id) among ``event_ids``."""
    async with db.read() as s:
        rows = (await s.execute(text("select id, event_id from webhook_inbox"))).all()
        jobs = (
            await s.execute(text("select payload from jobs where kind = 'apply_webhook'"))
        ).all()
    wanted = set(event_ids)
    by_inbox = {str(r[0]): str(r[1]) for r in rows if r[1] in wanted}
    job_events: Counter[str] = Counter()
    for (payload,) in jobs:
        data = json.loads(payload) if isinstance(payload, str) else payload
        if data["inbox_id"] in by_inbox:
            job_events[by_inbox[data["inbox_id"]]] += 1
    return Counter(by_inbox.values()), job_events


def stored_sync(url: str, event_ids: list[str]) -> tuple[Counter[str], Counter[str]]:
    async def run() -> tuple[Counter[str], Counter[str]]:
        db = Database(url, pool_size=1)
        try:
            return await stored(db, event_ids)
        finally:
            await db.dispose()

    return asyncio.run(run())


def execute(url: str, *statements: str) -> None:
    async def run() -> None:
        db = Database(url, pool_size=1)
        try:
            async with db.write() as s:
                for statement in statements:
                    await s.execute(text(statement))
        finally:
            await db.dispose()

    asyncio.run(run())


def fail_inserts(url: str, table: str, when: str = "") -> None:
    """Make inserts into ``table`` fail in the database itself (a trigger), for rows matching
    ``when`` (a condition on NEW; every row when empty)."""
    if url.startswith("sqlite"):
        condition = f"WHEN {when}" if when else ""
        execute(
            url,
            f"CREATE TRIGGER gc_fault BEFORE INSERT ON {table} {condition} "
            "BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        )
        return
    check = f"IF {when} THEN " if when else ""
    end = " END IF;" if when else ""
    execute(
        url,
        "CREATE FUNCTION gc_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"{check}RAISE EXCEPTION 'injected fault' USING ERRCODE = 'check_violation';{end} "
        "RETURN NEW; END $$",
        f"CREATE TRIGGER gc_fault BEFORE INSERT ON {table} FOR EACH ROW "
        "EXECUTE FUNCTION gc_fault()",
    )


def heal(url: str, table: str) -> None:
    if url.startswith("sqlite"):
        execute(url, "DROP TRIGGER gc_fault")
    else:
        execute(url, f"DROP TRIGGER gc_fault ON {table}", "DROP FUNCTION gc_fault()")


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["sqlite", POSTGRES])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def settings(
    backend: str, tmp_path_factory: pytest.TempPathFactory, pg_cluster: PgCluster | None
) -> Settings:
    tmp = tmp_path_factory.mktemp(f"group-commit-{backend}")
    url = migrated_database_url(backend, tmp, pg_cluster, f"group_commit_{uuid.uuid4().hex[:8]}")
    return make_settings(url, tmp, free_port(), run_worker=False)


def secret(settings: Settings) -> str:
    processor = SandboxProcessor(settings.sandbox_db)
    try:
        return processor.webhook_secret()
    finally:
        processor.close()


@dataclass
class Served:
    """``create_app`` under uvicorn in a thread, API only (no worker)."""

    settings: Settings
    url: str
    secret: str

    async def post(self, http: httpx.AsyncClient, body: bytes) -> httpx.Response:
        headers = {SIGNATURE: sign_header(body, self.secret), "content-type": "application/json"}
        return await http.post(f"{self.url}/webhooks/sandbox", content=body, headers=headers)

    async def post_all(self, bodies: list[bytes], connections: int = 20) -> list[httpx.Response]:
        """Post every body, ``connections`` at a time, each connection its own client (one
        httpx pool with many requests queued spends its time choosing a connection)."""
        answers: list[httpx.Response | None] = [None] * len(bodies)

        async def one_connection(first: int) -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                for i in range(first, len(bodies), connections):
                    answers[i] = await self.post(http, bodies[i])

        await asyncio.gather(*(one_connection(c) for c in range(connections)))
        return [a for a in answers if a is not None]


@pytest.fixture(scope="module")
def served(settings: Settings) -> Iterator[Served]:
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.port, log_config=None,
        lifespan="on", timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield Served(settings, settings.base_url(), secret(settings))
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def in_process(settings: Settings) -> Paymux:
    return Paymux(settings)


async def receive(core: Paymux, body: bytes, key: str) -> Received:
    return await core.webhooks.receive("sandbox", {SIGNATURE: sign_header(body, key)}, body)


# -- 1. many at once, over HTTP -----------------------------------------------------------------
def test_200_concurrent_deliveries_are_each_answered_and_stored_once(served: Served) -> None:
    ids = new_ids("many", 160)
    deliveries = ids + ids[::4]  # 40 events delivered twice, at the same time
    bodies = {i: event(i) for i in ids}
    responses = asyncio.run(served.post_all([bodies[i] for i in deliveries]))

    assert [r.status_code for r in responses] == [200] * 200, [
        r.text for r in responses if r.status_code != 200
    ][:3]
    new: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    for event_id, response in zip(deliveries, responses, strict=True):
        assert response.json()["received"] is True
        answers[event_id] += 1
        new[event_id] += response.json()["duplicate"] is False
    assert new == Counter({i: 1 for i in ids})  # each event answered as new exactly once
    assert answers == Counter({i: 2 if i in ids[::4] else 1 for i in ids})
    rows, jobs = stored_sync(served.settings.database_url, ids)
    assert rows == Counter({i: 1 for i in ids})
    assert jobs == Counter({i: 1 for i in ids})


# -- 2. the same event twice in one batch ------------------------------------------------------
def test_the_same_event_twice_in_one_batch_is_one_row_one_job_and_one_duplicate(
    settings: Settings,
) -> None:
    key = secret(settings)
    (event_id,) = new_ids("twice", 1)
    body = event(event_id)

    async def scenario() -> tuple[list[Received], int, tuple[Counter[str], Counter[str]]]:
        core = in_process(settings)
        try:
            before = core.webhooks.inbox.batches
            # Both are queued before the flusher task first runs: one batch.
            answers = await asyncio.gather(receive(core, body, key), receive(core, body, key))
            batches = core.webhooks.inbox.batches - before
            return list(answers), batches, await stored(core.ctx.db, [event_id])
        finally:
            await core.close()

    answers, batches, (rows, jobs) = asyncio.run(scenario())
    assert batches == 1
    assert sorted(a.duplicate for a in answers) == [False, True]
    assert answers[0].inbox_id == answers[1].inbox_id
    assert rows == Counter({event_id: 1})
    assert jobs == Counter({event_id: 1})


def test_a_batch_of_many_is_one_transaction_and_a_stored_event_comes_back_duplicate(
    settings: Settings,
) -> None:
    key = secret(settings)
    ids = new_ids("batch", 50)

    async def scenario() -> tuple[int, list[Received], list[Received]]:
        core = in_process(settings)
        try:
            before = core.webhooks.inbox.batches
            first = await asyncio.gather(*(receive(core, event(i), key) for i in ids))
            batches = core.webhooks.inbox.batches - before
            again = await asyncio.gather(*(receive(core, event(i), key) for i in ids[:10]))
            return batches, list(first), list(again)
        finally:
            await core.close()

    batches, first, again = asyncio.run(scenario())
    assert batches == 1
    assert [a.duplicate for a in first] == [False] * 50
    assert len({a.inbox_id for a in first}) == 50
    assert [a.duplicate for a in again] == [True] * 10
    assert [a.inbox_id for a in again] == [a.inbox_id for a in first[:10]]
    rows, jobs = stored_sync(settings.database_url, ids)
    assert rows == jobs == Counter({i: 1 for i in ids})


# -- 3. a failed commit ---------------------------------------------------------------------------
def test_a_failed_commit_answers_every_delivery_5xx_stores_nothing_and_redelivery_stores_once(
    served: Served,
) -> None:
    url = served.settings.database_url
    ids = new_ids("fault", 30)
    bodies = [event(i) for i in ids]
    # The inbox rows of a batch are inserted first, then its jobs: failing the jobs shows the
    # whole transaction is undone.
    fail_inserts(url, "jobs")
    try:
        refused = asyncio.run(served.post_all(bodies))
        rows, jobs = stored_sync(url, ids)
    finally:
        heal(url, "jobs")
    assert all(500 <= r.status_code < 600 for r in refused), [r.status_code for r in refused]
    assert not any(r.status_code == 200 for r in refused)
    assert rows == Counter() and jobs == Counter()

    redelivered = asyncio.run(served.post_all(bodies + bodies[:5]))
    assert [r.status_code for r in redelivered] == [200] * 35
    new = Counter(i for i, r in zip(ids + ids[:5], redelivered, strict=True)
                  if r.json()["duplicate"] is False)
    assert new == Counter({i: 1 for i in ids})
    rows, jobs = stored_sync(url, ids)
    assert rows == jobs == Counter({i: 1 for i in ids})


def test_a_failed_commit_fails_every_waiter_of_the_batch_in_process(settings: Settings) -> None:
    key = secret(settings)
    url = settings.database_url
    ids = new_ids("waiters", 12)

    async def scenario() -> tuple[list[Any], int]:
        core = in_process(settings)
        try:
            before = core.webhooks.inbox.batches
            answers = await asyncio.gather(
                *(receive(core, event(i), key) for i in ids), return_exceptions=True
            )
            return list(answers), core.webhooks.inbox.batches - before
        finally:
            await core.close()

    fail_inserts(url, "jobs")
    try:
        failed, committed = asyncio.run(scenario())
    finally:
        heal(url, "jobs")
    assert all(isinstance(a, Exception) for a in failed), failed
    assert committed == 0
    assert stored_sync(url, ids) == (Counter(), Counter())


# -- 4. one bad event among others ----------------------------------------------------------------
def test_one_event_the_database_refuses_fails_alone_and_its_batch_is_stored(
    settings: Settings,
) -> None:
    key = secret(settings)
    url = settings.database_url
    ids = new_ids("mixed", 10)
    bad = ids[3].replace("evt_mixed", "evt_poison")
    ids[3] = bad

    async def scenario() -> list[Any]:
        core = in_process(settings)
        try:
            return list(
                await asyncio.gather(
                    *(receive(core, event(i), key) for i in ids), return_exceptions=True
                )
            )
        finally:
            await core.close()

    fail_inserts(url, "webhook_inbox", "NEW.event_id LIKE 'evt_poison%'")
    try:
        answers = asyncio.run(scenario())
    finally:
        heal(url, "webhook_inbox")
    assert isinstance(answers[3], Exception)
    good = [i for i in ids if i != bad]
    assert [a.duplicate for a in answers if isinstance(a, Received)] == [False] * 9
    rows, jobs = stored_sync(url, ids)
    assert rows == jobs == Counter({i: 1 for i in good})


# -- 5. after the flusher went idle ---------------------------------------------------------------
def test_deliveries_after_the_flusher_went_idle_are_stored(
    settings: Settings, served: Served
) -> None:
    key = secret(settings)
    ids = new_ids("idle", 6)

    async def idle(core: Paymux) -> bool:
        """Wait (up to 10 s) for the flusher task to end; whether it did."""
        for _ in range(1000):
            if not core.webhooks.inbox.busy:
                return True
            await asyncio.sleep(0.01)
        return False

    async def scenario() -> list[tuple[bool, Received]]:
        core = in_process(settings)
        try:
            seen = []
            for i in ids[:3]:
                was_idle = await idle(core)  # each delivery starts a flusher anew
                seen.append((was_idle, await receive(core, event(i), key)))
            return seen
        finally:
            await core.close()

    seen = asyncio.run(scenario())
    assert [(was_idle, a.duplicate) for was_idle, a in seen] == [(True, False)] * 3

    async def over_http() -> list[httpx.Response]:
        answers = []
        async with httpx.AsyncClient(timeout=30) as http:
            for i in ids[3:]:
                answers.append(await served.post(http, event(i)))
                await asyncio.sleep(0.05)
        return answers

    assert [r.status_code for r in asyncio.run(over_http())] == [200] * 3
    rows, jobs = stored_sync(settings.database_url, ids)
    assert rows == jobs == Counter({i: 1 for i in ids})
