"""OpenTelemetry tracing, on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP over HTTP, the
SDK's own ``OTEL_*`` variables configure the rest: headers, service name, sampling).

Spans:
- one per HTTP request (api/middleware.py): ``POST /v1/payment_intents/{pi_id}/confirm``,
  with the method, route template, status and paymux's request id;
- one per database transaction (``instrument_database``: a wrapper at the session seam,
  ``Database.write`` / ``Database.read``);
- one per gateway call (observability/metrics.py ``observe_gateway_call``): gateway,
  operation, outcome, decline code;
- one per job the worker runs, a child of the request (or job) that enqueued it: the
  enqueuer's trace context rides in the job's payload under ``_trace`` (``inject``,
  ``job_context``). The apply_webhook jobs the webhook ingest's group commit writes carry the
  context of the request that delivered each event (``carrier``, taken in that request);
  those the worker applies together in one transaction get a span each all the same
  (``batch_job_spans``), beside a span of the batch that their spans link to.

Attributes carry ids and codes only: never a card number, a key, a secret, an amount or an
email (the same rule as the metrics' labels). Log records get ``trace_id`` and ``span_id``
beside the request id (the log record factory stamps them while a span is current).

Off (no endpoint), every helper here is a no-op costing a function call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.storage.db import Database

__all__ = [
    "TRACE_KEY",
    "TraceIdFilter",
    "batch_job_spans",
    "carrier",
    "configure_tracing",
    "enabled",
    "flush_tracing",
    "inject",
    "instrument_database",
    "job_span",
    "request_context",
    "span",
    "use_provider",
]

TRACE_KEY = "_trace"
_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def enabled() -> bool:
    return _provider is not None


def use_provider(provider: TracerProvider | None) -> None:
    """Trace into ``provider`` (tests: one with an in-memory exporter); None turns it off."""
    global _provider
    _provider = provider
    if provider is not None and not getattr(logging.getLogRecordFactory(), "_paymux", False):
        logging.setLogRecordFactory(_stamping(logging.getLogRecordFactory()))


def configure_tracing() -> bool:
    """Turn tracing on if OTEL_EXPORTER_OTLP_ENDPOINT is set (once per process); True if on."""
    if _provider is not None:
        return True
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME", "paymux")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_provider(provider)
    return True


def flush_tracing(timeout: float = 5.0) -> None:
    """Export the spans still batched (the process is stopping): the BatchSpanProcessor
    sends every few seconds, so the last requests' and jobs' spans would wait for the
    interpreter's exit hook, which a killed-after-grace process never runs."""
    if _provider is not None:
        _provider.force_flush(int(timeout * 1000))


def _tracer() -> trace.Tracer | None:
    return _provider.get_tracer("paymux") if _provider is not None else None


