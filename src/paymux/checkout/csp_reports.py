"""Content-Security-Policy violation reports from paymux's pages, kept for the operator
(PCI DSS 4.0 requirement 11.6.1: unauthorized changes to a payment page are noticed).

Browsers post them to ``/c/csp-reports`` (the pages' ``report-uri``) as
``application/csp-report`` (``{"csp-report": {...}}``) or ``application/reports+json``
(``[{"type": "csp-violation", "body": {...}}]``). ``parse_reports`` (pure) reads either;
``CspReports.record`` counts at most ``MAX_PER_ADDRESS_PER_MINUTE`` in any 60 seconds from
one client address and ``MAX_PER_MINUTE`` from all, per process (the endpoint takes no key, so a
flood cannot fill the database), into aggregates by page, directive, blocked URL, script
and account, each with its count and first and last seen; an aggregate not seen for
``RETAIN_DAYS`` is deleted, and only the ``KEEP`` most recently seen are kept. What is
kept: paths only (no query), every field's secrets masked (a checkout page's session id
becomes ``{session}``, a hosted invoice's token ``{token}``), the directive, the blocked
URL's origin and path, the script file and line.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from paymux.domain.ids import new_id
from paymux.services.context import Context
from paymux.storage.models import CheckoutSession, CspReport

__all__ = [
    "KEEP",
    "MAX_BODY",
    "MAX_PER_ADDRESS_PER_MINUTE",
    "MAX_PER_MINUTE",
    "RETAIN_DAYS",
    "CspReports",
    "MinuteBudget",
    "Violation",
    "fingerprint",
    "masked",
    "parse_reports",
]

MAX_BODY = 32 * 1024
MAX_PER_MINUTE = 60
MAX_PER_ADDRESS_PER_MINUTE = 10
KEEP = 1000
RETAIN_DAYS = 90
DAY_US = 86_400 * 1_000_000
_SESSION = re.compile(r"/c/pay/(cs_(?:test|live)_[A-Za-z0-9]+)")
# Secrets in paths: a checkout session's id (its page's secret), a hosted invoice's token.
_INVOICE = re.compile(r"/invoices/[A-Za-z0-9_-]+")
_BARE_SESSION = re.compile(r"cs_(?:test|live)_[A-Za-z0-9]+")


@dataclass(frozen=True)
class Violation:
    page: str
    directive: str
    blocked: str
    source: str | None
    line: int | None
    disposition: str
    session_id: str | None


def masked(text: str) -> str:
    """``text`` with the secrets a path may hold replaced: a checkout session's id by
    ``{session}``, a hosted invoice's token by ``{token}``."""
    text = _SESSION.sub("/c/pay/{session}", text)
    text = _INVOICE.sub("/invoices/{token}", text)
    return _BARE_SESSION.sub("{session}", text)


def _path_only(value: Any) -> str:
    """An URL without its query and fragment (``inline``/``eval`` and the like as they are),
    its secrets masked."""
    text = str(value or "")[:2048]
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    if not parts.scheme or parts.scheme not in ("http", "https"):
        return masked(text[:64])
    return masked(f"{parts.scheme}://{parts.netloc}{parts.path}")[:512]


def _violation(body: dict[str, Any]) -> Violation | None:
    """One report's fields (both spellings: report-uri's kebab-case, Reporting API's camel)."""

    def field(*names: str) -> Any:
        for name in names:
            if name in body:
                return body[name]
        return None

    raw_document = str(field("document-uri", "documentURL") or "")[:2048]
    document = _path_only(raw_document)
    directive = str(field("effective-directive", "effectiveDirective", "violated-directive") or "")[
        :128
    ]
    if not document or not directive:
        return None
    found = _SESSION.search(raw_document)
    page = masked(urlsplit(document).path)[:512]
    line = field("line-number", "lineNumber")
    disposition = str(field("disposition") or "enforce")[:16]
    return Violation(
        page=page,
        directive=directive,
        blocked=_path_only(field("blocked-uri", "blockedURL")),
        source=_path_only(field("source-file", "sourceFile")) or None,
        line=line if isinstance(line, int) and not isinstance(line, bool) else None,
        disposition=disposition if disposition in ("enforce", "report") else "enforce",
        session_id=found.group(1) if found else None,
    )


def parse_reports(body: bytes, content_type: str) -> list[Violation]:
    """The violations of a report body; [] for anything else (never an error to a browser)."""
    if len(body) > MAX_BODY:
        return []
    try:
        raw: Any = json.loads(body)
    except ValueError:
        return []
    bodies: list[Any] = []
    if "reports+json" in content_type and isinstance(raw, list):
        bodies = [
            r.get("body")
            for r in raw[:20]
            if isinstance(r, dict) and r.get("type") == "csp-violation"
        ]
    elif isinstance(raw, dict) and isinstance(raw.get("csp-report"), dict):
        bodies = [raw["csp-report"]]
    found = [_violation(b) for b in bodies if isinstance(b, dict)]
    return [v for v in found if v is not None]


