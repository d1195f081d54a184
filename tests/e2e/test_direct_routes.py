"""The payment intent routes that skip FastAPI's dependency solving (api/deps.py
``DirectRoute``: GET one intent, create, confirm; issue 10) answer every request as the
solved route does: the same checks in the same order (key, revocation, Stripe-Account,
unknown parameters, a publishable key's client secret, the expand query, the route's own
query, the body), each with its status, code and param.

Each request is sent twice: once as served (the direct twin), once with a dependency
override set, which makes ``DirectRoute`` hand the request to FastAPI's own handler; both
answers must be the one stated here. A probe on FastAPI's ``solve_dependencies`` shows that
the served requests did not go through it (so the comparison compares two paths).

paymux's real services and HTTP app (in process, tests/support/harness.py), SQLite and
PostgreSQL, against the scripted provider at the connector seam.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest

from conftest import migrated_database_url
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"direct_{next(_names)}")


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp) as h:
            await test(h)

    asyncio.run(main())


def _unrelated_dependency() -> None:  # only its presence in dependency_overrides matters
    return None


class Probe:
    """Counts FastAPI's dependency solving (wrapped where its request handler looks it up)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        solve = fastapi.routing.solve_dependencies

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await solve(*args, **kwargs)

        monkeypatch.setattr(fastapi.routing, "solve_dependencies", counted)


