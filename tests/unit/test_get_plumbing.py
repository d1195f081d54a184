"""What every request goes through before its route, kept as it was while made cheaper for
the GET of one object (issue 10): the order routes are matched in (the API before the docs'
pages, which no API path reaches), the guard's single read of Stripe-Version and
Authorization (the first of each header counts, a live key over plain HTTP is refused, an
Idempotency-Key's loosely grouped number is still masked) and the expand query of a direct
route (none without a query string, the model's answer with one).

The app's real middleware and routes, called in process over ASGI; no database is opened
(the app's lifespan is not run).
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from starlette.routing import Match

from paymux.api.app import create_app
from paymux.api.deps import direct_expand
from paymux.api.middleware import STRIPE_API_VERSION, GuardMiddleware
from paymux.config import Settings

DOCS_PATHS = ("/docs", "/redoc", "/_docs/docs-init.js", "/_docs/redoc-init.js")


def _app(tmp_path: Path) -> Any:
    return create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", run_worker=False)
    )


def _first_full(routes: list[Any], scope: dict[str, Any]) -> int:
    for index, route in enumerate(routes):
        if route.matches(dict(scope))[0] == Match.FULL:
            return index
    raise AssertionError(f"no route matches {scope['path']}")


def _scope(path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None,
           query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http", "http_version": "1.1", "scheme": "http", "method": method,
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query,
        "headers": headers or [], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }


def test_the_api_is_matched_before_the_docs_pages_which_still_answer_their_paths(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path)
    routes = app.router.routes
    api = _first_full(routes, _scope("/v1/payment_intents/pi_123"))
    for path in DOCS_PATHS:
        found = _first_full(routes, _scope(path))
        assert getattr(routes[found], "path", None) == path  # the docs' own route answers
        assert found > api, f"{path} is matched before the API's routes"
    # The docs' static files (a mount) come after the API too.
    vendor = next(i for i, r in enumerate(routes) if getattr(r, "path", "") == "/_docs/vendor")
    assert vendor > api


async def _guarded(scope: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["headers"] = list(scope["headers"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await GuardMiddleware(app)(scope, receive, send)
    return sent, seen


def _header(message: dict[str, Any], name: bytes) -> bytes | None:
    return next((v for k, v in message["headers"] if k == name), None)


def test_the_first_stripe_version_header_is_the_one_checked_and_echoed() -> None:
    sent, _ = asyncio.run(_guarded(_scope("/v1/payment_intents/pi_1", headers=[
        (b"Stripe-Version", b"2024-06-20"), (b"stripe-version", b"not-a-version"),
    ])))
    assert sent[0]["status"] == 200
    assert _header(sent[0], b"stripe-version") == b"2024-06-20"
    sent, _ = asyncio.run(_guarded(_scope("/v1/payment_intents/pi_1", headers=[
        (b"stripe-version", b"not-a-version"), (b"stripe-version", b"2024-06-20"),
    ])))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["code"] == "api_version_invalid"
    assert _header(sent[0], b"stripe-version") == STRIPE_API_VERSION.encode()
    sent, _ = asyncio.run(_guarded(_scope("/v1/payment_intents/pi_1")))
    assert _header(sent[0], b"stripe-version") == STRIPE_API_VERSION.encode()


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer sk_live_abc123", b"bearer  rk_live_x", b"Basic " + base64.b64encode(b"pk_live_k:")],
)
def test_a_live_key_over_plain_http_is_refused_whichever_header_comes_first(
    authorization: bytes,
) -> None:
    for headers in (
        [(b"authorization", authorization), (b"stripe-version", b"2024-06-20")],
        [(b"Stripe-Version", b"2024-06-20"), (b"Authorization", authorization)],
    ):
        sent, seen = asyncio.run(_guarded(_scope("/v1/payment_intents/pi_1", headers=headers)))
        assert sent[0]["status"] == 403
        assert json.loads(sent[1]["body"])["error"]["code"] == "tls_required"
        assert seen == {}  # the app never saw it


def test_an_idempotency_key_holding_a_grouped_card_number_is_masked_others_untouched() -> None:
    headers = [(b"authorization", b"Bearer sk_test_1"),
               (b"idempotency-key", b"order 4242424242 424242 x")]  # masked, not refused
    sent, seen = asyncio.run(_guarded(_scope("/v1/payment_intents/pi_1", headers=headers)))
    assert sent[0]["status"] == 200
    assert dict(seen["headers"])[b"idempotency-key"] == b"order ************4242 x"
    plain = [(b"authorization", b"Bearer sk_test_1"), (b"user-agent", b"wrk")]
    sent, seen = asyncio.run(_guarded(_scope("/v1/payment_intents/pi_1", headers=plain)))
    assert sent[0]["status"] == 200 and seen["headers"] == plain


def test_the_expand_query_of_a_direct_route() -> None:
    async def expand(query: bytes) -> list[str]:
        return await direct_expand(Request(_scope("/v1/payment_intents/pi_1", query=query)))

    assert asyncio.run(expand(b"")) == []
    assert asyncio.run(expand(b"expand[]=customer&expand[]=latest_charge")) == [
        "customer", "latest_charge"]
    assert asyncio.run(expand(b"client_secret=x")) == []
