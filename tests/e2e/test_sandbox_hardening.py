"""The sandbox's pages and knobs, hardened (SQLite and PostgreSQL servers).

- ``/sandbox/_control/*`` (no key) is served only with ``PAYMUX_SANDBOX_CONTROLS=true``
  (off by default: a JSON 404), and refuses bad input with JSON 400s naming the param.
- The 3-D Secure challenge opens only with the single-use token of its URL, is answered only
  with that token from its form, once, and is never framed.
- The hosted card form names the origin it posts its token to (never ``'*'``).
- Every page has a CSP without ``unsafe-inline``, ``frame-ancestors``, ``nosniff``,
  ``Referrer-Policy`` and, over TLS, HSTS.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import BACKENDS, Api, RunningServer, make_settings, migrated_database_url
from paymux.config import Settings
from paymux.gateways.sandbox.web import parse_origin
from support.pgcluster import PgCluster
from support.processes import free_port
from support.sandbox_pages import answer_challenge, challenge_form

CONTROL_CALLS = [
    ("POST", "/_control/faults", {"mode": "timeout"}),
    ("DELETE", "/_control/faults", None),
    ("POST", "/_control/latency", {"seconds": 0}),
    ("GET", "/_control/charges?reference=pi_x", None),
]


@pytest.fixture(scope="module", params=BACKENDS)
def plain_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    """A server with the default for the sandbox's controls (off)."""
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"plain-{backend}")
    url = migrated_database_url(backend, tmp, pg_cluster, f"plain_{backend}_{uuid.uuid4().hex[:8]}")
    settings = make_settings(url, tmp, free_port())
    settings = settings.model_copy(update={"sandbox_controls": Settings().sandbox_controls})
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


def sandbox(server: RunningServer, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}/sandbox{path}", timeout=10, **kw)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error: dict[str, Any] = response.json()["error"]
    return error


# -- 1. the controls ------------------------------------------------------------------------
def test_the_controls_are_off_by_default() -> None:
    assert Settings().sandbox_controls is False


@pytest.mark.parametrize(("method", "path", "body"), CONTROL_CALLS)
def test_without_the_setting_the_controls_are_a_json_404(
    plain_server: RunningServer, method: str, path: str, body: Any
) -> None:
    r = sandbox(plain_server, method, path, json=body)
    error = error_of(r, 404)
    assert error["code"] == "url_invalid" and error["type"] == "invalid_request_error"
    assert error["request_id"] == r.headers["request-id"]
    # The rest of the sandbox is there.
    assert sandbox(plain_server, "GET", "/test-cards").status_code == 200


def test_the_controls_answer_when_enabled(api: Api) -> None:
    assert api.server.settings.sandbox_controls is True
    for method, path, body in CONTROL_CALLS:
        r = sandbox(api.server, method, path, json=body)
        assert r.status_code == 200, (path, r.text)
    sandbox(api.server, "DELETE", "/_control/faults")


BAD_CONTROL_INPUT = [
    ("/_control/faults", {"content": b"not json"}, "parameter_invalid", None),
    ("/_control/faults", {"json": ["timeout"]}, "parameter_invalid", None),
    ("/_control/faults", {"json": {}}, "parameter_missing", "mode"),
    ("/_control/faults", {"json": {"mode": "explode"}}, "parameter_invalid", "mode"),
    ("/_control/faults", {"json": {"mode": 7}}, "parameter_invalid", "mode"),
    ("/_control/faults", {"json": {"mode": "timeout", "operation": "launch"}},
     "parameter_invalid", "operation"),
    ("/_control/faults", {"json": {"mode": "timeout", "operation": ["authorize"]}},
     "parameter_invalid", "operation"),
    ("/_control/faults", {"json": {"mode": "timeout", "count": "2"}}, "parameter_invalid",
     "count"),
    ("/_control/faults", {"json": {"mode": "timeout", "count": True}}, "parameter_invalid",
     "count"),
    ("/_control/faults", {"json": {"mode": "timeout", "count": 0}}, "parameter_invalid",
     "count"),
    ("/_control/faults", {"json": {"mode": "rate_limit", "retry_after": "soon"}},
     "parameter_invalid", "retry_after"),
    ("/_control/faults", {"json": {"mode": "timeout", "color": "red"}}, "parameter_unknown",
     "color"),
    ("/_control/latency", {"content": b"{"}, "parameter_invalid", None),
    ("/_control/latency", {"json": {"seconds": "1"}}, "parameter_invalid", "seconds"),
    ("/_control/latency", {"json": {"seconds": -1}}, "parameter_invalid", "seconds"),
    ("/_control/latency", {"json": {"seconds": 1e9}}, "parameter_invalid", "seconds"),
    ("/_control/latency", {"json": 3}, "parameter_invalid", None),
]


