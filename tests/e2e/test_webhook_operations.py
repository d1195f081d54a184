"""Operating the inbound pipeline: concurrent duplicates, dead letters, replay (admin API and
CLI), rejection counters. A server with fast backoff and few attempts, on both backends."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url
from paymux.gateways.sandbox.processor import SandboxProcessor
from paymux.gateways.signing import sign_header
from support.cli import paymux_cli
from support.pgcluster import PgCluster

ADMIN = "adm_" + "x" * 24


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def ops_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"ops-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"ops_{request.param}")
    settings = make_settings(url, tmp, free_port(), job_backoff_base=0.02,
                             webhook_apply_max_attempts=3, admin_key=ADMIN)
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def ops(ops_server: RunningServer) -> Iterator[Api]:
    client = Api(ops_server)
    try:
        yield client
    finally:
        client.close()


def signed_post(server: RunningServer, event: dict) -> httpx.Response:
    processor = SandboxProcessor(server.settings.sandbox_db)
    try:
        secret = processor.webhook_secret()
    finally:
        processor.close()
    body = json.dumps(event).encode()
    return httpx.post(f"{server.url}/webhooks/sandbox", content=body,
                      headers={"paymux-sandbox-signature": sign_header(body, secret)})


def inbox_status(server: RunningServer, event_id: str) -> str | None:
    rows = server.sql("select status from webhook_inbox where event_id = :e", e=event_id)
    return rows[0][0] if rows else None


def wait_status(server: RunningServer, event_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while inbox_status(server, event_id) != status:
        assert time.monotonic() < deadline, (event_id, inbox_status(server, event_id))
        time.sleep(0.05)


def admin(server: RunningServer, method: str, path: str) -> httpx.Response:
    return httpx.request(method, f"{server.url}/v1/admin{path}",
                         headers={"authorization": f"Bearer {ADMIN}"})


def test_the_same_event_delivered_five_times_at_once_is_applied_once(ops: Api) -> None:
    pi = ops.ok("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd",
                                                "confirm": True,
                                                "payment_method": "pm_card_threeDSecure2Required"})
    charge = dict(ops.charges(pi["id"])[0], status="succeeded", amount_authorized=1000,
                  amount_captured=1000, next_action=None)
    event = {"id": f"evt_five_{pi['id']}", "type": "charge.updated", "data": {"object": charge}}
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(
        signed_post(ops.server, event).status_code)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 5
    ops.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    # Its row applied: the worker has handled the event (the mark commits with its job's done).
    wait_status(ops.server, event["id"], "applied")
    assert ops.server.sql("select count(*) from webhook_inbox where event_id = :e",
                          e=event["id"])[0][0] == 1
    succeeded = ops.ok("GET", "/v1/events", params={"object_id": pi["id"],
                                                    "type": "payment_intent.succeeded"})
    assert len(succeeded["data"]) == 1


def test_an_event_that_keeps_failing_is_dead_lettered_then_replayed_by_the_admin_api(
    ops: Api,
) -> None:
    """It beat our own write: the charge it names is on no payment of ours yet. It is retried,
    then parked as dead (never dropped); once our write lands, a replay applies it."""
    pi = ops.ok("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd",
                                                "confirm": True,
                                                "payment_method": "pm_card_threeDSecure2Required"})
    charge = dict(ops.charges(pi["id"])[0], status="succeeded", amount_authorized=1000,
                  amount_captured=1000, next_action=None, reference="pi_unknown_to_paymux",
                  id=f"ch_sbx_late_{pi['id']}")
    event = {"id": f"evt_dead_{pi['id']}", "type": "charge.updated", "data": {"object": charge}}
    assert signed_post(ops.server, event).status_code == 200
    wait_status(ops.server, event["id"], "dead")
    attempts = ops.server.sql(
        "select attempts, status from jobs where kind = 'apply_webhook' and last_error like :e",
        e="%pi_unknown_to_paymux%")
    assert (3, "dead") in [tuple(a) for a in attempts]

    listed = admin(ops.server, "GET", "/webhooks?status=dead")
    assert listed.status_code == 200
    dead = [row for row in listed.json()["data"] if row["event_id"] == event["id"]]
    assert dead and "not stored yet" in dead[0]["error"]
    assert httpx.get(f"{ops.server.url}/v1/admin/webhooks").status_code == 401
    assert httpx.get(f"{ops.server.url}/v1/admin/webhooks",
                     headers={"authorization": f"Bearer {ops.key}"}).status_code == 401
    assert ops.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "requires_action"

    # Our own write lands: the payment now carries the gateway's reference.
    ops.server.sql("update payment_intents set gateway_reference = :c where id = :p",
                   c=charge["id"], p=pi["id"])
    replayed = admin(ops.server, "POST", f"/webhooks/{event['id']}/replay")
    assert replayed.status_code == 200 and replayed.json()["replayed"] == [dead[0]["id"]]
    wait_status(ops.server, event["id"], "applied")
    done = ops.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    assert done["amount_received"] == 1000
    assert admin(ops.server, "POST", "/webhooks/we_nope/replay").status_code == 404


def test_replaying_an_applied_event_changes_nothing(ops: Api) -> None:
    pi = ops.ok("POST", "/v1/payment_intents", {"amount": 1000, "currency": "usd",
                                                "confirm": True,
                                                "payment_method": "pm_card_threeDSecure2Required"})
    charge = dict(ops.charges(pi["id"])[0], status="succeeded", amount_authorized=1000,
                  amount_captured=1000, next_action=None)
    event = {"id": f"evt_again_{pi['id']}", "type": "charge.updated", "data": {"object": charge}}
    assert signed_post(ops.server, event).status_code == 200
    ops.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    wait_status(ops.server, event["id"], "applied")
    assert admin(ops.server, "POST", f"/webhooks/{event['id']}/replay").status_code == 200
    # The replay put the row back to received (committed before it answered) with a new job:
    # applied again means that job has run (the mark commits with its done).
    wait_status(ops.server, event["id"], "applied")
    succeeded = ops.ok("GET", "/v1/events", params={"object_id": pi["id"],
                                                    "type": "payment_intent.succeeded"})
    assert len(succeeded["data"]) == 1


def webhooks_cli(ops: Api, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``paymux webhooks ...`` run in this process (support/cli.py): what the commands do is
    the claim; the process's own start-up is tested where a test starts it."""
    return paymux_cli("webhooks", *args, env={
        "PAYMUX_DATABASE_URL": ops.server.settings.database_url,
        "PAYMUX_SANDBOX_DB": ops.server.settings.sandbox_db, **env})