async def both_ways(h: Harness, probe: Probe, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    """The answer served directly and the answer of FastAPI's handler: asserted equal (status
    and error code and param, or the body of a 200 but for per-request fields); returned."""
    before = probe.calls
    direct = await h.http.request(method, path, **kw)
    assert probe.calls == before, f"{method} {path} went through solve_dependencies"
    h._asgi.dependency_overrides[_unrelated_dependency] = _unrelated_dependency
    try:
        solved = await h.http.request(method, path, **kw)
    finally:
        h._asgi.dependency_overrides.clear()
    assert probe.calls > before, "the override did not switch to FastAPI's handler"
    assert direct.status_code == solved.status_code, (direct.text, solved.text)
    return direct.status_code, _shape(direct, solved)


def _shape(direct: httpx.Response, solved: httpx.Response) -> Any:
    if direct.status_code == 200:
        a, b = direct.json(), solved.json()
        if a.get("object") == "payment_intent" and method_created(a, b):
            return "created"  # two creates: two intents, compared by their fields below
        assert a == b
        return a
    a, b = direct.json()["error"], solved.json()["error"]
    pick = ("type", "code", "param", "message")
    assert {k: a.get(k) for k in pick} == {k: b.get(k) for k in pick}
    return (a["code"], a.get("param"))


def method_created(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["id"] == b["id"]:
        return False
    for field in ("amount", "currency", "status", "object", "livemode"):
        assert a[field] == b[field], field
    return True


def test_get_one_intent_answers_as_the_solved_route(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = Probe(monkeypatch)

    async def test(h: Harness) -> None:
        made = h.body(
            await h.post(
                "/v1/payment_intents",
                {"amount": 1500, "currency": "usd", "metadata": {"note": "kept"}},
            )
        )
        path = f"/v1/payment_intents/{made['id']}"
        no_key = {"authorization": ""}

        status, shown = await both_ways(h, probe, "GET", path)
        assert status == 200 and shown["id"] == made["id"] and shown["amount"] == 1500
        assert shown["metadata"] == {"note": "kept"}
        assert await both_ways(h, probe, "GET", path, headers=no_key) == (
            401,
            ("api_key_missing", None),
        )
        bad = {"authorization": "Bearer sk_test_" + "Q" * 24}
        assert await both_ways(h, probe, "GET", path, headers=bad) == (
            401,
            ("api_key_invalid", None),
        )
        # an unknown parameter is refused after the key, never before
        assert await both_ways(h, probe, "GET", path, params={"colour": "red"}) == (
            400,
            ("parameter_unknown", "colour"),
        )
        assert await both_ways(h, probe, "GET", path, params={"colour": "red"}, headers=no_key) == (
            401,
            ("api_key_missing", None),
        )
        assert await both_ways(h, probe, "GET", path, headers={"stripe-account": "acct_other"}) == (
            403,
            ("account_invalid", None),
        )
        assert await both_ways(h, probe, "GET", path, params={"client_secret": "x" * 101}) == (
            400,
            ("parameter_invalid", "client_secret"),
        )
        assert await both_ways(h, probe, "GET", path, params={"expand[]": "nothing_here"}) == (
            400,
            ("parameter_invalid", "expand"),
        )
        status, expanded = await both_ways(
            h, probe, "GET", path, params={"expand[]": "payment_method"}
        )
        assert status == 200 and expanded["payment_method"] is None
        assert await both_ways(h, probe, "GET", "/v1/payment_intents/pi_nope") == (
            404,
            ("resource_missing", "id"),
        )

        new, _ = await h.app.keys.create(h.account, kind="publishable")
        pk = {"authorization": f"Bearer {new.key}"}
        assert await both_ways(h, probe, "GET", path, headers=pk) == (
            400,
            ("parameter_missing", "client_secret"),
        )
        # The last character changed (a secret may end in "Z" itself: then "Y").
        last = made["client_secret"][-1]
        wrong_secret = made["client_secret"][:-1] + ("Y" if last == "Z" else "Z")
        assert await both_ways(
            h,
            probe,
            "GET",
            path,
            headers=pk,
            params={"client_secret": wrong_secret},
        ) == (400, ("payment_intent_invalid_parameter", "client_secret"))
        status, public = await both_ways(
            h, probe, "GET", path, headers=pk, params={"client_secret": made["client_secret"]}
        )
        assert status == 200 and public["id"] == made["id"] and "metadata" not in public

        # a revoked key is refused at once (the cache forgets it), on both paths
        other, view = await h.app.keys.create(h.account)
        ok = {"authorization": f"Bearer {other.key}"}
        assert (await both_ways(h, probe, "GET", path, headers=ok))[0] == 200
        await h.app.keys.revoke(view["id"])
        assert await both_ways(h, probe, "GET", path, headers=ok) == (
            401,
            ("api_key_invalid", None),
        )

    run(db, tmp_path, test)


def test_create_and_confirm_answer_as_the_solved_routes(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = Probe(monkeypatch)

    async def test(h: Harness) -> None:
        create = "/v1/payment_intents"
        no_key = {"authorization": ""}
        # the key is checked before the body: no key and no body is a 401
        assert await both_ways(h, probe, "POST", create, headers=no_key) == (
            401,
            ("api_key_missing", None),
        )
        assert await both_ways(h, probe, "POST", create) == (400, ("parameter_missing", "currency"))
        assert await both_ways(
            h, probe, "POST", create, json={"amount": 100, "currency": "usd", "colour": "red"}
        ) == (400, ("parameter_unknown", "colour"))
        assert await both_ways(
            h,
            probe,
            "POST",
            create,
            params={"colour": "red"},
            json={"amount": 100, "currency": "usd"},
        ) == (400, ("parameter_unknown", "colour"))
        assert await both_ways(
            h, probe, "POST", create, data={"amount": "12.5", "currency": "usd"}
        ) == (400, ("parameter_invalid", "amount"))
        status, shown = await both_ways(
            h, probe, "POST", create, data={"amount": "700", "currency": "eur"}
        )
        assert (status, shown) == (200, "created")

        made = h.body(await h.post(create, {"amount": 900, "currency": "usd"}))
        confirm = f"/v1/payment_intents/{made['id']}/confirm"
        assert await both_ways(
            h, probe, "POST", confirm, headers=no_key, json={"payment_method": "pm_card_visa"}
        ) == (401, ("api_key_missing", None))
        assert await both_ways(h, probe, "POST", confirm, json={"colour": "red"}) == (
            400,
            ("parameter_unknown", "colour"),
        )
        assert await both_ways(
            h,
            probe,
            "POST",
            "/v1/payment_intents/pi_nope/confirm",
            json={"payment_method": "pm_card_visa"},
        ) == (404, ("resource_missing", "id"))
        new, _ = await h.app.keys.create(h.account, kind="publishable")
        assert await both_ways(
            h,
            probe,
            "POST",
            confirm,
            headers={"authorization": f"Bearer {new.key}"},
            json={"payment_method": "pm_card_visa", "off_session": True},
        ) == (400, ("parameter_not_allowed", "off_session"))

    run(db, tmp_path, test)
