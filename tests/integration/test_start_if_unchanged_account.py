"""``AttemptEngine.start_if_unchanged`` names the intent by its key, status and count, not its
account (a plan without statistics walked the account's intents otherwise: issue 10), and
checks the row's account after the UPDATE. A caller that passes another account's intent
(never the case: the caller read it as its account's) gets an error, and its transaction
rolls back: the intent is not moved and no attempt is recorded. Both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from paymux.domain.attempts import Operation
from paymux.storage.models import GatewayAttempt, PaymentIntent
from support.databases import migrated_database_fixture
from support.harness import Harness

db_url = migrated_database_fixture("start_unchanged")


def test_another_account_s_intent_is_refused_and_nothing_is_written(
    db_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with Harness.open(db_url, tmp_path) as h:
            made = await h.post(
                "/v1/payment_intents",
                {"amount": 1500, "currency": "usd", "payment_method": "tok_visa"},
            )
            assert made.status_code == 200, made.text
            pi = made.json()

            async def row() -> tuple[str, int]:
                [(status, count)] = await h.sql(
                    "select status, confirm_count from payment_intents where id = :i", i=pi["id"]
                )
                return str(status), int(count)

            async def start(as_account: str) -> tuple[PaymentIntent, GatewayAttempt] | None:
                async with h.app.ctx.db.write() as s:
                    return await h.app.engine.start_if_unchanged(
                        s,
                        pi["id"],
                        as_account,
                        Operation.AUTHORIZE,
                        status="requires_confirmation",
                        confirm_count=0,
                        idempotency_key=f"{pi['id']}:authorize:1",
                        request={"token": "tok_x"},
                        changes={"confirm_count": 1},
                    )

            assert await row() == ("requires_confirmation", 0)
            with pytest.raises(RuntimeError, match="another account's"):
                await start("acct_someone_else")
            assert await row() == ("requires_confirmation", 0)
            attempts = await h.sql(
                "select count(*) from gateway_attempts where object_id = :i", i=pi["id"]
            )
            assert attempts[0][0] == 0
            assert h.gw.calls.get("authorize", 0) == 0
            # The account's own start of the same intent goes through.
            started = await start(h.account)
            assert started is not None
            moved, attempt = started
            assert (moved.status, moved.confirm_count) == ("processing", 1)
            assert attempt.object_id == pi["id"]
            assert await row() == ("processing", 1)

    asyncio.run(scenario())
