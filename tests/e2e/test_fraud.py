"""Fraud rules over HTTP on a real server, on SQLite and PostgreSQL: rules validated on save,
value lists in Stripe's shape, a block that never reaches the gateway, the review queue, the
charge's ``outcome``, and the card-testing defence."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from conftest import Api
from support.sandbox_pages import answer_challenge


def _past_the_rate(send: Callable[[], Any]) -> Any:
    """``send()``, again after the wait told while past the key's request rate (100 a
    second: the blocked confirms of a card-testing run are that fast)."""
    for _ in range(5):
        r = send()
        if r.status_code != 429:
            break
        time.sleep(float(r.headers.get("retry-after", "1")))
    return r


def _pi(api: Api, amount: int = 2000, **params: Any) -> dict[str, Any]:
    body = {"amount": amount, "currency": "usd", **params}
    r = _past_the_rate(lambda: api.post("/v1/payment_intents", body))
    assert r.status_code == 200, r.text
    made: dict[str, Any] = r.json()
    return made


def _confirm(api: Api, pi_id: str, pm: str = "pm_card_visa", ip: str | None = None) -> Any:
    headers = {"Paymux-Payer-Ip": ip} if ip else {}
    return _past_the_rate(
        lambda: api.post(
            f"/v1/payment_intents/{pi_id}/confirm", {"payment_method": pm}, headers=headers
        )
    )


# -- rules ---------------------------------------------------------------------------------
def test_a_rule_that_does_not_parse_is_a_400_naming_the_position(api: Api) -> None:
    r = api.post("/v1/fraud/rules", {"rule": "block if :amount: > 'a'"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "parameter_invalid" and error["param"] == "rule"
    assert error["position"] == 20
    assert error["expected"] == "a number on the right of >"
    assert "At position 20" in error["message"]
    assert api.ok("GET", "/v1/fraud/rules")["data"] == []


def test_a_rule_naming_a_missing_list_is_refused(api: Api) -> None:
    r = api.post("/v1/fraud/rules", {"rule": "block if :email: in @nobody_made_this"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "rule"
    assert "@nobody_made_this" in r.json()["error"]["message"]


def test_rules_are_created_listed_updated_disabled_and_deleted(api: Api) -> None:
    made = api.ok("POST", "/v1/fraud/rules", {"rule": "review if :amount: > 5000", "priority": 3})
    assert made["id"].startswith("frr_") and made["object"] == "fraud_rule"
    assert (made["action"], made["predicate"], made["priority"], made["status"]) == (
        "review",
        ":amount: > 5000",
        3,
        "active",
    )
    changed = api.ok("POST", f"/v1/fraud/rules/{made['id']}", {"rule": "block if :amount: > 9"})
    assert (changed["action"], changed["predicate"]) == ("block", ":amount: > 9")
    off = api.ok("POST", f"/v1/fraud/rules/{made['id']}/disable")
    assert off["status"] == "disabled"
    # a disabled rule decides nothing: a payment of 20.00 goes through
    pi = _pi(api)
    assert _confirm(api, pi["id"]).json()["status"] == "succeeded"
    listed = api.ok("GET", "/v1/fraud/rules", params={"status": "disabled"})["data"]
    assert [r["id"] for r in listed] == [made["id"]]
    gone = api.ok("DELETE", f"/v1/fraud/rules/{made['id']}")
    assert gone == {"id": made["id"], "object": "fraud_rule", "deleted": True}
    assert api.get(f"/v1/fraud/rules/{made['id']}").status_code == 404


def test_a_dry_run_says_which_past_payments_a_rule_would_match(api: Api) -> None:
    small, big = _pi(api, 1000), _pi(api, 9000)
    for pi in (small, big):
        assert _confirm(api, pi["id"]).status_code == 200
    out = api.ok("POST", "/v1/fraud/rules/test", {"rule": "block if :amount: > 5000"})
    assert out["evaluated"] == 2 and out["matched_count"] == 1
    assert [m["payment_intent"] for m in out["matched"]] == [big["id"]]
    assert api.ok("GET", "/v1/fraud/rules")["data"] == []  # a dry run saves nothing


def test_another_accounts_rules_are_not_found(api: Api) -> None:
    made = api.ok("POST", "/v1/fraud/rules", {"rule": "block if :amount: > 1"})
    other = Api(api.server)
    try:
        assert other.get(f"/v1/fraud/rules/{made['id']}").status_code == 404
        assert other.ok("GET", "/v1/fraud/rules")["data"] == []
        pi = _pi(other)
        assert _confirm(other, pi["id"]).json()["status"] == "succeeded"
    finally:
        other.close()


# -- block ---------------------------------------------------------------------------------
def test_a_block_is_a_fraudulent_decline_and_the_gateway_is_never_called(api: Api) -> None:
    api.ok("POST", "/v1/fraud/rules", {"rule": "block if :amount: >= 10000"})
    pi = _pi(api, 10000)
    r = _confirm(api, pi["id"])
    assert r.status_code == 402
    error = r.json()["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        "fraudulent",
    )
    assert error["payment_intent"]["status"] == "requires_payment_method"
    assert api.charges(pi["id"]) == []  # the sandbox gateway never saw it
    charge = api.ok("GET", f"/v1/charges/ch_{pi['id'].removeprefix('pi_')}")
    assert charge["status"] == "failed"
    assert charge["outcome"]["type"] == "blocked"
    assert charge["outcome"]["network_status"] == "not_sent_to_network"
    assert charge["outcome"]["rule"]["predicate"] == ":amount: >= 10000"
    assert charge["outcome"]["rule"]["action"] == "block"
    events = api.ok("GET", "/v1/events", params={"object_id": pi["id"]})["data"]
    assert "payment_intent.payment_failed" in {e["type"] for e in events}
    # a smaller amount on the same intent is not blocked
    api.ok("POST", f"/v1/payment_intents/{pi['id']}", {"amount": 9999})
    assert _confirm(api, pi["id"]).json()["status"] == "succeeded"


def test_value_lists_in_stripes_shape_feed_a_block_rule(api: Api) -> None:
    lst = api.ok(
        "POST",
        "/v1/radar/value_lists",
        {"alias": "bad_cards", "name": "Bad cards", "item_type": "card_fingerprint"},
    )
    assert lst["object"] == "radar.value_list" and lst["id"].startswith("rsl_")
    assert (lst["alias"], lst["item_type"], lst["list_items"]["total_count"]) == (
        "bad_cards",
        "card_fingerprint",
        0,
    )
    # the fingerprint of the sandbox's visa, read from a payment made with it
    first = _pi(api)
    done = _confirm(api, first["id"]).json()
    fingerprint = api.ok("GET", f"/v1/payment_methods/{done['payment_method']}")["card"][
        "fingerprint"
    ]
    item = api.ok(
        "POST", "/v1/radar/value_list_items", {"value_list": lst["id"], "value": fingerprint}
    )
    assert item["object"] == "radar.value_list_item" and item["value"] == fingerprint
    assert item["value_list"] == lst["id"]
    dup = api.post("/v1/radar/value_list_items", {"value_list": lst["id"], "value": fingerprint})
    assert dup.status_code == 400
    api.ok("POST", "/v1/fraud/rules", {"rule": "block if :card_fingerprint: in @bad_cards"})
    pi = _pi(api)
    r = _confirm(api, pi["id"])
    assert r.status_code == 402 and r.json()["error"]["decline_code"] == "fraudulent"
    # another card is not on the list
    assert _confirm(api, pi["id"], "pm_card_mastercard").json()["status"] == "succeeded"
    # a list a rule names can't be deleted; its items can
    assert api.http.delete(f"/v1/radar/value_lists/{lst['id']}").status_code == 400
    items = api.ok("GET", "/v1/radar/value_list_items", params={"value_list": lst["id"]})
    assert [i["id"] for i in items["data"]] == [item["id"]]
    api.ok("DELETE", f"/v1/radar/value_list_items/{item['id']}")
    again = _pi(api)
    assert _confirm(api, again["id"]).json()["status"] == "succeeded"


# -- request_3ds ----------------------------------------------------------------------------
def test_request_3ds_makes_a_frictionless_card_authenticate(api: Api) -> None:
    api.ok("POST", "/v1/fraud/rules", {"rule": "request_3ds if :amount: > 5000"})
    small = _pi(api, 5000)
    assert _confirm(api, small["id"]).json()["status"] == "succeeded"  # no 3-D Secure asked
    big = _pi(api, 6000)
    r = _confirm(api, big["id"])  # pm_card_visa: no challenge of its own
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "requires_action"
    url = r.json()["next_action"]["redirect_to_url"]["url"]
    answer_challenge(url, "complete")
    done = api.wait_for(f"/v1/payment_intents/{big['id']}", "status", "succeeded")
    assert done["amount_received"] == 6000
    charge = api.ok("GET", f"/v1/charges/ch_{big['id'].removeprefix('pi_')}")
    assert charge["outcome"]["type"] == "authorized"


def test_a_failed_authentication_asked_by_a_rule_is_a_decline(api: Api) -> None:
    api.ok("POST", "/v1/fraud/rules", {"rule": "request_3ds if :amount: > 5000"})
    pi = _pi(api, 6000)
    url = _confirm(api, pi["id"]).json()["next_action"]["redirect_to_url"]["url"]
    answer_challenge(url, "fail")
    failed = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "requires_payment_method")
    assert failed["amount_received"] == 0
    assert failed["last_payment_error"]["code"] == "payment_intent_authentication_failure"


# -- review --------------------------------------------------------------------------------
def _reviewed_payment(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    pi = _pi(api, 7000)
    r = _confirm(api, pi["id"], ip="203.0.113.9")
    assert r.status_code == 200, r.text
    held = r.json()
    reviews = api.ok("GET", "/v1/reviews", params={"open": "true"})["data"]
    mine = [rv for rv in reviews if rv["payment_intent"] == pi["id"]]
    assert len(mine) == 1
    return held, mine[0]


def test_a_review_holds_the_money_and_approving_captures_it(api: Api) -> None:
    rule = api.ok("POST", "/v1/fraud/rules", {"rule": "review if :amount: > 5000"})
    held, review = _reviewed_payment(api)
    assert held["status"] == "requires_capture" and held["amount_capturable"] == 7000
    assert review["object"] == "review" and review["id"].startswith("prv_")
    assert (review["open"], review["opened_reason"], review["reason"]) == (True, "rule", "rule")
    assert review["ip_address"] == "203.0.113.9"
    assert review["rule"] == rule["id"]
    assert api.charges(held["id"])[0]["amount_captured"] == 0
    approved = api.ok("POST", f"/v1/reviews/{review['id']}/approve")
    assert (approved["open"], approved["closed_reason"], approved["reason"]) == (
        False,
        "approved",
        "approved",
    )
    after = api.ok("GET", f"/v1/payment_intents/{held['id']}")
    assert after["status"] == "succeeded" and after["amount_received"] == 7000
    types = [
        e["type"] for e in api.ok("GET", "/v1/events", params={"object_id": review["id"]})["data"]
    ]
    assert sorted(types) == ["review.closed", "review.opened"]
    again = api.post(f"/v1/reviews/{review['id']}/approve")
    assert again.status_code == 400  # closed already: nothing moves twice


def test_rejecting_a_review_cancels_the_held_payment(api: Api) -> None:
    api.ok("POST", "/v1/fraud/rules", {"rule": "review if :amount: > 5000"})
    held, review = _reviewed_payment(api)
    rejected = api.ok("POST", f"/v1/reviews/{review['id']}/reject")
    assert (rejected["open"], rejected["closed_reason"]) == (False, "canceled")
    after = api.ok("GET", f"/v1/payment_intents/{held['id']}")
    assert after["status"] == "canceled" and after["amount_received"] == 0
    charge = api.ok("GET", f"/v1/charges/ch_{held['id'].removeprefix('pi_')}")
    assert charge["outcome"]["risk_level"] in ("normal", "elevated", "highest")


def test_an_allowed_payment_shows_its_risk_score_and_level(api: Api) -> None:
    pi = _pi(api)
    done = _confirm(api, pi["id"]).json()
    charge = api.ok("GET", f"/v1/charges/ch_{done['id'].removeprefix('pi_')}")
    # the model (docs/fraud.md): no customer (5 points), nothing else
    assert (charge["outcome"]["type"], charge["outcome"]["risk_score"]) == ("authorized", 5)
    assert (charge["outcome"]["risk_level"], charge["outcome"]["rule"]) == ("normal", None)


# -- card testing --------------------------------------------------------------------------
def test_card_testing_from_one_ip_is_blocked_and_other_ips_keep_paying(api: Api) -> None:
    """Hundreds of small failing authorizations from one IP: the first 5 reach the gateway
    and are declined there; from then on (5 declines in 10 minutes) every attempt from that
    IP is blocked before the gateway, while payers from other IPs keep paying."""
    attacker = "198.51.100.7"
    pi = _pi(api, 100)
    reached, blocked = 0, 0
    for n in range(200):
        r = _confirm(api, pi["id"], "pm_card_chargeDeclined", ip=attacker)
        assert r.status_code == 402, r.text
        code = r.json()["error"]["decline_code"]
        if code == "fraudulent":
            blocked += 1
        else:
            reached += 1
            assert blocked == 0, f"attempt {n} reached the gateway after a block"
        if n % 50 == 0:  # legitimate payers from other addresses are unaffected
            good = _pi(api, 2500)
            ok = _confirm(api, good["id"], ip=f"192.0.2.{n // 50 + 1}")
            assert ok.status_code == 200 and ok.json()["status"] == "succeeded"
    assert (reached, blocked) == (5, 195)
    assert len(api.charges(pi["id"])) == 5
    # a good card from the attacker's IP is blocked too, during the cooldown
    other = _pi(api, 2500)
    r = _confirm(api, other["id"], ip=attacker)
    assert r.status_code == 402 and r.json()["error"]["decline_code"] == "fraudulent"


# -- review findings, round 2 ---------------------------------------------------------------
def test_a_rule_nested_too_deeply_is_a_400_and_confirms_keep_working(api: Api) -> None:
    for text in (
        "block if " + "not " * 200 + ":livemode:",
        "block if " + "(" * 240 + ":livemode:" + ")" * 240,
    ):
        r = api.post("/v1/fraud/rules", {"rule": text})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("parameter_invalid", "rule")
        assert error["expected"] == "at most 32 levels of 'not' and parentheses"
        dry = api.post("/v1/fraud/rules/test", {"rule": text})
        assert dry.status_code == 400, dry.text
    assert api.ok("GET", "/v1/fraud/rules")["data"] == []
    pi = _pi(api)
    assert _confirm(api, pi["id"]).json()["status"] == "succeeded"


def test_a_declined_review_leaves_capture_method_and_the_next_confirm_is_decided_anew(
    api: Api,
) -> None:
    api.ok("POST", "/v1/fraud/rules", {"rule": "review if :card_brand: = 'visa'"})
    pi = _pi(api, 3000)
    declined = _confirm(api, pi["id"], "pm_card_chargeDeclined")  # a visa: reviewed, declined
    assert declined.status_code == 402, declined.text
    assert declined.json()["error"]["payment_intent"]["capture_method"] == "automatic"
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["capture_method"] == "automatic"
    # a mastercard matches no rule: captured at once, and no review opened
    ok = _confirm(api, pi["id"], "pm_card_mastercard").json()
    assert (ok["status"], ok["amount_received"], ok["capture_method"]) == (
        "succeeded",
        3000,
        "automatic",
    )
    assert api.ok("GET", "/v1/reviews")["data"] == []


def test_a_review_after_a_decline_on_the_same_intent_holds_and_opens(api: Api) -> None:
    api.ok("POST", "/v1/fraud/rules", {"rule": "review if :amount: > 5000"})
    pi = _pi(api, 7000)
    assert _confirm(api, pi["id"], "pm_card_chargeDeclined").status_code == 402
    held = _confirm(api, pi["id"]).json()
    assert (held["status"], held["amount_capturable"], held["capture_method"]) == (
        "requires_capture",
        7000,
        "automatic",
    )
    reviews = api.ok("GET", "/v1/reviews", params={"open": "true"})["data"]
    assert [r["payment_intent"] for r in reviews] == [pi["id"]]


def test_reject_or_approve_while_the_capture_is_in_flight_is_a_400(api: Api) -> None:
    server = api.server
    api.ok("POST", "/v1/fraud/rules", {"rule": "review if :amount: > 5000"})
    pi = _pi(api, 7000)
    assert _confirm(api, pi["id"]).json()["status"] == "requires_capture"
    review = api.ok("GET", "/v1/reviews", params={"open": "true"})["data"][0]
    # the capture is rate limited for an hour, far longer than paymux waits inline: it stays
    # in flight (its settlement job is due in an hour) however slowly the requests below run
    fault = {"operation": "capture", "mode": "rate_limit", "count": 1, "retry_after": 3600}
    api.sandbox("POST", "/_control/faults", fault)
    api.post(f"/v1/reviews/{review['id']}/approve")
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "processing"
    for verb in ("reject", "approve"):
        r = api.post(f"/v1/reviews/{review['id']}/{verb}")
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "payment_intent_unexpected_state"
    assert api.ok("GET", f"/v1/reviews/{review['id']}")["open"] is True
    # the hour passes: the settlement job is made due now, and the capture lands
    due = server.sql(
        "update jobs set run_at_us = 0 where account_id = :a and kind = 'settle_attempt' "
        "and status = 'queued' returning id",
        a=api.account_id,
    )
    assert len(due) == 1
    done = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded", timeout=30)
    assert done["amount_received"] == 7000
    closed = api.wait_for(f"/v1/reviews/{review['id']}", "open", False)
    assert closed["closed_reason"] == "approved"


def test_parallel_card_testing_from_one_ip_reaches_the_gateway_only_up_to_the_threshold(
    api: Api,
) -> None:
    """40 declining confirms from one IP, 20 at a time: each is decided and counted under
    the IP's lock, an attempt with no answer yet counting as a decline, so exactly the
    threshold (5) reach the gateway, as when they come one by one."""
    import concurrent.futures as cf

    import httpx

    ip = "198.51.100.99"
    pis = [_pi(api, 100) for _ in range(40)]

    def go(pi: dict[str, Any]) -> str:
        with httpx.Client(
            base_url=api.server.url, headers={"authorization": f"Bearer {api.key}"}, timeout=60
        ) as h:
            r = h.post(
                f"/v1/payment_intents/{pi['id']}/confirm",
                json={"payment_method": "pm_card_chargeDeclined"},
                headers={"Paymux-Payer-Ip": ip},
            )
            assert r.status_code == 402, r.text
            return str(r.json()["error"]["decline_code"])

    with cf.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(go, pis))
    assert sum(1 for c in codes if c != "fraudulent") == 5
    assert sum(len(api.charges(pi["id"])) for pi in pis) == 5


def test_hosted_pages_decide_on_the_payer_s_own_address(api: Api) -> None:
    """The checkout and invoice pages are the payer's browser: the payment is decided on
    the address the page's request came from (here 127.0.0.1), so an IP rule applies."""
    import httpx

    api.ok("POST", "/v1/fraud/rules", {"rule": "block if :ip_address: = '127.0.0.1'"})
    cs = api.ok("POST", "/v1/checkout/sessions", {
        "mode": "payment",
        "success_url": "https://shop.example/thanks",
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 1990,
                                       "product_data": {"name": "Linen shirt"}},
                        "quantity": 1}],
    })
    r = httpx.post(f"{cs['url']}/confirm", json={"payment_method": "pm_card_visa"}, timeout=30)
    assert r.status_code == 402, r.text
    assert r.json()["code"] == "card_declined"
    pi = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["payment_intent"]
    charge = api.ok("GET", f"/v1/charges/ch_{pi.removeprefix('pi_')}")
    assert charge["outcome"]["type"] == "blocked"
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com"})
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus["id"], "currency": "usd"})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus["id"], "invoice": invoice["id"],
                                         "amount": 1500, "currency": "usd"})
    invoice = api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    r = httpx.post(f"{invoice['hosted_invoice_url']}/pay", json={"payment_method": "pm_card_visa"},
                   timeout=30)
    assert (r.status_code, r.json()["code"]) == (402, "card_declined"), r.text
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "open"


