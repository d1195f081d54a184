"""Reading browsers' CSP violation reports (src/paymux/checkout/csp_reports.py): both
formats, only paths kept, a checkout page's session id replaced, junk ignored."""

from __future__ import annotations

import json

from paymux.checkout.csp_reports import MAX_BODY, MinuteBudget, Violation, parse_reports

SESSION = "cs_test_AbCdEfGhIjKlMnOpQrStUvWxYz0123"


def test_a_report_uri_report_keeps_paths_only_and_hides_the_session() -> None:
    body = json.dumps(
        {
            "csp-report": {
                "document-uri": f"https://pay.example/c/pay/{SESSION}?locale=fr",
                "violated-directive": "script-src-elem",
                "effective-directive": "script-src-elem",
                "blocked-uri": "https://evil.example/skim.js?card=1",
                "source-file": "https://pay.example/_checkout/card-entry.js",
                "line-number": 12,
                "disposition": "enforce",
            }
        }
    ).encode()
    assert parse_reports(body, "application/csp-report") == [
        Violation(
            page="/c/pay/{session}",
            directive="script-src-elem",
            blocked="https://evil.example/skim.js",
            source="https://pay.example/_checkout/card-entry.js",
            line=12,
            disposition="enforce",
            session_id=SESSION,
        )
    ]


def test_a_reporting_api_report_is_read_too() -> None:
    body = json.dumps(
        [
            {
                "type": "csp-violation",
                "body": {
                    "documentURL": "https://pay.example/invoices/tok",
                    "effectiveDirective": "img-src",
                    "blockedURL": "inline",
                    "lineNumber": True,
                    "disposition": "report",
                },
            },
            {"type": "deprecation", "body": {"id": "x"}},
        ]
    ).encode()
    assert parse_reports(body, "application/reports+json") == [
        Violation(
            page="/invoices/{token}",
            directive="img-src",
            blocked="inline",
            source=None,
            line=None,
            disposition="report",
            session_id=None,
        )
    ]


def test_junk_is_ignored_not_an_error() -> None:
    for body, kind in (
        (b"not json", "application/csp-report"),
        (b"[1, 2]", "application/csp-report"),
        (json.dumps({"csp-report": {"document-uri": "x"}}).encode(), "application/csp-report"),
        (b"{" + b" " * MAX_BODY + b"}", "application/csp-report"),
    ):
        assert parse_reports(body, kind) == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_is_ten_in_any_60_seconds_across_a_minutes_edge() -> None:
    """A fixed minute let 10 in at 59.9 s and 10 more at 60.1 s; the window slides."""
    clock = Clock()
    clock.now = 59.5
    budget = MinuteBudget(per_address=10, total=60, clock=clock)
    assert budget.admit(6, "198.51.100.7") == 6
    clock.now = 60.5
    assert budget.admit(12, "198.51.100.7") == 4
    clock.now = 119.4  # the first 6 are still inside the 60 s behind
    assert budget.admit(1, "198.51.100.7") == 0
    clock.now = 119.6  # they have left it; the 4 of 60.5 s have not
    assert budget.admit(12, "198.51.100.7") == 6
    assert budget.admit(3, "203.0.113.9") == 3  # another address has its own ten


def test_all_addresses_together_get_the_total() -> None:
    clock = Clock()
    budget = MinuteBudget(per_address=10, total=25, clock=clock)
    assert [budget.admit(10, f"192.0.2.{i}") for i in range(4)] == [10, 10, 5, 0]
    clock.now += 60.1
    assert budget.admit(10, "192.0.2.3") == 10


def test_past_the_addresses_it_remembers_a_new_one_shares_unknowns_budget() -> None:
    clock = Clock()
    budget = MinuteBudget(per_address=2, total=1000, clock=clock, max_addresses=3)
    assert [budget.admit(5, a) for a in ("a", "b", "c")] == [2, 2, 2]
    assert budget.admit(5, "d") == 2  # counted as "unknown", which is full now
    assert budget.admit(5, "e") == 0
    assert budget.admit(5, None) == 0
    clock.now += 61  # every address's times have left the window: they are forgotten
    assert budget.admit(5, "e") == 2
    assert budget.admit(5, "f") == 2
