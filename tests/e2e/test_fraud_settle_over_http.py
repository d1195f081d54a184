"""Real payments over HTTP settle their velocity keys once (a real server on 127.0.0.1 and
the built-in sandbox gateway; SQLite and PostgreSQL): the settle rides on the intent's
UPDATE that sets its small settle column (migration 0038's trigger), whichever event
brings the answer, and a later event of the same confirm (the capture) settles nothing
again; an issuer decline counts a decline on each of its keys; a block counts nothing."""

from __future__ import annotations

import json
from typing import Any

from conftest import Api
from paymux.fraud import velocity

IP = "198.51.100.61"


def _pi(api: Api, amount: int, **params: Any) -> str:
    made = api.ok("POST", "/v1/payment_intents", {"amount": amount, "currency": "usd", **params})
    return str(made["id"])


def _confirm(api: Api, pi_id: str, pm: str) -> Any:
    return api.post(
        f"/v1/payment_intents/{pi_id}/confirm",
        {"payment_method": pm},
        headers={"Paymux-Payer-Ip": IP},
    )


def _buckets(api: Api) -> dict[str, tuple[int, int, int, int | None]]:
    """Per key of the account, over its minutes (the payments may straddle one): attempts,
    settled, declines, the highest gateway risk rank."""
    rows = api.server.sql(
        'SELECT "key", sum(attempts), sum(settled), sum(declines), max(gateway_risk)'
        ' FROM fraud_velocity_buckets WHERE account_id = :a GROUP BY "key"',
        a=api.account_id,
    )
    return {
        str(key): (int(a), int(s), int(d), None if r is None else int(r))
        for key, a, s, d, r in rows
    }


def test_payments_over_http_settle_each_key_once(api: Api) -> None:
    api.ok("POST", "/v1/fraud/rules", {"rule": "block if :amount: = 777"})
    # A held payment of a card the sandbox rates "elevated" (rank 2): settled when it is
    # authorized; its capture (payment_intent.succeeded) settles nothing again.
    held = _pi(api, 2000, capture_method="manual")
    r = _confirm(api, held, "pm_card_riskLevelElevated")
    assert r.status_code == 200 and r.json()["status"] == "requires_capture", r.text
    after_auth = _buckets(api)
    captured = api.ok("POST", f"/v1/payment_intents/{held}/capture")
    assert captured["status"] == "succeeded"
    # An issuer decline (card_declined; the sandbox rates the card "normal", rank 1).
    declined = _pi(api, 1500)
    r = _confirm(api, declined, "pm_card_chargeDeclined")
    assert r.status_code == 402 and r.json()["error"]["code"] == "card_declined", r.text
    assert r.json()["error"]["decline_code"] == "generic_decline"
    # A block (our rule; its record has no minute: no attempt counted): counts nothing.
    blocked = _pi(api, 777)
    r = _confirm(api, blocked, "pm_card_visa")
    assert r.status_code == 402 and r.json()["error"]["decline_code"] == "fraudulent", r.text

    ip = velocity.digest("ip", IP)
    found = _buckets(api)
    # The address: 2 attempts settled (the block is none), 1 decline, rank 2 the highest.
    assert found.pop(ip) == (2, 2, 1, 2)
    # The two cards (the card keys are digests of the sandbox's fingerprints): the
    # elevated one, settled once; the declined one, its decline counted. The blocked
    # payment's card (pm_card_visa) has no row.
    assert sorted(found.values(), key=str) == sorted([(1, 1, 0, 2), (1, 1, 1, 1)], key=str)
    # Right after the authorization: the held payment's two keys settled once already.
    assert sorted(after_auth.values(), key=str) == [(1, 1, 0, 2), (1, 1, 0, 2)]


def test_a_second_confirm_of_the_same_intent_settles_again(api: Api) -> None:
    """A confirm declined by the issuer, then the same intent confirmed again with another
    card and succeeded: each confirm's attempt is settled once (its decision resets the
    intent's settle, ``fraud_settle``, which the first confirm's answer had set), the
    address's row counting both, one of them a decline."""
    ip = "198.51.100.62"
    pi_id = _pi(api, 2500)
    first = api.post(
        f"/v1/payment_intents/{pi_id}/confirm",
        {"payment_method": "pm_card_chargeDeclined"},
        headers={"Paymux-Payer-Ip": ip},
    )
    assert first.status_code == 402 and first.json()["error"]["code"] == "card_declined"
    second = api.post(
        f"/v1/payment_intents/{pi_id}/confirm",
        {"payment_method": "pm_card_visa"},
        headers={"Paymux-Payer-Ip": ip},
    )
    assert second.status_code == 200 and second.json()["status"] == "succeeded", second.text
    # The address: 2 attempts, 2 settled, 1 decline; the sandbox rates both cards "normal".
    assert _buckets(api)[velocity.digest("ip", ip)] == (2, 2, 1, 1)
    # The stored settle is the second confirm's (no decline), internal: not in the intent.
    (settle,) = api.server.sql("SELECT fraud_settle FROM payment_intents WHERE id = :i", i=pi_id)[0]
    settle = json.loads(settle) if isinstance(settle, str) else settle
    assert (settle["declined"], settle["rank"]) == (0, 1)
    assert "fraud_settle" not in api.ok("GET", f"/v1/payment_intents/{pi_id}")
