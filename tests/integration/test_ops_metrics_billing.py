"""Issue 16, section 2: the metrics carry "dunning backlog and renewals due, when billing
exists". A real subscription on the sandbox gateway (paymux in process, a frozen clock: see
support/renewal_crash.py), read back from ``database_metrics`` (what /metrics serves) on SQLite
and PostgreSQL: due once its period ends, and in dunning once its renewal is declined.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from prometheus_client import Metric

from conftest import migrated_database_url
from paymux.observability.metrics import database_metrics
from paymux.services.customers import CustomerParams
from support.pgcluster import PgCluster
from support.renewal_crash import FEB_1, HOUR, Billing, billing

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"mbill_{next(_names)}")


def figure(families: list[Metric], name: str) -> float:
    [family] = [f for f in families if f.name == name]
    [sample] = family.samples
    return float(sample.value)


async def billing_figures(b: Billing) -> tuple[float, float]:
    """(renewals due, invoices in dunning) as a scrape reads them now."""
    families = await database_metrics(b.app.ctx.db, b.clock.now_us(), 0)
    return (
        figure(families, "paymux_billing_renewals_due"),
        figure(families, "paymux_billing_dunning_invoices"),
    )


def test_renewals_due_and_the_dunning_backlog_are_reported(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with billing(db, tmp_path) as b:
            await b.subscribe(1200)  # paid at once, renews on February 1st
            assert await billing_figures(b) == (0, 0)
            # A card that attaches but whose charges are declined, from now on.
            declining = await b.app.customers.attach(
                b.account, "pm_card_chargeCustomerFail", b.customer
            )
            await b.app.customers.update(
                b.account, b.customer, CustomerParams(default_payment_method=declining["id"])
            )
            b.advance_to(FEB_1 + HOUR)
            assert await billing_figures(b) == (1, 0)  # due, not renewed yet
            await b.drain()  # the renewal: an invoice, its payment declined, a retry planned
            [(status, attempts)] = await b.sql(
                "select status, attempt_count from invoices where billing_reason = "
                "'subscription_cycle'"
            )
            assert (status, attempts) == ("open", 1)
            assert await billing_figures(b) == (0, 1)

    asyncio.run(main())
