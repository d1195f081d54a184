"""The guard middleware's pure parts: the JSON depth scan, credentials in a query string, and
the redaction of every key form in a log line."""

from __future__ import annotations

import json
import sys

import pytest

from paymux.api.middleware import MAX_JSON_DEPTH, _query_credential_param, json_too_deep
from paymux.security import redact, register_secret


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def test_depth_at_the_limit_passes_and_one_more_is_too_deep() -> None:
    assert not json_too_deep(nested(MAX_JSON_DEPTH))
    assert json_too_deep(nested(MAX_JSON_DEPTH + 1))
    obj = b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1)
    assert json_too_deep(obj)
    assert not json_too_deep(b'{"a":' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH)


def test_the_scan_never_recurses_whatever_the_depth() -> None:
    depth = sys.getrecursionlimit() * 50
    assert json_too_deep(nested(depth))
    assert json_too_deep(b"[" * depth)  # unterminated: still refused, not a crash


def test_brackets_in_strings_are_not_nesting() -> None:
    body = json.dumps({"a": "[" * 500, "b": '\\"[[[[' * 100, "c": ["{{{{"]}).encode()
    assert not json_too_deep(body)
    assert not json_too_deep(b'"' + b"[" * 100 + b'"')


def test_what_json_loads_would_not_nest_passes() -> None:
    for body in (
        b"",
        b"amount=2000&currency=usd",
        b"a=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        b"42",
        b"\xff\xfe\x00garbage",
    ):
        assert not json_too_deep(body)


def test_other_encodings_json_accepts_are_scanned_too() -> None:
    text = "[" * 40 + "]" * 40
    for encoding in ("utf-8-sig", "utf-16", "utf-16-le", "utf-32"):
        assert json_too_deep(text.encode(encoding)), encoding
    assert not json_too_deep(("[" * 10 + "]" * 10).encode("utf-16"))


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("api_key=sk_test_abc123", "api_key"),
        ("key=anything", "key"),
        ("Admin-Key=x", "Admin-Key"),
        ("authorization=Bearer%20abc", "authorization"),
        ("limit=3&customer=sk_live_abc", "customer"),
        ("x=rk_test_abc", "x"),
        ("x=rk_abcdef", "x"),
        ("x=pk_live_abc", "x"),
        ("x=whsec_abc", "x"),
        ("note=bearer+abc", "note"),
        ("%3Cscript%3E=sk_test_abc", "query"),
        ("sk_test_abc=1", "query"),
    ],
)
def test_a_credential_in_the_query_is_found(query: str, param: str) -> None:
    assert _query_credential_param(query) == param


@pytest.mark.parametrize(
    "query",
    [
        "",
        "limit=10&starting_after=pi_123",
        "token=single-use",
        "key=",
        "type=payment_intent.succeeded",
        "email=task_test_x%40example.com",
        "object_id=cus_abc&status=dead",
    ],
)
def test_ordinary_queries_pass(query: str) -> None:
    assert _query_credential_param(query) is None


def test_every_key_form_is_masked_in_a_log_line() -> None:
    register_secret("an-admin-key-of-any-form-42")
    register_secret("short")  # too short to mask safely: ignored
    line = (
        "GET /v1/x?api_key=sk_test_abc123&admin_key=zzz1&secret_key=yyy2 HTTP/1.1 "
        "rk_live_abc rk_test_abc rk_plain pk_live_abc pk_test_abc sk_live_abc whsec_abc "
        "Authorization: Bearer tok.en-1 webhook_secret=www3 an-admin-key-of-any-form-42 short"
    )
    masked = redact(line)
    for secret in (
        "abc123",
        "zzz1",
        "yyy2",
        "_abc",
        "rk_plain",
        "tok.en-1",
        "www3",
        "an-admin-key-of-any-form-42",
    ):
        assert secret not in masked, (secret, masked)
    assert masked.endswith("short")
    assert redact(masked) == masked
