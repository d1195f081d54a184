"""The dashboard over HTTP (httpx against a real paymux server, SQLite and PostgreSQL):
signing in (TOTP, lockout, cookie flags), the session and CSRF checks every page and form
gets, roles, the payments search, a payment's page, and the money actions run once per form
through the payment services (audited with the dashboard user)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import BACKENDS, Api, RunningServer
from support.dashboard import DashboardUser, csrf_of, dashboard_server, make_user, signed_in
from support.pgcluster import PgCluster

_KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')
_ROW = re.compile(r'<tr data-id="(pi_[^"]+)"')
_N = iter(range(10_000))


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp(f"dashboard-{request.param}")
    yield from dashboard_server(request.param, tmp, pg_cluster, f"dash_pay_{request.param}")


@pytest.fixture
def api(server: RunningServer) -> Iterator[Api]:
    client = Api(server)
    try:
        yield client
    finally:
        client.close()


def user(server: RunningServer, api: Api, role: str = "admin") -> DashboardUser:
    return make_user(server, api.account_id, role, f"{role}-{next(_N)}@example.com")


def paid(api: Api, amount: int = 4430, currency: str = "eur", **extra: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/payment_intents", {
        "amount": amount, "currency": currency, "payment_method": "pm_card_visa",
        "confirm": True, **extra})


def declined(api: Api) -> dict[str, Any]:
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 1200, "currency": "usd"})
    response = api.post(f"/v1/payment_intents/{pi['id']}/confirm",
                        {"payment_method": "pm_card_chargeDeclinedInsufficientFunds"})
    assert response.status_code == 402, response.text
    return pi


def login_form(server: RunningServer) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=server.url, timeout=30)
    page = client.get("/dashboard/login")
    return client, csrf_of(page.text)


def refunds_of(api: Api, pi_id: str) -> list[dict[str, Any]]:
    return list(api.ok("GET", f"/v1/refunds?payment_intent={pi_id}")["data"])


# -- signing in ------------------------------------------------------------------------------


def test_sign_in_with_totp_sets_a_strict_http_only_session_cookie(
    server: RunningServer, api: Api
) -> None:
    someone = user(server, api)
    client, token = login_form(server)
    response = client.post("/dashboard/login", data={
        "csrf_token": token, "email": someone.email.upper(), "password": someone.password,
        "code": someone.code(), "next": "/dashboard/payments"})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/payments"
    cookie = next(v for k, v in response.headers.multi_items()
                  if k == "set-cookie" and v.startswith("paymux_dashboard="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    page = client.get("/dashboard/payments")
    assert page.status_code == 200 and someone.email in page.text
    client.close()


@pytest.mark.parametrize("wrong", ["password", "code"])
def test_a_wrong_password_or_code_is_refused_alike(
    server: RunningServer, api: Api, wrong: str
) -> None:
    someone = user(server, api)
    client, token = login_form(server)
    good_code = someone.code()
    bad_code = "000000" if good_code != "000000" else "111111"
    response = client.post("/dashboard/login", data={
        "csrf_token": token, "email": someone.email,
        "password": "not the password" if wrong == "password" else someone.password,
        "code": bad_code if wrong == "code" else good_code})
    assert response.status_code == 401
    assert "do not match" in response.text
    assert "paymux_dashboard=" not in response.headers.get("set-cookie", "")
    assert client.get("/dashboard/payments").status_code == 303
    client.close()


def test_a_totp_code_signs_in_once(server: RunningServer, api: Api) -> None:
    someone = user(server, api)
    code = someone.code()
    first, token = login_form(server)
    data = {"csrf_token": token, "email": someone.email, "password": someone.password,
            "code": code}
    assert first.post("/dashboard/login", data=data).status_code == 303
    second, token = login_form(server)
    replay = second.post("/dashboard/login", data={**data, "csrf_token": token})
    assert replay.status_code == 401
    first.close()
    second.close()


def test_five_failures_lock_the_email_even_for_the_right_password(
    server: RunningServer, api: Api
) -> None:
    someone = user(server, api)
    client, token = login_form(server)
    for _ in range(5):
        response = client.post("/dashboard/login", data={
            "csrf_token": token, "email": someone.email, "password": "wrong password!",
            "code": "123456"})
        assert response.status_code == 401
        token = csrf_of(response.text)  # each answer's form has a fresh token
    locked = client.post("/dashboard/login", data={
        "csrf_token": token, "email": someone.email, "password": someone.password,
        "code": someone.code()})
    assert locked.status_code == 429
    assert "Too many failed attempts" in locked.text
    assert "paymux_dashboard=" not in locked.headers.get("set-cookie", "")
    client.close()


def test_a_sign_in_without_the_form_token_is_refused(server: RunningServer, api: Api) -> None:
    someone = user(server, api)
    client = httpx.Client(base_url=server.url, timeout=30)
    response = client.post("/dashboard/login", data={
        "email": someone.email, "password": someone.password, "code": someone.code()})
    assert response.status_code == 403
    assert "paymux_dashboard=" not in response.headers.get("set-cookie", "")
    client.close()


def test_without_a_session_pages_redirect_to_the_login(server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/dashboard/payments?status=failed", timeout=30)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login?next=/dashboard/payments"
    forged = httpx.get(f"{server.url}/dashboard/payments",
                       cookies={"paymux_dashboard": "made-up"}, timeout=30)
    assert forged.status_code == 303


def test_the_login_never_sends_you_off_site(server: RunningServer, api: Api) -> None:
    someone = user(server, api)
    client, token = login_form(server)
    response = client.post("/dashboard/login", data={
        "csrf_token": token, "email": someone.email, "password": someone.password,
        "code": someone.code(), "next": "https://evil.example/steal"})
    assert response.headers["location"] == "/dashboard"
    client.close()


def test_pages_carry_a_nonce_csp_and_no_inline_script(server: RunningServer, api: Api) -> None:
    client = signed_in(server, user(server, api))
    page = client.get("/dashboard/payments")
    csp = page.headers["content-security-policy"]
    assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text and "style=" not in page.text
    css = client.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/dashboard/static/..%2Fusers.py").status_code == 404
    client.close()


# -- CSRF and roles --------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused_and_does_nothing(
    server: RunningServer, api: Api
) -> None:
    pi = paid(api)
    client = signed_in(server, user(server, api))
    confirm = client.get(f"/dashboard/payments/{pi['id']}/refund")
    key = _KEY.search(confirm.text)
    assert key
    form = {"idempotency_key": key.group(1), "amount": "44.30"}
    response = client.post(f"/dashboard/payments/{pi['id']}/refund", data=form)
    assert response.status_code == 403
    wrong = client.post(f"/dashboard/payments/{pi['id']}/refund",
                        data={**form, "csrf_token": "x" * 43})
    assert wrong.status_code == 403
    other_site = client.post(
        f"/dashboard/payments/{pi['id']}/refund",
        data={**form, "csrf_token": csrf_of(confirm.text)},
        headers={"origin": "https://evil.example"})
    assert other_site.status_code == 403
    assert refunds_of(api, pi["id"]) == []
    client.close()


def test_a_view_only_user_cannot_refund(server: RunningServer, api: Api) -> None:
    pi = paid(api)
    viewer = signed_in(server, user(server, api, "view_only"))
    page = viewer.get(f"/dashboard/payments/{pi['id']}")
    assert page.status_code == 200 and "action-refund" not in page.text
    assert viewer.get(f"/dashboard/payments/{pi['id']}/refund").status_code == 403
    response = viewer.post(f"/dashboard/payments/{pi['id']}/refund", data={
        "csrf_token": csrf_of(page.text), "idempotency_key": "dash_x", "amount": "1.00"})
    assert response.status_code == 403
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["amount_refunded"] == 0
    viewer.close()


# -- payments search -------------------------------------------------------------------------


def listed(client: httpx.Client, query: str) -> list[str]:
    page = client.get(f"/dashboard/payments?{query}")
    assert page.status_code == 200, page.text
    return _ROW.findall(page.text)


def test_search_filters_by_status_amount_currency_customer_and_metadata(
    server: RunningServer, api: Api
) -> None:
    cus = api.ok("POST", "/v1/customers", {"email": "buyer@example.com"})
    small = paid(api, 500, "eur", metadata={"order_id": "A-1"})
    large = paid(api, 9900, "eur", customer=cus["id"], metadata={"order_id": "B-2"})
    dollars = paid(api, 9900, "usd")
    failed = declined(api)
    client = signed_in(server, user(server, api))
    assert listed(client, "") == [failed["id"], dollars["id"], large["id"], small["id"]]
    assert listed(client, "status=failed") == [failed["id"]]
    assert listed(client, "status=succeeded&currency=EUR") == [large["id"], small["id"]]
    assert listed(client, "currency=eur&amount_min=10.00") == [large["id"]]
    assert listed(client, "currency=eur&amount_max=5.00") == [small["id"]]
    assert listed(client, f"customer={cus['id']}") == [large["id"]]
    assert listed(client, "metadata=order_id%3DA-1") == [small["id"]]
    assert listed(client, "gateway=stripe") == []
    assert listed(client, "created_from=2000-01-01&created_to=2000-01-02") == []
    page = client.get("/dashboard/payments?amount_min=10&created_from=yesterday")
    assert "Choose a currency to filter by amount." in page.text
    assert "A date such as 2026-12-01." in page.text
    client.close()


def test_search_pages_with_cursors(server: RunningServer, api: Api) -> None:
    made = [paid(api, 100 + i, "gbp")["id"] for i in range(27)]
    newest_first = list(reversed(made))
    client = signed_in(server, user(server, api))
    first = client.get("/dashboard/payments?currency=gbp")
    assert _ROW.findall(first.text) == newest_first[:25]
    older = re.search(r'href="(\?[^"]+)" rel="next"', first.text)
    assert older
    second = client.get("/dashboard/payments" + older.group(1).replace("&amp;", "&"))
    assert _ROW.findall(second.text) == newest_first[25:]
    newer = re.search(r'href="(\?[^"]+)" rel="prev"', second.text)
    assert newer
    back = client.get("/dashboard/payments" + newer.group(1).replace("&amp;", "&"))
    assert _ROW.findall(back.text) == newest_first[:25]
    client.close()


# -- a payment's page ------------------------------------------------------------------------


def test_a_failed_payment_shows_its_decline_reason_and_timeline(
    server: RunningServer, api: Api
) -> None:
    failed = declined(api)
    client = signed_in(server, user(server, api, "support"))
    page = client.get(f"/dashboard/payments/{failed['id']}")
    assert page.status_code == 200
    assert 'id="decline-reason"><code>insufficient_funds</code>' in page.text
    assert "card_declined" in page.text
    assert "gateway call" in page.text and "payment_intent.payment_failed" in page.text
    client.close()


def test_a_payment_of_another_account_is_not_found(server: RunningServer, api: Api) -> None:
    other = Api(server)
    theirs = paid(other)
    client = signed_in(server, user(server, api))
    assert client.get(f"/dashboard/payments/{theirs['id']}").status_code == 404
    assert client.get(f"/dashboard/payments/{theirs['id']}/refund").status_code == 404
    other.close()
    client.close()


# -- actions ---------------------------------------------------------------------------------


def confirm_form(client: httpx.Client, pi_id: str, action: str) -> dict[str, str]:
    page = client.get(f"/dashboard/payments/{pi_id}/{action}")
    assert page.status_code == 200, page.text
    key = _KEY.search(page.text)
    assert key
    return {"csrf_token": csrf_of(page.text), "idempotency_key": key.group(1)}


def refund_form(
    server: RunningServer, api: Api, amount: str = "44.30"
) -> tuple[dict[str, Any], httpx.Client, dict[str, str]]:
    """A paid payment, a signed-in admin's client, and its refund form for ``amount``."""
    pi = paid(api)
    client = signed_in(server, user(server, api))
    return pi, client, {**confirm_form(client, pi["id"], "refund"), "amount": amount}


