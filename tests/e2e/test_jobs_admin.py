"""Operating the job queue: dead jobs listed and retried through the admin API and the
`paymux jobs` command (run in this process, support/cli.py), against a running server (with
its worker) on both backends.

Jobs are put in place with SQL, as the worker leaves them after their last attempt; a
retried ``purge_idempotency_keys`` job (no payload, always succeeds) shows the worker picks
a retried job up and finishes it.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RunningServer, free_port, make_settings, migrated_database_url
from support.cli import paymux_cli
from support.pgcluster import PgCluster

ADMIN = "adm_" + "j" * 24
NOW_S = 1_700_000_000


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def jobs_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"jobs-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"jobs_admin_{request.param}")
    # The done jobs inserted here are dated NOW_S (2023): a retention longer than their age
    # keeps the worker's sweep from pruning them (PAYMUX_JOB_RETENTION_SECONDS).
    settings = make_settings(
        url, tmp, free_port(), admin_key=ADMIN, job_retention_seconds=100 * 365 * 86_400.0
    )
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


def admin(server: RunningServer, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{server.url}/v1/admin{path}",
                         headers={"authorization": f"Bearer {ADMIN}"}, timeout=30, **kw)


def insert_job(server: RunningServer, kind: str, status: str = "dead", *,
               error: str | None = "boom", dedupe_key: str | None = None,
               payload: dict[str, Any] | None = None, attempts: int = 3,
               run_at_s: int = NOW_S, updated_s: int = NOW_S) -> int:
    """A job row as the worker leaves it (dead: attempts used up, last error kept)."""
    [(job_id,)] = server.sql(
        "insert into jobs (kind, payload, dedupe_key, status, run_at_us, attempts, "
        "max_attempts, last_error, created_us, updated_us) values (:kind, :payload, :key, "
        ":status, :run_at, :attempts, 3, :error, :created, :updated) returning id",
        kind=kind, payload=json.dumps(payload or {}), key=dedupe_key, status=status,
        run_at=run_at_s * 1_000_000, attempts=attempts, error=error,
        created=NOW_S * 1_000_000, updated=updated_s * 1_000_000,
    )
    return int(job_id)


def job_row(server: RunningServer, job_id: int) -> tuple[str, int, str | None]:
    [(status, attempts, error)] = server.sql(
        "select status, attempts, last_error from jobs where id = :id", id=job_id)
    return status, int(attempts), error


def wait_done(server: RunningServer, job_id: int, timeout: float = 30) -> tuple[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        status, attempts, _ = job_row(server, job_id)
        if status == "done" or time.monotonic() > deadline:
            return status, attempts
        time.sleep(0.05)


def unique_kind() -> str:
    return f"e2e_{uuid.uuid4().hex[:10]}"


# -- admin API ------------------------------------------------------------------------------


def test_the_admin_api_lists_dead_jobs_and_a_retried_one_runs(jobs_server: RunningServer) -> None:
    server = jobs_server
    kind = unique_kind()
    older = insert_job(server, kind, error="first " + "x" * 300, updated_s=NOW_S)
    newer = insert_job(server, kind, error="second", updated_s=NOW_S + 5)
    insert_job(server, kind, status="done", error=None)
    listed = admin(server, "GET", "/jobs", params={"status": "dead", "kind": kind})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["object"] == "list" and body["has_more"] is False
    assert [j["id"] for j in body["data"]] == [newer, older]  # latest change first
    assert body["data"][1] == {
        "id": older, "object": "job", "kind": kind, "status": "dead", "payload": {},
        "dedupe_key": None, "attempts": 3, "max_attempts": 3,
        "last_error": "first " + "x" * 300, "locked_by": None, "run_at": NOW_S,
        "locked_until": None, "created": NOW_S, "updated": NOW_S,
    }
    first = admin(server, "GET", "/jobs", params={"status": "dead", "kind": kind, "limit": 1})
    assert first.status_code == 200
    assert [j["id"] for j in first.json()["data"]] == [newer] and first.json()["has_more"]
    all_kinds = admin(server, "GET", "/jobs", params={"kind": kind, "limit": 1000})
    assert all_kinds.status_code == 200, all_kinds.text
    assert len(all_kinds.json()["data"]) == 3 and all_kinds.json()["has_more"] is False

    # A dead purge job: retried, it is queued at once with its attempts reset, and the
    # server's worker runs it to done (one attempt).
    purge = insert_job(server, "purge_idempotency_keys", error="database was down")
    retried = admin(server, "POST", f"/jobs/{purge}/retry")
    assert retried.status_code == 200, retried.text
    view = retried.json()
    assert (view["id"], view["object"], view["status"], view["attempts"]) == (
        purge, "job", "queued", 0
    )
    assert view["run_at"] >= int(time.time()) - 60 and view["last_error"] == "database was down"
    assert wait_done(server, purge) == ("done", 1)
    again = admin(server, "POST", f"/jobs/{purge}/retry")
    assert again.status_code == 400
    error = again.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", "job_unexpected_state", "id"
    )
    assert f"Job {purge} is done, not dead" in error["message"] and error["request_id"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/jobs/987654321/retry", 404, "resource_missing"),
        ("/jobs/0/retry", 404, "resource_missing"),
        ("/jobs/abc/retry", 404, "resource_missing"),
        ("/jobs/-5/retry", 404, "resource_missing"),
        ("/jobs/9223372036854775807/retry", 404, "resource_missing"),
        ("/jobs/9223372036854775808/retry", 404, "resource_missing"),
        ("/jobs/" + "9" * 5000 + "/retry", 404, "resource_missing"),
    ],
)
def test_retrying_no_such_job_is_a_404(
    jobs_server: RunningServer, path: str, status: int, code: str
) -> None:
    r = admin(jobs_server, "POST", path)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"status": "buried"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"kind": "k" * 65}, "kind"),
    ],
)
def test_listing_with_a_bad_parameter_is_a_400(
    jobs_server: RunningServer, params: dict[str, Any], param: str
) -> None:
    r = admin(jobs_server, "GET", "/jobs", params=params)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("parameter_invalid", param)


def test_retry_refusals_have_stable_codes_and_change_nothing(
    jobs_server: RunningServer,
) -> None:
    server = jobs_server
    key = f"settle:att_{uuid.uuid4().hex[:8]}"
    dead = insert_job(server, "settle_attempt", dedupe_key=key)
    live = insert_job(server, "settle_attempt", "queued", error=None, dedupe_key=key,
                      attempts=0, run_at_s=int(time.time()) + 3600)  # not due for an hour
    conflict = admin(server, "POST", f"/jobs/{dead}/retry")
    assert conflict.status_code == 409, conflict.text
    error = conflict.json()["error"]
    assert (error["code"], error["param"]) == ("job_dedupe_conflict", "id")
    assert f"job {live} " in error["message"] and key in error["message"]

    webhook = insert_job(server, "apply_webhook", payload={"inbox_id": "we_e2e"})
    refused = admin(server, "POST", f"/jobs/{webhook}/retry")
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "job_not_retryable"
    assert "/v1/admin/webhooks/we_e2e/replay" in refused.json()["error"]["message"]

    queued = admin(server, "POST", f"/jobs/{live}/retry")
    assert queued.status_code == 400
    assert queued.json()["error"]["code"] == "job_unexpected_state"
    assert job_row(server, dead) == ("dead", 3, "boom")
    assert job_row(server, live) == ("queued", 0, None)
    assert job_row(server, webhook) == ("dead", 3, "boom")


def test_the_admin_jobs_endpoints_need_the_admin_key(jobs_server: RunningServer) -> None:
    job = insert_job(jobs_server, unique_kind())
    _, account_key = jobs_server.new_key()
    for headers in ({}, {"authorization": f"Bearer {account_key}"},
                    {"authorization": "Bearer adm_wrong"}, {"authorization": f"Basic {ADMIN}"}):
        for method, path in (("GET", "/jobs?status=dead"), ("POST", f"/jobs/{job}/retry")):
            r = httpx.request(method, f"{jobs_server.url}/v1/admin{path}", headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["error"]["type"] == "invalid_request_error"  # as Stripe's 401s
    assert job_row(jobs_server, job) == ("dead", 3, "boom")


# -- the command line -----------------------------------------------------------------------


def paymux_jobs(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``paymux jobs ...`` run in this process (support/cli.py), no other PAYMUX_* setting."""
    return paymux_cli("jobs", *args, clean=True, env={
        "PAYMUX_DATABASE_URL": server.settings.database_url,
        "PAYMUX_SANDBOX_DB": server.settings.sandbox_db})


