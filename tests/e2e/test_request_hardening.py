"""Holes a security probe found, closed on a real server over SQLite and PostgreSQL.

- A deeply nested JSON body (``[[[[...]]]]``) is refused with 400 ``body_too_deep`` before
  anything recursive parses it, on every path: the API (before authentication), the
  sandbox's tokenization endpoint and a correctly signed webhook.
- An unexpected exception is a 500 ``api_error`` carrying the request's ``Request-Id``
  (header and body), logged exactly once with that id.
- A credential in the query string is refused with 400 ``credentials_in_query`` and never
  reaches the logs: the access log line is masked before uvicorn prints it.
- ``paymux serve`` believes ``X-Forwarded-For`` only from the proxies named in
  ``PAYMUX_TRUSTED_PROXIES`` (none by default).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import BACKENDS, Api, database_url
from paymux.gateways.sandbox.processor import SandboxProcessor
from paymux.gateways.signing import sign_header
from paymux.services.events import EventsService
from support.keys import random_token
from support.pgcluster import PgCluster
from support.processes import ServeProcess
from support.server_logs import Logs, capture_server_logs

PI = "/v1/payment_intents"


def expect_error(r: httpx.Response, status: int, code: str, param: str | None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code, error
    assert error["param"] == param, error
    assert r.headers["request-id"].startswith("req_")
    assert error["request_id"] == r.headers["request-id"]
    return error


# -- logs, as `paymux serve` writes them ------------------------------------------------------


@pytest.fixture
def logs() -> Iterator[Logs]:
    with capture_server_logs("INFO") as captured:
        yield captured


# -- 1. deep JSON -----------------------------------------------------------------------------

DEPTH = 1000


def deep_arrays(depth: int = DEPTH) -> bytes:
    return b"[" * depth + b"]" * depth  # 2 KB at 1,000 levels


def deep_objects(depth: int = DEPTH) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


BODIES = {"arrays": deep_arrays(), "objects": deep_objects()}


def sandbox_webhook_secret(api: Api) -> str:
    processor = SandboxProcessor(api.server.settings.sandbox_db)
    try:
        return processor.webhook_secret()
    finally:
        processor.close()


@pytest.mark.parametrize("shape", list(BODIES))
def test_a_deeply_nested_body_is_refused_before_authentication(api: Api, shape: str) -> None:
    body = BODIES[shape]
    headers = {"content-type": "application/json"}
    before = api.counts()
    anonymous = httpx.post(f"{api.server.url}{PI}", content=body, headers=headers, timeout=10)
    expect_error(anonymous, 400, "body_too_deep", None)
    r = api.http.post(PI, content=body, headers=headers)
    error = expect_error(r, 400, "body_too_deep", None)
    assert error["type"] == "invalid_request_error" and "32" in error["message"]
    assert api.counts() == before


@pytest.mark.parametrize("shape", list(BODIES))
def test_a_deeply_nested_body_is_refused_by_the_sandbox_too(api: Api, shape: str) -> None:
    r = httpx.post(f"{api.server.url}/sandbox/v1/tokens", content=BODIES[shape],
                   headers={"content-type": "application/json"}, timeout=10)
    expect_error(r, 400, "body_too_deep", None)


@pytest.mark.parametrize("shape", list(BODIES))
def test_a_deeply_nested_signed_webhook_is_a_4xx_not_a_500(api: Api, shape: str) -> None:
    body = BODIES[shape]
    r = httpx.post(
        f"{api.server.url}/webhooks/sandbox", content=body, timeout=10,
        headers={"paymux-sandbox-signature": sign_header(body, sandbox_webhook_secret(api)),
                 "content-type": "application/json"},
    )
    expect_error(r, 400, "body_too_deep", None)


def test_nesting_up_to_the_limit_is_parsed_as_usual(api: Api) -> None:
    # 32 levels: an ordinary validation error; 33: refused before parsing.
    nested: Any = "x"
    for _ in range(31):
        nested = {"k": nested}
    r = api.post(PI, {"amount": 2000, "currency": "usd", "metadata": nested})
    assert r.status_code == 400 and r.json()["error"]["code"] != "body_too_deep", r.text
    r = api.post(PI, {"amount": 2000, "currency": "usd", "metadata": {"k": nested}})
    expect_error(r, 400, "body_too_deep", None)
    # Brackets inside strings are text, not nesting.
    pi = api.ok("POST", PI, {"amount": 2000, "currency": "usd", "description": "[" * 500})
    assert pi["description"] == "[" * 500


# -- 2. a 500 carries the request id and is logged once ---------------------------------------


def test_an_unexpected_error_is_a_500_with_the_request_id_logged_once(
    api: Api, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(self: EventsService, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom in list_page")

    monkeypatch.setattr(EventsService, "list_page", boom)
    r = api.get("/v1/events")

    assert r.status_code == 500, r.text
    error = r.json()["error"]
    assert error["code"] == "api_error" and error["type"] == "api_error"
    request_id = r.headers["request-id"]
    assert request_id.startswith("req_") and error["request_id"] == request_id
    assert "boom" not in r.text

    records = logs.records()
    tracebacks = [rec for rec in records if "exc" in rec]
    assert len(tracebacks) == 1, records
    [logged] = tracebacks
    assert logged["level"] == "ERROR" and logged["request_id"] == request_id
    assert "boom in list_page" in logged["exc"]
    errors = [rec for rec in records if rec["level"] in ("ERROR", "CRITICAL")]
    assert errors == [logged], errors
    access = [rec for rec in records if rec["logger"] == "uvicorn.access"]
    assert access and '" 500' in access[-1]["message"]
    assert access[-1]["request_id"] == request_id


# -- 3. credentials in the query string -------------------------------------------------------


def credential_cases(api: Api) -> list[tuple[str, str, str]]:
    """(path, query key, value): every one must be refused and never logged."""
    secret = random_token("adm_", 32)
    return [
        (PI, "api_key", api.key),
        (PI, "key", api.key),
        (PI, "admin_key", secret),
        (PI, "authorization", f"Bearer {api.key}"),
        (PI, "customer", api.key),  # a key by its look, whatever the name
        ("/v1/admin/webhooks", "admin_key", secret),
        ("/v1/events", "type", random_token("rk_live_", 24)),
        ("/v1/events", "type", random_token("sk_live_", 24)),
        ("/v1/events", "object_id", random_token("whsec_", 32)),
        ("/sandbox/v1/tokens", "secret", random_token(length=32)),
        ("/webhooks/sandbox", "api_key", api.key),
    ]


def test_a_credential_in_the_query_string_is_refused_and_never_logged(
    api: Api, logs: Logs
) -> None:
    cases = credential_cases(api)
    for path, name, value in cases:
        r = httpx.get(f"{api.server.url}{path}", params={name: value, "limit": "3"}, timeout=10)
        error = expect_error(r, 400, "credentials_in_query", name)
        assert error["type"] == "invalid_request_error"
        assert value not in r.text and value.split("_")[-1] not in r.text
        access = [rec for rec in logs.records() if rec["logger"] == "uvicorn.access"]
        assert access and access[-1]["request_id"] == r.headers["request-id"]
        assert '" 400' in access[-1]["message"] and path in access[-1]["message"]

    text = logs.text
    for _, _, value in cases:
        assert value not in text
        assert value.split("_")[-1] not in text
        assert value.removeprefix("Bearer ") not in text
    # Sent by POST (the API key in the header) as well.
    r = api.post(f"{PI}?key={api.key}", {"amount": 2000, "currency": "usd"})
    expect_error(r, 400, "credentials_in_query", "key")
    assert api.key not in logs.text


def test_ordinary_query_strings_still_work(api: Api) -> None:
    pi = api.ok("POST", PI, {"amount": 2000, "currency": "usd"})
    listed = api.ok("GET", "/v1/events", params={"object_id": pi["id"], "limit": "5"})
    assert listed["data"]


# -- 4. X-Forwarded-For -----------------------------------------------------------------------

FORWARDED = "203.0.113.9"


@pytest.fixture(params=BACKENDS)
def serve_db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> str:
    name = f"proxy_{request.param}_{secrets.token_hex(4)}"
    return database_url(request.param, tmp_path, pg_cluster, name)


def client_seen(server: ServeProcess, path: str) -> str:
    """The client address the access log printed for ``path``."""
    lines = [line for line in server.output(1_000_000).splitlines() if f"GET {path} " in line]
    assert lines, server.tail()
    match = re.search(r'"message": "([0-9a-fA-F.:]+):\d+ - \\"GET', lines[-1]) or re.search(
        r"([0-9a-fA-F.:]+):\d+ - \"GET", lines[-1]
    )
    assert match, lines[-1]
    return match.group(1)


@pytest.mark.parametrize(("trusted", "expected"), [(None, "127.0.0.1"), ("127.0.0.1", FORWARDED),
                                                   ("10.0.0.0/8", "127.0.0.1")])
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    tmp_path: Path, serve_db: str, trusted: str | None, expected: str
) -> None:
    env = {"PAYMUX_LOG_LEVEL": "INFO", "PAYMUX_SANDBOX_ENABLED": "false"}
    if trusted is not None:
        env["PAYMUX_TRUSTED_PROXIES"] = trusted
    server = ServeProcess(tmp_path, serve_db, **env)
    try:
        path = f"/health?probe={secrets.token_hex(4)}"
        r = server.http.get(path, headers={"x-forwarded-for": FORWARDED,
                                           "x-forwarded-proto": "https"})
        assert r.status_code == 200
        assert client_seen(server, path) == expected
    finally:
        server.stop()
        server.http.close()


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/checkout/sessions?customer=%00cus_1", "customer"),
        ("/v1/promotion_codes?code=A%00B", "code"),
        ("/v1/payment_intents?limit=3&customer=x%00", "customer"),
    ],
)
def test_a_nul_in_a_query_parameter_is_a_400_naming_it(api: Api, path: str, param: str) -> None:
    """PostgreSQL text can't hold U+0000: a list filter carrying it was a 500 from the driver
    (schemathesis found it on /v1/checkout/sessions). It is refused before any route runs."""
    r = api.get(path)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("parameter_invalid", param)
    assert "NUL" in error["message"]
