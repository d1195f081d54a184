"""Stripe's wire protocol over raw HTTP: form bodies in bracket notation (and JSON, the same
parameters), Bearer and Basic auth, Stripe-Version, Stripe-Account, unknown query
parameters, and errors where Stripe's SDKs read them. SQLite and PostgreSQL (``api``)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from conftest import Api

PI = "/v1/payment_intents"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def form(api: Api, path: str, body: str, **headers: str) -> httpx.Response:
    return api.http.post(path, content=body.encode(), headers={**FORM, **headers})


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    err: dict[str, Any] = response.json()["error"]
    return err


def same_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """What two intents made by the same request must share: all but their own id, secret and
    times (two creates can fall in different seconds)."""
    own = ("id", "created", "updated", "client_secret", "client")
    return {k: v for k, v in obj.items() if k not in own}


# -- bodies ------------------------------------------------------------------------------------


def test_a_form_encoded_create_gives_the_same_intent_as_json(api: Api) -> None:
    body = (
        "amount=2000&currency=usd&capture_method=manual&confirm=false"
        "&description=Order%201001&metadata[order_id]=1001&metadata[note]=gift%20wrap"
    )
    r = form(api, PI, body)
    assert r.status_code == 200, r.text
    by_form = r.json()
    by_json = api.ok(
        "POST",
        PI,
        {
            "amount": 2000,
            "currency": "usd",
            "capture_method": "manual",
            "confirm": False,
            "description": "Order 1001",
            "metadata": {"order_id": "1001", "note": "gift wrap"},
        },
    )
    assert by_form["object"] == "payment_intent"
    assert by_form["amount"] == 2000
    assert by_form["capture_method"] == "manual"
    assert by_form["metadata"] == {"order_id": "1001", "note": "gift wrap"}
    assert same_fields(by_form) == same_fields(by_json)


def test_a_form_encoded_update_sets_and_removes_metadata_keys(api: Api) -> None:
    customer = api.ok("POST", "/v1/customers", {"name": "Jo", "metadata": {"a": "1", "b": "2"}})
    r = form(
        api,
        f"/v1/customers/{customer['id']}",
        "metadata[a]=&metadata[c]=3&description=VIP&email=jo%40example.com",
    )
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["object"] == "customer"
    assert updated["metadata"] == {"b": "2", "c": "3"}
    assert updated["description"] == "VIP"
    assert updated["email"] == "jo@example.com"
    assert api.ok("GET", f"/v1/customers/{customer['id']}")["metadata"] == {"b": "2", "c": "3"}


def test_a_form_confirm_and_refund_work_like_json(api: Api) -> None:
    pi = form(api, PI, "amount=1500&currency=eur").json()
    done = form(api, f"{PI}/{pi['id']}/confirm", "payment_method=pm_card_visa")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "succeeded"
    refund = form(
        api, "/v1/refunds", f"payment_intent={pi['id']}&amount=500&metadata[reason_code]=R1"
    )
    assert refund.status_code == 200, refund.text
    assert refund.json()["object"] == "refund"
    assert refund.json()["amount"] == 500
    assert refund.json()["metadata"] == {"reason_code": "R1"}


def test_an_optional_body_may_be_empty_in_either_encoding(api: Api) -> None:
    pi = api.ok("POST", PI, {"amount": 1000, "currency": "usd"})
    r = form(api, f"{PI}/{pi['id']}/cancel", "")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled"


def test_form_errors_name_the_parameter_in_bracket_form(api: Api) -> None:
    err = error(form(api, PI, "amount=2000&currency=usd&metadata[order_id][x]=1"), 400)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "parameter_invalid"
    assert err["param"] == "metadata[order_id]"

    err = error(form(api, PI, "amount=2000&currency=usd&colour=red"), 400)
    assert err["code"] == "parameter_unknown"
    assert err["param"] == "colour"

    err = error(form(api, PI, "amount=twenty&currency=usd"), 400)
    assert err["code"] == "parameter_invalid"
    assert err["param"] == "amount"

    err = error(form(api, PI, "amount=2000"), 400)
    assert err["code"] == "parameter_missing"
    assert err["param"] == "currency"


def test_form_strings_become_numbers_but_json_stays_strict(api: Api) -> None:
    err = error(api.post(PI, {"amount": 20.5, "currency": "usd"}), 400)
    assert err["param"] == "amount"
    err = error(api.post(PI, {"amount": "2000", "currency": "usd"}), 400)
    assert err["param"] == "amount"
    err = error(form(api, PI, "amount=20.5&currency=usd"), 400)
    assert err["param"] == "amount"
    err = error(form(api, PI, "amount=2000&currency=usd&confirm=maybe"), 400)
    assert err["param"] == "confirm"


def test_a_name_given_as_a_value_and_as_an_object_is_refused(api: Api) -> None:
    err = error(form(api, PI, "amount=2000&currency=usd&metadata=x&metadata[a]=b"), 400)
    assert err["code"] == "parameter_invalid"
    assert err["param"] == "metadata"


def test_brackets_nest_at_most_32_deep_and_a_form_has_at_most_1000_parameters(
    api: Api,
) -> None:
    deep = "metadata" + "[a]" * 32 + "=1"
    err = error(form(api, PI, f"amount=2000&currency=usd&{deep}"), 400)
    assert err["code"] == "body_too_deep"

    many = "&".join(f"metadata[k{i}]=v" for i in range(1001))
    err = error(form(api, PI, f"amount=2000&currency=usd&{many}"), 400)
    assert err["code"] == "parameter_invalid"
    assert "1000" in err["message"]


def test_a_card_number_in_a_bracketed_form_value_is_refused(api: Api) -> None:
    before = api.counts()
    err = error(
        form(api, PI, "amount=2000&currency=usd&metadata[x]=4242%204242%204242%204242"), 400
    )
    assert err["code"] == "card_number_not_allowed"
    assert err["param"] == "metadata[x]"
    assert "4242 4242" not in str(err)
    # A repeated name is read whole: the second value is checked too.
    err = error(
        form(api, PI, "amount=2000&currency=usd&description=ok&description=4242424242424242"), 400
    )
    assert err["code"] == "card_number_not_allowed"
    assert api.counts() == before


def test_a_loosely_grouped_number_in_a_form_body_is_stored_masked(api: Api) -> None:
    body = urlencode(
        {"amount": "2000", "currency": "usd", "metadata[note]": "424 242 424 242 4242"}
    )
    r = form(api, PI, body)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"note": "************4242"}


def test_other_body_types_are_refused(api: Api) -> None:
    r = api.http.post(PI, content=b"amount: 2000", headers={"content-type": "text/plain"})
    err = error(r, 400)
    assert err["code"] == "parameter_invalid"
    assert err["param"] is None


# -- authentication ------------------------------------------------------------------------------


def test_basic_auth_with_the_key_as_username_works(api: Api) -> None:
    r = httpx.post(
        f"{api.server.url}{PI}",
        data={"amount": "2000", "currency": "usd"},
        auth=(api.key, ""),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["amount"] == 2000
    assert (
        httpx.get(f"{api.server.url}/v1/customers", auth=(api.key, ""), timeout=10).status_code
        == 200
    )


def test_a_wrong_basic_key_is_401(api: Api) -> None:
    r = httpx.get(f"{api.server.url}/v1/customers", auth=("sk_test_wrong", ""), timeout=10)
    err = error(r, 401)
    assert err["type"] == "invalid_request_error"  # Stripe's type for a 401
    assert err["code"] == "api_key_invalid"
    assert err["message"] == "Invalid API Key provided: sk_test_*****"
    garbled = {"authorization": "Basic !!!not-base64"}
    err = error(httpx.get(f"{api.server.url}/v1/customers", headers=garbled, timeout=10), 401)
    assert err["code"] == "api_key_invalid"
    empty_user = base64.b64encode(b":password").decode()
    r = httpx.get(
        f"{api.server.url}/v1/customers",
        headers={"authorization": f"Basic {empty_user}"},
        timeout=10,
    )
    assert error(r, 401)["code"] == "api_key_invalid"


def test_no_key_is_401_with_stripes_message(api: Api) -> None:
    err = error(httpx.get(f"{api.server.url}/v1/customers", timeout=10), 401)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "api_key_missing"
    assert err["message"].startswith(
        "You did not provide an API key. You need to provide your API key in the "
        "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')"
    )


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2025-03-31.basil", "2024-06-20", "2026-10-28.endive"])
def test_a_well_formed_stripe_version_is_accepted_and_echoed(api: Api, version: str) -> None:
    r = api.get("/v1/customers", headers={"Stripe-Version": version})
    assert r.status_code == 200, r.text
    assert r.headers["stripe-version"] == version


def test_without_stripe_version_the_answer_names_paymuxs_version(api: Api) -> None:
    r = api.get("/v1/customers")
    assert r.status_code == 200, r.text
    assert r.headers["stripe-version"] == "2026-10-28.endive"


@pytest.mark.parametrize("version", ["latest", "2025-13-45", "2025-03-31.", "2025-3-31"])
def test_a_malformed_stripe_version_is_400(api: Api, version: str) -> None:
    err = error(
        api.post(PI, {"amount": 2000, "currency": "usd"}, headers={"Stripe-Version": version}), 400
    )
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "api_version_invalid"
    assert err["message"] == f"Invalid Stripe API version: {version}"


@pytest.mark.parametrize(
    "version",
    [
        "2099-01-01",  # the future
        "2022-08-02",  # a day after a real version
        "2024-06-20.acacia",  # a date-only version with a release name
        "2025-03-31.acacia",  # basil's first version under the wrong name
        "2025-04-30.endive",  # a release name from later
        "2026-10-29.endive",  # after the newest version paymux knows (its own)
    ],
)
def test_a_version_stripe_never_released_is_400_as_on_stripe(api: Api, version: str) -> None:
    r = api.post(PI, {"amount": 2000, "currency": "usd"}, headers={"Stripe-Version": version})
    err = error(r, 400)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "api_version_invalid"
    assert err["message"] == f"Invalid Stripe API version: {version}"
    assert api.counts()["payment_intents"] == 0, "a refused request makes nothing"


@pytest.mark.parametrize(
    "version",
    ["2011-06-21", "2020-08-27", "2022-11-15", "2024-09-30.acacia", "2025-09-30.clover"],
)
def test_real_stripe_versions_old_and_new_are_accepted(api: Api, version: str) -> None:
    r = api.get("/v1/customers", headers={"Stripe-Version": version})
    assert r.status_code == 200, r.text
    assert r.headers["stripe-version"] == version


def test_stripe_account_may_name_the_keys_own_account_only(api: Api) -> None:
    own = api.get("/v1/customers", headers={"Stripe-Account": api.account_id})
    assert own.status_code == 200, own.text
    r = api.post(
        PI, {"amount": 2000, "currency": "usd"}, headers={"Stripe-Account": "acct_someoneelse"}
    )
    err = error(r, 403)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "account_invalid"
    assert "does not have access to account 'acct_someoneelse'" in err["message"]
    assert api.counts()["payment_intents"] == 0


def test_every_response_carries_a_request_id(api: Api) -> None:
    r = api.get("/v1/customers")
    assert r.headers["request-id"].startswith("req_")


# -- query parameters ---------------------------------------------------------------------------


def test_an_unknown_query_parameter_is_400_naming_it(api: Api) -> None:
    err = error(api.get("/v1/customers", params={"colour": "red"}), 400)
    assert err["code"] == "parameter_unknown"
    assert err["param"] == "colour"
    err = error(api.get("/v1/customers?email[x]=a"), 400)
    assert err["param"] == "email[x]"
    pi = api.ok("POST", PI, {"amount": 2000, "currency": "usd"})
    err = error(api.get(f"{PI}/{pi['id']}", params={"foo": "1"}), 400)
    assert err["param"] == "foo"
    err = error(api.post(f"{PI}/{pi['id']}/cancel?foo=1"), 400)
    assert err["param"] == "foo"


def test_declared_query_parameters_are_accepted(api: Api) -> None:
    r = api.get("/v1/customers", params={"limit": "2", "email": "x@example.com"})
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "list"


# -- errors and objects ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code"),
    [
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card"),
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ],
)
def test_a_decline_is_a_card_error_with_stripes_code_and_decline_code(
    api: Api, payment_method: str, code: str, decline_code: str
) -> None:
    pi = form(api, PI, "amount=2000&currency=usd").json()
    r = form(api, f"{PI}/{pi['id']}/confirm", f"payment_method={payment_method}")
    err = error(r, 402)
    assert err["type"] == "card_error"
    assert err["code"] == code
    assert err["decline_code"] == decline_code
    assert err["request_id"] == r.headers["request-id"]
    after = api.ok("GET", f"{PI}/{pi['id']}")
    assert after["last_payment_error"]["code"] == code
    assert after["last_payment_error"]["decline_code"] == decline_code


def test_an_idempotency_key_reused_with_other_form_parameters_is_an_idempotency_error(
    api: Api,
) -> None:
    first = form(api, PI, "amount=2000&currency=usd", **{"Idempotency-Key": "wire-1"})
    assert first.status_code == 200, first.text
    again = form(api, PI, "amount=2000&currency=usd", **{"Idempotency-Key": "wire-1"})
    assert again.json()["id"] == first.json()["id"]
    # The same parameters as JSON are the same request.
    as_json = api.post(
        PI, {"amount": 2000, "currency": "usd"}, headers={"Idempotency-Key": "wire-1"}
    )
    assert as_json.json()["id"] == first.json()["id"]
    err = error(form(api, PI, "amount=3000&currency=usd", **{"Idempotency-Key": "wire-1"}), 400)
    assert err["type"] == "idempotency_error"
    assert err["code"] == "idempotency_key_mismatch"


def test_every_object_and_list_names_its_type(api: Api) -> None:
    customer = api.ok("POST", "/v1/customers", {"name": "Jo"})
    assert customer["object"] == "customer"
    pi = api.ok(
        "POST",
        PI,
        {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True},
    )
    assert pi["object"] == "payment_intent"
    refund = api.ok("POST", "/v1/refunds", {"payment_intent": pi["id"]})
    assert refund["object"] == "refund"
    for path in ("/v1/customers", PI, "/v1/refunds", "/v1/events", "/v1/disputes"):
        listed = api.ok("GET", path)
        assert listed["object"] == "list"
    events = api.ok("GET", "/v1/events")["data"]
    assert events and {e["object"] for e in events} == {"event"}
    deleted = api.ok("DELETE", f"/v1/customers/{customer['id']}")
    assert deleted["object"] == "customer" and deleted["deleted"] is True
