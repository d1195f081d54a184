"""ASGI middleware that runs before anything else sees a request.

- A request id (``Request-Id`` header, ``req_...``) for every response and every log record.
- The card-number guard: any value in the query string or in a JSON or form body (every
  name and value, decoded) that looks like a card
  number (13-19 digits, Luhn-valid, spaces or dashes allowed) is refused with 400
  ``card_number_not_allowed`` naming the parameter; so is one in the URL path (no param)
  or in the ``Idempotency-Key`` header (which is stored). The value is never echoed, logged
  or stored: the request stops here, and the path and query that uvicorn's access log prints
  are masked first (percent-encoded separators would defeat the log redaction). The
  sandbox's own tokenization endpoint (``/sandbox``, the "provider's" origin) is the one
  place a number may be sent.
- Credentials in the query string (an API key, the admin key, a webhook secret, a bearer
  token: by parameter name or by the look of the value) are refused with 400
  ``credentials_in_query`` naming the parameter, never echoing the value; the query is
  masked first, as for card numbers, so that uvicorn's access log never prints it.
- Stripe-Version: a version Stripe has released (``2024-06-20``, ``2025-03-31.basil``;
  api/stripe_versions.py) is accepted, since paymux has one shape; a malformed one, or one
  Stripe never had (``2099-01-01``), is 400 ``api_version_invalid`` with Stripe's message
  ``Invalid Stripe API version: <value>``. Every /v1 response carries a ``Stripe-Version``
  header: the version asked for, or ``STRIPE_API_VERSION`` when none was.
- A body size limit (413), and a nesting limit for JSON bodies (400 ``body_too_deep``; the
  bracket nesting of form bodies and query strings is limited the same in api/wire.py),
  checked without recursion on every path (``/sandbox`` and ``/webhooks`` too; a webhook's
  raw bytes still reach signature verification untouched) before anything parses them:
  ``json.loads`` itself recurses, and raises RecursionError near 1,000 levels.
- Live mode over TLS only: a request whose Authorization header carries a live-mode key
  (``sk_live_``, ``pk_live_``, ``rk_live_``: told by the prefix alone) that did not arrive
  over TLS (the scheme uvicorn saw: https itself, or ``X-Forwarded-Proto: https`` from a
  proxy in ``PAYMUX_TRUSTED_PROXIES``) is refused 403 ``tls_required`` first of all: the key
  is never looked up, counted against a rate limit or logged. Test keys keep plain HTTP.
  The operator's API (``/v1/admin/*``: it creates and rolls live keys) is refused the same
  over plain HTTP unless the peer is this host (loopback: ``make run``, the tests, a proxy on
  the same host). The request line is masked before the refusal, as for the guard below.
- Metrics and traces: every request is counted and timed by its route template
  (observability/metrics.py), once it is answered, in a span of its own when tracing is on
  (observability/tracing.py).
- Security headers (security/headers.py): HSTS on every response that came over TLS, and
  on every page (``/docs``, ``/redoc``, the hosted invoice page and its PDF, ...) nosniff,
  Referrer-Policy, no caching of HTML, and the strictest CSP for a page that set none.
- Unexpected exceptions: logged once, with the request id, and answered 500 ``api_error``
  carrying the same ``Request-Id`` (unless a response had already started). Starlette's
  ServerErrorMiddleware, outside this one, would answer without the header and re-raise for
  the server to log the error a second time.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import re
import time
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymux.api.stripe_versions import known_stripe_version
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.observability.metrics import observe_request
from paymux.observability.tracing import request_context, span
from paymux.security import find_pan_param, looks_like_pan, mask_pans, request_id_var
from paymux.security.headers import secure_headers
from paymux.security.pan import body_plainly_clear, mask_pan_data

__all__ = [
    "MAX_JSON_DEPTH",
    "STRIPE_API_VERSION",
    "GuardMiddleware",
    "error_response_body",
    "json_too_deep",
    "valid_stripe_version",
]

log = logging.getLogger("paymux.api")

MAX_BODY = 1024 * 1024
# The Stripe API version paymux's one shape is answered as when a request names none: the
# version of the stripe-python release paymux is tested with.
STRIPE_API_VERSION = "2026-10-28.endive"
_STRIPE_VERSION = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:\.([a-z]{1,32}))?")
_NEWEST = date.fromisoformat(STRIPE_API_VERSION.split(".")[0])
_ECHOABLE_VERSION = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Deeper than any real request or provider payload, far below json's recursion limit.
MAX_JSON_DEPTH = 32
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Provider origins and signed provider payloads (refusing a webhook would lose it).
_UNGUARDED_PREFIXES = ("/sandbox/", "/webhooks/")
# A form field name worth naming in an error; anything else (a text or multipart body
# parsed as a form) is reported as "body" rather than echoing the body back.
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.*\[\]-]{1,100}")
# Query parameter names that carry a credential whatever their value (compared lowercased,
# without "_" and "-"); and values that look like one whatever their name. Not "token" or
# "client_secret": single-use values that legitimately ride in URLs (the sandbox's 3-D
# Secure page, a provider's return URL).
_CREDENTIAL_NAMES = frozenset(
    {
        "apikey",
        "xapikey",
        "key",
        "adminkey",
        "secretkey",
        "secret",
        "authorization",
        "bearer",
        "accesstoken",
        "password",
        "webhooksecret",
    }
)
_CREDENTIAL_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(?:(?:sk|pk)_(?:live|test)_|rk_|whsec_)[A-Za-z0-9]"
    r"|(?<![A-Za-z0-9])bearer\s+\S",
    re.IGNORECASE,
)
# A JSON string (possibly unterminated), which the depth scan skips, and a bracket.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_LIVE_KEY = re.compile(r"(?:sk|pk|rk)_live_")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def error_response_body(error: PaymuxError) -> bytes:
    return json.dumps({"error": error.to_dict()}).encode()


class GuardMiddleware:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req", 20)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False
        status = 500
        clock = time.perf_counter()
        version, authorization = _version_and_authorization(scope)
        api = str(scope.get("path", "")).startswith("/v1/")
        scheme = str(scope.get("scheme", "http"))

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = int(message.get("status", 500))
                headers = list(message.get("headers", []))
                headers.append((b"request-id", request_id.encode()))
                if api:
                    answered = version if version and valid_stripe_version(version) else None
                    headers.append((b"stripe-version", (answered or STRIPE_API_VERSION).encode()))
                # HSTS over TLS on every answer; a page's headers on everything else.
                message["headers"] = secure_headers(headers, scheme, page=not api)
            await send(message)

        method = str(scope.get("method", ""))
        # Span names from a fixed set (any other method is OTHER), as the metrics' labels.
        named = method if method in _METHODS else "OTHER"
        opened = {"http.request.method": named, "paymux.request_id": request_id}
        parent = request_context(scope.get("headers", []))
        with span(f"HTTP {named}", opened, kind=SpanKind.SERVER, parent=parent) as current:
            try:
                refused = _tls_refusal(scope, authorization) if scheme != "https" else None
                if refused is not None:
                    # The request line masked first: uvicorn's access log prints it.
                    _mask_request_line(scope, scope.get("query_string", b"").decode("latin-1"))
                    await _send_error(send_with_id, request_id, refused)
                    return
                await self._guard(scope, receive, send_with_id, request_id, version)
            except Exception:
                # The one log record of an unexpected error, while the request id is current.
                log.exception("unhandled error")
                if not started:
                    await _send_error(send_with_id, request_id, PaymuxError.of("api_error"))
            finally:
                request_id_var.reset(token)
                route = _route(scope)
                observe_request(method, route, status, time.perf_counter() - clock)
                if current is not None:
                    current.update_name(f"{named} {route}")
                    current.set_attribute("http.route", route)
                    current.set_attribute("http.response.status_code", status)

    async def _guard(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, version: str | None
    ) -> None:
        """The checks of every request; ``version``: its Stripe-Version header (the guard's
        masking never touches that header, so it is read once, with Authorization)."""
        path: str = scope.get("path", "")
        guarded = not path.startswith(_UNGUARDED_PREFIXES)
        query = scope.get("query_string", b"").decode("latin-1")
        credential = _query_credential_param(query)
        if credential is not None:
            _mask_request_line(scope, query)
            err = PaymuxError.of("credentials_in_query", param=credential)
            await _send_error(send, request_id, err)
            return
        if guarded:
            found = _head_pan_param(path, query, scope.get("headers", []))
            if found is not None:
                _mask_request_line(scope, query)
                await self._refuse(send, request_id, found or None)
                return
            _mask_loose_head(scope, path, query)
            nul = _nul_query_param(query)
            if nul is not None:
                err = PaymuxError.of(
                    "parameter_invalid", "Query parameters must not contain NUL characters.",
                    param=nul,
                )
                await _send_error(send, request_id, err)
                return
        if scope.get("method") in _BODY_METHODS:
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    await _send_error(send, request_id, PaymuxError.of("request_too_large"))
                    return
            if json_too_deep(body):
                await _send_error(send, request_id, PaymuxError.of("body_too_deep"))
                return
            # A body plainly clear of card-number candidates needs neither walk.
            guarded_body = guarded and not body_plainly_clear(body)
            param = _body_pan_param(body) if guarded_body else None
            if param is not None:
                await self._refuse(send, request_id, param)
                return
            if guarded_body:
                body = _mask_loose_numbers(scope, body)
            receive = _replay(body)
        if path.startswith("/v1/") and version is not None and not valid_stripe_version(version):
            await _send_error(send, request_id, _version_error(version))
            return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, request_id: str, param: str | None) -> None:
        await _send_error(send, request_id, PaymuxError.of("card_number_not_allowed", param=param))


def _nul_query_param(query: str) -> str | None:
    """The name of a query parameter whose value holds U+0000 (PostgreSQL text can't hold
    it: a 400 here, never a 500 from the driver), or None."""
    if "%00" not in query and "\x00" not in query:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in value or "\x00" in name:
            return name.replace("\x00", "") or "query"
    return None


def _route(scope: Scope) -> str:
    """The route template the request was routed to (bounded: never the path itself)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if str(scope.get("path", "")).startswith("/sandbox/"):
        return "/sandbox"
    return "unmatched"