def test_approve_and_reject_at_once_move_the_money_one_way_only(api: Api) -> None:
    import concurrent.futures as cf

    import httpx

    api.ok("POST", "/v1/fraud/rules", {"rule": "review if :amount: > 5000"})
    for _ in range(3):
        pi = _pi(api, 7000)
        assert _confirm(api, pi["id"]).json()["status"] == "requires_capture"
        review = next(
            r for r in api.ok("GET", "/v1/reviews", params={"open": "true"})["data"]
            if r["payment_intent"] == pi["id"]
        )

        def act(verb: str, review_id: str = review["id"]) -> int:
            with httpx.Client(base_url=api.server.url, timeout=60,
                              headers={"authorization": f"Bearer {api.key}"}) as h:
                return h.post(f"/v1/reviews/{review_id}/{verb}").status_code

        with cf.ThreadPoolExecutor(2) as pool:
            codes = list(pool.map(act, ["approve", "reject"]))
        assert 200 in codes and all(c in (200, 400) for c in codes), codes
        final = api.ok("GET", f"/v1/reviews/{review['id']}")
        after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
        assert final["open"] is False
        if final["closed_reason"] == "approved":
            assert (after["status"], after["amount_received"]) == ("succeeded", 7000)
        else:
            assert final["closed_reason"] == "canceled"
            assert (after["status"], after["amount_received"]) == ("canceled", 0)
        assert len(api.charges(pi["id"])) == 1


