"""The reconciler against the real sandbox gateway (its own SQLite file), on SQLite and
PostgreSQL: ``paymux reconcile`` as a subprocess, and ``Reconciler`` in-process.

Differences are arranged the way they happen: a success the payer completed at the provider
whose webhook never came (the sandbox's 3-D Secure completed straight on its processor, which
sends nothing), a call whose response was lost, or a record changed behind our back (our row,
or the sandbox's own file).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

from conftest import free_port, make_settings, migrated_database_url
from paymux.config import Settings
from paymux.domain.attempts import IntentState, ProviderStatus, Report
from paymux.domain.errors import PaymuxError
from paymux.domain.states import PaymentIntentStatus as S
from paymux.gateways.sandbox import SandboxGateway
from paymux.services import Paymux
from paymux.services.payments import CreateParams
from paymux.services.reconcile import (
    Difference,
    Reconciler,
    ReconcileReport,
    Resolution,
    Side,
    parse_since,
    plan_intent,
)
from paymux.storage.models import PaymentIntent
from support.pgcluster import PgCluster
from support.processes import PAYMUX, paymux_env

T = TypeVar("T")


@dataclass
class Env:
    tmp: Path
    url: str
    settings: Settings


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> Env:
    url = migrated_database_url(request.param, tmp_path, pg_cluster, f"reconcile_{uuid.uuid4().hex[:12]}")
    # Nobody listens on the port: a webhook the sandbox would send is lost, as in an outage.
    # Attempts count as "young" for 30 s, so a slow machine can't age one past it mid-test;
    # the tests that need an old attempt age it by 60 s in the database.
    settings = make_settings(
        url, tmp_path, free_port(), run_worker=False, attempt_settle_after_seconds=30
    )
    return Env(tmp_path, url, settings)


class World:
    """An in-process paymux on the test's database, one fresh account."""

    def __init__(self, app: Paymux, account: str) -> None:
        self.app = app
        self.account = account

    @property
    def sandbox(self) -> SandboxGateway:
        gateway = self.app.ctx.gateways.sandbox()
        assert gateway is not None
        return gateway

    async def pay(
        self, card: str = "pm_card_visa", amount: int = 2000, capture_method: str = "automatic"
    ) -> dict[str, Any]:
        pi = await self.app.payments.create(
            self.account,
            CreateParams(amount=amount, currency="usd", capture_method=capture_method),
        )
        try:
            return await self.app.payments.confirm(self.account, pi["id"], payment_method=card)
        except PaymuxError as exc:  # a decline: the intent is in the error
            return dict(exc.extra["payment_intent"])

    async def intent(self, pi_id: str) -> dict[str, Any]:
        return await self.app.payments.retrieve(self.account, pi_id)

    async def sql(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        async with self.app.ctx.db.write() as s:
            result = await s.execute(text(statement), params)
            return [tuple(r) for r in result.all()] if result.returns_rows else []

    async def snapshot(self) -> dict[str, Any]:
        """Everything the reconciler could change: intents, refunds, attempts, events, jobs."""
        tables = {
            "payment_intents": "select * from payment_intents order by id",
            "refunds": "select * from refunds order by id",
            "gateway_attempts": "select * from gateway_attempts order by id",
            "events": "select id, type, object_id from events order by id",
            "jobs": "select id, kind, status from jobs order by id",
        }
        return {name: await self.sql(query) for name, query in tables.items()}

    async def events(self, object_id: str) -> list[str]:
        rows = await self.sql(
            "select type from events where object_id = :o order by created_us, id", o=object_id
        )
        return [str(r[0]) for r in rows]

    async def reconcile(self, *, apply: bool = True) -> ReconcileReport:
        return await Reconciler(self.app.ctx, self.app.engine).run(
            since_us=None, gateway=None, apply=apply
        )


def in_world(env: Env, work: Callable[[World], Awaitable[T]], **overrides: Any) -> T:
    async def run() -> T:
        app = Paymux(env.settings.model_copy(update=overrides))
        try:
            account = (await app.accounts.create_key()).account_id
            return await work(World(app, account))
        finally:
            await app.close()

    return asyncio.run(run())


def sandbox_set(env: Env, charge_id: str, **fields: Any) -> None:
    """Change a charge in the sandbox processor's own file, as the provider's side."""
    db = sqlite3.connect(env.tmp / "sandbox.db")
    try:
        data = json.loads(db.execute("select data from objects where id = ?", (charge_id,))
                          .fetchone()[0])
        data.update(fields)
        db.execute("update objects set data = ? where id = ?", (json.dumps(data), charge_id))
        db.commit()
    finally:
        db.close()


def cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PAYMUX), "reconcile", *args],
        env=paymux_env(env.url, env.tmp, PAYMUX_LOG_JSON="false", PAYMUX_LOG_LEVEL="WARNING"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def table(stdout: str) -> tuple[list[list[str]], str]:
    """The printed table's rows (header first), cells split on runs of 2+ spaces, and the
    summary line."""
    lines = stdout.strip().splitlines()
    return [re.split(r"\s{2,}", line.strip()) for line in lines[:-1]], lines[-1]


HEADER = ["id", "gateway", "ours", "theirs", "resolution", "note"]


# -- 1. a lost success webhook ---------------------------------------------------------------


def test_a_success_whose_webhook_was_lost_is_applied_by_the_cli(env: Env) -> None:
    async def arrange(w: World) -> tuple[str, str]:
        fine = await w.pay()
        pending = await w.pay("pm_card_threeDSecure2Required")
        assert pending["status"] == "requires_action"
        # The payer passes 3-D Secure at the provider; the webhook never reaches us.
        w.sandbox.processor.complete_3ds(pending["gateway_reference"], True)
        return fine["id"], pending["id"]

    fine, lost = in_world(env, arrange)
    done = cli(env, "--since", "1h")
    assert done.returncode == 0, done.stdout + done.stderr
    rows, summary = table(done.stdout)
    assert rows == [
        HEADER,
        [lost, "sandbox", "requires_action", "succeeded authorized=2000 captured=2000",
         "applied", "payment_intent.succeeded"],
    ]
    assert summary == "checked 2, differences 1, applied 1, needs attention 0, errors 0"

    async def check(w: World) -> None:
        async with w.app.ctx.db.read() as s:
            pi = await s.get(PaymentIntent, lost)
        assert pi is not None
        assert (pi.status, pi.amount_received, pi.amount_capturable, pi.next_action) == (
            "succeeded", 2000, 0, None
        )
        assert (await w.events(lost)).count("payment_intent.succeeded") == 1
        assert (await w.events(fine)).count("payment_intent.succeeded") == 1

    in_world(env, check)
    # Run again: the two sides agree now.
    again = cli(env, "--since", "1h")
    assert again.returncode == 0
    assert again.stdout.strip() == "checked 2, differences 0, applied 0, needs attention 0, errors 0"


# -- 2. differences that need a person --------------------------------------------------------


def test_a_succeeded_payment_the_provider_does_not_know_needs_attention(env: Env) -> None:
    async def arrange(w: World) -> tuple[str, dict[str, Any]]:
        pi = await w.pay()
        await w.sql(
            "update payment_intents set gateway_reference = 'ch_sbx_unknown' where id = :i",
            i=pi["id"],
        )
        return pi["id"], await w.snapshot()

    pi_id, before = in_world(env, arrange)
    done = cli(env)
    assert done.returncode == 1, done.stdout + done.stderr
    rows, summary = table(done.stdout)
    assert rows[0] == HEADER
    assert rows[1][:5] == [pi_id, "sandbox", "succeeded received=2000", "no record",
                           "needs_attention"]
    assert rows[1][5].startswith(
        "the provider has no record of the payment ch_sbx_unknown (resource_missing:"
    )
    assert len(rows) == 2
    assert summary == "checked 1, differences 1, applied 0, needs attention 1, errors 0"

    async def after(w: World) -> dict[str, Any]:
        return await w.snapshot()

    assert in_world(env, after) == before


def test_a_succeeded_payment_the_provider_shows_canceled_needs_attention(env: Env) -> None:
    async def work(w: World) -> None:
        pi = await w.pay()
        sandbox_set(env, pi["gateway_reference"], status="canceled", amount_captured=0)
        before = await w.snapshot()
        report = await w.reconcile()
        assert report.rows == [
            Difference(
                pi["id"], "payment_intent", "sandbox", Side("succeeded", (("received", 2000),)),
                Side("canceled"), Resolution.NEEDS_ATTENTION,
                "we record succeeded, the provider canceled: not moved automatically",
            )
        ]
        assert (report.checked, report.exit_code) == (1, 1)
        assert await w.snapshot() == before

    in_world(env, work)


def test_the_provider_captured_more_than_we_record(env: Env) -> None:
    async def work(w: World) -> None:
        pi = await w.pay(amount=10000, capture_method="manual")
        await w.app.payments.capture(w.account, pi["id"], 7500)
        sandbox_set(env, pi["gateway_reference"], amount_captured=10000)
        before = await w.snapshot()
        [row] = (await w.reconcile()).rows
        assert (row.resolution, str(row.ours), str(row.theirs), row.note) == (
            Resolution.NEEDS_ATTENTION,
            "succeeded received=7500",
            "succeeded authorized=10000 captured=10000",
            "the provider captured 10000, we record 7500",
        )
        assert await w.snapshot() == before

    in_world(env, work)


@pytest.mark.parametrize("refund_late", [True, False])
def test_money_on_a_canceled_intent(env: Env, refund_late: bool) -> None:
    """Our intent says canceled, the provider captured 2000: recorded and given back (a
    return_late_payment job) when PAYMUX_REFUND_LATE_PAYMENTS is on, else left to a person."""

    async def work(w: World) -> None:
        pi = await w.pay()
        await w.sql(
            "update payment_intents set status = 'canceled', amount_received = 0 where id = :i",
            i=pi["id"],
        )
        before = await w.snapshot()
        report = await w.reconcile()
        [row] = report.rows
        assert (str(row.ours), str(row.theirs)) == (
            "canceled", "succeeded authorized=2000 captured=2000"
        )
        if refund_late:
            assert (row.resolution, row.note) == (
                Resolution.APPLIED, "payment_intent.captured_after_cancel"
            )
            assert report.exit_code == 0
            after = await w.intent(pi["id"])
            assert (after["status"], after["amount_received"]) == ("canceled", 2000)
            jobs = await w.sql("select kind, payload from jobs where kind = 'return_late_payment'")
            assert [(k, json.loads(p) if isinstance(p, str) else p) for k, p in jobs] == [
                ("return_late_payment", {"pi_id": pi["id"]})
            ]
        else:
            assert row.resolution is Resolution.NEEDS_ATTENTION
            assert "PAYMUX_REFUND_LATE_PAYMENTS is off" in row.note
            assert report.exit_code == 1
            assert await w.snapshot() == before

    in_world(env, work, refund_late_payments=refund_late)


# -- 3. --dry-run ---------------------------------------------------------------------------


def test_a_dry_run_lists_the_difference_and_changes_nothing(env: Env) -> None:
    async def work(w: World) -> str:
        pi = await w.pay("pm_card_threeDSecure2Required")
        w.sandbox.processor.complete_3ds(pi["gateway_reference"], True)
        before = await w.snapshot()
        report = await w.reconcile(apply=False)
        assert report.rows == [
            Difference(
                pi["id"], "payment_intent", "sandbox", Side("requires_action"),
                Side("succeeded", (("authorized", 2000), ("captured", 2000))),
                Resolution.WOULD_APPLY, "payment_intent.succeeded",
            )
        ]
        assert (report.checked, report.exit_code, report.dry_run) == (1, 0, True)
        assert await w.snapshot() == before
        return str(pi["id"])

    pi_id = in_world(env, work)
    done = cli(env, "--dry-run", "--gateway", "sandbox")
    assert done.returncode == 0, done.stdout + done.stderr
    rows, summary = table(done.stdout)
    assert rows[1] == [pi_id, "sandbox", "requires_action",
                       "succeeded authorized=2000 captured=2000", "would_apply",
                       "payment_intent.succeeded"]
    assert summary == (
        "checked 1, differences 1, would apply 1, needs attention 0, errors 0 "
        "(dry run: nothing changed)"
    )

    async def still(w: World) -> None:
        [(status,)] = await w.sql("select status from payment_intents where id = :i", i=pi_id)
        assert status == "requires_action"

    in_world(env, still)


# -- 4. nothing to do -----------------------------------------------------------------------


def test_no_differences(env: Env) -> None:
    async def arrange(w: World) -> None:
        await w.pay()  # succeeded
        await w.pay("pm_card_chargeDeclined")  # requires_payment_method, a failed charge
        await w.pay("pm_card_mastercard", 5000, "manual")  # requires_capture
        partial = await w.pay("pm_card_mastercard", 10000, "manual")
        await w.app.payments.capture(w.account, partial["id"], 7500)
        refunded = await w.pay()
        await w.app.refunds.create(w.account, refunded["id"], 500, "requested_by_customer")
        voided = await w.pay("pm_card_visa", 3000, "manual")
        await w.app.payments.cancel(w.account, voided["id"])
        await w.pay("pm_card_threeDSecure2Required")  # requires_action on both sides
        await w.app.payments.create(w.account, CreateParams(amount=100, currency="usd"))
        assert [
            s for (s,) in await w.sql("select status from payment_intents order by created_us")
        ] == ["succeeded", "requires_payment_method", "requires_capture", "succeeded",
              "succeeded", "canceled", "requires_action", "requires_payment_method"]

    in_world(env, arrange)
    done = cli(env, "--since", "2020-01-01")
    assert done.returncode == 0, done.stdout + done.stderr
    # 7 intents that reached the sandbox (not the one never confirmed) and 1 refund.
    assert done.stdout.strip() == "checked 8, differences 0, applied 0, needs attention 0, errors 0"
    future = cli(env, "--since", "2999-01-01T00:00:00")
    assert future.stdout.strip() == "checked 0, differences 0, applied 0, needs attention 0, errors 0"


# -- refunds, pending calls, provider errors --------------------------------------------------


def test_a_refund_whose_success_webhook_was_lost_is_applied(env: Env) -> None:
    async def work(w: World) -> None:
        pi = await w.pay()
        refund = await w.app.refunds.create(w.account, pi["id"], 500, "requested_by_customer")
        assert refund["status"] == "succeeded"
        # As if the refund had answered pending and its webhook were lost.
        await w.sql("update refunds set status = 'pending' where id = :r", r=refund["id"])
        await w.sql(
            "update payment_intents set amount_refunded = 0, amount_refund_pending = 500 "
            "where id = :i",
            i=pi["id"],
        )
        report = await w.reconcile()
        assert report.rows == [
            Difference(
                refund["id"], "refund", "sandbox", Side("pending", (("amount", 500),)),
                Side("succeeded", (("amount", 500),)), Resolution.APPLIED,
                "refund pending -> succeeded",
            )
        ]
        assert report.checked == 2
        after = await w.intent(pi["id"])
        assert (after["amount_refunded"], after["amount_received"]) == (500, 2000)
        [(status,)] = await w.sql("select status from refunds where id = :r", r=refund["id"])
        assert status == "succeeded"
        assert "charge.refunded" in await w.events(pi["id"])

    in_world(env, work)


def test_a_call_whose_response_was_lost_is_settled_through_the_engine(env: Env) -> None:
    async def work(w: World) -> None:
        w.sandbox.processor.add_fault(
            "authorize", "lose_response", env.settings.gateway_retries + 1
        )
        pi = await w.pay()
        assert pi["status"] == "processing"
        [(attempt_id,)] = await w.sql(
            "select id from gateway_attempts where object_id = :i and status = 'pending'",
            i=pi["id"],
        )
        # Younger than PAYMUX_ATTEMPT_SETTLE_AFTER_SECONDS: still its caller's; skipped.
        early = await w.reconcile()
        assert (early.rows, early.checked, early.skipped) == ([], 0, 1)
        await w.sql(
            "update gateway_attempts set created_us = created_us - 60000000, "
            "updated_us = updated_us - 60000000 where id = :a",
            a=attempt_id,
        )
        report = await w.reconcile()
        [row] = report.rows
        assert (row.object_id, str(row.ours), str(row.theirs), row.resolution, row.note) == (
            pi["id"], "processing", "succeeded authorized=2000 captured=2000",
            Resolution.APPLIED, f"authorize call {attempt_id} pending: settled, now succeeded",
        )
        after = await w.intent(pi["id"])
        assert (after["status"], after["amount_received"]) == ("succeeded", 2000)
        assert len(w.sandbox.processor.charges_for(pi["id"])) == 1

    in_world(env, work)


def test_a_lost_call_after_a_decline_is_not_confused_with_the_declined_payment(
    env: Env,
) -> None:
    """The intent still names the first, failed charge; the pending call made another."""

    async def work(w: World) -> None:
        declined = await w.pay("pm_card_chargeDeclined")
        failed_charge = declined["gateway_reference"]
        w.sandbox.processor.add_fault(
            "authorize", "lose_response", env.settings.gateway_retries + 1
        )
        pi = await w.app.payments.confirm(w.account, declined["id"], payment_method="pm_card_visa")
        assert (pi["status"], pi["gateway_reference"]) == ("processing", failed_charge)
        await w.sql(
            "update gateway_attempts set created_us = created_us - 60000000, "
            "updated_us = updated_us - 60000000 where object_id = :i and status = 'pending'",
            i=pi["id"],
        )
        dry = await w.reconcile(apply=False)
        [row] = dry.rows
        assert (str(row.theirs), row.resolution) == (
            "succeeded authorized=2000 captured=2000", Resolution.WOULD_APPLY
        )
        [row] = (await w.reconcile()).rows
        assert row.resolution is Resolution.APPLIED
        after = await w.intent(pi["id"])
        assert (after["status"], after["amount_received"]) == ("succeeded", 2000)
        assert after["gateway_reference"] not in (None, failed_charge)
        charges = w.sandbox.processor.charges_for(pi["id"])
        assert sorted(c["status"] for c in charges) == ["failed", "succeeded"]

    in_world(env, work)


def test_a_call_past_the_key_retention_with_no_provider_record_needs_attention(env: Env) -> None:
    async def work(w: World) -> None:
        w.sandbox.idempotency_retention_seconds = 30.0
        w.sandbox.processor.add_fault("authorize", "timeout", env.settings.gateway_retries + 1)
        pi = await w.pay()
        assert pi["status"] == "processing"
        await w.sql(
            "update gateway_attempts set created_us = created_us - 60000000, "
            "updated_us = updated_us - 60000000 where object_id = :i",
            i=pi["id"],
        )
        before = await w.snapshot()
        report = await w.reconcile()
        [row] = report.rows
        assert (str(row.ours), row.theirs, row.resolution) == (
            "processing", Side("no record"), Resolution.NEEDS_ATTENTION
        )
        assert "past the gateway's retention" in row.note
        assert report.exit_code == 1
        assert await w.snapshot() == before
        assert w.sandbox.processor.charges_for(pi["id"]) == []

    in_world(env, work)


def test_a_provider_that_cannot_be_asked_makes_an_error_row(env: Env) -> None:
    async def work(w: World) -> None:
        pi = await w.pay()
        w.sandbox.processor.add_fault("retrieve", "server_error", env.settings.gateway_retries + 1)
        report = await w.reconcile()
        [row] = report.rows
        assert (row.object_id, row.theirs, row.resolution) == (pi["id"], None, Resolution.ERROR)
        assert row.note == (
            "the provider could not be asked: GatewayUnavailable: sandbox retrieve: HTTP 500"
        )
        assert (report.checked, report.exit_code) == (1, 3)

    in_world(env, work)


# -- the pure parts ---------------------------------------------------------------------------


def test_parse_since() -> None:
    now = 1_800_000_000 * 1_000_000
    assert parse_since("24h", now) == now - 24 * 3600 * 1_000_000
    assert parse_since("30m", now) == now - 1800 * 1_000_000
    assert parse_since("7d", now) == now - 7 * 86400 * 1_000_000
    assert parse_since("2026-11-30", now) == 1_795_996_800 * 1_000_000
    assert parse_since("2026-11-30T12:00:00+01:00", now) == (1_795_996_800 + 11 * 3600) * 10**6
    with pytest.raises(ValueError, match="neither an age"):
        parse_since("yesterday", now)


@pytest.mark.parametrize(
    ("ours", "theirs", "plan"),
    [
        (IntentState(S.SUCCEEDED, 2000, amount_received=2000),
         Report(ProviderStatus.SUCCEEDED, 2000, 2000), "none"),
        (IntentState(S.PROCESSING, 2000), Report(ProviderStatus.SUCCEEDED, 2000, 2000), "apply"),
        (IntentState(S.REQUIRES_CAPTURE, 2000, amount_capturable=2000),
         Report(ProviderStatus.CANCELED), "apply"),
        (IntentState(S.SUCCEEDED, 2000, amount_received=2000),
         Report(ProviderStatus.REQUIRES_CAPTURE, 2000), "attention"),
        (IntentState(S.SUCCEEDED, 2000, amount_received=1500),
         Report(ProviderStatus.SUCCEEDED, 2000, 2000), "attention"),
        (IntentState(S.REQUIRES_PAYMENT_METHOD, 2000), Report(ProviderStatus.FAILED), "none"),
        (IntentState(S.CANCELED, 2000), Report(ProviderStatus.FAILED), "none"),
        (IntentState(S.CANCELED, 2000, amount_received=2000, amount_refunded=2000),
         Report(ProviderStatus.SUCCEEDED, 2000, 2000), "none"),
        (IntentState(S.CANCELED, 2000, amount_received=2000),
         Report(ProviderStatus.SUCCEEDED, 2000, 2000), "return_late"),
    ],
)
def test_plan_intent(ours: IntentState, theirs: Report, plan: str) -> None:
    assert plan_intent(ours, theirs, refund_late_payments=True)[0] == plan

