"""paymux.security.headers, pinned header by header (mutation testing found it covered only by
end-to-end tests): which security headers a page, an asset and an API response get, over
HTTP and over TLS, what a response set itself keeps, and the ASGI wrapper. Expected headers
are written out by hand, in the order they are appended."""

from __future__ import annotations

import asyncio
from typing import Any

from paymux.security.headers import PageSecurityHeaders, page_headers, secure_headers

NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_REFERRER = (b"referrer-policy", b"no-referrer")
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
NO_STORE = (b"cache-control", b"no-store")
STRICT_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
)
DENY = (b"x-frame-options", b"DENY")
HTML = (b"Content-Type", b"Text/HTML; charset=utf-8")


def test_page_headers_over_http_and_over_tls() -> None:
    assert page_headers("http") == {
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }
    assert page_headers("https") == {
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "strict-transport-security": "max-age=31536000; includeSubDomains",
    }


def test_an_api_response_gets_hsts_alone_and_only_over_tls() -> None:
    json = [(b"content-type", b"application/json")]
    assert secure_headers(json, "https", page=False) == [*json, HSTS]
    assert secure_headers(json, "http", page=False) is json
    own = [(b"Strict-Transport-Security", b"max-age=60")]
    assert secure_headers(own, "https", page=False) is own  # the response's own is kept
    assert secure_headers([], "https", page=False) == [HSTS]


def test_an_html_page_without_a_policy_gets_the_strictest_and_is_never_cached() -> None:
    assert secure_headers([HTML], "https") == [
        HTML,
        NOSNIFF,
        NO_REFERRER,
        HSTS,
        NO_STORE,
        STRICT_CSP,
        DENY,
    ]
    assert secure_headers([HTML], "http") == [
        HTML,
        NOSNIFF,
        NO_REFERRER,
        NO_STORE,
        STRICT_CSP,
        DENY,
    ]


def test_an_html_page_with_its_own_policy_keeps_it_and_gets_no_frame_header() -> None:
    own_csp = (b"Content-Security-Policy", b"frame-ancestors https://shop.example")
    assert secure_headers([HTML, own_csp], "http") == [
        HTML,
        own_csp,
        NOSNIFF,
        NO_REFERRER,
        NO_STORE,
    ]


def test_an_asset_or_a_response_without_a_type_gets_the_page_headers_only() -> None:
    css = (b"content-type", b"text/css")
    assert secure_headers([css], "http") == [css, NOSNIFF, NO_REFERRER]
    assert secure_headers([], "https") == [NOSNIFF, NO_REFERRER, HSTS]
    # Only the first content-type counts (a later text/html one does not make it a page).
    assert secure_headers([css, (b"content-type", b"text/html")], "http") == [
        css,
        (b"content-type", b"text/html"),
        NOSNIFF,
        NO_REFERRER,
    ]


def test_a_header_the_response_set_itself_is_kept_not_repeated() -> None:
    own = [HTML, (b"Referrer-Policy", b"same-origin"), (b"Cache-Control", b"private")]
    assert secure_headers(own, "http") == [*own, NOSNIFF, STRICT_CSP, DENY]
    headers = [HTML]
    secure_headers(headers, "https")
    assert headers == [HTML]  # the response's list is not changed in place


def _run(scope: dict[str, Any], start: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Messages the wrapped app's ``start`` and a body reach the server as, and the send the
    app was given."""
    sent: list[dict[str, Any]] = []
    given: list[Any] = []

    async def app(app_scope: Any, app_receive: Any, send: Any) -> None:
        assert app_scope is scope  # the scope and receive are the server's own
        assert app_receive is receive
        given.append(send)
        await send(dict(start))
        await send({"type": "http.response.body", "body": b"x"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(PageSecurityHeaders(app)(scope, receive, send))
    given.append(send)
    return sent, given


def test_the_wrapper_adds_the_headers_to_every_http_response_start() -> None:
    start = {"type": "http.response.start", "status": 200, "headers": [HTML]}
    sent, _ = _run({"type": "http", "scheme": "https"}, start)
    assert sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [HTML, NOSNIFF, NO_REFERRER, HSTS, NO_STORE, STRICT_CSP, DENY],
        },
        {"type": "http.response.body", "body": b"x"},
    ]


def test_the_wrapper_takes_http_when_the_scope_names_no_scheme_and_headers_may_be_absent() -> None:
    sent, _ = _run({"type": "http"}, {"type": "http.response.start", "status": 204})
    assert sent[0] == {
        "type": "http.response.start",
        "status": 204,
        "headers": [NOSNIFF, NO_REFERRER],
    }


def test_the_wrapper_leaves_other_scopes_alone() -> None:
    start = {"type": "http.response.start", "status": 200, "headers": [HTML]}
    sent, given = _run({"type": "websocket", "scheme": "https"}, start)
    assert sent == [start, {"type": "http.response.body", "body": b"x"}]
    assert given[0] is given[1]  # the app was given the server's send itself