# -- the sandbox's card signals and risk, over HTTP ----------------------------------------
def _outcome(api: Api, token: str) -> str:
    """``blocked`` (our block: the sandbox never saw it), ``declined`` (the sandbox's) or
    ``succeeded``."""
    pi = _pi(api)
    r = _confirm(api, pi["id"], token)
    if r.status_code == 200:
        assert r.json()["status"] == "succeeded", r.text
        return "succeeded"
    assert r.status_code == 402, r.text
    return "declined" if api.charges(pi["id"]) else "blocked"


def test_the_sandbox_s_bin_and_checks_reach_the_rules(api: Api) -> None:
    # the sandbox's card table (README "Test cards"): 4000 0000 0000 0101 fails the CVC
    # check, 0010 the address line and postal code checks, 0028 the address line's; BINs
    # are the numbers' first 6 digits
    cases = [
        ("block if :cvc_check: = 'fail'", "pm_card_cvcCheckFail", "pm_card_avsFail"),
        ("block if :address_zip_check: = 'fail'", "pm_card_avsFail", "pm_card_avsLine1Fail"),
        ("block if :address_line1_check: = 'fail'", "pm_card_avsLine1Fail", "pm_card_visa"),
        ("block if :card_bin: = '555555'", "pm_card_mastercard", "pm_card_visa"),
        ("block if :card_bin: in ('400000')", "pm_card_cvcCheckFail", "pm_card_visa_debit"),
    ]
    for rule, caught, passed in cases:
        made = api.ok("POST", "/v1/fraud/rules", {"rule": rule})
        assert (_outcome(api, caught), _outcome(api, passed)) == ("blocked", "succeeded"), rule
        api.ok("DELETE", f"/v1/fraud/rules/{made['id']}")
    pm = api.ok("POST", "/v1/payment_methods", {"type": "card", "card": {"token": "tok_avsFail"}})
    assert pm["card"]["checks"] == {
        "cvc_check": "pass",
        "address_line1_check": "fail",
        "address_postal_code_check": "fail",
    }


