"""A SetupIntent waiting on 3-D Secure settles from the gateway's webhook, as it does from the
payer's return: exactly once, with late, duplicated and out-of-order events (sandbox gateway,
SQLite and PostgreSQL).

The sandbox sends ``setup_attempt.updated`` when its challenge is answered. Nothing in these
tests reads the SetupIntent (a read settles it by asking the gateway) before the events show
the outcome, so what settles it is the webhook."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx

from conftest import Api
from paymux.gateways.sandbox.processor import SandboxProcessor
from paymux.gateways.signing import sign_header
from support.processes import wait_until
from support.sandbox_pages import answer_challenge


def sandbox_secret(api: Api) -> str:
    processor = SandboxProcessor(api.server.settings.sandbox_db)
    try:
        return processor.webhook_secret()
    finally:
        processor.close()


def post_event(api: Api, event: dict[str, Any]) -> httpx.Response:
    body = json.dumps(event).encode()
    return httpx.post(
        f"{api.server.url}/webhooks/sandbox",
        content=body,
        headers={
            "paymux-sandbox-signature": sign_header(body, sandbox_secret(api)),
            "content-type": "application/json",
        },
        timeout=10,
    )


def events_of(api: Api, kind: str, object_id: str) -> list[dict[str, Any]]:
    page = api.ok("GET", "/v1/events", params={"type": kind, "object_id": object_id, "limit": 100})
    return list(page["data"])


def wait_for_event(api: Api, kind: str, object_id: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = events_of(api, kind, object_id)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {kind} event for {object_id} after {timeout}s")
        time.sleep(0.05)


def inbox_status(api: Api, event_id: str, timeout: float = 10) -> str:
    """The stored event's status once the worker has dealt with it."""
    deadline = time.monotonic() + timeout
    while True:
        rows = api.server.sql("select status from webhook_inbox where event_id = :e", e=event_id)
        if rows and rows[0][0] != "received":
            return str(rows[0][0])
        if time.monotonic() > deadline:
            raise AssertionError(f"event {event_id} still {rows!r}")
        time.sleep(0.05)


def sandbox_event_handled(api: Api, seti_id: str, timeout: float = 30) -> tuple[str, list[str]]:
    """The status of the sandbox's own ``setup_attempt.updated`` about ``seti_id`` (sent when
    its challenge was answered; its event ids start ``evt_sbx_``) and of the
    ``refresh_setup_intent`` jobs about the setup, once the worker is done with them: the
    event handled (its row no longer just received) and every such job finished. Applying
    the event queues at most that job (deduplicated by the setup), and the mark commits
    with the job, so after this nothing the webhook set off is still to run."""

    def state() -> tuple[list[str], list[str]]:
        inbox = api.server.sql(
            "select status from webhook_inbox where event_id like 'evt_sbx_%' "
            "and type = 'setup_attempt.updated' and payload like :p",
            p=f'%"{seti_id}"%',
        )
        jobs = api.server.sql(
            "select status from jobs where kind = 'refresh_setup_intent' and dedupe_key = :k",
            k=f"refresh_setup:{seti_id}",
        )
        return [str(r[0]) for r in inbox], [str(j[0]) for j in jobs]

    def done() -> bool:
        inbox, jobs = state()
        return bool(inbox) and "received" not in inbox and all(
            j in ("done", "dead") for j in jobs
        )

    wait_until(f"the sandbox's webhook about {seti_id} and its job handled", done,
               timeout=timeout, interval=0.05)
    inbox, jobs = state()
    assert len(inbox) == 1, inbox  # one event per answered challenge, stored once
    return inbox[0], jobs


def setup_row(api: Api, seti_id: str) -> tuple[str, str | None]:
    rows = api.server.sql(
        "select status, gateway_reference from setup_intents where id = :i", i=seti_id
    )
    return str(rows[0][0]), rows[0][1]


