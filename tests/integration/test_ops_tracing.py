"""OpenTelemetry tracing (issue 16), read back from the SDK's in-memory exporter: a span per
request, per database transaction and per gateway call, the worker's job a child of the
request that enqueued it, attributes without card data or secrets, and log records carrying
the trace id. paymux in-process (support/harness.py) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from conftest import migrated_database_url
from paymux.observability import tracing
from support.fake_gateway import Outcome
from support.harness import Harness
from support.pgcluster import PgCluster
from support.spans import in_memory_spans

_names = itertools.count()
PAN = "4242424242424242"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"trace_{next(_names)}")


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    with in_memory_spans() as exporter:
        yield exporter


def named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def test_a_confirm_is_one_trace_down_to_its_gateway_call_and_its_settlement_job(
    db: str, tmp_path: Path, exported: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            made = await h.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"})
            pi = h.body(made)["id"]
            exported.clear()
            # The answer is lost every time: the confirm leaves a settlement job behind.
            h.gw.script("authorize", *[Outcome.lose_response()] * 4)
            with caplog.at_level(logging.WARNING):
                r = await h.post(
                    f"/v1/payment_intents/{pi}/confirm",
                    {"payment_method": "tok_visa"},
                    key="confirm-trace",
                )
            assert r.status_code == 200 and h.body(r)["status"] == "processing"
            h.advance(3600)
            await h.drain()
            assert h.body(await h.http.get(f"/v1/payment_intents/{pi}"))["status"] == "succeeded"
            spans = exported.get_finished_spans()

            [request] = named(spans, "POST /v1/payment_intents/{")
            assert request.attributes is not None
            assert request.attributes["http.route"] == "/v1/payment_intents/{pi_id}/confirm"
            assert request.attributes["http.response.status_code"] == 200
            assert str(request.attributes["paymux.request_id"]).startswith("req_")
            trace_id = request.context.trace_id
            inside = [s for s in spans if s.context.trace_id == trace_id]
            # Its gateway calls (4 tries: the retry policy) and its transactions are children.
            calls = [s for s in named(inside, "gateway authorize")]
            assert len(calls) == 4
            for call in calls:
                assert call.parent is not None and call.parent.span_id == request.context.span_id
                assert call.attributes is not None
                assert call.attributes["paymux.gateway"] == h.gw.name
            transactions = named(inside, "db ")
            assert transactions and all(t.parent is not None for t in transactions)
            # The settlement job ran in the worker, in the same trace, under the request.
            [job] = named(spans, "job settle_attempt")
            assert job.context.trace_id == trace_id
            assert job.parent is not None and job.parent.trace_id == trace_id
            # Ids and codes only: no card number, no key, no amount in any attribute.
            for s in spans:
                flat = repr(dict(s.attributes or {}))
                assert PAN not in flat and h.key not in flat and "2000" not in flat, s.name
            # The warning the lost answers logged carries the trace id of the request.
            records = [rec for rec in caplog.records if getattr(rec, "trace_id", None)]
            assert records, [rec.getMessage() for rec in caplog.records]
            assert any(rec.trace_id == format(trace_id, "032x") for rec in records)
            # Requests carrying a card number (body, path, query): refused by the guard, and
            # their spans (names, attributes, events) hold none of it.
            exported.clear()
            r = await h.post("/v1/customers", {"metadata": {"note": PAN}})
            assert (r.status_code, h.body(r)["error"]["code"]) == (400, "card_number_not_allowed")
            r = await h.http.get(f"/v1/customers/{PAN}", params={"q": PAN})
            assert (r.status_code, h.body(r)["error"]["code"]) == (400, "card_number_not_allowed")
            refused = exported.get_finished_spans()
            assert len([s for s in refused if s.kind == SpanKind.SERVER]) == 2
            for s in refused:
                seen = s.name + repr(dict(s.attributes or {})) + repr(s.events)
                assert PAN not in seen, seen
            # Span names come from a fixed set of methods: any other is OTHER.
            exported.clear()
            await h.http.request("BREW-" + "x" * 40, "/v1/customers")
            [made] = [s for s in exported.get_finished_spans() if s.kind == SpanKind.SERVER]
            assert made.name.startswith("OTHER "), made.name
            assert (made.attributes or {})["http.request.method"] == "OTHER"

    asyncio.run(main())


def test_a_request_carrying_a_traceparent_continues_that_trace(
    db: str, tmp_path: Path, exported: InMemorySpanExporter
) -> None:
    """A caller (or a proxy) that traces sends W3C ``traceparent``: the request's span joins
    that trace as a child of the caller's span; a malformed header starts a trace of its own."""
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            exported.clear()
            r = await h.http.post(
                "/v1/payment_intents",
                json={"amount": 2000, "currency": "usd"},
                headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
            )
            assert r.status_code == 200, r.text
            r = await h.http.post(
                "/v1/payment_intents",
                json={"amount": 2000, "currency": "usd"},
                headers={"traceparent": "00-not-a-trace-01"},
            )
            assert r.status_code == 200, r.text
            continued, fresh = named(exported.get_finished_spans(), "POST /v1/payment_intents")
            assert f"{continued.context.trace_id:032x}" == trace_id
            assert continued.parent is not None
            assert f"{continued.parent.span_id:016x}" == parent_id
            assert f"{fresh.context.trace_id:032x}" != trace_id
            assert fresh.parent is None

    asyncio.run(main())