def test_a_refund_form_submitted_twice_refunds_once(server: RunningServer, api: Api) -> None:
    pi = paid(api)
    someone = user(server, api, "support")
    client = signed_in(server, someone)
    form = {**confirm_form(client, pi["id"], "refund"), "amount": "44.30"}
    answers = [client.post(f"/dashboard/payments/{pi['id']}/refund", data=form)
               for _ in range(2)]
    assert [a.status_code for a in answers] == [303, 303]
    assert [(r["amount"], r["status"]) for r in refunds_of(api, pi["id"])] == [
        (4430, "succeeded")]
    audit = api.ok("GET", "/v1/audit_log?limit=100")["data"]
    mine = [e for e in audit if e["actor"] == f"dashboard:{someone.email}"
            and e["action"] == "refund.create"]
    assert len(mine) == 1
    client.close()


def test_two_submits_at_once_refund_once(server: RunningServer, api: Api) -> None:
    pi, client, form = refund_form(server, api)
    cookies = dict(client.cookies)
    statuses: list[int] = []

    def submit() -> None:
        statuses.append(httpx.post(f"{server.url}/dashboard/payments/{pi['id']}/refund",
                                   data=form, cookies=cookies, timeout=30).status_code)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [303, 303]
    assert [r["amount"] for r in refunds_of(api, pi["id"])] == [4430]
    client.close()


