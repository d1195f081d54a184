"""Stripe's ``setup_intent.*`` webhooks as the Stripe connector reads them: the events that say
a setup of ours ended become a SetupUpdate (our id from the metadata, Stripe's id); the
others, and SetupIntents another integration made on the same account, are left alone."""

from __future__ import annotations

from typing import Any

import pytest

from paymux.gateways.base import GatewayStatus, InboundEvent, SetupUpdate
from paymux.gateways.stripe.connector import setup_update


def event(kind: str, **obj: Any) -> InboundEvent:
    body = {"id": "seti_1Abc", "object": "setup_intent", "metadata": {"paymux_id": "seti_ours"}}
    body.update(obj)
    payload = {"id": "evt_1", "object": "event", "type": kind, "data": {"object": body}}
    return InboundEvent("stripe", "evt_1", kind, payload)


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("setup_intent.succeeded", GatewayStatus.SUCCEEDED),
        ("setup_intent.setup_failed", GatewayStatus.FAILED),
        ("setup_intent.canceled", GatewayStatus.CANCELED),
    ],
)
def test_an_ended_setup_of_ours_is_news(kind: str, status: GatewayStatus) -> None:
    assert setup_update(event(kind)) == SetupUpdate("seti_ours", "seti_1Abc", status)


@pytest.mark.parametrize("kind", ["setup_intent.created", "setup_intent.requires_action"])
def test_events_that_follow_our_own_calls_are_not(kind: str) -> None:
    assert setup_update(event(kind)) is None


def test_a_setup_intent_without_our_id_is_not_ours() -> None:
    assert setup_update(event("setup_intent.succeeded", metadata={})) is None
    assert setup_update(event("setup_intent.succeeded", metadata=None)) is None


def test_another_object_under_the_type_is_ignored() -> None:
    assert setup_update(event("setup_intent.succeeded", object="payment_intent")) is None
