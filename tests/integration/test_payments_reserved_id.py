"""A create under a caller's reserved intent id (``CreateParams.id``: billing's n-th try of an
invoice) that another request made first, after this one looked: this one resumes that
intent, and only when the clash is that intent's id (services/payments.py ``create``). Any
other unique violation in the create's transaction is an error of its own, never turned into
a resumed intent (before: every IntegrityError was taken for the id's clash, and the other
request's intent was answered).

paymux's real services on SQLite and PostgreSQL, against the scripted provider at the
connector seam. The interleaving is forced: the first create is held at the provider's
``open_payment`` (after its read of the id, before its write) while the second makes the
intent; the other violation is a real one, the payment method's insert given the id of a
payment method that exists (as a colliding id would be).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

import paymux.services.payments as payments_service
from conftest import migrated_database_url
from paymux.services.payments import CreateParams
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
RESERVED = "pi_reserved_try_1"


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"pmres_{next(_names)}")


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        gw = ScriptedGateway(open_payments=True)
        gw.shared_tokens.add("tok_shared_visa")  # each use: a fresh payment method
        async with Harness.open(db, tmp, gw=gw) as h:
            await test(h)

    asyncio.run(main())


async def made_meanwhile(h: Harness, first: CreateParams) -> asyncio.Task[dict[str, Any]]:
    """Start ``first`` and hold it after its read of the reserved id; meanwhile another
    request makes the intent with that id (its own provider call is not held)."""
    gate = h.gw.hold("open_payment")
    task = asyncio.create_task(h.app.payments.create(h.account, first))
    await gate.wait_reached()
    other = await h.app.payments.create(
        h.account, CreateParams(amount=1000, currency="usd", id=RESERVED, description="other")
    )
    assert (other["id"], other["description"]) == (RESERVED, "other")
    gate.release()
    return task


def test_a_reserved_id_made_meanwhile_is_resumed(db: str, tmp_path: Path) -> None:
    """The clash is the intent's id: that intent is the answer, nothing of this one kept."""

    async def test(h: Harness) -> None:
        task = await made_meanwhile(
            h, CreateParams(amount=1000, currency="usd", id=RESERVED, description="mine")
        )
        answer = await task
        assert (answer["id"], answer["description"]) == (RESERVED, "other")
        assert [i["id"] for i in await h.intents()] == [RESERVED]
        assert await h.events(RESERVED) == ["payment_intent.created"]

    run(db, tmp_path, test)


def test_another_unique_violation_is_not_taken_for_the_reserved_id(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create's transaction fails on another unique constraint (its payment method's
    id) while an intent with the reserved id exists: the error is raised, not answered with
    the other request's intent; nothing of this create is written."""

    async def test(h: Harness) -> None:
        existing = await h.post(
            "/v1/payment_methods", {"type": "card", "card": {"token": "tok_one"}}
        )
        assert existing.status_code == 200, existing.text
        taken = h.body(existing)["id"]
        real = payments_service._record_payment_method

        async def collide(s: Any, pm: Any, is_sqlite: bool) -> Any:
            pm.id = taken  # a payment method with this id exists: a real unique violation
            return await real(s, pm, is_sqlite)

        monkeypatch.setattr(payments_service, "_record_payment_method", collide)
        task = await made_meanwhile(
            h,
            CreateParams(
                amount=1000, currency="usd", id=RESERVED, payment_method="tok_shared_visa"
            ),
        )
        with pytest.raises(IntegrityError):
            await task
        rows = await h.sql("select id, description from payment_intents")
        assert [tuple(r) for r in rows] == [(RESERVED, "other")]
        assert [r[0] for r in await h.sql("select id from payment_methods")] == [taken]

    run(db, tmp_path, test)