def _live_key_sent(scope: Scope) -> bool:
    """Whether the Authorization header carries a live-mode key (Bearer, or Basic with the
    key as the username), by its prefix alone."""
    return _live_key(_header(scope, b"authorization"))


def _live_key(authorization: str | None) -> bool:
    """``_live_key_sent`` of the Authorization header's value."""
    if not authorization:
        return False
    kind, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if kind.lower() == "basic":
        try:
            credentials = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif kind.lower() != "bearer":
        return False
    return _LIVE_KEY.match(credentials.strip()) is not None


def _tls_refusal(scope: Scope, authorization: str | None) -> PaymuxError | None:
    """The ``tls_required`` error for a request that came over plain HTTP (its Authorization
    header's value: ``authorization``), or None."""
    if _live_key(authorization):
        return PaymuxError.of("tls_required")
    if _remote_admin(scope):
        return PaymuxError.of(
            "tls_required",
            "The admin API (/v1/admin) must be called over HTTPS (directly, or through a "
            "proxy named in PAYMUX_TRUSTED_PROXIES that sends X-Forwarded-Proto: https), or "
            "from this host. The admin key was not checked; if it was sent, treat it as "
            "exposed and change PAYMUX_ADMIN_KEY.",
        )
    return None


def _remote_admin(scope: Scope) -> bool:
    """Whether the request is for the operator's API (``/v1/admin``: it creates and rolls
    live keys) from a peer that is not this host (the X-Forwarded-For client when the peer is
    a trusted proxy: uvicorn rewrites ``client`` for those). An unknown peer counts as
    remote."""
    path = str(scope.get("path", ""))
    if path != "/v1/admin" and not path.startswith("/v1/admin/"):
        return False
    client = scope.get("client")
    try:
        return not ipaddress.ip_address(str(client[0])).is_loopback if client else True
    except ValueError:
        return True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None


