"""Prometheus metrics: what each process counts, and what the database says at scrape time.

Counted in the process (prometheus-client; across ``serve --workers N`` processes through its
multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``, which ``paymux serve`` sets up itself):

- ``paymux_http_requests_total{method,route,status}`` and
  ``paymux_http_request_duration_seconds{method,route}``: every request, by its route
  *template* (``/v1/payment_intents/{pi_id}``; ``unmatched`` for a path no route has), in
  the guard middleware (api/middleware.py);
- ``paymux_gateway_call_duration_seconds{gateway,operation}`` and
  ``paymux_gateway_call_errors_total{gateway,operation,error}``: each gateway call under the
  retry policy (services/gateway_calls.py, the one seam every call passes);
- ``paymux_payments_total{gateway,operation,outcome,decline_code}``: the gateway's answers to
  ``authorize`` and ``capture``; the decline code is one of the catalogued decline codes
  (``paymux.domain.errors.DECLINE_CODES``: the gateway's own code as its connector maps it,
  or the code itself when the catalogue has it), else ``other``;
- ``paymux_webhook_deliveries_delivered_total{mode}``: outbound deliveries marked delivered
  (``live`` or ``test``), counted by the worker's sender (outbound/delivery.py) once the
  outcome is committed;
- ``paymux_fraud_decisions_total{outcome}``: each confirm's final fraud decision (``allow``,
  ``review``, ``request_3ds``, ``block``), counted by fraud/decisions.py.

A ``paymux worker`` process counts the same (its gateway calls and payments) and serves them
on its own port (PAYMUX_WORKER_METRICS_PORT: observability/routes.py).

Read from the database when ``/metrics`` is scraped (``database_metrics``: one indexed
query each, the answering process alone, under a statement timeout, and at most once per
``PAYMUX_METRICS_CACHE_SECONDS`` per process): job queue depth and oldest age by kind, dead
jobs, the webhook inbox's waiting and dead events and the age of its oldest unapplied one
(the apply lag), the outbound deliveries pending, failing and the oldest pending, the events
not dispatched yet (the outbox), renewals due and the dunning backlog, and workers with a
fresh heartbeat. These gauges are the same whichever process answers: aggregate them across
instances with ``max``, never ``sum`` (deploy/prometheus-alerts.yaml); the counters above
are per process: ``sum`` those.

Labels are bounded: route templates, gateway names, operation names from a fixed list,
outcomes, decline codes (a catalogued set), never an id, an amount or an email.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from opentelemetry.trace import SpanKind
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text

from paymux.domain.errors import DECLINE_CODES, GATEWAY_CODES
from paymux.observability.tracing import span
from paymux.storage.db import Database

__all__ = [
    "CONTENT_TYPE_LATEST",
    "FRAUD_DECISIONS",
    "GATEWAY_CALL_ERRORS",
    "GATEWAY_CALL_SECONDS",
    "GATEWAY_OPERATIONS",
    "PAYMENTS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "STATEMENT_TIMEOUT",
    "WEBHOOK_APPLY_LAG_SECONDS",
    "WEBHOOK_DELIVERED",
    "cached_database_metrics",
    "count_delivered",
    "count_fraud_decision",
    "database_metrics",
    "decline_label",
    "observe_apply_lag",
    "observe_gateway_call",
    "observe_request",
    "render",
]

R = TypeVar("R")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "paymux_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "paymux_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
GATEWAY_CALL_SECONDS = Histogram(
    "paymux_gateway_call_duration_seconds",
    "Gateway calls (with their inline retries), by gateway and operation.",
    ["gateway", "operation"],
    buckets=_LATENCY_BUCKETS,
)
GATEWAY_CALL_ERRORS = Counter(
    "paymux_gateway_call_errors_total",
    "Gateway calls that ended in an error, by gateway, operation and kind of error "
    "(unavailable, rate_limited, invalid_request, other).",
    ["gateway", "operation", "error"],
)
PAYMENTS = Counter(
    "paymux_payments_total",
    "Gateway answers to authorize and capture calls, by gateway, operation, outcome (the "
    "gateway status, or declined) and decline code (a catalogued one, or 'other'; 'none' when "
    "not declined).",
    ["gateway", "operation", "outcome", "decline_code"],
)
FRAUD_DECISIONS = Counter(
    "paymux_fraud_decisions_total",
    "Fraud rule decisions, by outcome (allow, review, block, ...).",
    ["outcome"],
)

WEBHOOK_DELIVERED = Counter(
    "paymux_webhook_deliveries_delivered_total",
    "Outbound webhook deliveries marked delivered (a 2xx from the merchant's endpoint), by "
    "mode (live, test).",
    ["mode"],
)

WEBHOOK_APPLY_LAG_SECONDS = Histogram(
    "paymux_webhook_apply_lag_seconds",
    "Time from an inbound webhook's receipt to its apply, by gateway (connector name).",
    ["gateway"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)

# The gateway operations a label may name (the Gateway protocol's calls, gateways/base.py);
# anything else is "other", so a label never grows with the code that calls.
GATEWAY_OPERATIONS = frozenset(
    {
        "describe_payment_method",
        "open_payment",
        "authorize",
        "capture",
        "void",
        "refund",
        "retrieve",
        "lookup",
        "retrieve_refund",
        "update_payment",
        "create_customer",
        "attach_payment_method",
        "detach_payment_method",
        "setup",
        "retrieve_setup",
    }
)
_PAYMENT_OPERATIONS = frozenset({"authorize", "capture"})
_LABEL = re.compile(r"[a-z0-9_]{1,40}")


def _label(value: object, default: str) -> str:
    """A label value: short lowercase word characters only, else ``default``."""
    text_value = str(value).lower() if value is not None else ""
    return text_value if _LABEL.fullmatch(text_value) else default


_REQUEST_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
# The two children a request is counted in, by (method, route, status): ``labels()`` looks its
# child up under the metric's lock with its labels checked each time, twice per request (issue
# 10). Bounded as the labels are: methods from a fixed set, route templates, status codes.
_REQUEST_CHILDREN: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in _REQUEST_METHODS else "OTHER"
    key = (method, route, status)
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        children = (
            REQUESTS.labels(method, route, str(status)),
            REQUEST_SECONDS.labels(method, route),
        )
        _REQUEST_CHILDREN[key] = children
    children[0].inc()
    children[1].observe(seconds)


def observe_apply_lag(gateway: str, seconds: float) -> None:
    """One inbound webhook applied ``seconds`` after it was received."""
    WEBHOOK_APPLY_LAG_SECONDS.labels(_label(gateway, "other")).observe(max(0.0, seconds))


def count_delivered(livemode: bool, count: int = 1) -> None:
    """``count`` outbound deliveries of this mode were marked delivered (committed)."""
    if count > 0:
        WEBHOOK_DELIVERED.labels("live" if livemode else "test").inc(count)


def decline_label(gateway: str, gateway_code: object) -> str:
    """The decline code a payment is counted under: one of the catalogued decline codes
    (``DECLINE_CODES``), never a gateway's free text. The gateway's code as its connector's
    table maps it; else the code itself if the catalogue has it; else ``other``."""
    code = str(gateway_code) if gateway_code is not None else ""
    mapped = GATEWAY_CODES.get((gateway, code))
    if mapped is not None and mapped.decline_code is not None:
        return mapped.decline_code
    return code if code in DECLINE_CODES else "other"


# The decisions' children by label (``labels()`` looks its argument up under a lock at
# every call: once per payment).
_FRAUD_CHILDREN: dict[str, Counter] = {}


def count_fraud_decision(outcome: str) -> None:
    """Count one fraud decision (for paymux/fraud: ``allow``, ``review``, ``block``...)."""
    label = _label(outcome, "other")
    child = _FRAUD_CHILDREN.get(label)
    if child is None:
        child = _FRAUD_CHILDREN[label] = FRAUD_DECISIONS.labels(label)
    child.inc()


def describe_call(call: Callable[..., Any]) -> tuple[str, str]:
    """The gateway name and operation a gateway call makes, read from the callable itself
    (``lambda: gateway.authorize(...)`` or a bound method): the first object it closes over
    (or is bound to) with a ``name`` and an ``authorize`` method is the gateway, and the
    first attribute it calls that is a Gateway operation is the operation. So every call site
    is measured with no change to it; one the rules don't recognise is ``unknown``/``other``."""
    gateway = "unknown"
    operation = "other"
    bound = getattr(call, "__self__", None)
    candidates = [bound] if bound is not None else []
    func = getattr(call, "__func__", call)
    code = getattr(func, "__code__", None)
    for cell in getattr(func, "__closure__", None) or ():
        try:
            candidates.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    for candidate in candidates:
        name = getattr(candidate, "name", None)
        if isinstance(name, str) and callable(getattr(candidate, "authorize", None)):
            gateway = _label(name, "unknown")
            break
    names = (code.co_names if code is not None else ()) + (
        (getattr(func, "__name__", ""),) if bound is not None else ()
    )
    for name in names:
        if name in GATEWAY_OPERATIONS:
            operation = name
            break
    return gateway, operation