def test_the_card_s_earlier_gateway_risk_level_is_a_signal(api: Api) -> None:
    api.ok("POST", "/v1/fraud/rules", {"rule": "block if :gateway_risk_level: = 'elevated'"})
    api.ok("POST", "/v1/fraud/rules", {"rule": "review if :gateway_risk_level: = 'highest'"})
    # the first payment with a card has no earlier risk: the sandbox answers "elevated"
    assert _outcome(api, "pm_card_riskLevelElevated") == "succeeded"
    # the same card (one fingerprint in the account) again: its risk was elevated
    assert _outcome(api, "pm_card_riskLevelElevated") == "blocked"
    assert _outcome(api, "pm_card_visa") == "succeeded"  # its risk was normal
    assert _outcome(api, "pm_card_visa") == "succeeded"
    # "highest": the sandbox declines it; the next payment with the card is reviewed
    assert _outcome(api, "pm_card_riskLevelHighest") == "declined"
    pi = _pi(api)
    r = _confirm(api, pi["id"], "pm_card_riskLevelHighest")
    assert r.status_code == 402 and api.charges(pi["id"]) != []  # held, then declined
    charge = api.ok("GET", f"/v1/charges/ch_{pi['id'].removeprefix('pi_')}")
    assert charge["outcome"]["rule"]["predicate"] == ":gateway_risk_level: = 'highest'"
    out = api.ok(
        "POST", "/v1/fraud/rules/test", {"rule": "review if :gateway_risk_level: = 'highest'"}
    )
    assert [m["payment_intent"] for m in out["matched"]] == [pi["id"]]
