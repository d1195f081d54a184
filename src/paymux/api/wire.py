"""Stripe's wire format in, one request model out.

Stripe's SDKs send ``application/x-www-form-urlencoded`` bodies in bracket notation
(``metadata[order_id]=1001``, ``expand[0]=customer`` or ``expand[]=customer``,
``items[0][price]=price_x``); paymux takes the same parameters as a JSON object too. One
parser (``decode_pairs``) turns a form body, or a query string, into the dict JSON would
have given, and the same pydantic model validates either:

- JSON is validated as it is: strict (a float or a string amount is a 400).
- A form's values are all strings: before validation they are converted to what the
  model's field types need (``"2000"`` to an int, ``"true"``/``"false"`` to a bool, ``"1.5"`` to
  a float; ``{"0": a, "1": b}`` from ``x[0]=a&x[1]=b`` to a list where the model wants a list;
  a repeated name, ``x=a&x=b``, is a list too). What does not convert is left for the model
  to refuse, and the error names the parameter in bracket form (``metadata[order_id]``).
- ``""`` stays ``""``: Stripe's "unset" (``metadata[key]=`` removes that key).
- At most ``MAX_PARAMS`` parameters; brackets nest at most ``MAX_JSON_DEPTH`` deep, the limit
  GuardMiddleware puts on JSON bodies (``body_too_deep``).

How a route declares what it takes (one place each, in the handler's signature):

- Its body: ``body: CreateCustomer = wire_body(CreateCustomer)``; ``wire_body(Model,
  required=False)`` for an optional body (no body: the model's defaults). Never FastAPI's
  ``body: Model`` (it reads JSON only). ``install_openapi`` documents the model under both
  ``application/json`` and ``application/x-www-form-urlencoded``.
- Its query parameters: FastAPI ``Query`` parameters (``email: str | None = None``), matched
  by their exact name; parameters in bracket form (``expand[]``/``expand[0]``,
  ``created[gte]``) as the fields of one model, ``q: RetrieveQuery = wire_query(RetrieveQuery)``
  (fields ``expand: list[str] | None``, ``created: RangeFilter | None``: the field name is the
  part before the first bracket). Both are documented in the OpenAPI document.
  Any other query parameter is a 400 ``parameter_unknown`` naming it (``check_query``, which
  the authentication dependencies run for every /v1 route once the key is checked).
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from inspect import isclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from paymux.api.middleware import MAX_JSON_DEPTH
from paymux.domain.errors import PaymuxError

__all__ = [
    "FORM",
    "MAX_PARAMS",
    "WireBody",
    "WireQuery",
    "check_query",
    "coerce_form",
    "declared_query",
    "decode_form",
    "decode_pairs",
    "reject_unknown_query",
    "wire_body",
    "wire_query",
]

MAX_PARAMS = 1000
_NAME = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
# A parameter name worth echoing in an error (anything else is not named).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.\[\]-]{1,100}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})")
_INDEX = re.compile(r"[0-9]{1,6}")
FORM = "application/x-www-form-urlencoded"


def _safe(name: str) -> str | None:
    return name if _SAFE_NAME.fullmatch(name) else None


def _bracketed(names: list[str]) -> str:
    return names[0] + "".join(f"[{n}]" for n in names[1:])


def _invalid(message: str, name: str | None = None) -> PaymuxError:
    return PaymuxError.of("parameter_invalid", message, param=name)


def split_name(key: str) -> list[str]:
    """``"items[0][price]"`` -> ``["items", "0", "price"]``;
    ``"expand[]"`` -> ``["expand", ""]``."""
    match = _NAME.fullmatch(key)
    if match is None:
        safe = _safe(key)
        shown = f" {safe}" if safe else ""
        raise _invalid(f"Invalid parameter name{shown}: use name, name[key] or name[].", safe)
    names = [match.group(1), *_SEGMENT.findall(match.group(2))]
    if len(names) > MAX_JSON_DEPTH:
        raise PaymuxError.of("body_too_deep", param=_safe(names[0]))
    if "" in names[:-1]:
        raise _invalid(
            f"Invalid parameter name {_safe(key) or ''}: [] may only end a name; index "
            "objects in a list (items[0][price]).",
            _safe(key),
        )
    return names


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Bracket notation to nested dicts: ``a[b][c]=v`` -> ``{"a": {"b": {"c": "v"}}}``.

    ``a[]=v`` appends to a list, and so does a repeated name; ``a[0]=v`` gives
    ``{"a": {"0": "v"}}``, which ``coerce_form`` makes a list where the model wants one (a
    metadata key may be ``"0"`` too). A name used both as a value and as an object is a 400.
    """
    root: dict[str, Any] = {}
    count = 0
    for key, value in pairs:
        count += 1
        if count > MAX_PARAMS:
            raise _invalid(f"Too many parameters: at most {MAX_PARAMS}.")
        names = split_name(key)
        append = names[-1] == ""
        if append:
            names = names[:-1]
        parent = root
        for depth, name in enumerate(names[:-1]):
            child = parent.setdefault(name, {})
            if not isinstance(child, dict):
                where = _safe(_bracketed(names[: depth + 1]))
                raise _invalid(
                    f"{where or 'A parameter'} is given as a value and as an object.", where
                )
            parent = child
        leaf = names[-1]
        current = parent.get(leaf)
        if current is None:
            parent[leaf] = [value] if append else value
        elif isinstance(current, list):
            current.append(value)
        elif isinstance(current, str):
            parent[leaf] = [current, value]
        else:
            where = _safe(_bracketed(names))
            raise _invalid(f"{where or 'A parameter'} is given as a value and as an object.", where)
    return root


