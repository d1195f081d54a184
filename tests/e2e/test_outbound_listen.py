"""``paymux listen --forward-to URL`` (like ``stripe listen``) against a real ``paymux serve``
(SQLite) and a real receiver on 127.0.0.1: only events created after it started, only the
types asked for (``--events``), each signed with the session's secret (checked with the
official ``standardwebhooks`` verifier) and one printed line each with the answer's status.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import standardwebhooks

from paymux.outbound.signing import new_secret
from support.dbtemplate import migrated_sqlite_file
from support.processes import ServeProcess
from support.webhook_receiver import Receiver


def test_listen_forwards_new_events_of_the_asked_types_signed(tmp_path: Path) -> None:
    url = migrated_sqlite_file(tmp_path / "listen.db")  # a copy of the migrated template
    key = "sk_test_" + uuid.uuid4().hex
    secret = new_secret()
    # The first forwarded event is answered 200, the second 500: both statuses are printed.
    with Receiver(respond=lambda n: (200, "ok") if n == 0 else (500, "no")) as rx:
        server = ServeProcess(tmp_path, url, key)
        try:
            before = server.ok("POST", "/v1/customers", {"email": "old@example.com"})["id"]
            listen = subprocess.Popen(
                [sys.executable, "-m", "paymux.cli", "listen", "--forward-to", rx.url,
                 "--events", "customer.created,customer.updated", "--api-base", server.url,
                 "--api-key", key, "--secret", secret, "--interval", "0.1", "--max-events", "2"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            try:
                assert listen.stdout is not None
                ready = listen.stdout.readline()
                assert ready.startswith("Ready!"), ready + (
                    listen.stderr.read() if listen.stderr else ""
                )
                assert secret in ready
                first = server.ok("POST", "/v1/customers", {"email": "a@example.com"})["id"]
                server.ok("DELETE", f"/v1/customers/{first}")  # customer.deleted: not asked for
                second = server.ok("POST", "/v1/customers", {"email": "b@example.com"})["id"]
                out, err = listen.communicate(timeout=30)
            finally:
                listen.kill()
            assert listen.returncode == 0, err
        finally:
            server.stop()
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    received = rx.requests()
    assert [r.event["data"]["object"]["id"] for r in received] == [first, second]
    assert before not in out
    assert all(r.event["type"] == "customer.created" for r in received)
    verifier = standardwebhooks.Webhook(secret)
    for r in received:
        verified = verifier.verify(r.body, r.headers)
        assert verified["id"] == r.headers["webhook-id"]
        assert json.loads(r.body)["object"] == "event"
    ids = [r.event["id"] for r in received]
    assert "customer.created" in lines[0] and ids[0] in lines[0] and "[200]" in lines[0]
    assert ids[1] in lines[1] and "[500]" in lines[1]
