"""Tracing of inbound webhooks (issue 16), read back from the SDK's in-memory exporter, paymux
in-process (support/harness.py) on SQLite and PostgreSQL:

1. deliveries group-committed together (webhooks/ingest.py: one transaction for all) each
   leave an ``apply_webhook`` job carrying the trace context of the request that delivered
   THAT event (not the flusher's, which is the first request's);
2. the worker applies those jobs together in one transaction (jobs/worker.py
   ``_apply_batch``), and each job still gets its span, a child of its delivery's request
   span, linked to the batch's span (whose transaction is its child);
3. an event failing inside the batch marks its own span failed (with the exception's type),
   the others' not; the try rolled back (the batch without savepoints) marks all of its
   spans failed;
4. no card number, API key, webhook secret, signature or amount in any span's attributes;
5. tracing off: the ingest's jobs carry no trace context.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import migrated_database_url
from paymux.observability import tracing
from support.backlog import completed_at_provider
from support.fake_gateway import ProviderEvent
from support.harness import Harness
from support.pgcluster import PgCluster
from support.spans import in_memory_spans

_names = itertools.count()
PAN = "4242424242424242"
AMOUNT = 2734  # an amount no id or timestamp here contains by chance (checked below)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"trwh_{next(_names)}")


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    with in_memory_spans() as exporter:
        yield exporter


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def traceparent(trace_id: int, span_id: int) -> str:
    """The ids a W3C ``traceparent`` header names: ``<trace id>-<parent span id>``, in hex."""
    return f"{trace_id:032x}-{span_id:016x}"


def named_in(header: str) -> str:
    """The ids of a ``traceparent`` header (``00-<trace>-<span>-<flags>``; the flags vary)."""
    version, trace_id, span_id, _flags = header.split("-")
    assert version == "00"
    return f"{trace_id}-{span_id}"


async def deliver_together(h: Harness, events: list[ProviderEvent]) -> list[str]:
    """POST the events to /webhooks/<gateway> at once (one group commit, checked); returns
    the signature header of each (which no span may hold)."""
    requests = [h.gw.webhook_request(ev) for ev in events]
    before = h.app.webhooks.inbox.batches
    answers = await asyncio.gather(
        *(
            h.http.post(f"/webhooks/{h.gw.name}", content=body, headers=headers)
            for headers, body in requests
        )
    )
    assert [a.status_code for a in answers] == [200] * len(events), [a.text for a in answers]
    assert all(h.body(a)["duplicate"] is False for a in answers)
    assert h.app.webhooks.inbox.batches - before == 1  # all in one transaction
    return [headers["fake-signature"] for headers, _ in requests]


async def apply_jobs(h: Harness) -> dict[int, dict[str, Any]]:
    """The apply_webhook jobs: id -> payload."""
    rows = await h.sql("select id, payload from jobs where kind = 'apply_webhook'")
    return {
        int(job_id): payload if isinstance(payload, dict) else json.loads(payload)
        for job_id, payload in rows
    }


def assert_nothing_secret(spans: tuple[ReadableSpan, ...], h: Harness, *secrets: str) -> None:
    for s in spans:
        seen = s.name + repr(dict(s.attributes or {})) + repr(s.events)
        for secret in (PAN, h.key, h.gw.webhook_secret, str(AMOUNT), *secrets):
            assert secret not in seen, (s.name, secret)


def test_a_batch_of_deliveries_is_traced_per_delivery_from_ingest_to_apply(
    db: str, tmp_path: Path, exported: InMemorySpanExporter
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, worker_batch_size=50) as h:
            ids = await completed_at_provider(h, amount=AMOUNT, n=3)
            events = h.gw.take_webhooks()
            assert len(events) == 3
            exported.clear()

            signatures = await deliver_together(h, events)
            spans = exported.get_finished_spans()
            requests = [s for s in spans if s.kind == SpanKind.SERVER]
            assert len(requests) == 3
            for r in requests:
                assert r.name == "POST /webhooks/{gateway}"
                assert r.parent is None  # each delivery its own trace
            assert len({r.context.trace_id for r in requests}) == 3
            # 1. Each job carries its own delivery's context: the three requests' spans,
            # one each (the flusher ran in the first request's context: one trace thrice
            # would be the bug).
            jobs = await apply_jobs(h)
            assert len(jobs) == 3
            carried = sorted(named_in(p["_trace"]["traceparent"]) for p in jobs.values())
            assert carried == sorted(
                traceparent(r.context.trace_id, r.context.span_id) for r in requests
            )
            assert all(set(p) == {"inbox_id", "_trace"} for p in jobs.values())

            # 2. One claim, one batch, one transaction: a span per job under its request.
            exported.clear()
            assert await h.worker.run_once() == 3
            for pi in ids:
                assert (await h.get(f"/v1/payment_intents/{pi}"))["status"] == "succeeded"
            applied = exported.get_finished_spans()
            # One batch on SQLite; on PostgreSQL the claim is cut into up to two, applied at
            # the same time (worker.APPLY_CONCURRENCY), each its own transaction.
            batches = {s.context.span_id: s for s in named(applied, "job apply_webhook batch")}
            assert len(batches) == (1 if db.startswith("sqlite") else 2)
            assert sum(int((b.attributes or {})["paymux.job.count"]) for b in batches.values()) == 3
            per_job = named(applied, "job apply_webhook")
            assert len(per_job) == 3
            parents = {
                traceparent(s.context.trace_id, s.parent.span_id)
                for s in per_job
                if s.parent is not None
            }
            assert parents == set(carried)
            assert sorted(int((s.attributes or {})["paymux.job.id"]) for s in per_job) == sorted(
                jobs
            )
            for s in per_job:
                assert s.kind == SpanKind.CONSUMER
                assert (s.attributes or {})["paymux.job.kind"] == "apply_webhook"
                assert s.status.status_code == StatusCode.UNSET
                [link] = s.links
                assert link.context.span_id in batches
            for batch in batches.values():
                # Its jobs' spans link to it, and its transaction is its child.
                linked = [s for s in per_job if s.links[0].context.span_id == batch.context.span_id]
                assert len(linked) == (batch.attributes or {})["paymux.job.count"]
                writes = [
                    s
                    for s in named(applied, "db write")
                    if s.parent is not None and s.parent.span_id == batch.context.span_id
                ]
                assert len(writes) == 1
                assert writes[0].context.trace_id == batch.context.trace_id

            # 4. Nothing secret anywhere, from delivery to apply.
            assert_nothing_secret(spans + applied, h, *signatures)

    asyncio.run(main())


def test_an_event_failing_in_a_batch_fails_its_own_span_only(
    db: str, tmp_path: Path, exported: InMemorySpanExporter
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, worker_batch_size=50) as h:
            ids = await completed_at_provider(h, amount=AMOUNT, n=2)
            payment = h.gw.payments_for(ids[0])[0].snapshot()
            unknown = ProviderEvent(
                f"evt_nowhere_{random.getrandbits(48):x}",
                "payment.updated",
                h.gw.now(),
                {**payment, "id": "pay_nowhere", "reference": "pi_nowhere"},
            )
            events = [*h.gw.take_webhooks(), unknown]
            exported.clear()
            await deliver_together(h, events)
            requests = [s for s in exported.get_finished_spans() if s.kind == SpanKind.SERVER]
            assert len(requests) == 3
            jobs = await apply_jobs(h)
            inbox_of_unknown = (
                await h.sql("select id from webhook_inbox where event_id = :e", e=unknown.id)
            )[0][0]
            [failing_job] = [j for j, p in jobs.items() if p["inbox_id"] == inbox_of_unknown]

            exported.clear()
            assert await h.worker.run_once() == 3
            applied = exported.get_finished_spans()
            # A batch first runs without savepoints: the unknown payment's event fails it, it
            # is rolled back (every span of that try failed) and run again with a savepoint
            # per event, where only the unknown one fails. (On PostgreSQL the claim is cut
            # into two batches: the other one, without that event, applies at its first try.)
            per_job = named(applied, "job apply_webhook")
            if db.startswith("sqlite"):
                assert len(per_job) == 6  # one batch, two tries
            tries: dict[int, list[ReadableSpan]] = {}
            for s in sorted(per_job, key=lambda s: s.start_time or 0):
                tries.setdefault(int((s.attributes or {})["paymux.job.id"]), []).append(s)
            assert sorted(tries) == sorted(jobs)
            for job_id, spans in tries.items():
                *before, last = [(s.status.status_code, s.status.description) for s in spans]
                assert all(earlier == (StatusCode.ERROR, "BatchEventFailed") for earlier in before)
                if job_id == failing_job:
                    assert len(before) == 1
                    assert last == (StatusCode.ERROR, "UnknownObjectYet")
                else:
                    assert last == (StatusCode.UNSET, None)
            batches = named(applied, "job apply_webhook batch")
            outcomes = Counter((b.status.status_code.name, b.status.description) for b in batches)
            assert outcomes == Counter(
                {("ERROR", "BatchEventFailed"): 1, ("UNSET", None): len(batches) - 1}
            )
            # Every try's spans sit in the trace of their own delivery's request.
            wanted = {traceparent(r.context.trace_id, r.context.span_id) for r in requests}
            for s in per_job:
                assert s.parent is not None
                assert traceparent(s.context.trace_id, s.parent.span_id) in wanted
            assert_nothing_secret(applied, h)
            # The job's error is as before: the event waits for its payment.
            [(status, error)] = await h.sql(
                "select status, last_error from jobs where id = :j", j=failing_job
            )
            assert status == "queued" and error.startswith("waiting: ")

    asyncio.run(main())


def test_deliveries_leave_jobs_without_trace_context_when_tracing_is_off(
    db: str, tmp_path: Path
) -> None:
    tracing.use_provider(None)

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            await completed_at_provider(h, amount=AMOUNT, n=2)
            await deliver_together(h, h.gw.take_webhooks())
            jobs = await apply_jobs(h)
            assert len(jobs) == 2
            assert all(set(p) == {"inbox_id"} for p in jobs.values())
            assert await h.worker.run_once() == 2  # applied all the same, untraced

    asyncio.run(main())