def fingerprint(v: Violation, account_id: str | None) -> str:
    """The aggregate a violation is counted in: its page, directive, what was blocked, where
    from, how, and whose (a checkout page's account)."""
    parts = (
        v.page,
        v.directive,
        v.blocked,
        v.source or "",
        str(v.line or ""),
        v.disposition,
        account_id or "",
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class MinuteBudget:
    """At most ``per_address`` admissions from one client address and ``total`` from all in
    any 60 seconds (a sliding window: a fixed one lets twice the budget through across a
    minute's edge). ``clock`` is monotonic seconds. At most ``max_addresses`` addresses are
    remembered; past that an unseen address shares the budget of ``"unknown"``."""

    WINDOW = 60.0

    def __init__(
        self,
        per_address: int,
        total: int,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self.per_address, self.total, self.clock = per_address, total, clock
        self.max_addresses = max_addresses
        self._all: deque[float] = deque()
        self._by_address: dict[str, deque[float]] = {}

    def admit(self, n: int, address: str | None) -> int:
        """How many of ``n`` reports from ``address`` are admitted now (and count them)."""
        now = self.clock()
        since = now - self.WINDOW
        _forget(self._all, since)
        name = address or "unknown"
        if name not in self._by_address and len(self._by_address) >= self.max_addresses:
            for other in [a for a, times in self._by_address.items() if not _forget(times, since)]:
                del self._by_address[other]
            if len(self._by_address) >= self.max_addresses:
                name = "unknown"
        mine = self._by_address.setdefault(name, deque())
        _forget(mine, since)
        taken = max(0, min(n, self.total - len(self._all), self.per_address - len(mine)))
        self._all.extend([now] * taken)
        mine.extend([now] * taken)
        return taken


def _forget(times: deque[float], since: float) -> int:
    """Drop the times at or before ``since``; return how many are left."""
    while times and times[0] <= since:
        times.popleft()
    return len(times)


class CspReports:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.budget = MinuteBudget(MAX_PER_ADDRESS_PER_MINUTE, MAX_PER_MINUTE)

    async def record(self, violations: list[Violation], address: str | None = None) -> int:
        """Count what the budgets allow (``MAX_PER_ADDRESS_PER_MINUTE`` from one client
        address, ``MAX_PER_MINUTE`` from all, per process) into their aggregates (count,
        first and last seen); forget aggregates not seen for ``RETAIN_DAYS``, and all but the
        ``KEEP`` most recently seen. Returns how many were counted."""
        kept = violations[: self.budget.admit(len(violations), address)]
        if not kept:
            return 0
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            for v in kept:
                account_id = None
                if v.session_id is not None:
                    account_id = (
                        await s.execute(
                            select(CheckoutSession.account_id).where(
                                CheckoutSession.id == v.session_id
                            )
                        )
                    ).scalar_one_or_none()
                insert = pg_insert if not self.ctx.db.is_sqlite else sqlite_insert
                values = {
                    "id": new_id("cspr"),
                    "fingerprint": fingerprint(v, account_id),
                    "account_id": account_id,
                    "page": v.page,
                    "directive": v.directive,
                    "blocked": v.blocked,
                    "source": v.source,
                    "line": v.line,
                    "disposition": v.disposition,
                    "count": 1,
                    "created_us": now,
                    "last_seen_us": now,
                }
                stmt = insert(CspReport).values(**values)
                await s.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["fingerprint"],
                        set_={"count": CspReport.count + 1, "last_seen_us": now},
                    )
                )
            await s.execute(
                delete(CspReport).where(CspReport.last_seen_us < now - RETAIN_DAYS * DAY_US)
            )
            cutoff = (
                await s.execute(
                    select(CspReport.last_seen_us)
                    .order_by(CspReport.last_seen_us.desc())
                    .offset(KEEP)
                    .limit(1)
                )
            ).scalar_one_or_none()
            if cutoff is not None:
                await s.execute(delete(CspReport).where(CspReport.last_seen_us <= cutoff))
        return len(kept)

    async def list_page(self, limit: int) -> list[dict[str, Any]]:
        """The aggregates, most recently seen first."""
        async with self.ctx.db.read() as s:
            rows = (
                await s.execute(
                    select(CspReport)
                    .order_by(CspReport.last_seen_us.desc(), CspReport.id.desc())
                    .limit(limit)
                )
            ).scalars()
            return [
                {
                    "id": r.id,
                    "object": "csp_report",
                    "account": r.account_id,
                    "page": r.page,
                    "directive": r.directive,
                    "blocked": r.blocked,
                    "source": r.source,
                    "line": r.line,
                    "disposition": r.disposition,
                    "count": r.count,
                    "created": r.created_us // 1_000_000,
                    "first_seen": r.created_us // 1_000_000,
                    "last_seen": r.last_seen_us // 1_000_000,
                }
                for r in rows
            ]