def _version_and_authorization(scope: Scope) -> tuple[str | None, str | None]:
    """``_header`` of Stripe-Version and of Authorization (the first of each), in one pass
    over the headers: every request reads both (issue 10)."""
    version = authorization = None
    for key, value in scope.get("headers", []):
        name = key.lower()
        if name == b"stripe-version":
            if version is None:
                version = bytes(value).decode("latin-1").strip()
        elif name == b"authorization" and authorization is None:
            authorization = bytes(value).decode("latin-1").strip()
    return version, authorization


def valid_stripe_version(value: str) -> bool:
    """Whether ``value`` is a Stripe API version: a real date, ``YYYY-MM-DD``, with or
    without a release name (``2025-03-31.basil``), that Stripe has released
    (``known_stripe_version``)."""
    match = _STRIPE_VERSION.fullmatch(value)
    if match is None:
        return False
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return False
    return known_stripe_version(day, match.group(4), _NEWEST)


def _version_error(value: str) -> PaymuxError:
    """Stripe's message, with the value only when it is short, plain and no card number or
    credential."""
    echo = (
        _ECHOABLE_VERSION.fullmatch(value)
        and not looks_like_pan(value)
        and not _CREDENTIAL_VALUE.search(value)
    )
    message = f"Invalid Stripe API version: {value}" if echo else "Invalid Stripe API version."
    return PaymuxError.of("api_version_invalid", message)


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``body``, read as JSON, nests arrays and objects more than ``limit`` deep.

    A loop over the brackets outside strings, no recursion: safe on any input. Exact for
    valid JSON; on invalid JSON it may count brackets that ``json.loads`` would never reach
    (it stops at the first error), never fewer. A body that does not start with ``[`` or
    ``{`` (a form, text) is not nested JSON and passes.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        # Every bracket, in any of the encodings json reads (UTF-8, -16, -32), has a byte
        # 0x5B or 0x7B; other characters may add to the count, never take from it. So no
        # more than ``limit`` such bytes can't nest deeper: one count in C, no decoding, for
        # nearly every request (a payment's body, a provider's event: a dozen or two).
        return False
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        return False  # not JSON: json.loads fails before parsing anything
    text = text.lstrip(" \t\r\n\ufeff")
    if not text or text[0] not in "[{":
        return False
    # The strings out first (one pass in C), then only the brackets are looped over.
    brackets = _BRACKET.findall(_JSON_STRING.sub("", text))
    if len(brackets) <= limit:  # too few to nest deeper than the limit
        return False
    depth = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _query_credential_param(query: str) -> str | None:
    """The query parameter holding a credential ("query" for an unnameable one), or None."""
    if not query:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        normalized = name.lower().replace("_", "").replace("-", "")
        if (value and normalized in _CREDENTIAL_NAMES) or _CREDENTIAL_VALUE.search(
            f"{name}={value}"
        ):
            echo = _FIELD_NAME.fullmatch(name) and not _CREDENTIAL_VALUE.search(name)
            return name if echo else "query"
    return None


def _masked_pair(name: str, value: str) -> tuple[str, str]:
    normalized = name.lower().replace("_", "").replace("-", "")
    if _CREDENTIAL_VALUE.search(name):
        name = "***"
    if (value and normalized in _CREDENTIAL_NAMES) or _CREDENTIAL_VALUE.search(value):
        value = "***"
    return mask_pans(name), mask_pans(value)


def _head_pan_param(path: str, query: str, headers: list[tuple[bytes, bytes]]) -> str | None:
    """The param holding a card number in the URL or Idempotency-Key; "" for the path."""
    if looks_like_pan(path):
        return ""
    if query:
        param = find_pan_param(dict(parse_qsl(query, keep_blank_values=True)))
        if param is not None:
            return param
    for name, value in headers:
        if name.lower() == b"idempotency-key" and looks_like_pan(value.decode("latin-1")):
            return "Idempotency-Key"
    return None


def _mask_request_line(scope: Scope, query: str) -> None:
    """Mask card numbers and credentials in the scope's path and query, which uvicorn's
    access log prints."""
    path = mask_pans(scope.get("path", ""))
    scope["path"] = path
    scope["raw_path"] = quote(path).encode()
    pairs = parse_qsl(query, keep_blank_values=True)
    masked = urlencode([_masked_pair(k, v) for k, v in pairs], safe="*")
    scope["query_string"] = masked.encode()


def _body_pan_param(body: bytes) -> str | None:
    if not body:
        return None
    try:
        data: Any = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace")
        # Every pair, repeated names too (the API reads them all: api/wire.py).
        for name, value in parse_qsl(text, keep_blank_values=True):
            form = find_pan_param({name: value})
            if form is not None:
                return form if _FIELD_NAME.fullmatch(form) else "body"
        return find_pan_param({"body": text}) and "body"
    return find_pan_param(data)


def _mask_loose_head(scope: Scope, path: str, query: str) -> None:
    """Mask numbers that are masked rather than refused (the card-number rule) in the path,
    the query and the Idempotency-Key header, which are stored or logged."""
    values = [path]
    if query:
        values += [v for pair in parse_qsl(query, keep_blank_values=True) for v in pair]
    if any(mask_pans(v) != v for v in values):
        _mask_request_line(scope, query)
    headers = scope.get("headers", [])
    if any(name.lower() == b"idempotency-key" for name, _ in headers):
        scope["headers"] = [
            (name, mask_pans(value.decode("latin-1")).encode("latin-1"))
            if name.lower() == b"idempotency-key"
            else (name, value)
            for name, value in headers
        ]


def _mask_loose_numbers(scope: Scope, body: bytes) -> bytes:
    """A JSON or form body with loosely grouped numbers masked (the card-number rule: stored
    masked)."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        media = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return body  # the API reads JSON and form bodies only
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        masked_pairs = [(mask_pans(k), mask_pans(v)) for k, v in pairs]
        if masked_pairs == pairs:
            return body
        body = urlencode(masked_pairs).encode()
    else:
        masked = mask_pan_data(data)
        if masked is data:
            return body
        body = json.dumps(masked).encode()
    scope["headers"] = [
        (name, str(len(body)).encode() if name.lower() == b"content-length" else value)
        for name, value in scope.get("headers", [])
    ]
    return body


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _send_error(send: Send, request_id: str, error: PaymuxError) -> None:
    error.request_id = request_id
    await _send_json(send, error.http_status, error_response_body(error))


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
