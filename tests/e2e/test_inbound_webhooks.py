"""POST /webhooks/sandbox: verified on raw bytes, stored once, applied once, never dropped."""

from __future__ import annotations

import json
import time

import httpx

from conftest import Api
from paymux.gateways.sandbox.processor import SandboxProcessor
from paymux.gateways.signing import sign_header
from support.processes import wait_until


def secret(api: Api) -> str:
    processor = SandboxProcessor(api.server.settings.sandbox_db)
    try:
        return processor.webhook_secret()
    finally:
        processor.close()


def inbox_status(api: Api, event_id: str) -> str | None:
    rows = api.server.sql("select status from webhook_inbox where event_id = :e", e=event_id)
    return str(rows[0][0]) if rows else None


def post_event(api: Api, event: dict, *, key: str | None = None, header: str | None = None
               ) -> httpx.Response:
    body = json.dumps(event).encode()
    signature = header if header is not None else sign_header(body, key or secret(api))
    return httpx.post(f"{api.server.url}/webhooks/sandbox", content=body,
                      headers={"paymux-sandbox-signature": signature,
                               "content-type": "application/json"})


def three_ds_intent(api: Api) -> dict:
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 3000, "currency": "usd", "confirm": True,
        "payment_method": "pm_card_threeDSecure2Required"})
    assert pi["status"] == "requires_action"
    return pi


def completed_charge_event(api: Api, pi: dict, event_id: str) -> dict:
    charge = api.charges(pi["id"])[0]
    charge.update(status="succeeded", amount_authorized=3000, amount_captured=3000,
                  next_action=None)
    return {"id": event_id, "object": "event", "type": "charge.updated",
            "created": int(time.time()), "data": {"object": charge}}


def test_a_duplicate_delivery_is_acknowledged_and_applied_once(api: Api) -> None:
    pi = three_ds_intent(api)
    event = completed_charge_event(api, pi, f"evt_dup_{pi['id']}")
    first = post_event(api, event)
    second = post_event(api, event)
    assert first.status_code == second.status_code == 200
    assert first.json()["duplicate"] is False and second.json()["duplicate"] is True
    api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    # The event's one row handled by the worker (its mark commits with its job's done), so
    # whatever the deliveries led to has happened before the counts below.
    wait_until("the event handled",
               lambda: inbox_status(api, event["id"]) not in (None, "received"), timeout=30)
    rows = api.server.sql("select status from webhook_inbox where event_id = :e",
                          e=event["id"])
    assert [r[0] for r in rows] == ["applied"]
    succeeded = api.ok("GET", "/v1/events", params={"object_id": pi["id"],
                                                    "type": "payment_intent.succeeded"})
    assert len(succeeded["data"]) == 1


def test_unverifiable_requests_are_refused_with_a_reason_and_change_nothing(api: Api) -> None:
    pi = three_ds_intent(api)
    event = completed_charge_event(api, pi, f"evt_bad_{pi['id']}")
    body = json.dumps(event).encode()
    cases = {
        "missing_signature": "",
        "signature_mismatch": sign_header(body, "whsec_not_the_secret"),
        "timestamp_outside_tolerance": sign_header(body, secret(api), int(time.time()) - 3600),
        "malformed_signature": "garbage",
    }
    for reason, header in cases.items():
        r = post_event(api, event, header=header)
        assert r.status_code == 400, reason
        assert r.json()["error"]["reason"] == reason
    tampered = json.dumps({**event, "type": "charge.refunded"}).encode()
    r = httpx.post(f"{api.server.url}/webhooks/sandbox", content=tampered,
                   headers={"paymux-sandbox-signature": sign_header(body, secret(api))})
    assert r.json()["error"]["reason"] == "signature_mismatch"
    assert api.server.sql("select count(*) from webhook_inbox where event_id = :e",
                          e=event["id"])[0][0] == 0
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "requires_action"


def test_a_late_event_never_moves_a_succeeded_intent_back(api: Api) -> None:
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 3000, "currency": "usd",
                                                "confirm": True, "payment_method": "pm_card_visa"})
    charge = api.charges(pi["id"])[0]
    late = dict(charge, status="requires_action",
                next_action={"type": "redirect_to_url", "redirect_to_url": {"url": "x"}})
    event_id = f"evt_late_{pi['id']}"
    post_event(api, {"id": event_id, "type": "charge.updated", "data": {"object": late}})
    # Once the worker has handled it (the inbox row no longer just received), not before.
    wait_until("the late event handled",
               lambda: inbox_status(api, event_id) not in (None, "received"), timeout=20)
    assert inbox_status(api, event_id) == "applied"
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["status"] == "succeeded" and after["next_action"] is None


