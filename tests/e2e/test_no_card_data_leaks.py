"""No card number, CVC or credential reaches paymux's logs, its database or an error body.

Logging is configured exactly as `paymux serve` does it (``configure_logging``: JSON lines,
request ids, redaction), at DEBUG, with the handler's stream pointed at a buffer. The test
server runs in this process (conftest), so everything it logs, from uvicorn's access log to
SQLAlchemy and the worker, goes through that handler. Records logged by the test's own
thread (the test's HTTP client) are left out: they are not the server's.

Card numbers are sent in every place a client might put one: JSON fields, metadata values
and keys, nested lists, numbers, the query string (values and names, with spaces, dashes
and ``+``/``%20`` encodings), form-encoded, multipart and plain-text bodies, the URL path
and the ``Idempotency-Key`` header. Each is refused with 400 ``card_number_not_allowed``
naming the parameter, and the digits appear nowhere. Real payment flows run as well
(success, decline, 3DS with the sandbox's signed webhook, capture, refund, a customer with
a card tokenized by the sandbox and attached), then the logs and every byte of the database
(SQLite file and WAL, or every PostgreSQL table as text) and of the sandbox's own store are
searched for the numbers, the CVCs, the API key and the webhook secret.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

import httpx
import pytest
from sqlalchemy.engine import make_url

from conftest import BACKENDS, Api, RunningServer, fresh_server
from paymux.gateways.sandbox import SandboxProcessor
from support.pgcluster import PgCluster
from support.sandbox_pages import answer_challenge
from support.server_logs import Logs, capture_server_logs

# Test card numbers (all Luhn-valid), as digits.
VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
DISCOVER = "6011111111111117"
VISA_DEBIT = "4000056655665556"
DECLINE = "4000000000000002"
ALL_PANS = (VISA, MASTERCARD, AMEX, DISCOVER, VISA_DEBIT, DECLINE)
# Distinctive CVCs, only ever sent to the sandbox's tokenization endpoint.
CVCS = ("9183", "746", "7373")


def spaced(pan: str, sep: str = " ") -> str:
    return sep.join(pan[i:i + 4] for i in range(0, len(pan), 4))


def _digit_table() -> dict[int, str | None]:
    """One translation, character by character, of what matters here from NFKC: every
    Unicode decimal digit as its ASCII digit, format (zero-width) characters dropped, and
    each character that NFKC rewrites (full-width forms, no-break spaces, ...) rewritten."""
    table: dict[int, str | None] = {}
    for code in range(0x80, 0x30000):
        ch = chr(code)
        category = unicodedata.category(ch)
        if category == "Nd":
            table[code] = str(unicodedata.decimal(ch))
        elif category == "Cf":
            table[code] = None
        else:
            folded = unicodedata.normalize("NFKC", ch)
            if folded != ch:
                table[code] = folded
    return table


_DIGITS = _digit_table()


def _unicode_digits(text: str) -> str:
    """``text`` with Unicode digits as ASCII and zero-width characters dropped. A
    translation table, not a loop: the texts are whole logs and database files."""
    return text if text.isascii() else text.translate(_DIGITS)


_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _unquote(text: str) -> str:
    """``urllib.parse.unquote``, applied only where there is something to decode (it is
    slow on whole database files)."""
    return _PERCENT_RUN.sub(lambda m: unquote(m.group()), text) if "%" in text else text


def _variants(text: str) -> set[str]:
    """``text`` as written, URL-decoded (once and twice), with JSON escapes decoded, and
    with UTF-8 bytes read as latin-1 (SQLite's file, read as latin-1) decoded."""
    unescaped = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    as_utf8 = text.encode("latin-1", "ignore").decode("utf-8", "ignore")
    texts = {text, unescaped, as_utf8}
    decoded = {
        v
        for t in texts
        for v in (t, _unquote(t), _unquote(t.replace("+", " ")), _unquote(_unquote(t)))
    }
    return {_unicode_digits(v) for v in decoded}


# Anything between two digits that is not a letter: separators, JSON escapes, percent escapes.
_BETWEEN_DIGITS = re.compile(r"(?<=\d)(?:[\W_]|%[0-9A-Fa-f]{2}|\\[tnr]|\\u[0-9a-fA-F]{4})+(?=\d)")


def pans_in(text: str) -> set[str]:
    """The test PANs found in ``text``, raw, URL- or JSON-encoded, in any Unicode digits,
    with any separators or zero-width characters."""
    found = set()
    for variant in _variants(text):
        squeezed = _BETWEEN_DIGITS.sub("", variant)
        found |= {pan for pan in ALL_PANS if pan in squeezed}
    return found


def digit_runs(text: str) -> set[str]:
    return set(re.findall(r"\d{5,}", re.sub(r"(?<=\d)[\s+\-]+(?=\d)", "", text)))


# -- a server of this module's own -------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    """This module reads every byte of the database after each case: on a database of its own,
    it reads what these cases wrote (every one of them), not what the whole session did."""
    yield from fresh_server(request.param, tmp_path_factory, pg_cluster)


# -- logging, as in production -------------------------------------------------------------


@pytest.fixture
def logs() -> Iterator[Logs]:
    with capture_server_logs("DEBUG") as captured:
        yield captured


# -- what is stored ----------------------------------------------------------------------------


def sandbox_store(server: RunningServer) -> bytes:
    base = Path(server.settings.sandbox_db)
    return b"".join(p.read_bytes() for p in (base, Path(f"{base}-wal")) if p.exists())


def webhook_secret(server: RunningServer) -> str:
    """The sandbox's webhook signing secret (made on first use and kept in its store)."""
    processor = SandboxProcessor(server.settings.sandbox_db)
    try:
        secret = processor.webhook_secret()
    finally:
        processor.close()
    assert secret.startswith("whsec_")
    return secret


def database_text(server: RunningServer) -> str:
    """Every byte paymux's database holds: the SQLite file and WAL, or each PG table as text."""
    url = make_url(server.settings.database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        base = Path(url.database)
        files = [base, Path(f"{base}-wal")]
        return b"".join(p.read_bytes() for p in files if p.exists()).decode("latin-1")
    tables = [r[0] for r in server.sql(
        "select table_name from information_schema.tables where table_schema = 'public' "
        "and table_type = 'BASE TABLE'"
    )]
    assert "payment_intents" in tables and "idempotency_keys" in tables
    dump = []
    for table in tables:
        rows = server.sql(f'select t::text from "{table}" t')
        dump.append(f"-- {table}\n" + "\n".join(str(r[0]) for r in rows))
    return "\n".join(dump)


def assert_clean(text: str, where: str, *secrets: str) -> None:
    assert not pans_in(text), f"card numbers {pans_in(text)} in {where}"
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:8]}...) in {where}"


