"""A review on money already captured: rejecting it refunds (issue 13, "reject -> cancel or
refund"), on SQLite and PostgreSQL, over HTTP (the ASGI app in process) against the scripted
provider at the connector seam.

The money is captured at once when the payment's gateway can't hold funds: its connector
doesn't declare ``manual_capture``. Such a connector is installed here as a plugin is, an
entry point of the ``paymux.connectors`` group in a distribution on ``sys.path`` (in a
temporary directory, removed after the test), named as the scripted provider is. A
``review`` rule then lets the payment be captured, its review opens when it succeeds, and
rejecting it refunds the whole amount at the provider, with ``review.closed`` (``refunded``).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import migrated_database_url
from paymux.gateways.connectors import clear_connector_cache, connectors
from support.fake_gateway import Outcome, ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
NAME = "noholdpay"
_PLUGIN = f'''
from pydantic import BaseModel, ConfigDict

from paymux.gateways.connectors import Connector


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")


def build(credentials, env):
    raise RuntimeError("the tests hand paymux the scripted provider itself")


CONNECTOR = Connector(
    name="{NAME}",
    credentials=Credentials,
    build=build,
    from_environment=lambda settings: None,
    capabilities=frozenset({{"refunds", "partial_capture", "vault"}}),  # no manual_capture
)
'''


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"fraud_refund_{next(_names)}")


@pytest.fixture
def cannot_hold(tmp_path: Path) -> Iterator[None]:
    """The ``noholdpay`` connector (no ``manual_capture``), installed for this test only."""
    site = tmp_path / "site"
    dist = site / "paymux_nohold-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "paymux_nohold.py").write_text(textwrap.dedent(_PLUGIN))
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: paymux-nohold\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[paymux.connectors]\n{NAME} = paymux_nohold:CONNECTOR\n"
    )
    sys.path.insert(0, str(site))
    clear_connector_cache()
    try:
        assert "manual_capture" not in connectors()[NAME].capabilities
        yield
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("paymux_nohold", None)
        clear_connector_cache()


async def ok(h: Harness, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await h.post(path, body or {})
    assert r.status_code == 200, r.text
    return h.body(r)


async def reviewed_and_captured(h: Harness, amount: int = 6000) -> tuple[str, dict[str, Any]]:
    """A payment a review rule matched, captured at once; returns it and its open review."""
    rule = await ok(h, "/v1/fraud/rules", {"rule": "review if :amount: >= 5000"})
    pi = await ok(h, "/v1/payment_intents", {"amount": amount, "currency": "usd"})
    done = await ok(h, f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
    assert (done["status"], done["amount_received"]) == ("succeeded", amount)
    assert h.gw.money_captured(pi["id"]) == amount  # captured: nothing was held
    reviews = (await h.get("/v1/reviews?open=true"))["data"]
    assert [(r["payment_intent"], r["rule"], r["open"]) for r in reviews] == [
        (pi["id"], rule["id"], True)
    ]
    return pi["id"], reviews[0]


def test_rejecting_the_review_of_a_captured_payment_refunds_it(
    db: str, tmp_path: Path, cannot_hold: None
) -> None:
    async def main() -> None:
        gw = ScriptedGateway(NAME)
        async with Harness.open(db, tmp_path, gw=gw) as h:
            pi_id, review = await reviewed_and_captured(h)
            h.advance(1)  # the events in order of time
            rejected = await ok(h, f"/v1/reviews/{review['id']}/reject")
            assert (rejected["open"], rejected["closed_reason"]) == (False, "refunded")
            assert h.gw.money_refunded(pi_id) == 6000  # at the provider: the whole amount
            assert h.gw.calls["refund"] == 1
            refunds = (await h.get(f"/v1/refunds?payment_intent={pi_id}"))["data"]
            assert [(r["amount"], r["status"], r["reason"]) for r in refunds] == [
                (6000, "succeeded", "fraudulent")
            ]
            assert await h.events(review["id"]) == ["review.opened", "review.closed"]
            again = await h.post(f"/v1/reviews/{review['id']}/reject")
            assert again.status_code == 400, again.text  # closed: nothing more moves
            assert h.gw.calls["refund"] == 1

    asyncio.run(main())


def test_a_lost_refund_answer_is_recovered_and_the_review_closes_once(
    db: str, tmp_path: Path, cannot_hold: None
) -> None:
    async def main() -> None:
        gw = ScriptedGateway(NAME)
        async with Harness.open(db, tmp_path, gw=gw) as h:
            pi_id, review = await reviewed_and_captured(h)
            h.advance(1)  # the events in order of time
            # every try of the refund reaches the provider, and every answer is lost
            h.gw.script("refund", *[Outcome.lose_response()] * 4)
            r = await h.post(f"/v1/reviews/{review['id']}/reject")
            assert r.status_code == 200, r.text
            # the refund's answer is unknown: the review stays open until it is known
            assert (h.body(r)["open"], h.body(r)["closed_reason"]) == (True, None)
            assert h.gw.money_refunded(pi_id) == 6000  # done at the provider, once
            h.advance(3600)
            await h.drain()
            closed = await h.get(f"/v1/reviews/{review['id']}")
            assert (closed["open"], closed["closed_reason"]) == (False, "refunded")
            assert h.gw.money_refunded(pi_id) == 6000  # the recovery refunded nothing more
            assert len(h.gw.refunds_for(pi_id)) == 1
            assert await h.events(review["id"]) == ["review.opened", "review.closed"]

    asyncio.run(main())


def test_approving_the_review_of_a_captured_payment_moves_no_money(
    db: str, tmp_path: Path, cannot_hold: None
) -> None:
    async def main() -> None:
        gw = ScriptedGateway(NAME)
        async with Harness.open(db, tmp_path, gw=gw) as h:
            pi_id, review = await reviewed_and_captured(h)
            calls = sum(h.gw.calls.values())
            approved = await ok(h, f"/v1/reviews/{review['id']}/approve")
            assert (approved["open"], approved["closed_reason"]) == (False, "approved")
            assert sum(h.gw.calls.values()) == calls  # no gateway call
            assert h.gw.money_captured(pi_id) == 6000 and h.gw.money_refunded(pi_id) == 0

    asyncio.run(main())


def test_a_partial_refund_leaves_the_review_open_and_the_rest_closes_it(
    db: str, tmp_path: Path, cannot_hold: None
) -> None:
    """``charge.refunded`` follows a partial refund too: the review stays open (the rest
    of the money is still the merchant's to decide on) until everything went back."""

    async def main() -> None:
        gw = ScriptedGateway(NAME)
        async with Harness.open(db, tmp_path, gw=gw) as h:
            pi_id, review = await reviewed_and_captured(h)
            h.advance(1)
            await ok(h, "/v1/refunds", {"payment_intent": pi_id, "amount": 100})
            after_part = await h.get(f"/v1/reviews/{review['id']}")
            assert (after_part["open"], after_part["closed_reason"]) == (True, None)
            h.advance(1)
            await ok(h, "/v1/refunds", {"payment_intent": pi_id})  # the other 5,900
            assert h.gw.money_refunded(pi_id) == 6000
            closed = await h.get(f"/v1/reviews/{review['id']}")
            assert (closed["open"], closed["closed_reason"]) == (False, "refunded")
            assert await h.events(review["id"]) == ["review.opened", "review.closed"]

    asyncio.run(main())


def test_approving_while_the_rejects_refund_is_in_flight_is_refused(
    db: str, tmp_path: Path, cannot_hold: None
) -> None:
    """Reject, the refund's answer lost (money going back, not known yet): an approve is a
    400 and the review stays open; the recovery closes it ``refunded``, one refund."""

    async def main() -> None:
        gw = ScriptedGateway(NAME)
        async with Harness.open(db, tmp_path, gw=gw) as h:
            pi_id, review = await reviewed_and_captured(h)
            h.advance(1)
            h.gw.script("refund", *[Outcome.lose_response()] * 4)
            r = await h.post(f"/v1/reviews/{review['id']}/reject")
            assert r.status_code == 200 and h.body(r)["open"] is True, r.text
            approve = await h.post(f"/v1/reviews/{review['id']}/approve")
            assert approve.status_code == 400, approve.text
            assert h.body(approve)["error"]["code"] == "payment_intent_unexpected_state"
            assert "money is moving" in h.body(approve)["error"]["message"]
            still = await h.get(f"/v1/reviews/{review['id']}")
            assert (still["open"], still["closed_reason"]) == (True, None)
            h.advance(3600)
            await h.drain()
            closed = await h.get(f"/v1/reviews/{review['id']}")
            assert (closed["open"], closed["closed_reason"]) == (False, "refunded")
            assert len(h.gw.refunds_for(pi_id)) == 1 and h.gw.money_refunded(pi_id) == 6000

    asyncio.run(main())