def test_a_partial_refund_then_a_refused_overrefund(server: RunningServer, api: Api) -> None:
    pi = paid(api)
    client = signed_in(server, user(server, api))
    first = {**confirm_form(client, pi["id"], "refund"), "amount": "10.00"}
    assert client.post(f"/dashboard/payments/{pi['id']}/refund", data=first).status_code == 303
    page = client.get(f"/dashboard/payments/{pi['id']}/refund")
    assert 'value="34.30"' in page.text  # the refundable rest, prefilled
    too_much = {**confirm_form(client, pi["id"], "refund"), "amount": "40.00"}
    refused = client.post(f"/dashboard/payments/{pi['id']}/refund", data=too_much)
    assert refused.status_code == 400 and 'id="action-error"' in refused.text
    bad = client.post(f"/dashboard/payments/{pi['id']}/refund",
                      data={**confirm_form(client, pi["id"], "refund"), "amount": "ten"})
    assert bad.status_code == 400
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["amount_refunded"] == 1000
    client.close()


def test_capture_and_cancel_of_authorized_payments(server: RunningServer, api: Api) -> None:
    held = paid(api, 2000, "eur", capture_method="manual")
    other = paid(api, 3000, "eur", capture_method="manual")
    client = signed_in(server, user(server, api, "support"))
    form = {**confirm_form(client, held["id"], "capture"), "amount": "15.00"}
    assert client.post(f"/dashboard/payments/{held['id']}/capture", data=form).status_code == 303
    captured = api.ok("GET", f"/v1/payment_intents/{held['id']}")
    assert (captured["status"], captured["amount_received"]) == ("succeeded", 1500)
    form = {**confirm_form(client, other["id"], "cancel"), "reason": "requested_by_customer"}
    assert client.post(f"/dashboard/payments/{other['id']}/cancel", data=form).status_code == 303
    canceled = api.ok("GET", f"/v1/payment_intents/{other['id']}")
    assert (canceled["status"], canceled["cancellation_reason"]) == (
        "canceled", "requested_by_customer")
    client.close()