def test_an_event_about_an_unknown_payment_is_kept_and_retried_not_dropped(api: Api) -> None:
    event = {"id": f"evt_unknown_{time.time_ns()}", "type": "charge.updated",
             "data": {"object": {"id": "ch_sbx_nope", "object": "charge", "status": "succeeded",
                                 "reference": "pi_does_not_exist_yet", "amount_captured": 1}}}
    assert post_event(api, event).status_code == 200

    def tried() -> list[tuple[str, int]]:
        """The apply job's (status, attempts) once an attempt failed on the unknown payment."""
        jobs = api.server.sql(
            "select status, attempts, last_error from jobs where kind = 'apply_webhook'")
        return [(j[0], j[1]) for j in jobs if j[2] and "pi_does_not_exist_yet" in j[2]]

    wait_until("the apply job tried", lambda: bool(tried()), timeout=20)  # a state, not a time
    waiting = tried()
    assert waiting[0][0] in ("queued", "running") and waiting[0][1] >= 1
    assert inbox_status(api, event["id"]) == "received"  # kept, to be retried


def test_unknown_event_types_are_stored_and_acknowledged(api: Api) -> None:
    event = {"id": f"evt_other_{time.time_ns()}", "type": "balance.available", "data": {}}
    assert post_event(api, event).status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = api.server.sql("select status from webhook_inbox where event_id = :e",
                              e=event["id"])
        if rows and rows[0][0] == "ignored":
            break
        time.sleep(0.05)
    assert rows[0][0] == "ignored"


def test_a_webhook_for_an_unknown_gateway_is_a_400(api: Api) -> None:
    r = httpx.post(f"{api.server.url}/webhooks/nope", content=b"{}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "gateway_unknown"


def test_an_oversized_body_is_a_413(api: Api) -> None:
    r = httpx.post(f"{api.server.url}/webhooks/sandbox", content=b"x" * (1024 * 1024 + 1))
    assert r.status_code == 413


def test_a_late_decline_of_an_earlier_attempt_does_not_undo_the_attempt_in_flight(
    api: Api,
) -> None:
    import threading

    pi = api.ok("POST", "/v1/payment_intents", {"amount": 3000, "currency": "usd"})
    declined = api.post(f"/v1/payment_intents/{pi['id']}/confirm",
                        {"payment_method": "pm_card_chargeDeclined"})
    assert declined.status_code == 402
    first_charge = api.charges(pi["id"])[0]
    assert first_charge["status"] == "failed"
    late_id = f"evt_old_{pi['id']}"
    api.sandbox("POST", "/_control/latency", {"seconds": 1.0})
    answers: list[dict] = []
    try:
        confirm = threading.Thread(target=lambda: answers.append(api.ok(
            "POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "pm_card_visa"})))
        confirm.start()
        api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "processing")
        late = post_event(api, {"id": late_id, "type": "charge.updated",
                                "data": {"object": first_charge}})
        assert late.status_code == 200
        confirm.join()
    finally:
        api.sandbox("POST", "/_control/latency", {"seconds": 0.0})
    assert answers and answers[0]["status"] == "succeeded"
    # The late event handled (not just stored) before we look: found stale, it changed nothing.
    wait_until("the late event handled",
               lambda: inbox_status(api, late_id) not in (None, "received"), timeout=30)
    assert inbox_status(api, late_id) == "stale"
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["status"] == "succeeded" and after["last_payment_error"] is None
    failed = api.ok("GET", "/v1/events", params={"object_id": pi["id"],
                                                 "type": "payment_intent.payment_failed"})
    assert len(failed["data"]) == 1  # the first attempt's, not a second one from the late event


def _signed_post(api: Api, body: bytes) -> httpx.Response:
    return httpx.post(f"{api.server.url}/webhooks/sandbox", content=body, timeout=10,
                      headers={"paymux-sandbox-signature": sign_header(body, secret(api)),
                               "content-type": "application/json"})


def test_signed_bodies_that_are_not_utf8_json_are_refused_not_stored(api: Api) -> None:
    """A correctly signed body in UTF-16, with a byte-order mark, or nested 1,000 deep is not
    what any provider sends: a clear 400 invalid_payload, nothing stored, never a 500."""
    event = {"id": "evt_odd_encoding", "type": "charge.succeeded", "data": {"object": {}}}
    text = json.dumps(event)
    before = api.server.sql("select count(*) from webhook_inbox")[0][0]
    bodies = {
        "utf-16": text.encode("utf-16"),  # with its BOM
        "utf-16-le": text.encode("utf-16-le"),
        "utf-8 bom": b"\xef\xbb\xbf" + text.encode(),
        "latin-1": json.dumps({**event, "note": "caf\u00e9"}, ensure_ascii=False).encode(
            "latin-1"),
        "nested": ("[" * 1000 + "]" * 1000).encode(),
        "nested in an event": json.dumps(event)[:-1].encode()
        + b', "deep": ' + b"{\"a\": " * 200 + b"1" + b"}" * 200 + b"}",
    }
    for name, body in bodies.items():
        r = _signed_post(api, body)
        assert r.status_code == 400, (name, r.status_code, r.text)
        error = r.json()["error"]
        refused = (error["code"], error.get("reason"))
        assert refused in {("webhook_signature_invalid", "invalid_payload"),
                           ("body_too_deep", None)}, (name, error)
    after = api.server.sql("select count(*) from webhook_inbox")[0][0]
    assert after == before
    # The same event as UTF-8 JSON is stored as usual.
    assert _signed_post(api, text.encode()).status_code == 200