def assert_logs_clean(logs: Logs, api: Api) -> None:
    text = logs.text
    assert_clean(text, "the logs", api.key, webhook_secret(api.server))
    assert api.key.removeprefix("sk_test_") not in text
    assert "Bearer " not in text
    cvc = re.search(rf"(?i)(cvc|cvv|security.?code)\W{{0,12}}({'|'.join(CVCS)})\b", text)
    assert cvc is None, f"a CVC in the logs: {cvc.group(0)!r}"
    for record in logs.records():  # every line is one JSON object
        assert {"ts", "level", "logger", "message", "request_id"} <= record.keys()


# -- card numbers sent to /v1 ----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    param: str | None
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    files: dict[str, Any] | None = None
    form: dict[str, str] | None = None


PI = "/v1/payment_intents"
CASES = [
    Case("json-description", "POST", PI, "description",
         json={"amount": 2000, "currency": "usd", "description": VISA}),
    Case("json-description-spaces-in-text", "POST", PI, "description",
         json={"amount": 2000, "currency": "usd", "description": f"my card {spaced(VISA)} ok"}),
    Case("json-metadata-value-dashes", "POST", PI, "metadata[note]",
         json={"amount": 2000, "currency": "usd", "metadata": {"note": spaced(MASTERCARD, "-")}}),
    Case("json-metadata-key", "POST", PI, "metadata[************0005]",
         json={"amount": 2000, "currency": "usd", "metadata": {AMEX: "x"}}),
    Case("json-nested-list", "POST", PI, "items[1][notes][1]",
         json={"amount": 2000, "currency": "usd",
               "items": [{"sku": "a"}, {"notes": ["fine", spaced(DISCOVER)]}]}),
    Case("json-number", "POST", PI, "amount", json={"amount": int(VISA), "currency": "usd"}),
    Case("json-confirm-payment-method", "POST", f"{PI}/pi_doesnotexist/confirm", "payment_method",
         json={"payment_method": VISA}),
    Case("json-refund-metadata", "POST", "/v1/refunds", "metadata[card]",
         json={"payment_intent": "pi_x", "metadata": {"card": spaced(VISA_DEBIT)}}),
    Case("json-customer-email", "POST", "/v1/customers", "email",
         json={"email": f"{VISA}@example.com", "name": "Jo"}),
    Case("json-customer-update-description", "POST", "/v1/customers/cus_x", "description",
         json={"description": spaced(DECLINE, "-")}),
    Case("query-value", "GET", f"{PI}?starting_after={VISA}", "starting_after"),
    Case("query-value-dashes", "GET", f"/v1/customers?email={spaced(MASTERCARD, '-')}", "email"),
    Case("query-value-plus", "GET", f"/v1/events?type=x&object_id={spaced(VISA, '+')}",
         "object_id"),
    Case("query-value-percent20", "GET",
         f"/v1/refunds?payment_intent={spaced(DISCOVER, '%20')}", "payment_intent"),
    Case("query-name", "GET", f"{PI}?{AMEX}=1", "************0005"),
    Case("query-on-delete", "DELETE", f"/v1/customers/cus_x?note={VISA}", "note"),
    Case("form-body", "POST", PI, "description",
         content=f"amount=2000&currency=usd&description={VISA}".encode(),
         content_type="application/x-www-form-urlencoded"),
    Case("form-body-plus", "POST", PI, "description",
         content=f"amount=2000&currency=usd&description={spaced(VISA, '+')}".encode(),
         content_type="application/x-www-form-urlencoded"),
    Case("form-body-percent20", "POST", PI, "description",
         content=f"amount=2000&description={spaced(MASTERCARD, '%20')}".encode(),
         content_type="application/x-www-form-urlencoded"),
    # JSON in UTF-16 and UTF-32, which json.loads reads: NUL bytes between the digits.
    *(
        Case(f"json-{encoding}", "POST", PI, "description",
             content=json.dumps({"amount": 2000, "currency": "usd", "description": VISA})
             .encode(encoding), content_type="application/json")
        for encoding in ("utf-16-le", "utf-16", "utf-32")
    ),
    Case("plain-text-body", "POST", PI, "body",
         content=f"card: {spaced(VISA, '-')} exp 12/30".encode(), content_type="text/plain"),
    Case("multipart-body", "POST", PI, "body",
         form={"amount": "2000"}, files={"card": ("card.txt", VISA.encode(), "text/plain")}),
    Case("path-segment", "GET", f"{PI}/{VISA}", None),
    Case("path-segment-percent20", "GET", f"{PI}/{spaced(VISA, '%20')}", None),
    Case("idempotency-key-header", "POST", PI, "Idempotency-Key",
         json={"amount": 2000, "currency": "usd"}, headers=(("Idempotency-Key", VISA),)),
]