def decode_form(text: str) -> dict[str, Any]:
    """A form-encoded body (or a query string) as the dict a JSON body would be."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_PARAMS)
    except ValueError as exc:
        raise _invalid(f"Too many parameters: at most {MAX_PARAMS}.") from exc
    return decode_pairs(pairs)


# -- converting a form's strings to the model's types ------------------------------------------


def _options(tp: Any) -> list[Any]:
    """The types a (possibly Optional, Annotated) annotation allows, None left out."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _options(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [o for arg in get_args(tp) for o in _options(arg) if o is not type(None)]
    return [tp]


def _coerce(tp: Any, value: Any) -> Any:
    options = _options(tp)
    if isinstance(value, str):
        if str in options or any(get_origin(o) is Literal for o in options):
            return value
        for option in options:
            converted = _scalar(option, value)
            if converted is not value:
                return converted
        for option in options:
            if get_origin(option) in (list, tuple, set, frozenset):
                args = get_args(option)  # one value where a list goes: a list of one
                return [_coerce(args[0] if args else Any, value)]
        return value
    for option in options:
        origin = get_origin(option)
        if origin in (list, tuple, set, frozenset) and isinstance(value, dict | list):
            items = _indexed(value) if isinstance(value, dict) else value
            if items is not None:
                args = get_args(option)
                return [_coerce(args[0] if args else Any, item) for item in items]
        if origin is dict and isinstance(value, dict):
            args = get_args(option)
            return {k: _coerce(args[1] if len(args) == 2 else Any, v) for k, v in value.items()}
        if isclass(option) and issubclass(option, BaseModel) and isinstance(value, dict):
            return coerce_form(option, value)
    return value


def _scalar(tp: Any, value: str) -> Any:
    if tp is bool:
        lowered = value.lower()
        return True if lowered == "true" else False if lowered == "false" else value
    if tp is int and _INTEGER.fullmatch(value):
        return int(value)
    if tp is float and _NUMBER.fullmatch(value):
        return float(value)
    return value


def _indexed(value: dict[str, Any]) -> list[Any] | None:
    """``{"0": a, "1": b}`` -> ``[a, b]`` (in index order); None if a key is no index."""
    if not all(isinstance(k, str) and _INDEX.fullmatch(k) for k in value):
        return None
    return [value[k] for k in sorted(value, key=int)]