def _error_kind(exc: BaseException) -> str:
    kind = type(exc).__name__
    return {
        "GatewayUnavailable": "unavailable",
        "GatewayRateLimited": "rate_limited",
        "GatewayInvalidRequest": "invalid_request",
    }.get(kind, "other")


async def observe_gateway_call(call: Callable[[], Awaitable[R]]) -> R:
    """Run one gateway call, measuring its latency, errors and (authorize, capture) outcome."""
    gateway, operation = describe_call(call)
    labels = {"paymux.gateway": gateway, "paymux.gateway.operation": operation}
    with span(f"gateway {operation}", labels, kind=SpanKind.CLIENT) as current:
        started = time.perf_counter()
        try:
            result = await call()
        except Exception as exc:
            GATEWAY_CALL_ERRORS.labels(gateway, operation, _error_kind(exc)).inc()
            raise
        finally:
            GATEWAY_CALL_SECONDS.labels(gateway, operation).observe(time.perf_counter() - started)
        status = getattr(result, "status", None)
        decline = getattr(result, "decline", None)
        outcome = "declined" if decline is not None else _label(status, "other")
        code = decline_label(gateway, getattr(decline, "gateway_code", None)) if decline else "none"
        if current is not None and status is not None:
            current.set_attribute("paymux.gateway.outcome", outcome)
            current.set_attribute("paymux.decline_code", code)
        if operation in _PAYMENT_OPERATIONS and status is not None:
            PAYMENTS.labels(gateway, operation, outcome, code).inc()
    return result


