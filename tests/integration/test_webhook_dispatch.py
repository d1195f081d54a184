"""``POST /webhooks/{gateway}`` answered before FastAPI's router (api/routers/webhooks.py,
``WebhookDispatch``), in process, on SQLite and PostgreSQL: a delivery is stored and answered
as the route answered it (the same body, headers, request id, metrics label); refusals and an
unknown gateway keep their 400s; anything else under ``/webhooks/`` still reaches the router
(405, 404); and the dispatch, not the route, answers deliveries."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import REGISTRY
from sqlalchemy import text

from conftest import free_port, make_settings, migrated_database_url
from paymux.api.app import create_app
from paymux.api.routers import webhooks
from paymux.gateways.sandbox.processor import SandboxProcessor
from paymux.gateways.signing import sign_header
from paymux.services import Paymux
from support.keys import random_token
from support.pgcluster import PgCluster

_names = itertools.count()
SIGNATURE = "paymux-sandbox-signature"
LABELS = {"method": "POST", "route": "/webhooks/{gateway}", "status": "200"}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"wd_{next(_names)}")


class Hooks:
    def __init__(self, core: Paymux, asgi: FastAPI, http: httpx.AsyncClient, secret: str) -> None:
        self.core, self.asgi, self.http, self.secret = core, asgi, http, secret

    async def deliver(self, event_id: str, *, secret: str | None = None) -> httpx.Response:
        body = json.dumps(
            {"id": event_id, "object": "event", "type": "test.ping", "created": int(time.time())}
        ).encode()
        return await self.http.post(
            "/webhooks/sandbox",
            content=body,
            headers={
                SIGNATURE: sign_header(body, secret or self.secret),
                "content-type": "application/json",
            },
        )

    async def stored(self, event_id: str) -> list[str]:
        async with self.core.ctx.db.read() as s:
            rows = await s.execute(
                text("select gateway from webhook_inbox where event_id = :e"), {"e": event_id}
            )
            return [r[0] for r in rows]


@asynccontextmanager
async def hooks(db: str, tmp: Path, *, route: bool = True) -> AsyncIterator[Hooks]:
    settings = make_settings(db, tmp, free_port(), run_worker=False)
    core = Paymux(settings)
    asgi = create_app(settings, paymux=core)
    if not route:  # the router without its webhook route: only the dispatch can answer
        asgi.router.routes[:] = [
            r
            for r in asgi.router.routes
            if not (isinstance(r, APIRoute) and r.path == "/webhooks/{gateway}")
            # (FastAPI 0.165 keeps an included router whole; the test checks it is gone)
            and getattr(r, "original_router", None) is not webhooks.router
        ]
    processor = SandboxProcessor(settings.sandbox_db)
    try:
        secret = processor.webhook_secret()
    finally:
        processor.close()
    try:
        async with asgi.router.lifespan_context(asgi):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1"
            ) as http:
                yield Hooks(core, asgi, http, secret)
    finally:
        await core.close()


def run(
    db: str, tmp: Path, work: Callable[[Hooks], Awaitable[None]], *, route: bool = True
) -> None:
    async def go() -> None:
        async with hooks(db, tmp, route=route) as h:
            await work(h)

    asyncio.run(go())


def answered() -> float:
    return REGISTRY.get_sample_value("paymux_http_requests_total", LABELS) or 0.0


def test_a_delivery_is_stored_once_and_answered_as_the_route_answered_it(
    db: str, tmp_path: Path
) -> None:
    async def work(h: Hooks) -> None:
        event_id = random_token("evt_disp_")
        before = answered()
        first = await h.deliver(event_id)
        second = await h.deliver(event_id)
        assert first.status_code == second.status_code == 200
        assert first.content == b'{"received":true,"duplicate":false}'
        assert second.content == b'{"received":true,"duplicate":true}'
        for r in (first, second):
            assert r.headers["content-type"] == "application/json"
            assert r.headers["content-length"] == str(len(r.content))
            assert r.headers["request-id"].startswith("req_")
            assert r.headers["x-content-type-options"] == "nosniff"  # the guard's headers
        assert first.headers["request-id"] != second.headers["request-id"]
        assert await h.stored(event_id) == ["sandbox"]
        # Counted under the route's template, as the router's match was.
        assert answered() - before == 2

    run(db, tmp_path, work)


def test_refusals_keep_their_400s_and_carry_the_request_id(db: str, tmp_path: Path) -> None:
    async def work(h: Hooks) -> None:
        event_id = random_token("evt_bad_")
        bad = await h.deliver(event_id, secret=random_token("whsec_"))
        assert bad.status_code == 400
        error = bad.json()["error"]
        assert (error["code"], error["reason"]) == (
            "webhook_signature_invalid",
            "signature_mismatch",
        )
        assert bad.headers["request-id"].startswith("req_")
        assert await h.stored(event_id) == []

        # Raised as a PaymuxError: answered by the app's own handler, with the request id.
        unknown = await h.http.post("/webhooks/nope", content=b"{}")
        assert unknown.status_code == 400
        error = unknown.json()["error"]
        assert error["code"] == "gateway_unknown" and error["param"] == "gateway"
        assert error["request_id"] == unknown.headers["request-id"]

    run(db, tmp_path, work)


def test_other_requests_under_webhooks_still_get_the_routers_answers(tmp_path: Path) -> None:
    # Answered before any database work: SQLite only (the 405 builds the OpenAPI document).
    db = migrated_database_url("sqlite", tmp_path, None, "wd_routes")

    async def work(h: Hooks) -> None:
        got = await h.http.get("/webhooks/sandbox")
        assert got.status_code == 405 and got.json()["error"]["code"] == "method_not_allowed"
        assert got.headers["allow"] == "POST"
        for path in ("/webhooks/sandbox/more", "/webhooks/"):
            deeper = await h.http.post(path, content=b"{}")
            assert deeper.status_code == 404, path
            assert deeper.json()["error"]["code"] == "url_invalid"

    run(db, tmp_path, work)


def test_the_dispatch_answers_deliveries_without_the_route(db: str, tmp_path: Path) -> None:
    async def work(h: Hooks) -> None:
        assert (await h.http.get("/webhooks/sandbox")).status_code == 404  # no route indeed
        event_id = random_token("evt_noroute_")
        r = await h.deliver(event_id)
        assert r.status_code == 200 and r.json() == {"received": True, "duplicate": False}
        assert await h.stored(event_id) == ["sandbox"]

    run(db, tmp_path, work, route=False)
