"""Each request's route matched once, not twice (issue 10: GET of one object).

Why: FastAPI 0.16x keeps an included router as ONE entry of the app's routes (its
``_IncludedRouter``). Starlette's loop asks each entry ``matches(scope)``; the included
router answers by matching its routes one by one (``_match``), then throws the result away
(it returns ``(match, {})``); the loop then calls ``handle``, which reaches the router's
``_handle_selected``, which matches the same routes AGAIN to find the one to run. Every
request paid its router's route matching twice (each route: its regular expression, FastAPI's
scope keys set and restored): about a quarter of a GET's Python calls. Every router before
the one that matches was also matched one route at a time, although none of its routes can
match a path that does not start with what all of them start with (``/v1/refunds``).

:func:`match_once` replaces the app's included routers by :class:`_IncludedOnce`, which

- keeps the result of the match ``matches`` made in the request's scope, and gives it to the
  ``_match`` that ``_handle_selected`` makes right after (same router, same path, same
  method: else it matches again, as FastAPI does); it is taken once, never reused;
- answers "no match" at once for a path outside the literal prefix every one of its routes
  starts with, when all of them are plain path routes (API routes or Starlette routes; a
  router holding a mount, a host, a nested router or a frontend route is always matched).

The routes, their order, the 404/405 decisions and what runs are FastAPI's own
(tests/unit/test_get_routing.py compares the choice of every route of the app with
FastAPI's). If FastAPI's internals are not the ones this was written against (another
version), :func:`match_once` changes nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi import routing as fastapi_routing
from starlette.routing import Match, Route
from starlette.types import Scope

__all__ = ["match_once"]

_SCOPE_KEY = "paymux.route_match"
_IncludedRouter: Any = getattr(fastapi_routing, "_IncludedRouter", None)
_EffectiveRouteContext: Any = getattr(fastapi_routing, "_EffectiveRouteContext", None)
_get_route_path: Any = getattr(fastapi_routing, "get_route_path", None)
_SUPPORTED = (
    _IncludedRouter is not None
    and _EffectiveRouteContext is not None
    and _get_route_path is not None
    and all(
        callable(getattr(_IncludedRouter, name, None))
        for name in ("_match", "_handle_selected", "effective_candidates", "matches")
    )
)


def _literal_prefix(candidates: list[Any]) -> str:
    """The text every candidate's path starts with before its first parameter, or "" when
    a candidate is anything but a plain path route (then no path can be ruled out)."""
    prefixes: list[str] = []
    for candidate in candidates:
        if not isinstance(candidate, _EffectiveRouteContext):
            return ""  # a nested router
        original = candidate.original_route
        if isinstance(original, fastapi_routing.APIRoute):
            path_format = candidate.path_format
        elif type(original) is Route and type(candidate.starlette_route) is Route:
            path_format = candidate.starlette_route.path_format
        else:
            return ""  # a mount, a host, a websocket, a frontend route
        if not isinstance(path_format, str) or not path_format.startswith("/"):
            return ""
        prefixes.append(path_format.split("{", 1)[0])
    if not prefixes:
        return ""
    common = prefixes[0]
    for prefix in prefixes[1:]:  # character by character: "/v1/refunds" of "/v1/refunds/"
        while not prefix.startswith(common):
            common = common[:-1]
    return common


if _SUPPORTED:

    class _IncludedOnce(_IncludedRouter):  # type: ignore[misc]
        """An included router whose routes are matched once per request (module doc)."""

        _prefix_of: Any = None
        _prefix: str = ""

        def _path_prefix(self) -> str:
            # Worked out again when the router's routes change (FastAPI counts the changes
            # of the router itself in ``_routes_version``; a router holding another router
            # has no prefix, so a change deeper down cannot make one wrong).
            version = getattr(self.original_router, "_routes_version", None)
            if version is None or version != self._prefix_of:
                self._prefix = _literal_prefix(self.effective_candidates())
                self._prefix_of = version
            return self._prefix

        def matches(self, scope: Scope) -> tuple[Match, Scope]:
            if scope["type"] == "http":
                path = _get_route_path(scope)
                prefix = self._path_prefix()
                if prefix and not path.startswith(prefix):
                    return Match.NONE, {}
                result = super()._match(scope)
                if result[0] != Match.NONE:
                    scope[_SCOPE_KEY] = (self, path, scope.get("method"), result)
                return result[0], {}
            return super().matches(scope)  # type: ignore[no-any-return]

        def _match(self, scope: Scope) -> Any:
            kept = scope.pop(_SCOPE_KEY, None)
            if (
                kept is not None
                and kept[0] is self
                and kept[1] == _get_route_path(scope)
                and kept[2] == scope.get("method")
            ):
                return kept[3]
            return super()._match(scope)


def match_once(app: FastAPI) -> int:
    """Replace ``app``'s included routers by ones matched once per request (module doc);
    returns how many were replaced (0 when FastAPI's internals are not the expected ones)."""
    if not _SUPPORTED:
        return 0
    routes = app.router.routes
    replaced = 0
    for index, entry in enumerate(routes):
        route: Any = entry
        if type(route) is _IncludedRouter:
            routes[index] = _IncludedOnce(
                original_router=route.original_router, include_context=route.include_context
            )
            replaced += 1
    return replaced