@pytest.mark.parametrize(("path", "send", "code", "param"), BAD_CONTROL_INPUT)
def test_bad_control_input_is_a_json_400_naming_the_param(
    api: Api, path: str, send: dict[str, Any], code: str, param: str | None
) -> None:
    r = sandbox(api.server, "POST", path, **send)
    error = error_of(r, 400)
    assert (error["code"], error["param"]) == (code, param)
    assert api.server.settings.sandbox_controls
    # Nothing was injected: a payment goes through.
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 500, "currency": "usd", "confirm": True, "payment_method": "pm_card_visa",
    })
    assert pi["status"] == "succeeded"


def test_listing_charges_needs_a_reference(api: Api) -> None:
    error = error_of(sandbox(api.server, "GET", "/_control/charges"), 400)
    assert (error["code"], error["param"]) == ("parameter_missing", "reference")


def test_an_unknown_sandbox_path_or_method_is_json(api: Api) -> None:
    assert error_of(sandbox(api.server, "GET", "/nowhere"), 404)["code"] == "url_invalid"
    assert error_of(sandbox(api.server, "PUT", "/_control/latency"), 405)["code"] == (
        "parameter_invalid"
    )


# -- 2. the 3-D Secure challenge ------------------------------------------------------------
def challenge_url(api: Api, **extra: Any) -> tuple[dict[str, Any], str]:
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 1234, "currency": "usd", "confirm": True,
        "payment_method": "pm_card_threeDSecure2Required", **extra,
    })
    assert pi["status"] == "requires_action"
    url: str = pi["next_action"]["redirect_to_url"]["url"]
    return pi, url


