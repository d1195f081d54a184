"""Migration 0010 on a database that already holds data: each idempotency key gets the mode it
was made in (where its row shows it), keys become per mode, and tokens recorded by exactly one
account get that account as their owner. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import database_url
from paymux.storage.migrate import alembic_config, upgrade
from support.pgcluster import PgCluster

NOW = 1_700_000_000_000_000

_KEY = (
    "INSERT INTO idempotency_keys (account_id, key, method, path, request_hash, status, "
    "response_status, response_body, locked_us, created_us, recovery_point, object_id) "
    "VALUES ('acct_a', :key, 'POST', '/v1/x', 'h', :status, :code, :body, 0, :now, :point, :obj)"
)
# (key, status, response status, stored body, recovery point, object) -> livemode after 0010
KEYS: list[tuple[tuple[Any, ...], bool]] = [
    (("live-answer", "done", 200, '{"id": "cus_1", "livemode": true, "metadata": {}}',
      None, None), True),
    (("test-answer", "done", 200, '{"id": "cus_2", "livemode": false}', None, None), False),
    # A test object whose metadata *says* "livemode": true: a string, escaped in the JSON.
    (("test-quoting-live", "done", 200,
      '{"id": "cus_3", "livemode": false, "metadata": {"n": "\\"livemode\\": true"}}',
      None, None), False),
    (("live-half-way", "in_flight", None, None, "created", "seti_live"), True),
    (("test-half-way", "in_flight", None, None, "created", "seti_test"), False),
    (("an-error", "done", 400, '{"error": {"code": "parameter_missing"}}', None, None), False),
]


def _run(url: str, *statements: tuple[str, dict[str, Any]]) -> list[list[Any]]:
    async def main() -> list[list[Any]]:
        engine = create_async_engine(url)
        try:
            results = []
            async with engine.begin() as conn:
                for sql, params in statements:
                    result = await conn.execute(text(sql), params)
                    results.append(list(result.all()) if result.returns_rows else [])
            return results
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _seed(url: str) -> None:
    statements: list[tuple[str, dict[str, Any]]] = [
        ("INSERT INTO accounts (id, name, created_us) VALUES (:a, :a, 1)", {"a": a})
        for a in ("acct_a", "acct_b")
    ]
    for seti, live in (("seti_live", True), ("seti_test", False)):
        statements.append((
            "INSERT INTO setup_intents (id, account_id, status, usage, gateway, client_secret, "
            "attempts, pending, livemode, metadata, created_us, updated_us) VALUES (:id, "
            "'acct_a', 'requires_payment_method', 'off_session', 'sandbox', 's', 0, :f, :live, "
            "'{}', 1, 1)", {"id": seti, "live": live, "f": False}))
    for (key, status, code, body, point, obj), _ in KEYS:
        statements.append((_KEY, {"key": key, "status": status, "code": code, "body": body,
                                  "now": NOW, "point": point, "obj": obj}))
    for pm, account, token in (("pm_1", "acct_a", "tok_only_a"), ("pm_2", "acct_a", "tok_both"),
                               ("pm_3", "acct_b", "tok_both"), ("pm_4", "acct_b", "tok_only_b"),
                               ("pm_5", "acct_b", "tok_only_b_too")):
        statements.append((
            "INSERT INTO payment_methods (id, account_id, gateway, token, type, metadata, "
            "created_us) VALUES (:id, :a, 'sandbox', :t, 'card', '{}', :now)",
            {"id": pm, "a": account, "t": token, "now": NOW}))
    _run(url, *statements)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_existing_keys_keep_their_mode_and_tokens_their_single_owner(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = database_url(backend, tmp_path, pg_cluster, f"migration_0010_{backend}")
    upgrade(url, "0009")
    _seed(url)
    upgrade(url)

    keys, owners = _run(
        url,
        ("SELECT key, livemode FROM idempotency_keys", {}),
        ("SELECT gateway, token, account_id FROM gateway_token_owners", {}),
    )
    assert {k: bool(live) for k, live in keys} == {
        "live-answer": True, "test-answer": False, "test-quoting-live": False,
        "live-half-way": True, "test-half-way": False, "an-error": False,
    }
    # tok_both was recorded by two accounts: it gets no owner (the payment-method check
    # still refuses it to a third account).
    assert sorted(owners) == [("sandbox", "tok_only_a", "acct_a"),
                              ("sandbox", "tok_only_b", "acct_b"),
                              ("sandbox", "tok_only_b_too", "acct_b")]

    # The key is now per mode: the same key in the other mode is a row of its own ...
    insert = (
        "INSERT INTO idempotency_keys (account_id, livemode, key, method, path, request_hash, "
        "status, locked_us, created_us) VALUES ('acct_a', :live, 'live-answer', 'POST', "
        "'/v1/x', 'h', 'in_flight', 0, :now)"
    )
    _run(url, (insert, {"live": False, "now": NOW}))
    # ... and the same key in the same mode is still refused.
    with pytest.raises(IntegrityError):
        _run(url, (insert, {"live": True, "now": NOW}))

    command.downgrade(alembic_config(url), "0009")
    (after,) = _run(url, ("SELECT key FROM idempotency_keys ORDER BY key", {}))
    # Going back, the two modes' rows of one key cannot both stay: the live one does.
    assert [k for (k,) in after] == sorted(k[0] for k, _ in KEYS)
    (answer,) = _run(url, ("SELECT response_body FROM idempotency_keys WHERE key = "
                           "'live-answer'", {}))
    assert answer[0][0] == KEYS[0][0][3]
    upgrade(url)  # and forward again
