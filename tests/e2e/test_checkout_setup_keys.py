"""A setup-mode Checkout Session's SetupIntent is keyed to the session: a create retried
with the same Idempotency-Key after a crash between the SetupIntent and the session's row
resumes that SetupIntent (and the customer made for it), never a second one. SQLite and
PostgreSQL (tests/conftest.py's ``api``)."""

from __future__ import annotations

import hashlib
import uuid

from conftest import Api

SUCCESS = "https://shop.example/saved?session={CHECKOUT_SESSION_ID}"


def _crash_on_insert(api: Api, marker: str) -> None:
    """A trigger that makes the session row's insert fail (the crash after the intent)."""
    if api.server.settings.database_url.startswith("postgresql"):
        api.server.sql(
            "create or replace function h3_setup_crash() returns trigger as $$ begin "
            f"if new.client_reference_id = '{marker}' then raise exception 'crash'; end if; "
            "return new; end $$ language plpgsql")
        api.server.sql("create trigger h3_setup_crash before insert on checkout_sessions "
                       "for each row execute function h3_setup_crash()")
    else:
        api.server.sql("create trigger h3_setup_crash before insert on checkout_sessions "
                       f"when new.client_reference_id = '{marker}' "
                       "begin select raise(abort, 'crash'); end")


def _drop_crash(api: Api) -> None:
    postgres = api.server.settings.database_url.startswith("postgresql")
    api.server.sql("drop trigger h3_setup_crash" + (" on checkout_sessions" if postgres else ""))


def _rows(api: Api, table: str, columns: str = "id") -> list[tuple[object, ...]]:
    query = f"select {columns} from {table} where account_id = :a order by id"
    return [tuple(r) for r in api.server.sql(query, a=api.account_id)]


def test_a_retried_setup_create_after_a_crash_makes_one_setup_intent_and_one_customer(
    api: Api,
) -> None:
    marker = f"crash-{uuid.uuid4().hex[:12]}"
    key = f"setup-crash-{uuid.uuid4()}"
    body = {"mode": "setup", "success_url": SUCCESS, "client_reference_id": marker,
            "customer_email": "saver@example.com"}
    _crash_on_insert(api, marker)
    try:
        first = api.post("/v1/checkout/sessions", body, headers={"idempotency-key": key})
        assert first.status_code >= 500, first.text
        made = _rows(api, "setup_intents", "id, customer_id")
        assert len(made) == 1 and len(_rows(api, "customers")) == 1  # made, then the crash
    finally:
        _drop_crash(api)
    second = api.post("/v1/checkout/sessions", body, headers={"idempotency-key": key})
    assert second.status_code == 200, second.text
    cs = second.json()
    # The same SetupIntent, whose id is the session's (sha256 of "<session>:setup_intent").
    digest = hashlib.sha256(f"{cs['id']}:setup_intent".encode()).hexdigest()[:24]
    assert cs["setup_intent"] == made[0][0] == f"seti_{digest}"
    assert cs["customer"] == made[0][1]
    assert _rows(api, "setup_intents", "id, customer_id") == made
    assert len(_rows(api, "customers")) == 1
    # A second submit of the same create answers the same session, still one of each.
    third = api.ok("POST", "/v1/checkout/sessions", body, headers={"idempotency-key": key})
    assert (third["id"], third["setup_intent"]) == (cs["id"], cs["setup_intent"])
    assert _rows(api, "setup_intents", "id, customer_id") == made


def test_each_setup_session_has_its_own_setup_intent(api: Api) -> None:
    body = {"mode": "setup", "success_url": SUCCESS, "customer_email": "a@example.com"}
    one = api.ok("POST", "/v1/checkout/sessions", body)
    two = api.ok("POST", "/v1/checkout/sessions", body)
    assert one["setup_intent"] != two["setup_intent"]
    for cs in (one, two):
        digest = hashlib.sha256(f"{cs['id']}:setup_intent".encode()).hexdigest()[:24]
        assert cs["setup_intent"] == f"seti_{digest}"
        si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
        assert (si["status"], si["customer"]) == ("requires_payment_method", cs["customer"])