def waiting_setup(api: Api, card: str = "pm_card_authenticationRequiredOnSetup") -> tuple[
    str, str, str
]:
    """(customer, SetupIntent id, challenge URL) of a setup waiting for 3-D Secure."""
    cus = str(api.ok("POST", "/v1/customers", {"email": "hook@example.com"})["id"])
    seti = api.ok(
        "POST",
        "/v1/setup_intents",
        {"customer": cus, "payment_method": card, "confirm": True},
    )
    assert seti["status"] == "requires_action"
    return cus, str(seti["id"]), str(seti["next_action"]["redirect_to_url"]["url"])


def setup_event(api: Api, seti_id: str, status: str, event_id: str) -> dict[str, Any]:
    """A ``setup_attempt.updated`` as the sandbox sends it (signed with its secret)."""
    _, reference = setup_row(api, seti_id)
    assert reference is not None
    return {
        "id": event_id,
        "object": "event",
        "type": "setup_attempt.updated",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": reference,
                "object": "setup_attempt",
                "reference": seti_id,
                "status": status,
                "next_action": None,
                "decline_code": None,
                "message": None,
            }
        },
    }


def test_the_webhook_settles_a_setup_the_payer_authenticated_without_any_read(api: Api) -> None:
    cus, seti_id, url = waiting_setup(api)
    page = answer_challenge(url, "complete")
    assert page.status_code == 200  # no return_url: the page says so, nobody comes back
    # Nobody reads the SetupIntent: the sandbox's webhook is what settles it.
    succeeded = wait_for_event(api, "setup_intent.succeeded", seti_id)
    assert succeeded["data"]["object"]["status"] == "succeeded"
    assert setup_row(api, seti_id)[0] == "succeeded"
    methods = api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"]
    assert len(methods) == 1
    assert methods[0]["card"]["last4"] == "3155"
    done = api.ok("GET", f"/v1/setup_intents/{seti_id}")
    assert done["status"] == "succeeded"
    assert done["payment_method"] == methods[0]["id"]
    # Everything the webhook set off has run: the event applied (the setup was waiting) and
    # the one job it queued done.
    assert sandbox_event_handled(api, seti_id) == ("applied", ["done"])
    assert len(events_of(api, "setup_intent.succeeded", seti_id)) == 1
    assert len(events_of(api, "payment_method.attached", methods[0]["id"])) == 1
    # The saved card now pays off-session with no action (authenticated at setup).
    r = api.post(
        "/v1/payment_intents",
        {"amount": 1200, "currency": "usd", "customer": cus, "payment_method": methods[0]["id"],
         "off_session": True, "confirm": True},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"


def test_a_failed_authentication_reported_by_webhook_goes_back_for_a_card(api: Api) -> None:
    cus, seti_id, url = waiting_setup(api, "pm_card_threeDSecure2Required")
    answer_challenge(url, "fail")
    failed = wait_for_event(api, "setup_intent.setup_failed", seti_id)
    assert failed["data"]["object"]["status"] == "requires_payment_method"
    assert failed["data"]["object"]["last_setup_error"]["gateway_code"] == "authentication_failed"
    assert api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"] == []
    assert events_of(api, "setup_intent.succeeded", seti_id) == []


def test_duplicated_late_and_out_of_order_events_change_nothing(api: Api) -> None:
    cus, seti_id, url = waiting_setup(api)
    # An event that says the setup still waits (it arrives before the payer acts): nothing
    # to do, and nothing settles.
    early = setup_event(api, seti_id, "requires_action", f"evt_early_{seti_id}")
    assert post_event(api, early).status_code == 200
    assert inbox_status(api, early["id"]) == "applied"
    assert setup_row(api, seti_id)[0] == "requires_action"
    answer_challenge(url, "complete")
    wait_for_event(api, "setup_intent.succeeded", seti_id)
    # The same news again (a duplicate delivery under a new event id), and the old
    # "requires_action" arriving late, after the success: both stale, nothing moves back.
    again = setup_event(api, seti_id, "succeeded", f"evt_again_{seti_id}")
    late = setup_event(api, seti_id, "requires_action", f"evt_late_{seti_id}")
    assert post_event(api, again).status_code == 200
    assert post_event(api, late).status_code == 200
    assert inbox_status(api, again["id"]) == "stale"
    assert inbox_status(api, late["id"]) == "stale"
    # The very same delivery twice is stored once.
    duplicate = post_event(api, again)
    assert duplicate.status_code == 200 and duplicate.json()["duplicate"] is True
    rows = api.server.sql("select status from webhook_inbox where event_id = :e", e=again["id"])
    assert [r[0] for r in rows] == ["stale"]  # still the one row, as it was
    # The sandbox's own webhook (what settled it) and the job it queued are done too.
    assert sandbox_event_handled(api, seti_id) == ("applied", ["done"])
    assert setup_row(api, seti_id)[0] == "succeeded"
    assert len(events_of(api, "setup_intent.succeeded", seti_id)) == 1
    assert len(api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"]) == 1
    # A forged "failed" for a setup that succeeded is stale too: never back to a card prompt.
    forged = setup_event(api, seti_id, "failed", f"evt_forged_{seti_id}")
    assert post_event(api, forged).status_code == 200
    assert inbox_status(api, forged["id"]) == "stale"
    assert events_of(api, "setup_intent.setup_failed", seti_id) == []


def test_the_payers_return_and_the_webhook_racing_settle_it_once(api: Api) -> None:
    cus, seti_id, url = waiting_setup(api)
    answer_challenge(url, "complete")  # the webhook is on its way; the payer is back too
    views: list[dict[str, Any]] = []

    def read() -> None:
        views.append(api.ok("GET", f"/v1/setup_intents/{seti_id}"))

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(30)
    assert [v["status"] for v in views] == ["succeeded"] * 4
    wait_for_event(api, "setup_intent.succeeded", seti_id)
    # The webhook handled: stale if a read had settled the setup first, else applied, and
    # then the job it queued has run (and found the setup settled).
    status, jobs = sandbox_event_handled(api, seti_id)
    assert (status, jobs) in (("stale", []), ("applied", ["done"])), (status, jobs)
    assert len(events_of(api, "setup_intent.succeeded", seti_id)) == 1
    methods = api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"]
    assert len(methods) == 1
    assert len(events_of(api, "payment_method.attached", methods[0]["id"])) == 1


def test_a_canceled_setup_stays_canceled_when_the_payer_authenticates_later(api: Api) -> None:
    cus, seti_id, url = waiting_setup(api)
    api.ok("POST", f"/v1/setup_intents/{seti_id}/cancel", {})
    answer_challenge(url, "complete")
    late = setup_event(api, seti_id, "succeeded", f"evt_after_cancel_{seti_id}")
    assert post_event(api, late).status_code == 200
    assert inbox_status(api, late["id"]) == "stale"
    assert setup_row(api, seti_id)[0] == "canceled"
    assert events_of(api, "setup_intent.succeeded", seti_id) == []
    assert api.ok("GET", f"/v1/customers/{cus}/payment_methods")["data"] == []


def test_an_event_about_a_setup_not_stored_yet_is_kept_and_retried(api: Api) -> None:
    event = {
        "id": "evt_unknown_setup_" + str(time.time_ns()),
        "object": "event",
        "type": "setup_attempt.updated",
        "created": int(time.time()),
        "data": {"object": {"id": "seti_sbx_unknown", "object": "setup_attempt",
                            "reference": "seti_not_ours_yet", "status": "succeeded"}},
    }
    assert post_event(api, event).status_code == 200
    deadline = time.monotonic() + 10
    while True:
        rows = api.server.sql(
            "select status, error from webhook_inbox where event_id = :e", e=event["id"]
        )
        if rows and rows[0][1]:
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    status, error = rows[0]
    assert status == "received"  # waiting for its retry, never dropped
    assert "seti_not_ours_yet is not stored yet" in error