def test_tracing_is_off_without_an_endpoint(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    tracing.use_provider(None)
    assert tracing.configure_tracing() is False and not tracing.enabled()
    assert tracing.inject({"a": 1}) == {"a": 1}  # jobs carry nothing extra

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            h.gw.script("authorize", *[Outcome.lose_response()] * 4)  # leaves a job
            r = await h.post(
                "/v1/payment_intents",
                {"amount": 2000, "currency": "usd", "confirm": True, "payment_method": "tok_visa"},
            )
            assert r.status_code == 200, r.text
            payloads = await h.sql("select payload from jobs where kind = 'settle_attempt'")
            assert len(payloads) == 1 and "_trace" not in str(payloads[0][0])

    asyncio.run(main())


def test_the_batched_spans_are_flushed_when_a_process_stops() -> None:
    """OTLP export is batched (every few seconds): ``flush_tracing``, which the API's
    lifespan and ``paymux worker`` call as they stop, sends what is still waiting."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=600_000))
    tracing.use_provider(provider)
    try:
        with tracing.span("job last_one", {"paymux.job": "x"}):
            pass
        assert exporter.get_finished_spans() == ()  # batched: not sent yet
        tracing.flush_tracing()
        assert [s.name for s in exporter.get_finished_spans()] == ["job last_one"]
    finally:
        tracing.use_provider(None)
        provider.shutdown()


class _Collector:
    """An OTLP/HTTP trace collector on 127.0.0.1: records each POST (path, body), answers 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                collector.posts.append((self.path, self.headers.get("content-type", ""), body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> _Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_an_otlp_endpoint_turns_tracing_on_and_the_spans_reach_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set: the app turns tracing on as it is made, and the spans
    of a request are exported over OTLP/HTTP to {endpoint}/v1/traces (batched; flushed when
    the app stops, and here again)."""
    url = migrated_database_url("sqlite", tmp_path, None, f"otlp_{next(_names)}")
    with _Collector() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "paymux-ops-test")
        for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
            monkeypatch.delenv(name, raising=False)
        tracing.use_provider(None)
        provider = None
        try:

            async def main() -> None:
                async with Harness.open(url, tmp_path) as h:  # create_app configures tracing
                    assert tracing.enabled()
                    r = await h.post("/v1/customers", {"email": "otlp@example.com"})
                    assert r.status_code == 200, r.text

            asyncio.run(main())
            provider = tracing._provider
            tracing.flush_tracing(timeout=30)
        finally:
            tracing.use_provider(None)
            if provider is not None:
                provider.shutdown()
    assert collector.posts, "no export reached the collector"
    names: list[str] = []
    services: set[str] = set()
    for path, content_type, body in collector.posts:
        assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope in resource_spans.scope_spans:
                names += [s.name for s in scope.spans]
    assert services == {"paymux-ops-test"}
    assert "POST /v1/customers" in names and "db write" in names, names