def coerce_form(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` from a form, its strings converted to the types ``model``'s fields need."""
    out = dict(data)
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key in out:
            out[key] = _coerce(info.annotation, out[key])
    return out


def _validate(model: type[BaseModel], data: dict[str, Any], where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**error, "loc": (where, *error["loc"])}
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise RequestValidationError(errors) from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_params(request: Request) -> tuple[dict[str, Any], bool]:
    """The body's parameters and whether they came form-encoded."""
    body = await request.body()
    media = _media_type(request)
    if media == FORM:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid("The form-encoded body must be UTF-8.") from None
        return decode_form(text), True
    if not body.strip():
        return {}, False
    if media and media != "application/json" and not media.endswith("+json"):
        raise _invalid(
            "Send the parameters form-encoded (application/x-www-form-urlencoded) or as a "
            "JSON object (application/json)."
        )
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise _invalid("The body must be a JSON object.")
    return data, False


@dataclass(frozen=True, eq=False)
class WireBody:
    """The dependency ``wire_body`` makes: the request's body, JSON or form, as ``model``."""

    model: type[BaseModel]
    required: bool = True

    async def __call__(self, request: Request) -> BaseModel:
        data, form = await read_params(request)
        if form:
            data = coerce_form(self.model, data)
        return _validate(self.model, data, "body")


@dataclass(frozen=True, eq=False)
class WireQuery:
    """The dependency ``wire_query`` makes: the query's bracket-form parameters as ``model``."""

    model: type[BaseModel]

    @cached_property
    def names(self) -> frozenset[str]:
        """The parameters' names (the model's fields' aliases): once per model, not per
        request (issue 10)."""
        return frozenset(info.alias or name for name, info in self.model.model_fields.items())

    async def __call__(self, request: Request) -> BaseModel:
        names = self.names
        pairs = [
            (k, v) for k, v in request.query_params.multi_items() if k.split("[", 1)[0] in names
        ]
        return _validate(self.model, coerce_form(self.model, decode_pairs(pairs)), "query")


def wire_body(model: type[BaseModel], *, required: bool = True) -> Any:
    """``body: Model = wire_body(Model)``: the body, form-encoded or JSON, validated by
    ``model``."""
    return Depends(WireBody(model, required))


def wire_query(model: type[BaseModel]) -> Any:
    """``q: Model = wire_query(Model)``: query parameters in bracket form (``expand[]``,
    ``created[gte]``), validated by ``model``; its field names are the parameters' names."""
    return Depends(WireQuery(model))


# -- unknown query parameters ------------------------------------------------------------------


def _dependants(dependant: Dependant) -> Iterable[Dependant]:
    stack = [dependant]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.dependencies)


def declared_query(route: APIRoute) -> tuple[frozenset[str], frozenset[str]]:
    """(exact names, bracket-form base names) of the query parameters ``route`` declares."""
    exact: set[str] = set()
    bases: set[str] = set()
    for dependant in _dependants(route.dependant):
        exact.update(param.alias for param in dependant.query_params)
        if isinstance(dependant.call, WireQuery):
            bases.update(dependant.call.names)
    return frozenset(exact), frozenset(bases)


_DECLARED: dict[int, tuple[APIRoute, frozenset[str], frozenset[str]]] = {}


def check_query(request: Request) -> None:
    """400 ``parameter_unknown`` for a query parameter the /v1 route does not declare.

    The authentication dependencies (``deps.caller``, ``routers.admin.admin``) call it once the
    key is checked, so a request without a valid key is a 401 first, as at Stripe."""
    if not request.scope.get("query_string"):
        return  # no parameter at all (most requests: no query to parse)
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.path.startswith("/v1/"):
        return
    cached = _DECLARED.get(id(route))
    if cached is None or cached[0] is not route:
        cached = (route, *declared_query(route))
        _DECLARED[id(route)] = cached
    _, exact, bases = cached
    for key in request.query_params:
        if key in exact or key.split("[", 1)[0] in bases:
            continue
        name = _safe(key)
        message = f"Received unknown parameter: {name}." if name else "Received unknown parameter."
        raise PaymuxError.of("parameter_unknown", message, param=name)


async def reject_unknown_query(request: Request) -> None:
    """``check_query`` as a dependency, for a router or app whose routes do not authenticate
    through ``deps.caller`` or the admin key."""
    check_query(request)
