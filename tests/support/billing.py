"""Helpers for the billing tests (H5): a customer on a test clock with a saved card, a
recurring price, advancing a clock and waiting for it to be ready. Everything goes through
the HTTP API of the running server."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from conftest import Api


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Unix seconds of a UTC time."""
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp())


def clock(api: Api, frozen_time: int, name: str = "test") -> dict[str, Any]:
    return api.ok(
        "POST", "/v1/test_helpers/test_clocks", {"frozen_time": frozen_time, "name": name}
    )


def advance(api: Api, clock_id: str, frozen_time: int, timeout: float = 30.0) -> dict[str, Any]:
    """Advance and wait until the clock is ready (its due work done)."""
    api.ok("POST", f"/v1/test_helpers/test_clocks/{clock_id}/advance", {"frozen_time": frozen_time})
    return wait_ready(api, clock_id, frozen_time, timeout)


def wait_ready(api: Api, clock_id: str, frozen_time: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = api.ok("GET", f"/v1/test_helpers/test_clocks/{clock_id}")
        if view["status"] == "ready":
            assert view["frozen_time"] == frozen_time
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"clock {clock_id} still {view['status']}")
        time.sleep(0.05)


def customer_with_card(
    api: Api, clock_id: str | None, token: str = "pm_card_visa"
) -> tuple[str, str]:
    """A customer (on the clock, if any) with ``token`` saved as its default payment
    method: (customer id, payment method id)."""
    body: dict[str, Any] = {"email": "payer@example.com"}
    if clock_id:
        body["test_clock"] = clock_id
    customer = api.ok("POST", "/v1/customers", body)
    pm = attach(api, customer["id"], token)
    api.ok(
        "POST",
        f"/v1/customers/{customer['id']}",
        {"invoice_settings": {"default_payment_method": pm}},
    )
    return customer["id"], pm


def attach(api: Api, customer_id: str, token: str) -> str:
    pm = api.ok("POST", f"/v1/payment_methods/{token}/attach", {"customer": customer_id})
    return str(pm["id"])


def price(
    api: Api, unit_amount: int, interval: str = "month", currency: str = "usd", **extra: Any
) -> str:
    product = api.ok("POST", "/v1/products", {"name": extra.pop("name", "Pro plan")})
    body = {
        "product": product["id"],
        "unit_amount": unit_amount,
        "currency": currency,
        "recurring": {"interval": interval, **extra.pop("recurring", {})},
        **extra,
    }
    return str(api.ok("POST", "/v1/prices", body)["id"])


def invoices(api: Api, sub_id: str) -> list[dict[str, Any]]:
    """The subscription's invoices, oldest first."""
    data = api.ok("GET", "/v1/invoices", params={"subscription": sub_id, "limit": 100})["data"]
    return sorted(data, key=lambda i: (i["created"], i["period_start"]))


def event_types(api: Api, object_id: str) -> list[str]:
    """The types of the events about one object, oldest first."""
    data = api.ok("GET", "/v1/events", params={"limit": 100})["data"]
    return [e["type"] for e in reversed(data) if e["data"]["object"]["id"] == object_id]
