"""The FastAPI application: routers, the guard middleware, error rendering, the worker."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from paymux import __version__, heap
from paymux.api.docs import install_docs
from paymux.api.middleware import GuardMiddleware
from paymux.api.openapi import install_openapi
from paymux.api.request_log import RequestLogMiddleware
from paymux.api.responses import JSONResponse
from paymux.api.routers import (
    admin,
    audit_log,
    charges,
    checkout_sessions,
    connections,
    coupons,
    credit_notes,
    csp_reports,
    customer_balance,
    customers,
    disputes,
    events,
    fraud_rules,
    invoice_items,
    invoices,
    keys,
    meters,
    payment_intents,
    prices,
    products,
    promotion_codes,
    radar_value_lists,
    refunds,
    reviews,
    setup_intents,
    subscription_items,
    subscriptions,
    tax_rates,
    test_clocks,
    webhook_endpoints,
    webhooks,
)
from paymux.api.routing import match_once
from paymux.config import Settings, get_settings
from paymux.dashboard.app import install as install_dashboard
from paymux.domain.errors import PaymuxError
from paymux.gateways.base import GatewayRateLimited, GatewayUnavailable
from paymux.gateways.sandbox.web import build_sandbox_app
from paymux.jobs.worker import Worker
from paymux.observability import routes as ops_routes
from paymux.observability.tracing import (
    configure_tracing,
    flush_tracing,
    instrument_database,
)
from paymux.root import Paymux
from paymux.security import configure_logging, register_secret
from paymux.services.accounts import DEFAULT_ACCOUNT
from paymux.services.request_log import RequestLog
from paymux.web import checkout as web_checkout
from paymux.web import embed as web_embed
from paymux.web import invoices as web_invoices

__all__ = ["create_app", "create_app_from_environment"]

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# SQLSTATEs of a database that is not there right now: connection exceptions (class 08),
# shutting down or starting up (57P01-57P03), too many connections (53300).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def _database_unavailable(exc: Exception) -> bool:
    """The database is unreachable or went away mid-request: transient, worth a retry.

    SQLAlchemy passes a refused connect through unwrapped, as an OSError (ConnectionError
    covers refused, reset and aborted); a full pool is its own TimeoutError.
    """
    if isinstance(exc, (ConnectionError, PoolTimeoutError, OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None)
        return exc.connection_invalidated or (
            isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES)
        )
    return False


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = (
        [str(p) for p in loc[1:]]
        if loc and loc[0] in ("body", "query", "path")
        else [str(p) for p in loc]
    )
    if not parts:
        return None
    return parts[0] + "".join(f"[{p}]" for p in parts[1:])


def _operations(request: Request) -> dict[str, Any]:
    """The OpenAPI operations of the path ``request`` names, by method (lowercase)."""
    spec = request.app.openapi()
    for template, operations in spec.get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            return dict(operations)
    return {}


def _required_fields(request: Request) -> list[str]:
    """The required body fields of the operation ``request`` was routed to (from the
    OpenAPI document, so it is what the docs say)."""
    operation = _operations(request).get(request.method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
    schema = request.app.openapi().get("components", {}).get("schemas", {})
    return list(schema.get(ref.rsplit("/", 1)[-1], {}).get("required", []))


def _error(request: Request, error: PaymuxError) -> JSONResponse:
    error.request_id = getattr(request.state, "request_id", None)
    retry_after = error.extra.get("retry_after")
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": error.to_dict()}, status_code=error.http_status, headers=headers)


def create_app(
    settings: Settings, paymux: Paymux | None = None, *, settle_heap: bool = False
) -> FastAPI:
    """The ASGI app. With ``paymux`` given, the caller owns its lifecycle (tests, benchmarks).
    ``settle_heap``: the app is its process's (``paymux serve``): once started, start-up's
    objects are taken out of the garbage collector's passes (``heap.settle``)."""
    for secret in (settings.admin_key, settings.api_key, settings.metrics_token):
        if secret is not None:  # masked in every log line, whatever its form
            register_secret(secret.get_secret_value())
    configure_tracing()  # on when OTEL_EXPORTER_OTLP_ENDPOINT is set

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = paymux is None
        core = paymux or Paymux(settings)
        app.state.paymux = core
        instrument_database(core.ctx.db)  # a span per transaction, when tracing is on
        await core.accounts.ensure_account(DEFAULT_ACCOUNT)
        if settings.api_key is not None:
            await core.accounts.register_key(DEFAULT_ACCOUNT, settings.api_key.get_secret_value())
        worker = Worker(core) if settings.run_worker else None
        app.state.worker_beat = worker.beat if worker else None  # /health/ready
        app.state.request_log = RequestLog(core.ctx, keep=settings.request_log_keep)
        task = asyncio.create_task(worker.run()) if worker else None
        if settle_heap:
            heap.settle()
        try:
            yield
        finally:
            if worker and task:
                worker.stop()
                try:  # the job in hand finishes, or is cut short at the shutdown timeout
                    await asyncio.wait_for(task, settings.shutdown_timeout)
                except TimeoutError:
                    log.warning("worker cut short after %gs", settings.shutdown_timeout)
                await worker.shut_down()
            await app.state.request_log.close()  # the calls still buffered (issue 15)
            if owned:
                await core.close()
            flush_tracing()  # the last spans, before the process goes

    app = FastAPI(
        title="paymux",
        version=__version__,
        description="One API for Stripe, PayPal, Square and the built-in sandbox gateway.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry (0.16x) is off: paymux makes its spans and metrics itself
        # (api/middleware.py, observability/), with the request line masked first; FastAPI's
        # would record the raw URL, and asked the global providers on every request (2.4 us).
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    # Routes are matched in order, each included router's one by one (a regular expression
    # each): the webhooks' one route first, since deliveries come fastest, then the payments.
    # The API docs' pages (install_docs) come after the API: no API path is theirs, and each
    # API request went through their five routes first (issue 10).
    for module in (webhooks, payment_intents, refunds, customers, events, disputes, admin):
        app.include_router(module.router)
    for module in (keys, audit_log, connections, charges, webhook_endpoints):
        app.include_router(module.router)
    app.include_router(checkout_sessions.router)  # hosted checkout (issue 12)
    app.include_router(csp_reports.router)  # /v1/admin/csp_reports
    for module in (
        setup_intents,
        products,
        prices,
        coupons,
        promotion_codes,
        tax_rates,
        meters,
        subscriptions,
        subscription_items,
        invoices,
        invoice_items,
        credit_notes,
        test_clocks,
    ):  # billing
        app.include_router(module.router)
    app.include_router(customer_balance.router)
    for module in (fraud_rules, radar_value_lists, reviews):  # fraud (issue 13)
        app.include_router(module.router)
    app.include_router(web_invoices.router)  # the hosted invoice page and PDF
    app.include_router(web_checkout.router)  # the hosted checkout page (issue 12)
    app.include_router(web_embed.router)  # /js/paymux.js (issue 12)
    app.include_router(ops_routes.router)  # /health/live, /health/ready, /metrics
    install_docs(app)  # /docs, /redoc and their assets
    install_dashboard(app)  # /dashboard (issue 15)
    install_openapi(app)

    if settings.sandbox_enabled:
        app.mount("/sandbox", _SandboxMount())
    app.add_middleware(webhooks.WebhookDispatch)  # innermost: deliveries skip the router
    app.add_middleware(RequestLogMiddleware)  # inside the guard: the dashboard's request log
    app.add_middleware(GuardMiddleware)
    app.add_middleware(web_embed.PublishableCors)  # outside the guard: preflights (issue 12)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(PaymuxError)
    async def paymux_error(request: Request, exc: PaymuxError) -> JSONResponse:
        return _error(request, exc)

    @app.exception_handler(GatewayUnavailable)
    @app.exception_handler(GatewayRateLimited)
    async def gateway_down(request: Request, exc: Exception) -> JSONResponse:
        """A gateway outage no route turned into its own answer (a page's post that asks a
        gateway before anything is recorded: a setup secret, a PayPal token): 503
        ``gateway_unavailable``, retryable, as the API answers it (api/deps.py), never a 500."""
        log.warning("gateway unavailable: %s", type(exc).__name__)
        return _error(request, PaymuxError.of("gateway_unavailable"))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        kind = str(first.get("type", ""))
        param = _param(tuple(first.get("loc", ())))
        if kind == "missing" and param is None:
            # No body at all: name what the operation needs.
            needed = _required_fields(request)
            param = needed[0] if needed else None
            listed = ", ".join(needed) or "a JSON or form-encoded body"
            code, message = "parameter_missing", f"Missing required param: {listed}."
        elif kind == "missing":
            code, message = "parameter_missing", f"Missing required param: {param}."
        elif kind == "extra_forbidden":
            code, message = "parameter_unknown", f"Received unknown parameter: {param}."
        elif kind == "json_invalid" or (
            kind in ("model_attributes_type", "dict_type") and param in (None, "body")
        ):
            code, message, param = "parameter_invalid", "The body must be a JSON object.", None
        else:
            # The pydantic message, without the input value (it is never echoed back).
            code = "parameter_invalid"
            message = f"Invalid {param}: {first.get('msg', 'invalid value')}."
        return _error(request, PaymuxError.of(code, message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(
                request,
                PaymuxError.of(
                    "url_invalid",
                    f"Unrecognized request URL ({request.method}: {request.url.path}).",
                ),
            )
        if exc.status_code == 405:
            methods = {m.upper() for m in _operations(request)} or {
                m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()
            }
            allow = ", ".join(sorted(methods))
            response = _error(
                request,
                PaymuxError.of(
                    "method_not_allowed",
                    f"{request.method} is not allowed on {request.url.path}; use {allow}.",
                ),
            )
            response.headers["Allow"] = allow
            return response
        error = PaymuxError.of("parameter_invalid", str(exc.detail))
        error.http_status = exc.status_code
        return _error(request, error)

    # Any other exception is GuardMiddleware's: it logs it once and answers 500 with the
    # request id. (An ``Exception`` handler here would run in Starlette's ServerErrorMiddleware,
    # outside the guard: no Request-Id header, and the error re-raised and logged twice.)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        """503 + Retry-After, never a 2xx: a refused webhook is delivered again by its provider."""
        if not _database_unavailable(exc):
            log.error("unhandled error", exc_info=exc)
            return _error(request, PaymuxError.of("api_error"))
        log.warning("database unavailable (%s: %s)", type(exc).__name__, exc)
        response = _error(request, PaymuxError.of("service_unavailable"))
        response.headers["retry-after"] = str(RETRY_AFTER_SECONDS)
        return response

    for exc_class in (DBAPIError, PoolTimeoutError, ConnectionError):
        app.add_exception_handler(exc_class, database_error)

    # Once every router is in: each request's route matched once, not twice (api/routing.py).
    match_once(app)
    return app


def create_app_from_environment() -> FastAPI:
    """The app of one process of ``paymux serve --workers N``: uvicorn starts each in a fresh
    interpreter and calls this there (``factory=True``), so it reads PAYMUX_* (where
    ``serve`` put its flags) and sets up logging itself."""
    settings = get_settings()
    configure_logging(settings.log_level, json_output=settings.log_json)
    return create_app(settings, settle_heap=True)


class _SandboxMount:
    """The sandbox's pages, served on its own path prefix like a provider's origin."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            gateway = scope["app"].state.paymux.ctx.gateways.sandbox()
            if gateway is None:
                response = JSONResponse({"error": {"code": "url_invalid"}}, status_code=404)
                await response(scope, receive, send)
                return
            self._app = build_sandbox_app(
                gateway, controls=scope["app"].state.paymux.settings.sandbox_controls
            )
        await self._app(scope, receive, send)