# The forms of the card-number rule (docs/security.md), each sent in a JSON body, a form
# body, a query string and metadata.
FULL_WIDTH_VISA = "".join(chr(0xFF10 + int(d)) for d in VISA)
ARABIC_INDIC_MASTERCARD = "".join(chr(0x0660 + int(d)) for d in MASTERCARD)
FORMS = {
    "dots": spaced(VISA, "."),
    "slashes": spaced(MASTERCARD, "/"),
    "underscores": spaced(DISCOVER, "_"),
    "double-spaces": spaced(VISA, "  "),
    "tabs": spaced(VISA_DEBIT, "\t"),
    "newlines": spaced(DECLINE, "\n"),
    "literal-percent20": spaced(VISA, "%20"),
    "nbsp": spaced(MASTERCARD, "\u00a0"),
    "em-space": spaced(VISA, "\u2003"),
    "ideographic-space": spaced(DISCOVER, "\u3000"),
    "zero-width-space": spaced(VISA, "\u200b"),
    "zero-width-non-joiner": "\u200c".join(MASTERCARD),
    "zero-width-joiner": spaced(VISA, "\u200d"),
    "word-joiner": spaced(DISCOVER, "\u2060"),
    "bom": "\ufeff" + VISA,
    "full-width-digits": FULL_WIDTH_VISA,
    "arabic-indic-digits": ARABIC_INDIC_MASTERCARD,
    "glued-after-letters": f"ref{VISA}",
    "glued-before-letters": f"{MASTERCARD}x",
    "amex-dots": f"{AMEX[:4]}.{AMEX[4:10]}.{AMEX[10:]}",
}
FORM_CASES = [
    case
    for name, value in FORMS.items()
    for case in (
        Case(f"form-{name}-json", "POST", PI, "description",
             json={"amount": 2000, "currency": "usd", "description": f"note: {value}"}),
        Case(f"form-{name}-metadata", "POST", PI, "metadata[note]",
             json={"amount": 2000, "currency": "usd", "metadata": {"note": value}}),
        Case(f"form-{name}-form-body", "POST", PI, "description",
             content=urlencode({"amount": "2000", "description": value}).encode(),
             content_type="application/x-www-form-urlencoded"),
        Case(f"form-{name}-query", "GET",
             f"/v1/customers?{urlencode({'email': value, 'limit': '3'})}", "email"),
    )
]
CASES += FORM_CASES