def split(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    [token] = parse_qs(parts.query)["token"]
    return f"{parts.scheme}://{parts.netloc}{parts.path}", token


def test_the_challenge_url_carries_a_single_use_token_stored_only_hashed(api: Api) -> None:
    pi, url = challenge_url(api)
    bare, token = split(url)
    assert len(token) >= 40
    # Without the token, or with another, there is no page.
    assert httpx.get(bare, timeout=10).status_code == 404
    other = ("y" if token[0] == "x" else "x") + token[1:]  # differs in its first character
    assert httpx.get(f"{bare}?token={other}", timeout=10).status_code == 404
    _, other_url = challenge_url(api)
    assert httpx.get(f"{bare}?token={split(other_url)[1]}", timeout=10).status_code == 404
    # The sandbox's store keeps the token's hash, never the token.
    raw = Path(api.server.settings.sandbox_db).read_bytes()
    for wal in Path(api.server.settings.sandbox_db).parent.glob("sandbox.db-wal"):
        raw += wal.read_bytes()
    assert token.encode() not in raw
    with sqlite3.connect(api.server.settings.sandbox_db) as db:
        stored = [r[0] for r in db.execute("select data from objects where kind = 'charge'")]
    assert not any(token in data for data in stored)
    assert api.charges(pi["id"])[0]["status"] == "requires_action"


def test_the_challenge_is_answered_only_with_the_token_from_its_form_and_only_once(
    api: Api,
) -> None:
    pi, url = challenge_url(api)
    bare, token = split(url)
    # A bare POST (a forged cross-site form, a link) answers nothing: the token counts only
    # from the form body, not from the URL.
    for attempt in (
        httpx.post(bare, data={"outcome": "complete"}, timeout=10),
        httpx.post(url, data={"outcome": "complete"}, timeout=10),
        httpx.post(bare, data={"outcome": "complete", "token": "nope"}, timeout=10),
    ):
        assert attempt.status_code == 403, attempt.text
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "requires_action"
    assert api.charges(pi["id"])[0]["status"] == "requires_action"

    done = answer_challenge(url, "complete")
    assert done.status_code == 200 and "Authentication complete" in done.text
    api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    # A replay changes nothing and says how it really ended; the page itself is gone.
    again = httpx.post(bare, data={"outcome": "fail", "token": token}, timeout=10)
    assert again.status_code == 409
    assert "Authentication complete" in again.text and "Authentication failed" not in again.text
    assert httpx.get(url, timeout=10).status_code == 404
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "succeeded"


def test_a_replayed_complete_on_a_failed_challenge_shows_failed_and_changes_nothing(
    api: Api,
) -> None:
    pi, url = challenge_url(api)
    action, token, _ = challenge_form(url)
    failed = httpx.post(action, data={"token": token, "outcome": "fail"}, timeout=10)
    assert failed.status_code == 200 and "Authentication failed" in failed.text
    api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "requires_payment_method")
    for _ in range(2):
        replay = httpx.post(action, data={"token": token, "outcome": "complete"}, timeout=10)
        assert replay.status_code == 409, replay.text
        assert "Authentication failed" in replay.text
        assert "Authentication complete" not in replay.text
        assert "answered already" in replay.text
    [charge] = api.charges(pi["id"])
    assert (charge["status"], charge["decline_code"]) == ("failed", "authentication_failed")
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["status"] == "requires_payment_method"
    assert after["last_payment_error"]["gateway_code"] == "authentication_failed"
    # A token that was never issued is still refused outright, telling nothing.
    forged = httpx.post(action, data={"token": token[::-1], "outcome": "complete"}, timeout=10)
    assert forged.status_code == 403 and "Authentication" not in forged.text


def test_a_retrieve_issues_another_token_and_answering_uses_up_all_of_them(api: Api) -> None:
    pi, url = challenge_url(api)
    listed = api.charges(pi["id"])[0]["next_action"]["redirect_to_url"]["url"]
    assert split(listed)[1] != split(url)[1]
    assert httpx.get(listed, timeout=10).status_code == 200
    assert answer_challenge(listed, "fail").status_code == 200
    api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "requires_payment_method")
    assert httpx.get(url, timeout=10).status_code == 404


def test_an_unknown_answer_is_refused_and_uses_nothing(api: Api) -> None:
    _, url = challenge_url(api)
    action, token, _ = challenge_form(url)
    r = httpx.post(action, data={"token": token, "outcome": "maybe"}, timeout=10)
    assert r.status_code == 400
    assert answer_challenge(url, "complete").status_code == 200


def test_the_challenge_page_cannot_be_framed(api: Api) -> None:
    _, url = challenge_url(api, return_url="https://shop.example/done?o=1")
    headers = httpx.get(url, timeout=10).headers
    csp = directives(headers["content-security-policy"])
    assert csp["frame-ancestors"] == ["'none'"]
    assert headers["x-frame-options"] == "DENY"
    assert csp["form-action"] == ["'self'", "https://shop.example"]
    assert_page_headers(headers)