# -- the database, at scrape time ------------------------------------------------------------
_QUERIES: dict[str, str] = {
    # The jobs index (status, run_at_us) serves these.
    "jobs_live": "SELECT kind, status, count(*), min(run_at_us), min(created_us) FROM jobs "
    "WHERE status IN ('queued', 'running') GROUP BY kind, status",
    "jobs_dead": "SELECT kind, count(*) FROM jobs WHERE status = 'dead' GROUP BY kind",
    # Only what waits or gave up (applied and ignored events only grow); the index
    # ix_webhook_inbox_status (status, gateway, received_us) serves it.
    "inbox": "SELECT gateway, status, count(*), min(received_us) FROM webhook_inbox "
    "WHERE status IN ('received', 'dead') GROUP BY gateway, status",
    "deliveries": "SELECT count(*), min(created_us), "
    "sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) FROM webhook_deliveries "
    "WHERE status = 'pending'",
    # ix_webhook_deliveries_status (status, created_us) serves these two.
    "deliveries_failed": "SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'",
    # The outbox holds only the events not dispatched yet (the dispatcher deletes its rows).
    "undispatched": "SELECT count(*) FROM event_outbox",
    "renewals_due": "SELECT count(*) FROM subscriptions WHERE next_due_us <= :now",
    "dunning": "SELECT count(*) FROM invoices WHERE status = 'open' AND attempt_count > 0 "
    "AND next_payment_attempt_us IS NOT NULL",
}


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


# Each scrape's database work is bounded: PostgreSQL cancels a statement after this long,
# and the whole read is given up after it on any database (the scrape then fails: 500).
STATEMENT_TIMEOUT = 2.0
_cache: weakref.WeakKeyDictionary[Database, tuple[float, list[Metric]]] = (
    weakref.WeakKeyDictionary()
)


async def cached_database_metrics(
    db: Database, now_us: int, heartbeat_after_us: int, ttl: float
) -> list[Metric]:
    """``database_metrics``, read at most once per ``ttl`` seconds per process (several
    Prometheis, or a short scrape interval, don't multiply the queries)."""
    moment = time.monotonic()
    cached = _cache.get(db)
    if cached is not None and moment - cached[0] < ttl:
        return cached[1]
    families = await asyncio.wait_for(
        database_metrics(db, now_us, heartbeat_after_us), STATEMENT_TIMEOUT * 2
    )
    _cache[db] = (moment, families)
    return families


