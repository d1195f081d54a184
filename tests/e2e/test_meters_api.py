"""Usage meters over HTTP (SQLite and PostgreSQL): /v1/billing/meters, meter events one at a
time (/v1/billing/meter_events) and in batches (/v2/billing/meter_event_stream), and the
aggregation as users see it (/v1/billing/meters/{id}/event_summaries).

Expected values are stated literally: the events each test sends and the sum, count or last
value Stripe's documented rules give for them (an event at start_time counts, one at end_time
does not; ``last`` is the latest by timestamp). Stripe's limits: a timestamp at most 35 days
in the past and 5 minutes in the future; up to 100 events a stream request.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest
import stripe

from conftest import Api, RunningServer

METERS = "/v1/billing/meters"
EVENTS = "/v1/billing/meter_events"
STREAM = "/v2/billing/meter_event_stream"
HOUR = 3600


def hour_ago(hours: int = 2) -> int:
    """The start of the UTC hour ``hours`` hours back (minute and hour aligned)."""
    return (int(time.time()) // HOUR - hours) * HOUR


def name() -> str:
    return f"api_calls_{uuid.uuid4().hex[:10]}"


def meter(api: Api, formula: str = "sum", **extra: Any) -> dict[str, Any]:
    body = {
        "display_name": "API calls",
        "event_name": name(),
        "default_aggregation": {"formula": formula},
        **extra,
    }
    return api.ok("POST", METERS, json=body)


def customer(api: Api) -> str:
    return str(api.ok("POST", "/v1/customers", json={"email": "u@example.com"})["id"])


def send(
    api: Api, event_name: str, cus: str, value: str | None, ts: int | None, **extra: Any
) -> httpx.Response:
    payload = {"stripe_customer_id": cus}
    if value is not None:
        payload["value"] = value
    body: dict[str, Any] = {"event_name": event_name, "payload": payload, **extra}
    if ts is not None:
        body["timestamp"] = ts
    return api.post(EVENTS, json=body)


def usage(api: Api, meter_id: str, cus: str, start: int, end: int) -> int:
    page = api.ok(
        "GET",
        f"{METERS}/{meter_id}/event_summaries",
        params={"customer": cus, "start_time": start, "end_time": end},
    )
    assert len(page["data"]) == 1
    return int(page["data"][0]["aggregated_value"])


def error_of(r: httpx.Response, status: int = 400) -> tuple[str, str | None]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    return error["code"], error["param"]


def stored(server: RunningServer, account_id: str) -> int:
    rows = server.sql("select count(*) from meter_events where account_id = :a", a=account_id)
    return int(rows[0][0])


# -- meters -----------------------------------------------------------------------------------
def test_a_meter_is_created_retrieved_renamed_listed_deactivated_and_reactivated(
    api: Api,
) -> None:
    event_name = name()
    m = api.ok(
        "POST",
        METERS,
        json={
            "display_name": "Search API Calls",
            "event_name": event_name,
            "default_aggregation": {"formula": "sum"},
        },
    )
    assert m["id"].startswith("mtr_")
    assert m["object"] == "billing.meter"
    assert m["customer_mapping"] == {"event_payload_key": "stripe_customer_id", "type": "by_id"}
    assert m["value_settings"] == {"event_payload_key": "value"}
    assert m["default_aggregation"] == {"formula": "sum"}
    assert (m["event_name"], m["display_name"], m["status"]) == (
        event_name,
        "Search API Calls",
        "active",
    )
    assert m["event_time_window"] is None
    assert m["status_transitions"] == {"deactivated_at": None}
    assert m["livemode"] is False

    assert api.ok("GET", f"{METERS}/{m['id']}") == m
    renamed = api.ok("POST", f"{METERS}/{m['id']}", json={"display_name": "Searches"})
    assert renamed["display_name"] == "Searches"

    off = api.ok("POST", f"{METERS}/{m['id']}/deactivate")
    assert off["status"] == "inactive"
    assert isinstance(off["status_transitions"]["deactivated_at"], int)
    assert error_of(api.post(f"{METERS}/{m['id']}/deactivate"))[0] == "parameter_invalid"
    other = meter(api)
    inactive = api.ok("GET", METERS, params={"status": "inactive"})["data"]
    active = api.ok("GET", METERS, params={"status": "active"})["data"]
    assert [x["id"] for x in inactive] == [m["id"]]
    assert [x["id"] for x in active] == [other["id"]]

    on = api.ok("POST", f"{METERS}/{m['id']}/reactivate")
    assert on["status"] == "active"
    assert on["status_transitions"] == {"deactivated_at": None}
    types = [e["type"] for e in api.ok("GET", "/v1/events", params={"limit": 100})["data"]]
    for kind in ("created", "updated", "deactivated", "reactivated"):
        assert f"billing.meter.{kind}" in types


def test_an_event_name_is_unique_per_account_and_only_display_name_changes(api: Api) -> None:
    m = meter(api)
    again = api.post(
        METERS,
        json={
            "display_name": "x",
            "event_name": m["event_name"],
            "default_aggregation": {"formula": "count"},
        },
    )
    assert error_of(again) == ("resource_already_exists", "event_name")
    code, param = error_of(api.post(f"{METERS}/{m['id']}", json={"event_name": "other"}))
    assert (code, param) == ("parameter_unknown", "event_name")
    bad = api.post(
        METERS,
        json={"display_name": "x", "event_name": name(), "default_aggregation": {"formula": "max"}},
    )
    assert error_of(bad)[1] == "default_aggregation[formula]"
    assert error_of(api.get(f"{METERS}/mtr_nope"), 404)[0] == "resource_missing"


# -- recording events and their validation ---------------------------------------------------------
def test_every_bad_meter_event_is_refused_with_its_code_and_param(
    api: Api, server: RunningServer
) -> None:
    m = meter(api)
    cus = customer(api)
    now = int(time.time())
    ev = m["event_name"]
    other = Api(server)
    try:
        foreign = customer(other)
    finally:
        other.close()

    assert error_of(send(api, "no_such_event", cus, "1", now)) == (
        "parameter_invalid",
        "event_name",
    )
    assert error_of(send(api, ev, "cus_nope", "1", now)) == (
        "parameter_invalid",
        "payload[stripe_customer_id]",
    )
    assert error_of(send(api, ev, foreign, "1", now)) == (
        "parameter_invalid",
        "payload[stripe_customer_id]",
    )
    assert error_of(send(api, ev, cus, "2.5", now)) == ("parameter_invalid", "payload[value]")
    assert error_of(send(api, ev, cus, "ten", now)) == ("parameter_invalid", "payload[value]")
    assert error_of(send(api, ev, cus, None, now)) == ("parameter_missing", "payload[value]")
    no_customer = api.post(EVENTS, json={"event_name": ev, "payload": {"value": "1"}})
    assert error_of(no_customer) == ("parameter_missing", "payload[stripe_customer_id]")
    assert error_of(send(api, ev, cus, "1", now - 36 * 86_400)) == (
        "parameter_invalid",
        "timestamp",
    )
    assert error_of(send(api, ev, cus, "1", now + 10 * 60)) == ("parameter_invalid", "timestamp")
    assert error_of(send(api, ev, cus, 5, now))[1] == "payload[value]"  # type: ignore[arg-type]
    assert stored(server, api.account_id) == 0

    # Within the limits: 34 days back, 4 minutes ahead.
    assert send(api, ev, cus, "1", now - 34 * 86_400).status_code == 200
    assert send(api, ev, cus, "1", now + 4 * 60).status_code == 200
    api.ok("POST", f"{METERS}/{m['id']}/deactivate")
    assert error_of(send(api, ev, cus, "1", now)) == ("parameter_invalid", "event_name")
    assert stored(server, api.account_id) == 2


def test_a_meter_event_answers_stripes_object_and_a_repeated_identifier_is_stored_once(
    api: Api, server: RunningServer
) -> None:
    m = meter(api)
    cus = customer(api)
    start = hour_ago()
    ident = f"req_{uuid.uuid4().hex}"
    first = send(api, m["event_name"], cus, "25", start + 60, identifier=ident)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body == {
        "object": "billing.meter_event",
        "created": body["created"],
        "event_name": m["event_name"],
        "identifier": ident,
        "livemode": False,
        "payload": {"stripe_customer_id": cus, "value": "25"},
        "timestamp": start + 60,
    }
    again = send(api, m["event_name"], cus, "25", start + 60, identifier=ident)
    assert again.status_code == 200
    assert again.json()["identifier"] == ident
    generated = send(api, m["event_name"], cus, "5", start + 120).json()["identifier"]
    assert generated and generated != ident
    assert usage(api, m["id"], cus, start, start + HOUR) == 30
    assert stored(server, api.account_id) == 2


def test_concurrent_events_with_one_identifier_are_stored_once(
    api: Api, server: RunningServer
) -> None:
    m = meter(api)
    cus = customer(api)
    start = hour_ago()
    ident = f"dup_{uuid.uuid4().hex}"
    answers: list[int] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        with httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {api.key}"}, timeout=30
        ) as http:
            barrier.wait()
            body = {
                "event_name": m["event_name"],
                "payload": {"stripe_customer_id": cus, "value": "7"},
                "identifier": ident,
                "timestamp": start + 60,
            }
            answers.append(http.post(EVENTS, json=body).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 8
    assert stored(server, api.account_id) == 1
    assert usage(api, m["id"], cus, start, start + HOUR) == 7


# -- aggregation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("formula", "expected"),
    [("sum", 3 + 4 + 5), ("count", 3), ("last", 4)],
)
def test_sum_count_and_last_over_a_window_include_its_start_and_exclude_its_end(
    api: Api, formula: str, expected: int
) -> None:
    m = meter(api, formula)
    cus = customer(api)
    start = hour_ago(3)
    end = start + HOUR
    # (value, timestamp): before the window, at its start, inside (the latest is 4, sent
    # before 5 which is earlier), at its end (excluded), after.
    sent = [
        ("100", start - 1),
        ("3", start),
        ("4", end - 1),
        ("5", start + 600),
        ("200", end),
        ("300", end + 60),
    ]
    r = api.post(
        STREAM,
        json={
            "events": [
                {
                    "event_name": m["event_name"],
                    "payload": {"stripe_customer_id": cus, "value": v},
                    "timestamp": ts,
                }
                for v, ts in sent
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {}
    assert usage(api, m["id"], cus, start, end) == expected
    # Another customer of the account has none of it.
    assert usage(api, m["id"], customer(api), start, end) == 0


def test_last_breaks_a_timestamp_tie_by_the_order_sent(api: Api) -> None:
    m = meter(api, "last")
    cus = customer(api)
    start = hour_ago()
    events = [
        {
            "event_name": m["event_name"],
            "payload": {"stripe_customer_id": cus, "value": v},
            "timestamp": start + 60,
        }
        for v in ("8", "9", "6")
    ]
    api.ok("POST", STREAM, json={"events": events})
    assert usage(api, m["id"], cus, start, start + HOUR) == 6


def test_summaries_by_hour_and_their_parameters(api: Api) -> None:
    m = meter(api, "count")
    cus = customer(api)
    start = hour_ago(3)
    for ts in (start, start + 10, start + HOUR + 5):
        assert send(api, m["event_name"], cus, None, ts).status_code == 200
    page = api.ok(
        "GET",
        f"{METERS}/{m['id']}/event_summaries",
        params={
            "customer": cus,
            "start_time": start,
            "end_time": start + 3 * HOUR,
            "value_grouping_window": "hour",
        },
    )
    got = [(s["start_time"], s["end_time"], s["aggregated_value"]) for s in page["data"]]
    assert got == [
        (start + 2 * HOUR, start + 3 * HOUR, 0),
        (start + HOUR, start + 2 * HOUR, 1),
        (start, start + HOUR, 2),
    ]
    assert page["data"][0]["object"] == "billing.meter_event_summary"
    assert page["data"][0]["meter"] == m["id"]
    summaries = f"{METERS}/{m['id']}/event_summaries"
    missing = api.get(summaries, params={"start_time": start, "end_time": start + HOUR})
    assert error_of(missing) == ("parameter_missing", "customer")
    unaligned = api.get(
        summaries, params={"customer": cus, "start_time": start + 1, "end_time": start + HOUR}
    )
    assert error_of(unaligned) == ("parameter_invalid", "start_time")
    nul = api.get(
        summaries, params={"customer": "cus\x00", "start_time": start, "end_time": start + HOUR}
    )
    assert error_of(nul) == ("parameter_invalid", "customer")
    by_day = api.get(
        summaries,
        params={
            "customer": cus,
            "start_time": start,
            "end_time": start + HOUR,
            "value_grouping_window": "day",
        },
    )
    assert error_of(by_day)[0] == "parameter_invalid"


def test_another_accounts_meters_customers_and_events_are_never_seen_or_counted(
    api: Api, server: RunningServer
) -> None:
    mine = meter(api)
    cus = customer(api)
    start = hour_ago()
    other = Api(server)
    try:
        theirs = other.ok(
            "POST",
            METERS,
            json={
                "display_name": "same name",
                "event_name": mine["event_name"],
                "default_aggregation": {"formula": "sum"},
            },
        )
        their_cus = customer(other)
        assert send(other, mine["event_name"], their_cus, "1000", start + 60).status_code == 200
        # Their key can't see my meter, nor record usage for my customer.
        assert error_of(other.get(f"{METERS}/{mine['id']}"), 404)[0] == "resource_missing"
        assert error_of(
            other.get(
                f"{METERS}/{mine['id']}/event_summaries",
                params={"customer": cus, "start_time": start, "end_time": start + HOUR},
            ),
            404,
        )[0] == ("resource_missing")
        assert error_of(send(other, mine["event_name"], cus, "1", start + 60))[1] == (
            "payload[stripe_customer_id]"
        )
        assert [x["id"] for x in other.ok("GET", METERS)["data"]] == [theirs["id"]]
        assert usage(other, theirs["id"], their_cus, start, start + HOUR) == 1000
    finally:
        other.close()
    assert send(api, mine["event_name"], cus, "2", start + 60).status_code == 200
    assert usage(api, mine["id"], cus, start, start + HOUR) == 2
    assert usage(api, mine["id"], their_cus, start, start + HOUR) == 0
    assert [x["id"] for x in api.ok("GET", METERS)["data"]] == [mine["id"]]


# -- the stream ------------------------------------------------------------------------------
def test_a_stream_batch_is_stored_whole_or_not_at_all(api: Api, server: RunningServer) -> None:
    m = meter(api)
    cus = customer(api)
    start = hour_ago()

    def ev(value: str, ident: str | None = None) -> dict[str, Any]:
        e: dict[str, Any] = {
            "event_name": m["event_name"],
            "payload": {"stripe_customer_id": cus, "value": value},
            "timestamp": start + 60,
        }
        if ident:
            e["identifier"] = ident
        return e

    bad = api.post(STREAM, json={"events": [ev("1"), ev("2"), ev("3"), ev("x"), ev("5")]})
    assert error_of(bad) == ("parameter_invalid", "events[3][payload][value]")
    foreign = ev("1")
    foreign["payload"]["stripe_customer_id"] = "cus_not_mine"
    bad = api.post(STREAM, json={"events": [ev("1"), foreign]})
    assert error_of(bad) == ("parameter_invalid", "events[1][payload][stripe_customer_id]")
    unknown = api.post(STREAM, json={"events": [ev("1"), {**ev("1"), "event_name": "nope"}]})
    assert error_of(unknown) == ("parameter_invalid", "events[1][event_name]")
    extra = api.post(STREAM, json={"events": [{**ev("1"), "dimension": "x"}]})
    assert error_of(extra) == ("parameter_unknown", "events[0][dimension]")
    assert error_of(api.post(STREAM, json={"events": [ev("1")] * 101}))[1] == "events"
    assert error_of(api.post(STREAM, json={"events": []}))[1] == "events"
    form = api.http.post(STREAM, data={"events": "x"})
    assert error_of(form)[0] == "parameter_invalid"
    iso = {**ev("1"), "timestamp": "2001-01-01T00:00:00Z"}
    assert error_of(api.post(STREAM, json={"events": [iso]}))[1] == "events[0][timestamp]"
    assert stored(server, api.account_id) == 0

    ok = api.post(STREAM, json={"events": [ev("1", "a"), ev("2", "b"), ev("4", "a")]})
    assert ok.status_code == 200 and ok.json() == {}
    api.ok("POST", STREAM, json={"events": [ev("8", "b"), ev("16", "c")]})
    # a and b once each (first sent), then c: 1 + 2 + 16.
    assert usage(api, m["id"], cus, start, start + HOUR) == 19
    assert stored(server, api.account_id) == 3


def test_a_card_number_in_a_stream_payload_is_refused_and_nothing_is_stored(
    api: Api, server: RunningServer
) -> None:
    m = meter(api)
    cus = customer(api)
    event = {
        "event_name": m["event_name"],
        "payload": {"stripe_customer_id": cus, "value": "1", "note": "4242424242424242"},
    }
    r = api.post(STREAM, json={"events": [event]})
    assert error_of(r)[0] == "card_number_not_allowed"
    assert "4242424242424242" not in r.text
    assert stored(server, api.account_id) == 0


def test_the_stream_needs_a_key(server: RunningServer) -> None:
    r = httpx.post(f"{server.url}{STREAM}", json={"events": []})
    assert r.status_code == 401


# -- stripe-python -------------------------------------------------------------------------------
def test_stripe_python_creates_a_meter_records_usage_and_reads_the_summary(
    api: Api, server: RunningServer
) -> None:
    client = stripe.StripeClient(
        api_key=api.key,
        base_addresses={"api": server.url, "meter_events": server.url},
        max_network_retries=0,
    )
    cus = customer(api)
    start = hour_ago()
    m = client.v1.billing.meters.create(
        params={
            "display_name": "Tokens",
            "event_name": name(),
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "user", "type": "by_id"},
            "value_settings": {"event_payload_key": "tokens"},
        }
    )
    assert m.customer_mapping.event_payload_key == "user"
    event = client.v1.billing.meter_events.create(
        params={
            "event_name": m.event_name,
            "payload": {"user": cus, "tokens": "25"},
            "timestamp": start + 60,
            "identifier": "sdk-1",
        }
    )
    assert (event.identifier, event.timestamp, event.payload["tokens"]) == (
        "sdk-1",
        start + 60,
        "25",
    )
    client.v2.billing.meter_event_stream.create(
        params={
            "events": [
                {"event_name": m.event_name, "payload": {"user": cus, "tokens": "17"}},
            ]
        }
    )
    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.v1.billing.meter_events.create(
            params={"event_name": m.event_name, "payload": {"user": cus, "tokens": "x"}}
        )
    assert bad.value.param == "payload[tokens]"
    summaries = client.v1.billing.meters.event_summaries.list(
        m.id,
        params={"customer": cus, "start_time": start, "end_time": start + HOUR},
    )
    assert [s.aggregated_value for s in summaries.data] == [25]
    now_hour = hour_ago(0)
    summaries = client.v1.billing.meters.event_summaries.list(
        m.id,
        params={"customer": cus, "start_time": start, "end_time": now_hour + HOUR},
    )
    assert [s.aggregated_value for s in summaries.data] == [42]


def test_a_test_clock_customers_events_are_timed_by_its_clock(api: Api) -> None:
    """Stripe's rule for usage on a test clock: the 35-days-back, 5-minutes-ahead window is
    counted from the clock's frozen time, and an event sent without a timestamp carries it."""
    frozen = (int(time.time()) // 3600 + 400 * 24) * 3600  # a year ahead, on the hour
    clock = api.ok("POST", "/v1/test_helpers/test_clocks", json={"frozen_time": frozen})
    on_clock = str(api.ok("POST", "/v1/customers", json={"test_clock": clock["id"]})["id"])
    plain = customer(api)
    m = meter(api)
    untimed = api.ok("POST", EVENTS, json={
        "event_name": m["event_name"], "payload": {"stripe_customer_id": on_clock, "value": "3"}})
    assert untimed["timestamp"] == frozen
    day_before = api.ok("POST", EVENTS, json={
        "event_name": m["event_name"], "timestamp": frozen - 86_400,
        "payload": {"stripe_customer_id": on_clock, "value": "4"}})
    assert day_before["timestamp"] == frozen - 86_400
    assert usage(api, m["id"], on_clock, frozen - 2 * 86_400, frozen + 60) == 7
    # The clock's future and a past beyond 35 days of it are refused, as is the clock's time
    # for a customer without a clock (far in the wall clock's future).
    for cus, ts in ((on_clock, frozen + 3600), (on_clock, frozen - 36 * 86_400),
                    (plain, frozen)):
        r = api.post(EVENTS, json={"event_name": m["event_name"], "timestamp": ts,
                                   "payload": {"stripe_customer_id": cus, "value": "1"}})
        assert error_of(r) == ("parameter_invalid", "timestamp"), r.text