# -- 3. the card form's message target ------------------------------------------------------
def test_the_card_form_posts_its_token_to_a_named_origin_only(api: Api) -> None:
    script = httpx.get(f"{api.server.url}/sandbox/static/elements.js", timeout=10)
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "postMessage" in script.text
    assert not re.search(r"""postMessage\([^;]*['"]\*['"]""", script.text, re.S)
    page = httpx.get(f"{api.server.url}/sandbox/elements?origin=https://Shop.Example:8443",
                     timeout=10)
    assert page.status_code == 200
    assert 'data-parent-origin="https://shop.example:8443"' in page.text
    csp = directives(page.headers["content-security-policy"])
    assert csp["frame-ancestors"] == ["'self'", "https://shop.example:8443"]
    assert "x-frame-options" not in page.headers
    plain = httpx.get(f"{api.server.url}/sandbox/elements", timeout=10)
    assert 'data-parent-origin=""' in plain.text
    assert directives(plain.headers["content-security-policy"])["frame-ancestors"] == ["'self'"]
    assert plain.headers["x-frame-options"] == "SAMEORIGIN"


@pytest.mark.parametrize("origin", [
    "*", "null", "javascript:alert(1)", "https://shop.example/path", "https://shop.example?x",
    "https://user@shop.example", "ftp://shop.example", "https://", "https://a b.example",
    "https://shop.example'; script-src *", "https://shop.example:99999",
])
def test_an_origin_that_is_not_exactly_an_origin_is_refused(api: Api, origin: str) -> None:
    r = httpx.get(f"{api.server.url}/sandbox/elements", params={"origin": origin}, timeout=10)
    error = error_of(r, 400)
    assert (error["code"], error["param"]) == ("parameter_invalid", "origin")


def test_origins_are_normalized() -> None:
    assert parse_origin("HTTPS://Shop.Example:443/") == "https://shop.example"
    assert parse_origin("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert parse_origin("http://[::1]:81") == "http://[::1]:81"
    assert parse_origin("https://shop.example#x") is None


# -- 4. headers on every page ---------------------------------------------------------------
def directives(csp: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def assert_page_headers(headers: httpx.Headers, *, html: bool = True) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    if html:
        csp = headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        found = directives(csp)
        assert found["default-src"] == ["'none'"]
        assert found["script-src"] == ["'self'"] and found["style-src"] == ["'self'"]
        assert "frame-ancestors" in found and "*" not in found["frame-ancestors"]
        assert headers["cache-control"] == "no-store"


def pages(api: Api) -> list[str]:
    _, url = challenge_url(api)
    return [
        f"{api.server.url}/sandbox/elements",
        f"{api.server.url}/sandbox/elements?origin=https://shop.example",
        url,
        f"{api.server.url}/sandbox/3ds/ch_unknown?token=x",
    ]


def test_every_sandbox_page_has_the_security_headers_and_no_inline_code(api: Api) -> None:
    for url in pages(api):
        r = httpx.get(url, timeout=10)
        assert r.headers["content-type"].startswith("text/html"), url
        assert_page_headers(r.headers)
        assert "strict-transport-security" not in r.headers
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text), url
        assert "<style" not in r.text and not re.search(r"<[^>]*\s(style|on[a-z]+)\s*=", r.text)
    # The answer pages too.
    _, url = challenge_url(api)
    assert_page_headers(answer_challenge(url, "fail").headers)
    bare = split(url)[0]
    assert_page_headers(httpx.post(bare, data={"outcome": "fail"}, timeout=10).headers)
    for path in ("/test-cards", "/static/elements.js", "/static/sandbox.css", "/nowhere"):
        assert_page_headers(sandbox(api.server, "GET", path).headers, html=False)


def test_hsts_is_sent_when_the_page_came_over_tls(api: Api) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (a TLS-terminating proxy).
    for url in pages(api):
        r = httpx.get(url, headers={"x-forwarded-proto": "https"}, timeout=10)
        assert r.headers["strict-transport-security"].startswith("max-age="), url
        assert int(r.headers["strict-transport-security"].split("=")[1].split(";")[0]) >= (
            180 * 24 * 3600
        )
