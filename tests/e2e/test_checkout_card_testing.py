"""Card testing across checkout sessions (review r6, M2): the hosted page's confirm counts
every card sent, per client address and per account, before its token resolves (a bad
token counts too); past ``PAYMUX_CHECKOUT_PAYER_ADDRESS_LIMIT`` (here 4) or
``PAYMUX_CHECKOUT_PAYER_ACCOUNT_LIMIT`` (here 6) per 10 minutes, 429 ``rate_limited``.
The server here has low limits of its own (every request comes from 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from test_checkout_sessions import session, token

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url

ADDRESS_LIMIT = 4
ACCOUNT_LIMIT = 6


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_cluster: object
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp(f"payer-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"payer_{request.param}")  # type: ignore[arg-type]
    settings = make_settings(url, tmp, free_port(), checkout_payer_address_limit=ADDRESS_LIMIT,
                             checkout_payer_account_limit=ACCOUNT_LIMIT)
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


def confirm(api: Api, cs: dict[str, object], ref: str) -> httpx.Response:
    return httpx.post(f"{cs['url']}/confirm", json={"payment_method": ref},
                      headers={"origin": api.server.url}, timeout=30)


def test_cards_across_sessions_from_one_address_are_limited(api: Api) -> None:
    codes = []
    for _ in range(ADDRESS_LIMIT):  # bad tokens and declines, each on a new session
        codes.append(confirm(api, session(api), "pm_no_such_token").status_code)
    assert 429 not in codes and all(c in (400, 402, 404) for c in codes), codes
    cs = session(api)
    refused = confirm(api, cs, token(api, "4242424242424242"))  # even a good card
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited"
    assert refused.json()["message"] == (
        "Too many payment tries. Wait a few minutes, then try again.")
    assert api.charges(cs["payment_intent"]) == []  # type: ignore[arg-type]
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