async def database_metrics(db: Database, now_us: int, heartbeat_after_us: int) -> list[Metric]:
    """The figures read from the database, one query each (see ``_QUERIES``)."""
    rows: dict[str, list[Any]] = {}
    async with db.read() as s:
        if not db.is_sqlite:
            milliseconds = int(STATEMENT_TIMEOUT * 1000)
            await s.execute(text(f"SET LOCAL statement_timeout = {milliseconds}"))
        for name, sql in _QUERIES.items():
            result = await s.execute(text(sql), {"now": now_us} if ":now" in sql else {})
            rows[name] = list(result.all())
        beats = await s.execute(
            text("SELECT count(*) FROM worker_heartbeats WHERE beat_us >= :after"),
            {"after": heartbeat_after_us},
        )
        fresh_workers = int(beats.scalar_one())

    def age(us: int | None) -> float:
        return max(0.0, (now_us - int(us)) / 1e6) if us is not None else 0.0

    depth = _gauge(
        "paymux_jobs", "Live jobs by kind and status (queued, running).", ["kind", "status"]
    )
    oldest = _gauge(
        "paymux_jobs_oldest_age_seconds",
        "Age of the oldest live job by kind and status: for queued ones, since it was due.",
        ["kind", "status"],
    )
    for kind, status, count, run_at, created in rows["jobs_live"]:
        depth.add_metric([kind, status], int(count))
        oldest.add_metric([kind, status], age(run_at if status == "queued" else created))
    dead = _gauge("paymux_jobs_dead", "Dead jobs (out of attempts) by kind.", ["kind"])
    for kind, count in rows["jobs_dead"]:
        dead.add_metric([kind], int(count))
    inbox = _gauge(
        "paymux_webhook_inbox_events",
        "Inbound gateway events waiting (received: not applied yet) or given up (dead), by "
        "gateway and status.",
        ["gateway", "status"],
    )
    lag = _gauge(
        "paymux_webhook_inbox_lag_seconds",
        "Age of the oldest received, not yet applied, event by gateway (0: none waiting).",
        ["gateway"],
    )
    for gateway, status, count, first in rows["inbox"]:
        inbox.add_metric([gateway, status], int(count))
        if status == "received":
            lag.add_metric([gateway], age(first))
    pending, first_pending, failing = rows["deliveries"][0]
    deliveries = _gauge(
        "paymux_webhook_deliveries",
        "Outbound deliveries to merchants' endpoints: pending (failing: pending after a "
        "failed attempt), and failed (given up).",
        ["status"],
    )
    deliveries.add_metric(["pending"], int(pending or 0))
    deliveries.add_metric(["failing"], int(failing or 0))
    deliveries.add_metric(["failed"], int(rows["deliveries_failed"][0][0] or 0))
    oldest_pending = _gauge(
        "paymux_webhook_deliveries_oldest_pending_age_seconds",
        "Age of the oldest pending outbound delivery (0: none pending).",
    )
    oldest_pending.add_metric([], age(first_pending))
    undispatched = _gauge(
        "paymux_webhook_events_undispatched",
        "Events whose outbound deliveries the dispatcher has not made yet (the outbox).",
    )
    undispatched.add_metric([], int(rows["undispatched"][0][0] or 0))
    renewals = _gauge("paymux_billing_renewals_due", "Subscriptions due for the scheduler now.")
    renewals.add_metric([], int(rows["renewals_due"][0][0] or 0))
    dunning = _gauge(
        "paymux_billing_dunning_invoices",
        "Open invoices whose payment failed and is to be retried (the dunning backlog).",
    )
    dunning.add_metric([], int(rows["dunning"][0][0] or 0))
    workers = _gauge("paymux_workers_alive", "Job workers with a fresh heartbeat.")
    workers.add_metric([], fresh_workers)
    return [
        depth,
        oldest,
        dead,
        inbox,
        lag,
        deliveries,
        oldest_pending,
        undispatched,
        renewals,
        dunning,
        workers,
    ]


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render(database: list[Metric]) -> bytes:
    """The Prometheus text of this process's counters (all processes' in multiprocess mode)
    and ``database``'s figures."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    extra.register(_Fixed(database))
    return counted + generate_latest(extra)
