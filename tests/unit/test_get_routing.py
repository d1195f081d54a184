"""Routing with each route matched once per request (api/routing.py, issue 10).

FastAPI 0.16x matched an included router's routes twice per request (``matches``, then
``_handle_selected`` again), and tried every router's routes one by one, also those of
routers whose paths all start with a text the request's path does not. These tests hold:

- the choice is FastAPI's own: for every route of the app, with each of its methods and with
  a method it does not take, and for paths no route has (with and without a trailing
  slash), the app picks the same route, with the same kind of match (FULL, PARTIAL: a 405,
  NONE: a 404), as the same app with FastAPI's included routers left as they are;
- a GET of one payment intent calls each route's ``matches`` at most once, and none of a
  router whose routes all start with ``/v1/refunds``;
- a route added to a router later is matched (the shared prefix is worked out again).

The app's real routes, no database (the app's lifespan is not run).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi import routing as fastapi_routing
from starlette.routing import Match, Route

from paymux.api.app import create_app
from paymux.api.routing import match_once
from paymux.config import Settings

_INCLUDED: Any = fastapi_routing._IncludedRouter  # what is compared with


def _app(tmp_path: Path) -> Any:
    return create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", run_worker=False)
    )


def _plain(app: Any) -> Any:
    """``app`` with FastAPI's own included routers back in place of api/routing.py's."""
    routes = app.router.routes
    for index, route in enumerate(routes):
        if isinstance(route, _INCLUDED) and type(route) is not _INCLUDED:
            routes[index] = _INCLUDED(
                original_router=route.original_router, include_context=route.include_context
            )
    return app


def _scope(path: str, method: str) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "scheme": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


def _describe(route: Any) -> tuple[str, str, tuple[str, ...]]:
    return (
        type(route).__name__,
        str(getattr(route, "path", "")),
        tuple(sorted(getattr(route, "methods", None) or ())),
    )


def _chosen(app: Any, path: str, method: str) -> tuple[str, Any]:
    """What the app's router runs for ``method path``, as Starlette's loop picks (the first
    FULL match, else the first PARTIAL) and an included router's ``handle`` then picks
    among its routes (``_match``, as its ``_handle_selected`` does)."""
    scope = _scope(path, method)
    picked: tuple[Match, Any] | None = None
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            picked = (match, route)
            break
        if match == Match.PARTIAL and picked is None:
            picked = (match, route)
    if picked is None:
        return "NONE", None
    match, route = picked
    while isinstance(route, _INCLUDED):
        inner, _, leaf, _ = route._match(scope)
        assert inner != Match.NONE, f"{method} {path}: matched, then not"
        match = Match.PARTIAL if Match.PARTIAL in (match, inner) else Match.FULL
        route = leaf
    return match.name, _describe(route)


def _requests(app: Any) -> list[tuple[str, str]]:
    """Each route's path (its parameters filled in) with each of its methods and with one
    it does not take; and paths no route has."""
    asked: list[tuple[str, str]] = []
    for context in fastapi_routing.iter_route_contexts(app.routes):
        template = context.path
        if not isinstance(template, str):
            continue
        path = template
        while "{" in path:
            start = path.index("{")
            end = path.index("}", start)
            name = path[start + 1 : end].split(":", 1)[0]
            path = path[:start] + f"x_{name}" + path[end + 1 :]
        methods = sorted(context.methods or {"GET"})
        for method in [*methods, "PATCH" if "PATCH" not in methods else "PUT"]:
            asked.append((path, method))
        asked.append((path + "/", methods[0]))  # a trailing slash: a redirect or a 404
    for path in ("/", "/v1", "/v1/", "/v1/nothing", "/v1/payment_intents/a/b/c", "/v2/x"):
        asked += [(path, "GET"), (path, "POST")]
    return asked


def test_every_route_is_chosen_as_fastapi_chooses_it(tmp_path: Path) -> None:
    ours = _app(tmp_path)
    fastapis = _plain(_app(tmp_path))
    assert any(type(r) is not _INCLUDED and isinstance(r, _INCLUDED) for r in ours.routes)
    asked = _requests(ours)
    assert len(asked) > 600  # every route of the app, several ways
    differ = [
        (method, path, mine, theirs)
        for path, method in asked
        if (mine := _chosen(ours, path, method)) != (theirs := _chosen(fastapis, path, method))
    ]
    assert differ == []
    kinds = {_chosen(ours, path, method)[0] for path, method in asked}
    assert kinds == {"FULL", "PARTIAL", "NONE"}


def test_a_get_of_one_intent_matches_each_route_once_and_skips_other_prefixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path)
    calls: dict[int, int] = {}
    tried: list[str] = []
    matches = fastapi_routing.APIRoute.matches

    def counted(self: Any, scope: Any) -> Any:
        calls[id(self)] = calls.get(id(self), 0) + 1
        tried.append(self.path)
        return matches(self, scope)

    monkeypatch.setattr(fastapi_routing.APIRoute, "matches", counted)
    path = "/v1/payment_intents/pi_123"
    scope = {**_scope(path, "GET"), "app": app}
    chosen: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        chosen.setdefault("status", message.get("status"))

    # Through the app's router (routing and the route's handler; no middleware, no
    # database: the handler fails on the missing Paymux core, after the route is chosen).
    with pytest.raises(AttributeError):
        asyncio.run(app.router(scope, receive, send))
    assert scope["route"].path == "/v1/payment_intents/{pi_id}"
    assert scope["route"].methods == {"GET"}
    assert calls, "no route was tried"
    assert max(calls.values()) == 1, "a route was matched twice"
    assert "/v1/payment_intents/{pi_id}" in tried
    assert not [p for p in tried if p.startswith("/v1/refunds")]


def test_a_router_with_anything_but_path_routes_is_always_tried(tmp_path: Path) -> None:
    """The dashboard's router includes routers of its own: no prefix rules its paths out,
    and its pages are still chosen."""
    app = _app(tmp_path)
    assert _chosen(app, "/dashboard", "GET")[0] in ("FULL", "PARTIAL")
    starlette_routes = [r for r in app.router.routes if type(r) is Route]
    assert starlette_routes  # /openapi.json, before every router
    assert _chosen(app, "/openapi.json", "GET")[0] == "FULL"


def test_a_route_added_to_a_router_after_the_app_was_built_is_matched() -> None:
    """The prefix a router's paths share is worked out again when its routes change."""
    router = APIRouter()

    @router.get("/a/one")
    async def one() -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(router)
    assert match_once(app) == 1
    assert _chosen(app, "/b/two", "GET") == ("NONE", None)  # the prefix is "/a/one" now

    @router.get("/b/two")
    async def two() -> dict[str, str]:
        return {}

    assert _chosen(app, "/b/two", "GET") == ("FULL", ("APIRoute", "/b/two", ("GET",)))
    assert _chosen(app, "/a/one", "GET") == ("FULL", ("APIRoute", "/a/one", ("GET",)))