def test_the_cli_lists_dead_jobs_and_retries_one(jobs_server: RunningServer) -> None:
    server = jobs_server
    kind = unique_kind()
    long_error = "ConnectError: " + "the gateway did not answer " * 10
    dead = insert_job(server, kind, error=long_error, updated_s=NOW_S + 3600)
    done = insert_job(server, kind, status="done", error=None)
    listed = paymux_jobs(server, "list", "--dead", "--kind", kind)
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if f" {dead} " in f" {line} "]
    assert len(lines) == 1, listed.stdout
    row = lines[0]
    for cell in (kind, "dead", "3/3", "ConnectError: the gateway did not answer",
                 "2023-11-14 23:13:20"):  # NOW_S + 1 h in UTC
        assert cell in row, row
    assert long_error not in listed.stdout  # truncated to one short line
    assert f" {done} " not in f" {listed.stdout} " and "dead jobs" in listed.stdout
    by_status = paymux_jobs(server, "list", "--status", "done", "--kind", kind)
    assert by_status.returncode == 0 and f" {done} " in by_status.stdout

    purge = insert_job(server, "purge_idempotency_keys", error="timeout")
    retried = paymux_jobs(server, "retry", str(purge))
    assert retried.returncode == 0, retried.stderr
    assert f"job {purge} (purge_idempotency_keys) queued again" in retried.stdout
    assert wait_done(server, purge) == ("done", 1)

    refused = paymux_jobs(server, "retry", str(purge))
    assert refused.returncode == 1
    assert "job_unexpected_state" in refused.stderr and f"Job {purge} is done" in refused.stderr
    missing = paymux_jobs(server, "retry", "987654321")
    assert missing.returncode == 1
    assert "resource_missing" in missing.stderr and "No such job: 987654321" in missing.stderr


def test_the_cli_refuses_bad_options(jobs_server: RunningServer) -> None:
    bad_status = paymux_jobs(jobs_server, "list", "--status", "buried")
    assert bad_status.returncode == 2 and "Invalid status" in bad_status.stderr
    both = paymux_jobs(jobs_server, "list", "--dead", "--status", "done")
    assert both.returncode == 2 and "contradict" in both.stderr
    not_a_number = paymux_jobs(jobs_server, "retry", "abc")
    assert not_a_number.returncode == 2
    too_many = paymux_jobs(jobs_server, "list", "--limit", "5000")
    assert too_many.returncode == 2
