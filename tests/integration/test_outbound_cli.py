"""``paymux webhooks deliver we_... --since/--until``: a time range replayed to one endpoint
through the CLI entry point (typer's CliRunner on ``paymux.cli.cli``), on a real database
the events were made in by paymux in-process (support/harness.py), to a real receiver on
127.0.0.1. Times are given as unix seconds and as ISO 8601 (with and without an offset);
``--event`` with ``--since`` is refused.

The events are made at the harness's clock (support/harness.py START_US: unix second
1,800,000,000, 2027-01-15T08:00:00Z), 100 s apart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paymux.cli import cli
from paymux.config import get_settings
from paymux.outbound.delivery import DeliveryRunner
from paymux.security.envelope import generate_key_entry
from support.databases import migrated_database_fixture
from support.harness import Harness
from support.webhook_receiver import Receiver

# The CLI calls the same services as the API (whose replay is tested on both databases in
# test_outbound_delivery.py): one database is enough here.
db = migrated_database_fixture("outbound_cli", ["sqlite"])

START = 1_800_000_000  # 2027-01-15T08:00:00Z


class Made:
    def __init__(self) -> None:
        self.endpoints: list[str] = []
        self.customers: list[str] = []


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, db: str) -> Iterator[str]:
    entry = generate_key_entry("k1")
    monkeypatch.setenv("PAYMUX_DATABASE_URL", db)
    monkeypatch.setenv("PAYMUX_ENCRYPTION_KEYS", entry)
    get_settings.cache_clear()
    try:
        yield entry
    finally:
        get_settings.cache_clear()


def make(db: str, tmp: Path, keys: str, urls: list[str]) -> Made:
    """An endpoint per URL (customer.created), three customers 100 s apart from START, each
    delivered to every endpoint once."""
    made = Made()

    async def main() -> None:
        async with Harness.open(db, tmp, encryption_keys=keys) as h:
            assert h.clock.now_us() == START * 1_000_000
            for url in urls:
                r = await h.post(
                    "/v1/webhook_endpoints", {"url": url, "enabled_events": ["customer.created"]}
                )
                assert r.status_code == 200, r.text
                made.endpoints.append(str(h.body(r)["id"]))
            for i in range(3):
                r = await h.post("/v1/customers", {"email": f"c{i}@example.com"})
                assert r.status_code == 200, r.text
                made.customers.append(str(h.body(r)["id"]))
                h.advance(100)
            runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
            try:
                await runner.drain()
            finally:
                await runner.client.aclose()

    asyncio.run(main())
    return made


def objects(rx: Receiver) -> list[str]:
    return [str(q.event["data"]["object"]["id"]) for q in rx.requests()]


def test_cli_replays_a_time_range_given_in_seconds_or_iso_to_one_endpoint(
    db: str, tmp_path: Path, keys: str
) -> None:
    """Customers at START, +100, +200. ``--since START+50 --until <ISO of START+150>`` sends
    the first endpoint the middle event again (same webhook-id) and nothing else;
    ``--since 2027-01-15T10:03:20+02:00`` (START+200) with ``--until START+250`` (seconds)
    sends the last one. The other endpoint gets nothing more."""
    with Receiver() as rx1, Receiver() as rx2:
        made = make(db, tmp_path, keys, [rx1.url, rx2.url])
        c0, c1, c2 = made.customers
        # (deliveries run concurrently: their order is not guaranteed)
        assert sorted(objects(rx1)) == sorted(objects(rx2)) == sorted([c0, c1, c2])
        ep1 = made.endpoints[0]

        first = CliRunner().invoke(
            cli,
            [
                "webhooks",
                "deliver",
                ep1,
                "--since",
                str(START + 50),
                "--until",
                "2027-01-15T08:02:30",
                "--now",
            ],
        )
        assert first.exit_code == 0, first.output
        assert f"1 event(s) to {ep1}: delivered" in first.output
        assert objects(rx1)[3:] == [c1]
        [before] = [q for q in rx1.requests()[:3] if q.event["data"]["object"]["id"] == c1]
        assert rx1.requests()[3].headers["webhook-id"] == before.headers["webhook-id"]

        second = CliRunner().invoke(
            cli,
            [
                "webhooks",
                "deliver",
                ep1,
                "--since",
                "2027-01-15T10:03:20+02:00",
                "--until",
                str(START + 250),
                "--now",
            ],
        )
        assert second.exit_code == 0, second.output
        assert f"1 event(s) to {ep1}: delivered" in second.output
        assert objects(rx1)[3:] == [c1, c2]
        assert len(rx2.requests()) == 3


def test_cli_range_without_now_queues_for_the_worker(db: str, tmp_path: Path, keys: str) -> None:
    """Without ``--now`` the range is queued, not sent: the receiver gets nothing more
    until a worker runs."""
    with Receiver() as rx:
        made = make(db, tmp_path, keys, [rx.url])
        ep = made.endpoints[0]
        done = CliRunner().invoke(
            cli, ["webhooks", "deliver", ep, "--since", str(START), "--until", str(START + 150)]
        )
        assert done.exit_code == 0, done.output
        assert f"2 event(s) to {ep}: queued for the worker" in done.output
        assert len(rx.requests()) == 3


def test_cli_refuses_event_with_a_range_and_a_bad_time(db: str, tmp_path: Path, keys: str) -> None:
    """``--event`` with ``--since`` is a usage error (exit 2) naming --event; a time that is
    neither seconds nor ISO 8601 is a usage error naming --since; nothing is queued."""
    with Receiver() as rx:
        made = make(db, tmp_path, keys, [rx.url])
        ep = made.endpoints[0]
        both = CliRunner().invoke(
            cli, ["webhooks", "deliver", ep, "--event", "evt_x", "--since", str(START), "--now"]
        )
        assert both.exit_code == 2
        assert "either --event or --since/--until" in both.output
        assert "--event" in both.output
        bad = CliRunner().invoke(cli, ["webhooks", "deliver", ep, "--since", "yesterday", "--now"])
        assert bad.exit_code == 2
        assert "unix seconds or an ISO 8601 time" in bad.output
        assert "--since" in bad.output
        assert len(rx.requests()) == 3