@contextmanager
def span(
    name: str,
    attributes: Mapping[str, str | int | bool] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
) -> Iterator[Span | None]:
    """A span around the block (None when tracing is off). An exception marks it failed with
    the exception's type only (its message may quote input)."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=dict(attributes or {}),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def carrier() -> dict[str, str] | None:
    """The current trace context as W3C ``traceparent``/``tracestate`` fields, for a job row
    written later by another task (the webhook ingest's flusher, whose own context is not
    the request's); None when tracing is off or no span is current."""
    if _provider is None:
        return None
    fields: dict[str, str] = {}
    _propagator.inject(fields)
    return fields or None


def inject(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the current trace context under TRACE_KEY (a job's payload, so its run
    is linked to the request that enqueued it); unchanged when tracing is off."""
    fields = carrier()
    return {**payload, TRACE_KEY: fields} if fields else payload


def request_context(headers: Iterable[tuple[bytes, bytes]]) -> otel_context.Context | None:
    """The trace a request carries in W3C ``traceparent``/``tracestate`` headers (a caller or a
    proxy that traces), for its span to continue; None when tracing is off or it carries none
    (the propagator ignores a malformed header)."""
    if _provider is None:
        return None
    carrier = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in headers
        if name.lower() in (b"traceparent", b"tracestate")
    }
    return _propagator.extract(carrier) if "traceparent" in carrier else None


def job_context(payload: object) -> otel_context.Context | None:
    fields = payload.get(TRACE_KEY) if isinstance(payload, dict) else None
    if not isinstance(fields, dict):
        return None
    return _propagator.extract({str(k): str(v) for k, v in fields.items()})


@contextmanager
def job_span(kind: str, job_id: int, payload: object) -> Iterator[Span | None]:
    """The span of one job run: a child of the enqueuer's span when its payload carries one."""
    with span(
        f"job {kind}",
        {"paymux.job.kind": kind, "paymux.job.id": job_id},
        kind=SpanKind.CONSUMER,
        parent=job_context(payload),
    ) as current:
        yield current


@contextmanager
def batch_job_spans(
    kind: str, jobs: Sequence[tuple[int, object]]
) -> Iterator[Callable[[int, str], None]]:
    """The spans of ``jobs`` (id, payload) run together in ONE transaction (the worker's batch
    of webhook applies): one per job, named and linked to its enqueuer as ``job_span``'s
    (so each delivery's trace shows its apply), all covering the whole batch, whose commit is
    theirs; and one of the batch itself (``job <kind> batch``), current while the block runs
    (the batch's transaction is its child), which each job's span links to.

    Yields ``failed(job_id, reason)``, which marks one job's span failed (``reason``: an
    exception's type, a code; never a message that may quote input). An exception out of
    the block (the batch rolled back) marks every span failed with its type."""
    tracer = _tracer()
    if tracer is None or not jobs:
        yield _no_failure
        return
    batch = tracer.start_span(
        f"job {kind} batch",
        kind=SpanKind.INTERNAL,
        attributes={"paymux.job.kind": kind, "paymux.job.count": len(jobs)},
    )
    to_batch = [Link(batch.get_span_context())]
    spans = {
        job_id: tracer.start_span(
            f"job {kind}",
            context=job_context(payload) or trace.set_span_in_context(batch),
            kind=SpanKind.CONSUMER,
            attributes={
                "paymux.job.kind": kind,
                "paymux.job.id": job_id,
                "paymux.job.batch_size": len(jobs),
            },
            links=to_batch,
        )
        for job_id, payload in jobs
    }

    def failed(job_id: int, reason: str) -> None:
        found = spans.get(job_id)
        if found is not None:
            found.set_status(Status(StatusCode.ERROR, reason))

    try:
        with trace.use_span(batch, record_exception=False, set_status_on_exception=False):
            yield failed
    except BaseException as exc:
        for each in (batch, *spans.values()):
            each.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for each in spans.values():
            each.end()
        batch.end()


def _no_failure(job_id: int, reason: str) -> None:
    """``batch_job_spans``' ``failed`` when tracing is off."""


def instrument_database(db: Database) -> None:
    """A span per transaction: ``db.write()`` and ``db.read()`` of this Database wrapped (on
    the instance) when tracing is on."""
    if _provider is None or getattr(db, "_traced", False):
        return
    system = "sqlite" if db.is_sqlite else "postgresql"

    def traced(
        opened: Callable[[], AbstractAsyncContextManager[AsyncSession]], what: str
    ) -> Callable[[], AbstractAsyncContextManager[AsyncSession]]:
        @asynccontextmanager
        async def transaction() -> AsyncIterator[AsyncSession]:
            with span(
                f"db {what}",
                {"db.system": system, "paymux.db.transaction": what},
                kind=SpanKind.CLIENT,
            ):
                async with opened() as session:
                    yield session

        return transaction

    db.write = traced(db.write, "write")  # type: ignore[method-assign, assignment]
    db.read = traced(db.read, "read")  # type: ignore[method-assign, assignment]
    db._traced = True  # type: ignore[attr-defined]


def _stamp(record: logging.LogRecord) -> None:
    found = trace.get_current_span().get_span_context()
    if found.is_valid:
        record.trace_id = format(found.trace_id, "032x")
        record.span_id = format(found.span_id, "016x")


def _stamping(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """The log record factory, stamping each record with the current span's ids (every
    handler's records, the JSON log's included: it writes a record's extra attributes)."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        _stamp(record)
        return record

    make._paymux = True  # type: ignore[attr-defined]
    return make


class TraceIdFilter(logging.Filter):
    """Stamps ``record.trace_id`` and ``record.span_id`` from the current span (if any): for a
    handler that gets records made before tracing was on."""

    def filter(self, record: logging.LogRecord) -> bool:
        _stamp(record)
        return True
