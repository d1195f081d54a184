"""A gateway outage that a route does not turn into its own answer (a hosted page's post
asking a gateway before anything is recorded) is a 503 ``gateway_unavailable``, never a 500:
the app's handler (api/app.py ``gateway_down``), on the app as a deployment builds it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import migrated_database_url
from paymux.gateways.base import GatewayRateLimited, GatewayUnavailable
from support.harness import Harness


@pytest.mark.parametrize("error", [GatewayUnavailable, GatewayRateLimited])
def test_a_gateway_outage_escaping_a_route_is_a_503_not_a_500(
    error: type[Exception], tmp_path: Path
) -> None:
    url = migrated_database_url("sqlite", tmp_path, None, "gateway_down")

    async def scenario() -> tuple[int, dict[str, object]]:
        async with Harness.open(url, tmp_path) as h:

            @h._asgi.post("/c/pay/cs_probe/stripe-setup-probe")
            async def probe() -> None:  # what a page's post does when Stripe is down
                raise error("connect timeout")

            r = await h.http.post("/c/pay/cs_probe/stripe-setup-probe", json={})
            return r.status_code, r.json()

    status, body = asyncio.run(scenario())
    assert status == 503, body
    assert body["error"]["code"] == "gateway_unavailable"  # type: ignore[index]
