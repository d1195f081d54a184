"""The operator's endpoints: ``/health/live``, ``/health/ready`` and ``/metrics``.

``/metrics`` (Prometheus text) needs ``Authorization: Bearer <PAYMUX_METRICS_TOKEN>``; with no
token configured it does not exist (404, like any unknown URL), so a deployment never
publishes its figures by accident. A wrong or missing token is 401 ``api_key_invalid``,
without echoing what was sent. ``paymux worker`` serves ``/metrics`` on a port of its own
when PAYMUX_WORKER_METRICS_PORT is set (``worker_metrics_app``), beside ``/health/live`` (its
liveness probe: answered by the worker's own event loop, so a loop that hangs fails it). The
health endpoints need no key (probes and load balancers call them) and say nothing secret:
which check failed, never a URL or an error's text.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.applications import Starlette
from starlette.routing import Route

from paymux.api.responses import JSONResponse
from paymux.config import Settings
from paymux.domain.errors import PaymuxError
from paymux.observability.health import Readiness, WorkerBeat, readiness
from paymux.observability.metrics import CONTENT_TYPE_LATEST, cached_database_metrics, render
from paymux.storage.db import Database

__all__ = ["router", "worker_metrics_app"]

router = APIRouter(include_in_schema=False)


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    """The readiness checks, run at most once per PAYMUX_READY_CACHE_SECONDS per process
    (probes of every replica, load balancers and monitors don't multiply the queries)."""
    state = request.app.state
    core = state.paymux
    cached = getattr(state, "ready_cache", None)
    moment = time.monotonic()
    if cached is not None and moment - cached[0] < core.settings.ready_cache_seconds:
        found: Readiness = cached[1]
    else:
        own = getattr(state, "worker_beat", None)
        found = await readiness(
            core.ctx.db,
            core.settings,
            core.ctx.now_us(),
            own if isinstance(own, WorkerBeat) else None,
        )
        state.ready_cache = (moment, found)
    return JSONResponse(found.body(), status_code=200 if found.ready else 503)


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    core = request.app.state.paymux
    return await _metrics(
        request,
        core.ctx.db,
        core.settings,
        core.ctx.now_us(),
        core.rate_limiter.check_unauthenticated,
    )


async def _metrics(
    request: Request,
    db: Database,
    settings: Settings,
    now: int,
    count_refusal: Callable[[str | None], Awaitable[None]],
) -> Response:
    configured = settings.metrics_token
    if configured is None or not configured.get_secret_value():
        raise PaymuxError.of(
            "url_invalid", f"Unrecognized request URL ({request.method}: {request.url.path})."
        )
    if not _authorized(request, configured.get_secret_value()):
        # Counted against the address's limit of unauthenticated requests, as a bad API key
        # is: past it, 429 rather than another guess at the token.
        await count_refusal(request.client.host if request.client else None)
        raise PaymuxError.of(
            "api_key_invalid",
            "Invalid metrics token: send `Authorization: Bearer <PAYMUX_METRICS_TOKEN>`.",
        )
    after = now - int(settings.worker_heartbeat_timeout * 1_000_000)
    families = await cached_database_metrics(db, now, after, settings.metrics_cache_seconds)
    return Response(render(families), media_type=CONTENT_TYPE_LATEST)


def worker_metrics_app(
    db: Database,
    settings: Settings,
    now_us: Callable[[], int],
    count_refusal: Callable[[str | None], Awaitable[None]],
) -> Starlette:
    """``GET /metrics`` for ``paymux worker`` (PAYMUX_WORKER_METRICS_PORT): the worker's own
    counters (gateway calls, payments, fraud decisions, deliveries) and the database's
    figures, with the same token; and ``GET /health/live`` (no token: a probe's), answered
    by the loop the jobs run on; anything else is 404."""

    async def endpoint(request: Request) -> Response:
        try:
            return await _metrics(request, db, settings, now_us(), count_refusal)
        except PaymuxError as exc:
            return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    async def missing(request: Request, exc: Exception) -> Response:
        error = PaymuxError.of(
            "url_invalid", f"Unrecognized request URL ({request.method}: {request.url.path})."
        )
        return JSONResponse({"error": error.to_dict()}, status_code=404)

    async def alive(request: Request) -> Response:
        return JSONResponse({"status": "live"})

    return Starlette(
        routes=[
            Route("/metrics", endpoint, methods=["GET"]),
            Route("/health/live", alive, methods=["GET"]),
        ],
        exception_handlers={404: missing, 405: missing},
    )
