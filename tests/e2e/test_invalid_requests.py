"""Refused requests, on a real server over SQLite and PostgreSQL.

Every refusal must carry a stable ``error.code`` and ``error.param``, a ``Request-Id`` header
equal to ``error.request_id``, and change nothing: the account's row counts (``api.counts()``)
and the objects involved read the same before and after.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer

AMOUNT = 2000


def expect_error(
    r: httpx.Response, status: int, code: str, param: str | None, *, type_: str | None = None
) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code, error
    assert error["param"] == param, error
    assert error["type"] == (type_ or "invalid_request_error")
    assert error["message"]
    assert r.headers["request-id"].startswith("req_")
    assert error["request_id"] == r.headers["request-id"]
    return error


# -- objects in the states the cases need --------------------------------------------------------
def fresh(api: Api) -> dict[str, Any]:
    return api.ok("POST", "/v1/payment_intents", {"amount": AMOUNT, "currency": "usd"})


def succeeded(api: Api) -> dict[str, Any]:
    pi = api.ok("POST", "/v1/payment_intents", {"amount": AMOUNT, "currency": "usd",
                                                "confirm": True, "payment_method": "pm_card_visa"})
    assert pi["status"] == "succeeded"
    return pi


def held(api: Api) -> dict[str, Any]:
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": AMOUNT, "currency": "usd", "capture_method": "manual", "confirm": True,
        "payment_method": "pm_card_visa"})
    assert pi["status"] == "requires_capture" and pi["amount_capturable"] == AMOUNT
    return pi


def nothing(api: Api) -> None:
    return None


SETUPS: dict[str, Callable[[Api], dict[str, Any] | None]] = {
    "none": nothing, "fresh": fresh, "succeeded": succeeded, "held": held,
}


@dataclass(frozen=True)
class Case:
    id: str
    setup: str
    method: str
    path: str
    body: Any
    code: str
    param: str | None
    status: int = 400
    message_has: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


PI = "/v1/payment_intents"
NEW = {"amount": AMOUNT, "currency": "usd"}

CASES = [
    # Illegal transitions.
    Case("capture-unconfirmed", "fresh", "POST", PI + "/{pi}/capture", {},
         "payment_intent_unexpected_state", None, message_has=("requires_payment_method",),
         extra={"status": "requires_payment_method"}),
    Case("confirm-succeeded", "succeeded", "POST", PI + "/{pi}/confirm",
         {"payment_method": "pm_card_visa"}, "payment_intent_unexpected_state", None,
         message_has=("succeeded",), extra={"status": "succeeded"}),
    Case("cancel-succeeded", "succeeded", "POST", PI + "/{pi}/cancel", {},
         "payment_intent_unexpected_state", None, message_has=("succeeded",),
         extra={"status": "succeeded"}),
    Case("update-succeeded", "succeeded", "POST", PI + "/{pi}", {"amount": 3000},
         "payment_intent_unexpected_state", None, message_has=("succeeded",)),
    Case("capture-succeeded", "succeeded", "POST", PI + "/{pi}/capture", {},
         "payment_intent_unexpected_state", None, message_has=("succeeded",)),
    Case("refund-unconfirmed", "fresh", "POST", "/v1/refunds", {"payment_intent": "{pi}"},
         "payment_intent_unexpected_state", None, message_has=("requires_payment_method",)),
    Case("refund-uncaptured", "held", "POST", "/v1/refunds", {"payment_intent": "{pi}"},
         "payment_intent_unexpected_state", None, message_has=("requires_capture",)),
    Case("confirm-without-method", "fresh", "POST", PI + "/{pi}/confirm", {},
         "parameter_missing", "payment_method"),
    # Capture amounts and currencies.
    Case("over-capture", "held", "POST", PI + "/{pi}/capture", {"amount_to_capture": AMOUNT + 1},
         "amount_to_capture_too_large", "amount_to_capture", message_has=(str(AMOUNT + 1),)),
    Case("zero-capture", "held", "POST", PI + "/{pi}/capture", {"amount_to_capture": 0},
         "amount_invalid", "amount_to_capture"),
    Case("capture-currency-mismatch", "held", "POST", PI + "/{pi}/capture",
         {"amount_to_capture": 1000, "currency": "eur"}, "currency_mismatch", "currency",
         message_has=("eur", "usd")),
    # Refund amounts, currencies, reasons.
    Case("over-refund", "succeeded", "POST", "/v1/refunds",
         {"payment_intent": "{pi}", "amount": AMOUNT + 1}, "refund_amount_too_large", "amount"),
    Case("zero-refund", "succeeded", "POST", "/v1/refunds", {"payment_intent": "{pi}", "amount": 0},
         "amount_invalid", "amount"),
    Case("negative-refund", "succeeded", "POST", "/v1/refunds",
         {"payment_intent": "{pi}", "amount": -100}, "amount_invalid", "amount"),
    Case("refund-currency-mismatch", "succeeded", "POST", "/v1/refunds",
         {"payment_intent": "{pi}", "amount": 500, "currency": "eur"}, "currency_mismatch",
         "currency", message_has=("eur", "usd")),
    Case("refund-reason-unknown", "succeeded", "POST", "/v1/refunds",
         {"payment_intent": "{pi}", "reason": "changed_my_mind"}, "parameter_invalid", "reason"),
    Case("refund-unknown-intent", "none", "POST", "/v1/refunds", {"payment_intent": "pi_nope"},
         "resource_missing", "payment_intent", status=404),
    # Amounts and currencies on create.
    Case("currency-unknown", "none", "POST", PI, {"amount": AMOUNT, "currency": "xyz"},
         "currency_unknown", "currency"),
    Case("currency-unknown-decimal", "none", "POST", PI,
         {"amount_decimal": "20.00", "currency": "xyz"}, "currency_unknown", "currency"),
    Case("usd-three-decimals", "none", "POST", PI, {"amount_decimal": "10.505", "currency": "usd"},
         "amount_too_precise", "amount_decimal"),
    Case("usd-trailing-zero", "none", "POST", PI, {"amount_decimal": "10.500", "currency": "usd"},
         "amount_too_precise", "amount_decimal"),
    Case("jpy-one-decimal", "none", "POST", PI, {"amount_decimal": "10.5", "currency": "jpy"},
         "amount_too_precise", "amount_decimal"),
    Case("amount-and-decimal", "none", "POST", PI,
         {"amount": AMOUNT, "amount_decimal": "20.00", "currency": "usd"},
         "parameters_exclusive", "amount_decimal"),
    Case("amount-zero", "none", "POST", PI, {"amount": 0, "currency": "usd"},
         "amount_invalid", "amount"),
    Case("amount-negative", "none", "POST", PI, {"amount": -100, "currency": "usd"},
         "amount_invalid", "amount"),
    Case("usd-below-minimum", "none", "POST", PI, {"amount": 49, "currency": "usd"},
         "amount_too_small", "amount", message_has=("0.50",)),
    Case("jpy-below-minimum", "none", "POST", PI, {"amount": 49, "currency": "jpy"},
         "amount_too_small", "amount", message_has=("50",)),
    Case("amount-too-large", "none", "POST", PI, {"amount": 100_000_000, "currency": "usd"},
         "amount_too_large", "amount"),
    Case("amount-float", "none", "POST", PI, {"amount": 10.5, "currency": "usd"},
         "parameter_invalid", "amount"),
    Case("amount-string", "none", "POST", PI, {"amount": "2000", "currency": "usd"},
         "parameter_invalid", "amount"),
    Case("update-currency-unknown", "fresh", "POST", PI + "/{pi}", {"currency": "xyz"},
         "currency_unknown", "currency"),
    Case("update-amount-zero", "fresh", "POST", PI + "/{pi}", {"amount": 0},
         "amount_invalid", "amount"),
    # Unknown and missing parameters.
    Case("unknown-card", "none", "POST", PI, {**NEW, "card": {"exp_month": 12, "exp_year": 2030}},
         "parameter_unknown", "card", message_has=("card",)),
    Case("unknown-number", "none", "POST", PI, {**NEW, "number": "12"},
         "parameter_unknown", "number", message_has=("number",)),
    Case("card-number-sent", "none", "POST", PI, {**NEW, "payment_method": "4242424242424242"},
         "card_number_not_allowed", "payment_method"),
    Case("card-number-nested", "none", "POST", PI,
         {**NEW, "metadata": {"note": "4000 0566 5566 5556"}}, "card_number_not_allowed",
         "metadata[note]"),
    Case("missing-amount", "none", "POST", PI, {"currency": "usd"}, "parameter_missing", "amount"),
    Case("missing-currency", "none", "POST", PI, {"amount": AMOUNT},
         "parameter_missing", "currency"),
    Case("missing-refund-intent", "none", "POST", "/v1/refunds", {"amount": 100},
         "parameter_missing", "payment_intent"),
    Case("missing-attach-customer", "none", "POST", "/v1/payment_methods/pm_card_visa/attach", {},
         "parameter_missing", "customer"),
    Case("body-not-json", "none", "POST", PI, b"amount=2000&currency=usd",
         "parameter_invalid", None),
    Case("body-a-list", "none", "POST", PI, [NEW], "parameter_invalid", None),
    Case("capture-method-unknown", "none", "POST", PI, {**NEW, "capture_method": "later"},
         "parameter_invalid", "capture_method"),
    Case("off-session-without-confirm", "none", "POST", PI, {**NEW, "off_session": True},
         "parameter_invalid", "off_session"),
    Case("gateway-unknown", "none", "POST", PI, {**NEW, "gateway": "nope"},
         "gateway_unknown", "gateway"),
    Case("customer-unknown", "none", "POST", PI, {**NEW, "customer": "cus_nope"},
         "resource_missing", "customer", status=404),
    Case("payment-method-unknown", "none", "POST", PI,
         {**NEW, "confirm": True, "payment_method": "pm_nope"}, "resource_missing",
         "payment_method", status=404),
    Case("cancellation-reason-unknown", "fresh", "POST", PI + "/{pi}/cancel",
         {"cancellation_reason": "bored"}, "parameter_invalid", "cancellation_reason"),
    # Metadata limits.
    Case("metadata-51-keys", "none", "POST", PI,
         {**NEW, "metadata": {f"k{i}": "v" for i in range(51)}}, "parameter_invalid", "metadata"),
    Case("metadata-key-41-chars", "none", "POST", PI, {**NEW, "metadata": {"k" * 41: "v"}},
         "parameter_invalid", "metadata"),
    Case("metadata-value-501-chars", "none", "POST", PI, {**NEW, "metadata": {"k": "v" * 501}},
         "parameter_invalid", "metadata"),
    Case("metadata-value-not-a-string", "none", "POST", PI, {**NEW, "metadata": {"k": 5}},
         "parameter_invalid", "metadata[k]"),
    Case("customer-metadata-51-keys", "none", "POST", "/v1/customers",
         {"metadata": {f"k{i}": "v" for i in range(51)}}, "parameter_invalid", "metadata"),
    Case("refund-metadata-key-too-long", "succeeded", "POST", "/v1/refunds",
         {"payment_intent": "{pi}", "metadata": {"k" * 41: "v"}}, "parameter_invalid", "metadata"),
    # Lists.
    Case("both-cursors", "none", "GET", PI + "?starting_after=pi_a&ending_before=pi_b", None,
         "parameters_exclusive", "ending_before"),
    Case("both-cursors-events", "none", "GET", "/v1/events?starting_after=e&ending_before=f", None,
         "parameters_exclusive", "ending_before"),
    Case("limit-zero", "none", "GET", PI + "?limit=0", None, "parameter_invalid", "limit"),
    Case("limit-101", "none", "GET", "/v1/customers?limit=101", None, "parameter_invalid", "limit"),
    Case("cursor-unknown", "none", "GET", "/v1/refunds?starting_after=re_nope", None,
         "resource_missing", "starting_after", status=404),
]


def send(api: Api, method: str, path: str, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return api.http.request(method, path, content=body,
                                headers={"content-type": "application/json"})
    return api.http.request(method, path, json=body)


def fill(value: Any, pi_id: str | None) -> Any:
    if pi_id is None:
        return value
    if isinstance(value, bytes):
        return value
    return json.loads(json.dumps(value).replace("{pi}", pi_id))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_an_invalid_request_is_refused_with_a_stable_code_and_changes_nothing(
    api: Api, case: Case
) -> None:
    pi = SETUPS[case.setup](api)
    pi_id = pi["id"] if pi else None
    path = case.path.replace("{pi}", pi_id) if pi_id else case.path
    before_counts = api.counts()
    before_pi = api.ok("GET", f"{PI}/{pi_id}") if pi_id else None

    r = send(api, case.method, path, fill(case.body, pi_id))

    error = expect_error(r, case.status, case.code, case.param)
    for text in case.message_has:
        assert text in error["message"], error["message"]
    for key, value in case.extra.items():
        assert error[key] == value
    assert "4242424242424242" not in r.text and "5556" not in r.text
    assert api.counts() == before_counts
    if pi_id:
        assert api.ok("GET", f"{PI}/{pi_id}") == before_pi
        charges = api.charges(pi_id)
        assert [c["amount_refunded"] for c in charges] == [0] * len(charges)


def test_after_refused_refunds_the_whole_amount_can_still_be_refunded(api: Api) -> None:
    pi = succeeded(api)
    for body in ({"amount": AMOUNT + 1}, {"amount": 500, "currency": "eur"}, {"amount": 0}):
        assert api.post("/v1/refunds", {"payment_intent": pi["id"], **body}).status_code == 400
    refund = api.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "currency": "usd"})
    assert refund["amount"] == AMOUNT and refund["status"] == "succeeded"


def test_after_a_refused_capture_the_authorization_can_still_be_captured(api: Api) -> None:
    pi = held(api)
    for body in ({"amount_to_capture": AMOUNT + 1}, {"currency": "eur"}):
        assert api.post(f"{PI}/{pi['id']}/capture", body).status_code == 400
    done = api.ok("POST", f"{PI}/{pi['id']}/capture", {"amount_to_capture": 1500, "currency": "USD"})
    assert done["status"] == "succeeded" and done["amount_received"] == 1500


# -- authentication ---------------------------------------------------------------------------
def total_rows(server: RunningServer) -> dict[str, int]:
    tables = ["payment_intents", "refunds", "customers", "payment_methods", "events",
              "gateway_attempts", "idempotency_keys"]
    present = {row[0] for row in server.sql(
        "select table_name from information_schema.tables"
        if "postgresql" in server.settings.database_url
        else "select name from sqlite_master where type = 'table'")}
    return {t: server.sql(f"select count(*) from {t}")[0][0] for t in tables if t in present}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "api_key_missing"),
        ({"authorization": ""}, "api_key_missing"),
        ({"authorization": "Bearer sk_test_not_a_real_key"}, "api_key_invalid"),
        ({"authorization": "Basic c2tfdGVzdDo="}, "api_key_invalid"),
        ({"authorization": "Bearer"}, "api_key_invalid"),
    ],
    ids=["no-header", "empty-header", "wrong-key", "basic-scheme", "empty-bearer"],
)
def test_a_request_without_a_valid_api_key_is_401_and_creates_nothing(
    server: RunningServer, headers: dict[str, str], code: str
) -> None:
    before = total_rows(server)
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        for method, path, body in [
            ("POST", PI, {**NEW, "confirm": True, "payment_method": "pm_card_visa"}),
            ("POST", "/v1/customers", {"email": "x@example.com"}),
            ("GET", PI, None),
            ("GET", "/v1/events", None),
        ]:
            r = client.request(method, path, json=body, headers={"idempotency-key": "k-auth"})
            # Stripe's type for a 401 (the SDKs raise AuthenticationError for the status).
            expect_error(r, 401, code, None, type_="invalid_request_error")
    assert total_rows(server) == before


def test_a_wrong_key_cannot_read_an_existing_object(api: Api) -> None:
    pi = fresh(api)
    r = httpx.get(f"{api.server.url}{PI}/{pi['id']}",
                  headers={"authorization": f"Bearer {api.key}x"}, timeout=10)
    expect_error(r, 401, "api_key_invalid", None, type_="invalid_request_error")
    assert pi["id"] not in r.text


# -- other accounts' objects ----------------------------------------------------------------------
SECRET = "only-account-b-knows-this"
ERROR_KEYS = {"type", "code", "decline_code", "param", "message", "user_message", "action",
              "retryable", "gateway", "gateway_code", "request_id"}


@pytest.fixture
def other(server: RunningServer) -> Any:
    """A second account with a customer, a saved card, a refunded payment and their events."""
    b = Api(server)
    try:
        customer = b.ok("POST", "/v1/customers", {"email": "b@example.com", "name": SECRET,
                                                  "metadata": {"secret": SECRET}})
        pm = b.ok("POST", "/v1/payment_methods/pm_card_mastercard/attach",
                  {"customer": customer["id"]})
        pi = b.ok("POST", PI, {"amount": 4321, "currency": "usd", "customer": customer["id"],
                               "payment_method": pm["id"], "confirm": True,
                               "metadata": {"secret": SECRET}, "description": SECRET})
        assert pi["status"] == "succeeded"
        refund = b.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1000,
                                              "metadata": {"secret": SECRET}})
        held_pi = b.ok("POST", PI, {"amount": 2500, "currency": "usd", "confirm": True,
                                    "capture_method": "manual", "payment_method": "pm_card_visa"})
        event = b.ok("GET", "/v1/events", params={"object_id": pi["id"]})["data"][0]
        yield b, {"customer": customer, "pm": pm, "pi": pi, "refund": refund, "held": held_pi,
                  "event": event}
    finally:
        b.close()


def test_another_accounts_objects_are_404_and_never_leak(api: Api, other: Any) -> None:
    b, objs = other
    cus, pm, pi, refund = objs["customer"]["id"], objs["pm"]["id"], objs["pi"]["id"], objs[
        "refund"]["id"]
    held_id, event = objs["held"]["id"], objs["event"]["id"]
    mine = api.ok("POST", "/v1/customers", {"email": "a@example.com"})
    b_before = b.counts()
    a_before = api.counts()
    b_views = {path: b.ok("GET", path) for path in (
        f"{PI}/{pi}", f"{PI}/{held_id}", f"/v1/customers/{cus}", f"/v1/payment_methods/{pm}",
        f"/v1/refunds/{refund}")}

    attempts: list[tuple[str, str, Any, str]] = [
        ("GET", f"{PI}/{pi}", None, "id"),
        ("POST", f"{PI}/{pi}", {"metadata": {"x": "y"}}, "id"),
        ("POST", f"{PI}/{pi}/confirm", {"payment_method": "pm_card_visa"}, "id"),
        ("POST", f"{PI}/{held_id}/capture", {}, "id"),
        ("POST", f"{PI}/{held_id}/cancel", {}, "id"),
        ("GET", f"/v1/customers/{cus}", None, "id"),
        ("POST", f"/v1/customers/{cus}", {"name": "stolen"}, "id"),
        ("DELETE", f"/v1/customers/{cus}", None, "id"),
        ("GET", f"/v1/customers/{cus}/payment_methods", None, "customer"),
        ("GET", f"/v1/payment_methods/{pm}", None, "id"),
        ("POST", f"/v1/payment_methods/{pm}/detach", {}, "id"),
        ("POST", f"/v1/payment_methods/{pm}/attach", {"customer": mine["id"]}, "payment_method"),
        ("POST", "/v1/payment_methods/pm_card_visa/attach", {"customer": cus}, "customer"),
        ("GET", f"/v1/refunds/{refund}", None, "id"),
        ("POST", "/v1/refunds", {"payment_intent": pi, "amount": 100}, "payment_intent"),
        ("GET", f"/v1/events/{event}", None, "id"),
        ("POST", PI, {**NEW, "customer": cus}, "customer"),
        ("POST", PI, {**NEW, "confirm": True, "payment_method": pm}, "payment_method"),
        ("GET", f"{PI}?starting_after={pi}", None, "starting_after"),
        ("GET", f"/v1/customers?ending_before={cus}", None, "ending_before"),
        ("GET", f"/v1/refunds?starting_after={refund}", None, "starting_after"),
        ("GET", f"/v1/events?starting_after={event}", None, "starting_after"),
    ]
    for method, path, body, param in attempts:
        r = api.http.request(method, path, json=body)
        error = expect_error(r, 404, "resource_missing", param)
        assert SECRET not in r.text and "b@example.com" not in r.text, (method, path)
        assert set(error) == ERROR_KEYS, (method, path)

    # Lists never include them either.
    assert api.ok("GET", PI, params={"customer": cus})["data"] == []
    assert api.ok("GET", "/v1/refunds", params={"payment_intent": pi})["data"] == []
    assert api.ok("GET", "/v1/events", params={"object_id": pi})["data"] == []
    ids = {c["id"] for c in api.ok("GET", "/v1/customers", params={"limit": 100})["data"]}
    assert ids == {mine["id"]}

    assert api.counts() == a_before
    assert b.counts() == b_before
    for path, view in b_views.items():
        assert b.ok("GET", path) == view


# -- URLs and request ids -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "authorized"),
    [("GET", "/v1/nope", True), ("POST", "/v1/payment_intents/pi_x/refund", True),
     ("GET", "/v2/payment_intents", False), ("GET", "/", False)],
)
def test_an_unknown_url_is_a_json_404_url_invalid(
    api: Api, method: str, path: str, authorized: bool
) -> None:
    client = api.http if authorized else httpx.Client(base_url=api.server.url, timeout=10)
    before = api.counts()
    try:
        r = client.request(method, path, json={} if method == "POST" else None)
    finally:
        if not authorized:
            client.close()
    error = expect_error(r, 404, "url_invalid", None)
    assert path in error["message"]
    assert api.counts() == before


def test_every_response_has_a_request_id_and_errors_repeat_it(api: Api) -> None:
    pi = fresh(api)
    responses = [
        api.post(PI, NEW),
        api.get(f"{PI}/{pi['id']}"),
        api.get("/v1/events"),
        api.post(PI, {"amount": 49, "currency": "usd"}),
        api.post(PI, {**NEW, "payment_method": "4242 4242 4242 4242"}),
        api.post(PI, content=b"x" * (1024 * 1024 + 1)),
        api.get(f"{PI}/pi_missing"),
        api.get("/v1/missing"),
        api.post(f"{PI}/{pi['id']}/confirm", {"payment_method": "pm_card_chargeDeclined"}),
        httpx.get(f"{api.server.url}{PI}", timeout=10),
        httpx.get(f"{api.server.url}/health", timeout=10),
    ]
    ids = [r.headers.get("request-id") for r in responses]
    assert all(i and i.startswith("req_") for i in ids), ids
    assert len(set(ids)) == len(ids)
    for r in responses:
        if r.status_code >= 400:
            assert r.json()["error"]["request_id"] == r.headers["request-id"], r.text
    assert [r.status_code for r in responses] == [200, 200, 200, 400, 400, 413, 404, 404, 402, 401,
                                                  200]