def test_the_cli_lists_and_replays_dead_events(ops: Api) -> None:
    event = {"id": f"evt_cli_{time.time_ns()}", "type": "charge.updated",
             "data": {"object": {"id": "ch_sbx_ghost", "object": "charge", "status": "succeeded",
                                 "reference": "pi_ghost", "amount_captured": 1}}}
    assert signed_post(ops.server, event).status_code == 200
    wait_status(ops.server, event["id"], "dead")
    env = {"PAYMUX_WEBHOOK_APPLY_MAX_ATTEMPTS": "3"}
    listed = webhooks_cli(ops, "list", "--status", "dead", **env)
    assert listed.returncode == 0, listed.stderr
    assert event["id"] in listed.stdout
    replayed = webhooks_cli(ops, "replay", event["id"], **env)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 event" in replayed.stdout
    wait_status(ops.server, event["id"], "dead")
    again = webhooks_cli(ops, "replay", "--all-dead", **env)
    assert again.returncode == 0 and "replayed" in again.stdout


def test_the_cli_refuses_an_unknown_status_and_an_unknown_event(ops: Api) -> None:
    listed = webhooks_cli(ops, "list", "--status", "bogus")
    assert listed.returncode == 2, listed.stdout + listed.stderr
    for allowed in ("received", "applied", "ignored", "stale", "dead"):
        assert allowed in listed.stderr
    assert "'bogus'" in listed.stderr
    replayed = webhooks_cli(ops, "replay", "we_nope")
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "not found" in replayed.stderr and "we_nope" in replayed.stderr
    assert "replayed" not in replayed.stdout


def test_refused_deliveries_are_counted_by_reason(ops: Api) -> None:
    body = b'{"id": "evt_x", "type": "charge.updated"}'
    httpx.post(f"{ops.server.url}/webhooks/sandbox", content=body)
    httpx.post(f"{ops.server.url}/webhooks/sandbox", content=body,
               headers={"paymux-sandbox-signature": sign_header(body, "whsec_wrong")})
    stats = admin(ops.server, "GET", "/webhooks/stats").json()["rejected"]
    counts = {(r["gateway"], r["reason"]): r["count"] for r in stats}
    assert counts[("sandbox", "missing_signature")] >= 1
    assert counts[("sandbox", "signature_mismatch")] >= 1
