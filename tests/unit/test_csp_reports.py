"""Reading browsers' CSP violation reports (src/paymux/checkout/csp_reports.py): both
formats, only paths kept, a checkout page's session id replaced, junk ignored."""

from __future__ import annotations

import json

from paymux.checkout.csp_reports import MAX_BODY, Violation, parse_reports

SESSION = "cs_test_AbCdEfGhIjKlMnOpQrStUvWxYz0123"


def test_a_report_uri_report_keeps_paths_only_and_hides_the_session() -> None:
    body = json.dumps({"csp-report": {
        "document-uri": f"https://pay.example/c/pay/{SESSION}?locale=fr",
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "blocked-uri": "https://evil.example/skim.js?card=1",
        "source-file": "https://pay.example/_checkout/card-entry.js",
        "line-number": 12,
        "disposition": "enforce",
    }}).encode()
    assert parse_reports(body, "application/csp-report") == [Violation(
        page="/c/pay/{session}", directive="script-src-elem",
        blocked="https://evil.example/skim.js",
        source="https://pay.example/_checkout/card-entry.js", line=12,
        disposition="enforce", session_id=SESSION)]


def test_a_reporting_api_report_is_read_too() -> None:
    body = json.dumps([
        {"type": "csp-violation", "body": {
            "documentURL": "https://pay.example/invoices/tok", "effectiveDirective": "img-src",
            "blockedURL": "inline", "lineNumber": True, "disposition": "report"}},
        {"type": "deprecation", "body": {"id": "x"}},
    ]).encode()
    assert parse_reports(body, "application/reports+json") == [Violation(
        page="/invoices/{token}", directive="img-src", blocked="inline", source=None, line=None,
        disposition="report", session_id=None)]


def test_junk_is_ignored_not_an_error() -> None:
    for body, kind in ((b"not json", "application/csp-report"),
                       (b"[1, 2]", "application/csp-report"),
                       (json.dumps({"csp-report": {"document-uri": "x"}}).encode(),
                        "application/csp-report"),
                       (b"{" + b" " * MAX_BODY + b"}", "application/csp-report")):
        assert parse_reports(body, kind) == []
