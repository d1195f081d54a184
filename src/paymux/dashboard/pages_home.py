"""Home: the period's payments at a glance, in the session's mode (the header's switch):
volume and succeeded payments per day and currency (SVG charts, server-drawn, with their
numbers in a table too), the success rate, declines by reason, refunds and disputes; and
from billing: MRR, active subscriptions, churn and failed renewals in dunning.

The period is picked with ``?days=`` (7, 30 or 90 UTC days ending today). Figures are
defined in services/reports.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup

from paymux.dashboard.auth import ANY, CurrentUser, core, require_role
from paymux.dashboard.charts import Series, bar_chart, line_chart
from paymux.dashboard.render import money, render
from paymux.services.reports import PaymentsReport, Period, ReportsService

__all__ = ["PERIODS", "percent", "router"]

router = APIRouter()
Viewer = Annotated[CurrentUser, Depends(require_role(*ANY))]
PERIODS = (7, 30, 90)
_DEFAULT_DAYS = 30


def percent(value: Fraction | None) -> str:
    """``Fraction(1, 3)`` -> ``"33.3%"`` (rounded half-even to a tenth); None -> ``"n/a"``."""
    if value is None:
        return "n/a"
    tenths = round(value * 1000)
    return f"{tenths // 10}.{tenths % 10}%"


def _day(us: int) -> str:
    return datetime.fromtimestamp(us // 1_000_000, UTC).strftime("%b %d")


def _money_of(currency: str) -> Callable[[int], str]:
    def fmt(v: int) -> str:
        return money(v, currency)

    return fmt


def _charts(report: PaymentsReport, days: int) -> dict[str, Any]:
    labels = [_day(b) for b in report.period.buckets]
    volume: list[Markup] = []
    for s in report.series:
        code = s.currency.upper()
        volume.append(
            line_chart(
                title=f"Volume in {code}, last {days} days",
                desc=f"Amount of succeeded payments in {code} per day (UTC), "
                f"{labels[0]} to {labels[-1]}; total {money(sum(s.volume), s.currency)}.",
                x_labels=labels,
                series=[Series(code, s.volume)],
                fmt=_money_of(s.currency),
                chart_id=f"volume-{s.currency}",
            )
        )
    counts = line_chart(
        title=f"Succeeded payments, last {days} days",
        desc=f"Number of succeeded payments per day (UTC) and currency; {report.succeeded} in all.",
        x_labels=labels,
        series=[Series(s.currency.upper(), s.count) for s in report.series],
        chart_id="succeeded",
    )
    declines = bar_chart(
        title="Declines by reason",
        desc=f"Failed payments by the error taxonomy's reason; {report.failed} in all.",
        bars=report.declines,
        chart_id="declines",
    )
    return {"labels": labels, "volume": volume, "counts": counts, "declines": declines}


@router.get("")
async def home(request: Request, user: Viewer) -> Response:
    raw = request.query_params.get("days", "")
    days = int(raw) if re.fullmatch(r"[0-9]{1,7}", raw) and int(raw) in PERIODS else _DEFAULT_DAYS
    app = core(request)
    period = Period.last_days(days, app.ctx.now_us())
    reports = ReportsService(app.ctx)
    report = await reports.payments(user.account_id, user.livemode, period)
    billing = await reports.billing(user.account_id, user.livemode, period)
    return render(
        request,
        "dashboard/home.html",
        user=user,
        days=days,
        periods=PERIODS,
        report=report,
        billing=billing,
        success_rate=percent(report.success_rate),
        churn_rate=percent(billing.churn_rate),
        **_charts(report, days),
    )