def test_the_test_live_switch_hides_test_payments(server: RunningServer, api: Api) -> None:
    pi = paid(api)
    client = signed_in(server, user(server, api))
    page = client.get("/dashboard/payments")
    assert pi["id"] in page.text
    switched = client.post("/dashboard/mode", data={
        "csrf_token": csrf_of(page.text), "mode": "live", "next": "/dashboard/payments"})
    assert switched.status_code == 303
    live = client.get("/dashboard/payments")
    assert pi["id"] not in live.text and "Live mode" in live.text
    assert client.get(f"/dashboard/payments/{pi['id']}").status_code == 404
    client.close()


def test_a_customer_page_shows_brand_last4_and_expiry_only(
    server: RunningServer, api: Api
) -> None:
    cus = api.ok("POST", "/v1/customers", {"email": "saver@example.com"})
    pm = api.ok("POST", "/v1/payment_methods/pm_card_visa/attach", {"customer": cus["id"]})
    client = signed_in(server, user(server, api, "view_only"))
    page = client.get(f"/dashboard/customers/{cus['id']}")
    assert page.status_code == 200
    assert "<td>4242</td>" in page.text and "visa" in page.text.lower()
    assert pm["gateway_token"] not in page.text
    assert pm["card"]["fingerprint"] not in page.text
    assert cus["id"] in client.get("/dashboard/customers").text
    client.close()


