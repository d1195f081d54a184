"""stripe-python against paymux's fraud objects, on a real server (SQLite and PostgreSQL):
the charge's ``outcome`` (type, risk_level, risk_score, rule), ``stripe.Review`` list,
retrieve and approve, value lists and their items through the SDK's Radar resources, and a
block raised as the SDK's ``CardError`` with ``decline_code`` ``fraudulent``."""

from __future__ import annotations

import httpx
import pytest
import stripe

from conftest import RunningServer


@pytest.fixture
def sdk(server: RunningServer) -> stripe.StripeClient:
    _, key = server.new_key()
    client = stripe.StripeClient(
        api_key=key, base_addresses={"api": server.url}, max_network_retries=0
    )
    client._test_key = key  # type: ignore[attr-defined]
    return client


def _rule(sdk: stripe.StripeClient, server: RunningServer, text: str) -> None:
    """Rules have no Stripe SDK resource (Radar's are dashboard-only): plain HTTP."""
    r = httpx.post(
        f"{server.url}/v1/fraud/rules",
        data={"rule": text},
        headers={"authorization": f"Bearer {sdk._test_key}"},  # type: ignore[attr-defined]
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_a_reviewed_payment_its_outcome_and_review_through_the_sdk(
    sdk: stripe.StripeClient, server: RunningServer
) -> None:
    _rule(sdk, server, "review if :amount: > 5000")
    pi = sdk.v1.payment_intents.create(
        params={
            "amount": 6000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    assert pi.status == "requires_capture"
    charge = sdk.v1.charges.retrieve(str(pi.latest_charge))
    outcome = charge.outcome
    assert outcome is not None
    assert (outcome.type, outcome.reason, outcome.risk_level) == ("manual_review", "rule", "normal")
    assert outcome.risk_score == 5  # docs/fraud.md: no customer, nothing else
    rule = outcome["rule"]
    assert (rule["action"], rule["predicate"]) == ("review", ":amount: > 5000")

    reviews = sdk.v1.reviews.list(params={"limit": 10})
    (review,) = [r for r in reviews.data if r.payment_intent == pi.id]
    assert isinstance(review, stripe.Review)
    assert (review.open, review.opened_reason, review.reason) == (True, "rule", "rule")
    assert review.charge == charge.id
    same = sdk.v1.reviews.retrieve(review.id)
    assert same.id == review.id and same.livemode is False
    approved = sdk.v1.reviews.approve(review.id)
    assert (approved.open, approved.reason, approved.closed_reason) == (
        False,
        "approved",
        "approved",
    )
    assert sdk.v1.payment_intents.retrieve(pi.id).status == "succeeded"


def test_a_block_is_the_sdks_card_error_and_value_lists_work_through_radar(
    sdk: stripe.StripeClient, server: RunningServer
) -> None:
    value_list = sdk.v1.radar.value_lists.create(
        params={"alias": "blocked_countries_here", "name": "Countries", "item_type": "country"}
    )
    assert isinstance(value_list, stripe.radar.ValueList)
    item = sdk.v1.radar.value_list_items.create(params={"value_list": value_list.id, "value": "us"})
    assert isinstance(item, stripe.radar.ValueListItem) and item.value == "US"
    listed = sdk.v1.radar.value_list_items.list(params={"value_list": value_list.id})
    assert [i.id for i in listed.data] == [item.id]
    _rule(sdk, server, "block if :card_country: in @blocked_countries_here")
    pi = sdk.v1.payment_intents.create(params={"amount": 1500, "currency": "usd"})
    with pytest.raises(stripe.CardError) as caught:
        sdk.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"})
    assert caught.value.code == "card_declined"
    assert caught.value.error is not None and caught.value.error.decline_code == "fraudulent"
    charge = sdk.v1.charges.retrieve("ch_" + pi.id.removeprefix("pi_"))
    assert charge.outcome is not None and charge.outcome.type == "blocked"
    deleted = sdk.v1.radar.value_list_items.delete(item.id)
    assert deleted.deleted is True