def send(api: Api, case: Case) -> httpx.Response:
    headers = dict(case.headers)
    if case.content_type:
        headers["content-type"] = case.content_type
    return api.http.request(
        case.method, case.path, json=case.json, content=case.content, headers=headers,
        files=case.files, data=case.form,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_card_number_anywhere_in_a_request_is_refused_and_never_echoed_logged_or_stored(
    api: Api, logs: Logs, case: Case
) -> None:
    before = api.counts()
    r = send(api, case)

    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "card_number_not_allowed"
    assert error["type"] == "invalid_request_error"
    assert error["param"] == case.param
    assert error["request_id"] == r.headers["request-id"]
    assert not pans_in(r.text), r.text
    # Nothing longer than a last four survives in the answer (the masked key keeps 4 digits).
    assert not {run for run in digit_runs(r.text) if len(run) >= 13}, r.text
    assert api.counts() == before

    assert_logs_clean(logs, api)
    access = [rec for rec in logs.records() if rec["logger"] == "uvicorn.access"]
    assert access and access[-1]["request_id"] == r.headers["request-id"]
    assert '" 400' in access[-1]["message"]
    # Nothing of this account was written (counts above); the database's every byte is
    # scanned once after all the cases (test_after_all_the_cases_...), not once per case:
    # the whole file takes seconds to scan in every encoding.


def test_other_headers_are_not_checked_but_neither_stored_nor_logged(
    api: Api, logs: Logs
) -> None:
    pi = api.ok("POST", PI, {"amount": 2000, "currency": "usd"},
                headers={"X-Card-Note": VISA, "User-Agent": f"shop/1.0 ({spaced(VISA)})"})
    assert not pans_in(json.dumps(pi))
    assert_logs_clean(logs, api)
    assert_clean(database_text(api.server), "paymux's database", api.key)


LOOSELY_GROUPED = "424 242 424 242 4242"  # VISA in 3-3-3-3-4: not refused, stored masked
ORDINARY = {
    "id": "pi_3NabcDEF4242xyz",
    "ts_ms": "1700000000004",
    "date": "2024-01-15",
    "datetime": "2024-01-15T10:30:00.123456Z",
    "dates": "2024/01/15 - 2024/02/15",
    "phone": "+44 20 7946 0958",
    "uuid": "550e8400-e29b-41d4-a716-446655440000",
    "not_luhn": "4242.4242.4242.4241",
    "no_card_prefix": "2000 0000 0000 0008",
    "amount": "1234567.89",
}


def test_ordinary_values_are_accepted_and_stored_unchanged(api: Api, logs: Logs) -> None:
    pi = api.ok("POST", PI, {"amount": 2000, "currency": "usd", "metadata": ORDINARY,
                             "description": "order 2024-01-15 ref 550e8400-e29b-41d4"})
    assert pi["metadata"] == ORDINARY
    fetched = api.ok("GET", f"{PI}/{pi['id']}")
    assert fetched["metadata"] == ORDINARY
    customer = api.ok("POST", "/v1/customers",
                      {"email": "jo.20240115@example.com", "name": "Jo 1700000000004"})
    assert customer["name"] == "Jo 1700000000004"


def test_a_loosely_grouped_number_is_accepted_but_stored_and_logged_masked(
    api: Api, logs: Logs
) -> None:
    pi = api.ok("POST", PI, {"amount": 2000, "currency": "usd",
                             "description": f"ref {LOOSELY_GROUPED}",
                             "metadata": {"note": LOOSELY_GROUPED}})
    assert pi["description"] == "ref ************4242"
    assert pi["metadata"] == {"note": "************4242"}
    r = api.http.get("/v1/customers", params={"email": LOOSELY_GROUPED})
    assert r.status_code == 200, r.text
    assert_logs_clean(logs, api)
    stored = database_text(api.server)
    assert pi["id"] in stored
    assert_clean(stored, "paymux's database", api.key)


# -- real flows ------------------------------------------------------------------------------


def tokenize(api: Api, number: str, cvc: str, *, form: bool = False) -> str:
    """The browser's part: card details to the sandbox's own endpoint (the provider)."""
    fields = {"number": number, "exp_month": "12", "exp_year": "2099", "cvc": cvc,
              "postal_code": "10001"}
    url = f"{api.server.url}/sandbox/v1/tokens"
    response = httpx.post(url, data=fields) if form else httpx.post(url, json=fields)
    assert response.status_code == 200, response.text
    card = response.json()["card"]
    assert card["last4"] == number.replace(" ", "")[-4:]
    assert "number" not in card and "cvc" not in card
    token: str = response.json()["id"]
    return token


def test_payment_flows_leave_no_card_data_or_secret_in_logs_or_storage(
    api: Api, logs: Logs
) -> None:
    def create(**params: Any) -> dict[str, Any]:
        return api.ok("POST", PI, {"amount": 2000, "currency": "usd", **params},
                      headers={"Idempotency-Key": f"order-{uuid.uuid4()}"})

    # Success, with a card typed into the "hosted form" (posted to the sandbox directly).
    token = tokenize(api, spaced(VISA), CVCS[0])
    done = api.ok("POST", f"{PI}/{create()['id']}/confirm", {"payment_method": token})
    assert done["status"] == "succeeded"

    # A decline.
    pi = create()
    r = api.post(f"{PI}/{pi['id']}/confirm", {"payment_method": tokenize(api, DECLINE, "123")})
    assert r.status_code == 402 and r.json()["error"]["code"] == "card_declined"

    # 3-D Secure, approved on the challenge page; the sandbox's signed webhook moves it on.
    pi = create(confirm=True, payment_method="pm_card_threeDSecure2Required")
    assert pi["status"] == "requires_action"
    answer_challenge(pi["next_action"]["redirect_to_url"]["url"], "complete")
    api.wait_for(f"{PI}/{pi['id']}", "status", "succeeded")

    # Manual capture of part, then a partial refund.
    held = create(amount=10000, capture_method="manual", confirm=True,
                  payment_method=tokenize(api, spaced(MASTERCARD, "-"), CVCS[1], form=True))
    assert held["status"] == "requires_capture"
    api.ok("POST", f"{PI}/{held['id']}/capture", {"amount_to_capture": 7500})
    refund = api.ok("POST", "/v1/refunds", {"payment_intent": held["id"], "amount": 2500},
                    headers={"Idempotency-Key": f"refund-{held['id']}"})
    assert refund["status"] == "succeeded"

    # A customer with an attached card, charged.
    customer = api.ok("POST", "/v1/customers", {"email": "jo@example.com", "name": "Jo"})
    pm = api.ok("POST", f"/v1/payment_methods/{tokenize(api, AMEX, CVCS[2])}/attach",
                {"customer": customer["id"]})
    assert pm["card"]["last4"] == AMEX[-4:]
    paid = create(customer=customer["id"], payment_method=pm["id"], confirm=True)
    assert paid["status"] == "succeeded"

    # A forged webhook carrying a card number: refused on its signature, not stored.
    forged = json.dumps({"id": "evt_forged", "type": "charge.updated",
                         "data": {"object": {"number": DISCOVER, "cvc": "123"}}})
    r = httpx.post(f"{api.server.url}/webhooks/sandbox", content=forged,
                   headers={"paymux-sandbox-signature": "t=1,v1=00"})
    assert r.status_code == 400 and not pans_in(r.text)

    # Let the worker finish what it queued (webhooks, events) before looking.
    api.wait_for(f"{PI}/{held['id']}", "amount_refunded", 2500)
    messages = " ".join(rec["message"] for rec in logs.records())
    assert "uvicorn.access" in logs.text and "/confirm" in messages

    assert_logs_clean(logs, api)
    stored = database_text(api.server)
    assert_clean(stored, "paymux's database", api.key, webhook_secret(api.server))
    assert customer["id"] in stored and held["id"] in stored  # the dump really has the data
    assert not re.search(r'(?i)"(cvc|cvv)"', stored), "a CVC field in paymux's database"
    # The sandbox plays the provider: it may see a number, but keeps only brand and last four.
    sandbox = sandbox_store(api.server).decode("latin-1")
    assert_clean(sandbox, "the sandbox's store")
    for cvc in CVCS:
        assert f'"cvc": "{cvc}"' not in sandbox and f'"cvc":"{cvc}"' not in sandbox


def test_after_all_the_cases_the_database_holds_no_card_number(api: Api) -> None:
    """Every byte of paymux's database (the SQLite file and WAL, or every PostgreSQL row),
    after every case above ran against this server: no card number in any form."""
    assert_clean(database_text(api.server), "paymux's database", api.key)