def test_logout_ends_the_session(server: RunningServer, api: Api) -> None:
    client = signed_in(server, user(server, api))
    page = client.get("/dashboard/payments")
    cookie = client.cookies.get("paymux_dashboard")
    out = client.post("/dashboard/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303
    again = httpx.get(f"{server.url}/dashboard/payments",
                      cookies={"paymux_dashboard": cookie or "gone"}, timeout=30)
    assert again.status_code == 303
    client.close()


def test_a_payment_page_shows_the_fraud_outcome_and_not_its_facts(
    server: RunningServer, api: Api
) -> None:
    pi = paid(api, metadata={"order_id": "1042"})
    client = signed_in(server, user(server, api, "view_only"))
    page = client.get(f"/dashboard/payments/{pi['id']}")
    fraud = page.text[page.text.index('id="fraud"'):page.text.index("</section>",
                                                                     page.text.index('id="fraud"'))]
    charge = api.ok("GET", f"/v1/charges?payment_intent={pi['id']}")["data"][0]
    assert f"<dd>{charge['outcome']['risk_level']}</dd>" in fraud
    assert "counted" not in fraud and "minute" not in fraud  # the stored record's internals
    assert "<dt>order_id</dt><dd>1042</dd>" in page.text
    client.close()


# -- actions when the gateway fails ----------------------------------------------------------


def fault(server: RunningServer, operation: str, mode: str, count: int) -> None:
    r = httpx.post(f"{server.url}/sandbox/_control/faults",
                   json={"operation": operation, "mode": mode, "count": count}, timeout=10)
    assert r.status_code == 200, r.text


def refund_in_fault(
    server: RunningServer, client: httpx.Client, pi_id: str, form: dict[str, str], mode: str
) -> httpx.Response:
    """Submit the refund ``form`` while the sandbox's refunds fail in ``mode`` (every retry)."""
    try:
        fault(server, "refund", mode, server.settings.gateway_retries + 2)
        return client.post(f"/dashboard/payments/{pi_id}/refund", data=form)
    finally:
        httpx.delete(f"{server.url}/sandbox/_control/faults", timeout=10)


def test_a_refund_whose_answer_is_lost_is_settled_once_and_a_resubmit_adds_none(
    server: RunningServer, api: Api
) -> None:
    pi, client, form = refund_form(server, api)
    first = refund_in_fault(server, client, pi["id"], form, "lose_response")
    assert first.status_code == 303
    again = client.post(f"/dashboard/payments/{pi['id']}/refund", data=form)
    assert again.status_code == 303
    [refund] = refunds_of(api, pi["id"])
    done = api.wait_for(f"/v1/refunds/{refund['id']}", "status", "succeeded", timeout=15)
    assert done["amount"] == 4430
    assert [r["id"] for r in refunds_of(api, pi["id"])] == [refund["id"]]
    client.close()


def test_a_refund_in_a_gateway_outage_is_left_pending_and_a_resubmit_adds_none(
    server: RunningServer, api: Api
) -> None:
    pi, client, form = refund_form(server, api)
    first = refund_in_fault(server, client, pi["id"], form, "server_error")
    # The refund is made and left pending for the job (the gateway's outage is not a
    # refusal): the page says it is done; the same form again replays that answer.
    assert first.status_code == 303, first.text
    assert first.headers["location"] == f"/dashboard/payments/{pi['id']}?done=refund"
    again = client.post(f"/dashboard/payments/{pi['id']}/refund", data=form)
    assert again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    final = api.wait_for(f"/v1/payment_intents/{pi['id']}", "amount_refunded", 4430, timeout=15)
    assert final["amount_refunded"] == 4430
    assert [r["status"] for r in refunds_of(api, pi["id"])] == ["succeeded"]
    client.close()
