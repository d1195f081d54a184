"""A confirmation's answer that arrives after the provider's webhook settled its attempt
keeps what only the answer carries (services/attempts.py, ``_late_three_d_secure``): the
webhook's object holds the payment's status, not its 3-D Secure result, nor the provider's
risk (Stripe's ``outcome.risk_level`` / ``risk_score``), nor the card network's transaction id
of a card saved for later payments. PayPal's capture webhook beats the capture's own answer
often enough that a browser test lost the 3-D Secure result 1 run in 3.

The interleaving is forced: the authorize call is held at the connector seam once the
provider acted (the scripted fake's ``hold(after=True)``), the provider's webhook is
delivered through paymux's inbound pipeline meanwhile (the intent succeeds, the attempt is
settled), then the answer is let go. The same confirmation with the answer first is the
control. paymux's real services in process, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_three_d_secure_api import AUTHENTICATED

from paymux.gateways.base import ThreeDSecure
from support.databases import migrated_database_fixture
from support.harness import Harness

db = migrated_database_fixture("late_3ds")

NETWORK_ID = "ntx_latewebhookfirst"
# What the authorize's answer carries beyond the payment's status (the provider's webhook
# object carries none of it).
ANSWER_ONLY: dict[str, Any] = {
    "three_d_secure": ThreeDSecure(
        "authenticated", authentication_flow="challenge", version="2.2.0", liability_shift=True
    ),
    "risk_level": "elevated",
    "risk_score": 67,
    "network_transaction_id": NETWORK_ID,
}


def _json(value: Any) -> Any:
    """A JSON column as a value (SQLite's driver returns its text)."""
    return json.loads(value) if isinstance(value, str) else value


async def _confirmed(
    h: Harness, *, webhook_first: bool, answer: dict[str, Any] = ANSWER_ONLY
) -> dict[str, Any]:
    """A customer's card payment that saves the card (``setup_future_usage``), confirmed
    with the authorize's answer (carrying ``answer``) held until the provider's webhook was
    applied (``webhook_first``) or not; the intent's and its payment method's rows after."""
    h.gw.answer_fields = dict(answer)
    r = await h.post("/v1/customers", {"email": "payer@example.com"})
    assert r.status_code == 200, r.text
    r = await h.post(
        "/v1/payment_intents",
        {
            "amount": 4100,
            "currency": "usd",
            "customer": h.body(r)["id"],
            "payment_method": "tok_visa",
            "setup_future_usage": "off_session",
        },
    )
    assert r.status_code == 200, r.text
    pi_id = h.body(r)["id"]
    gate = h.gw.hold("authorize", after=True)
    request = asyncio.create_task(h.post(f"/v1/payment_intents/{pi_id}/confirm"))
    try:
        await gate.wait_reached()  # the provider charged; its answer is held
        if webhook_first:
            await h.deliver_all()
            [(status, attempts)] = await h.sql(
                "select p.status, (select count(*) from gateway_attempts a where "
                "a.object_id = p.id and a.status = 'pending') from payment_intents p "
                "where p.id = :i",
                i=pi_id,
            )
            assert (status, attempts) == ("succeeded", 0)  # the webhook settled it first
    finally:
        gate.release()
    response = await request
    assert response.status_code == 200, response.text
    assert h.body(response)["status"] == "succeeded"
    if not webhook_first:
        await h.deliver_all()  # late now: changes nothing
    [(tds, risk_level, risk_score, network_id)] = await h.sql(
        "select p.three_d_secure, p.risk_level, p.gateway_risk_score, m.network_transaction_id "
        "from payment_intents p join payment_methods m on m.id = p.payment_method_id "
        "where p.id = :i",
        i=pi_id,
    )
    return {
        "three_d_secure": _json(tds),
        "risk_level": risk_level,
        "risk_score": risk_score,
        "network_transaction_id": network_id,
    }


@pytest.mark.parametrize("webhook_first", [True, False], ids=["webhook-first", "answer-first"])
def test_the_answer_only_fields_are_kept_whichever_settles_the_attempt_first(
    db: str, tmp_path: Path, webhook_first: bool
) -> None:
    async def main() -> dict[str, Any]:
        async with Harness.open(db, tmp_path) as h:
            return await _confirmed(h, webhook_first=webhook_first)

    recorded = asyncio.run(main())
    assert recorded == {
        "three_d_secure": AUTHENTICATED,  # as the row records it
        "risk_level": "elevated",
        "risk_score": 67,
        "network_transaction_id": NETWORK_ID,
    }


# The risk in the answer; the card's bucket row (risk rank: normal 1, elevated 2, highest 3;
# score) and the next payment's facts (level, score) that it makes.
RISKS = {
    "level-and-score": ({"risk_level": "elevated", "risk_score": 67}, (2, 67), ("elevated", 67)),
    "score-only": ({"risk_score": 81}, (None, 81), (None, 81)),
    "level-only": ({"risk_level": "highest"}, (3, None), ("highest", None)),
}


@pytest.mark.parametrize("risk", list(RISKS))
@pytest.mark.parametrize("webhook_first", [True, False], ids=["webhook-first", "answer-first"])
def test_the_answer_s_risk_reaches_the_card_s_velocity_whichever_settles_first(
    db: str, tmp_path: Path, webhook_first: bool, risk: str
) -> None:
    """The risk only the answer carries is recorded with the card's velocity counts when the
    webhook settled them first (``velocity.raise_risk``), as the settle records it when the
    answer comes first: the card's next payment decides with it (``:gateway_risk_level:``,
    ``:gateway_risk_score:``) either way."""
    answer, bucket, seen = RISKS[risk]

    async def main() -> tuple[Any, ...]:
        async with Harness.open(db, tmp_path) as h:
            await _confirmed(h, webhook_first=webhook_first, answer=answer)
            [(record_text, customer, pm)] = await h.sql(
                "select fraud_outcome, customer_id, payment_method_id from payment_intents"
                " where status = 'succeeded'"
            )
            record = _json(record_text)
            card, minute = record["keys"]["card_fingerprint"], record["minute"]
            buckets = await h.sql(
                "select gateway_risk, gateway_risk_score, attempts, settled"
                ' from fraud_velocity_buckets where "key" = :k and minute = :m',
                k=card,
                m=minute,
            )
            h.gw.answer_fields = {}
            r = await h.post(
                "/v1/payment_intents",
                {
                    "amount": 1200,
                    "currency": "usd",
                    "customer": customer,
                    "payment_method": pm,  # the card the first payment saved
                    "confirm": True,
                },
            )
            assert r.status_code == 200, r.text
            [(next_text,)] = await h.sql(
                "select fraud_outcome from payment_intents where id = :i", i=h.body(r)["id"]
            )
            following = _json(next_text)
            return buckets, card, following["keys"]["card_fingerprint"], following["facts"]

    buckets, card, next_card, facts = asyncio.run(main())
    # The card's row of the minute: one attempt, settled, with the answer's risk.
    assert [tuple(row) for row in buckets] == [(*bucket, 1, 1)]
    assert next_card == card  # the same card, so its next payment reads the row
    assert (facts.get("gateway_risk_level"), facts.get("gateway_risk_score")) == seen
