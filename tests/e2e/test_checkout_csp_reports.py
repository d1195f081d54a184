"""The CSP report endpoint (``POST /c/csp-reports``, no key) under a flood and over time
(review r6, M5), on SQLite and PostgreSQL: reports are counted into aggregates by page,
directive and blocked URL (count, first and last seen), never one row each; one client
address gets a budget of ``MAX_PER_ADDRESS_PER_MINUTE`` (10) in any 60 seconds; an aggregate not seen
for 90 days is deleted; no stored field keeps a checkout session's id or an invoice token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_checkout_sessions import session

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url
from paymux.checkout.csp_reports import Violation, parse_reports
from paymux.services import Paymux

ADMIN = "admin-key-for-csp-report-tests"
DAY_US = 86_400 * 1_000_000


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_cluster: Any
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp(f"csp-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"csp_{request.param}")
    running = RunningServer(make_settings(url, tmp, free_port(), admin_key=ADMIN)).start()
    try:
        yield running
    finally:
        running.stop()


def report(api: Api, document: str, blocked: str, source: str | None = None) -> int:
    body: dict[str, Any] = {"document-uri": document, "effective-directive": "script-src-elem",
                            "blocked-uri": blocked, "disposition": "enforce"}
    if source:
        body["source-file"] = source
    r = httpx.post(f"{api.server.url}/c/csp-reports", content=json.dumps({"csp-report": body}),
                   headers={"content-type": "application/csp-report"}, timeout=10)
    return r.status_code


def listed(api: Api) -> list[dict[str, Any]]:
    r = httpx.get(f"{api.server.url}/v1/admin/csp_reports",
                  headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def test_reports_are_aggregated_budgeted_masked_and_retained_by_age(api: Api) -> None:
    cs = session(api)
    page = cs["url"]
    # 12 reports of one violation from one address: 10 are counted (its budget this
    # 60 seconds), into one aggregate.
    for _ in range(12):
        assert report(api, f"{page}?x=1", "https://evil.example/skim.js?c=1",
                      source=f"{page}") == 204
    rows = listed(api)
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["page"], row["directive"], row["blocked"], row["count"]) == (
        "/c/pay/{session}", "script-src-elem", "https://evil.example/skim.js", 10)
    assert row["account"] == api.account_id
    assert row["source"].endswith("/c/pay/{session}")
    assert row["first_seen"] <= row["last_seen"]
    stored = api.server.sql("select page, blocked, source from csp_reports")
    assert stored and all(cs["id"] not in str(field) for r in stored for field in r)
    assert int(api.server.sql("select count(*) from csp_reports")[0][0]) == 1


def test_an_aggregate_not_seen_for_90_days_is_deleted(server: RunningServer) -> None:
    """Through paymux's own service (a process of its own, whose budget is fresh): an
    aggregate last seen 91 days ago goes with the next report counted; one seen 89 days ago
    stays."""
    old = Violation(page="/c/pay/{session}", directive="img-src", blocked="https://old.example/x",
                    source=None, line=None, disposition="enforce", session_id=None)
    recent = Violation(page="/c/pay/{session}", directive="img-src",
                       blocked="https://recent.example/x", source=None, line=None,
                       disposition="enforce", session_id=None)
    new = Violation(page="/invoices/{token}", directive="img-src", blocked="inline",
                    source=None, line=None, disposition="enforce", session_id=None)

    async def scenario() -> list[tuple[str, int]]:
        app = Paymux(server.settings)
        try:
            assert await app.csp_reports.record([old, recent], "192.0.2.7") == 2
            server.sql("update csp_reports set last_seen_us = last_seen_us - :d "
                       "where blocked = 'https://old.example/x'", d=91 * DAY_US)
            server.sql("update csp_reports set last_seen_us = last_seen_us - :d "
                       "where blocked = 'https://recent.example/x'", d=89 * DAY_US)
            assert await app.csp_reports.record([new], "192.0.2.7") == 1
            rows = await app.csp_reports.list_page(100)
            return sorted((r["blocked"], r["count"]) for r in rows
                          if r["directive"] == "img-src")
        finally:
            await app.close()

    assert asyncio.run(scenario()) == [("https://recent.example/x", 1), ("inline", 1)]


def test_an_invoice_pages_token_is_masked_too() -> None:
    body = json.dumps({"csp-report": {
        "document-uri": "https://pay.example/invoices/AbCdEf0123456789xyz?locale=de",
        "effective-directive": "img-src", "blocked-uri": "inline"}}).encode()
    assert [v.page for v in parse_reports(body, "application/csp-report")] == [
        "/invoices/{token}"]
