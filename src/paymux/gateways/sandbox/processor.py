"""The sandbox processor: the "provider side" of the built-in sandbox gateway.

It behaves like a careful processor: it keeps its own store (a SQLite file of its own, apart
from paymux's database, as a provider's would be), honours idempotency keys (a replay returns
the first result; transient processing errors are not stored, as a 5xx is not), authorizes,
captures (partially too), voids, refunds, holds customers and saved tokens, and runs 3-D
Secure challenges. It never stores a card number: tokenization keeps the scenario, brand,
last four digits and a keyed fingerprint.

A card's fingerprint is one per card number, however the card arrived (the hosted form, or a
test token such as ``pm_card_visa``): an HMAC of the number under the processor's own key.
The processor has no notion of paymux's accounts (every account's sandbox connection talks
to this one store), so paymux derives the per-account fingerprint it shows from this one
where it records the payment method (``paymux.services.customers``).

A test token (``pm_card_*``, ``tok_*``) is shared by everyone; ``mint`` turns one into a fresh
token of its own, as Stripe makes a new PaymentMethod from ``pm_card_visa`` on each use.

Objects are JSON documents in one table; ``faults`` holds the failures tests inject.

A 3-D Secure challenge URL carries a single-use token (``?token=``). Only its SHA-256 is
stored (``challenges``); a charge waiting for the payer is stored with the bare URL, and each
time the processor hands such a charge out (the authorize answer, a replay, a retrieve or a
lookup) it mints a fresh token for it. Answering the challenge with any of them uses them all.

A setup (``setup``: save a card for a customer, no charge, as Stripe's SetupIntent) is a
``setup_attempt`` object. A card whose scenario asks for 3-D Secure is challenged at setup
like a charge, through the same pages and tokens; once set up for off-session use, the card
``pm_card_authenticationRequiredOnSetup`` charges off-session without a challenge, while
the "always authenticate" cards (``pm_card_authenticationRequired``,
``pm_card_threeDSecure2Required``) still decline off-session payments with
``authentication_required``, as on Stripe.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode

import orjson

from paymux.domain.ids import new_id
from paymux.gateways.sandbox.cards import MAGIC_TOKENS, Scenario, TestCard, card_for_number
from paymux.storage.sqlite_inline import CHECKPOINT_EVERY, checkpoint_in_background

__all__ = ["ProcessorError", "SandboxProcessor"]

_SCHEMA = """
create table if not exists objects (
    id text primary key, kind text not null, reference text, data text not null);
create index if not exists objects_reference on objects(reference);
create table if not exists idempotency (
    key text primary key, operation text not null, request_hash text not null,
    object_id text, response text not null, created integer not null);
create table if not exists faults (
    id integer primary key autoincrement, operation text not null, mode text not null,
    remaining integer not null, retry_after real);
create table if not exists settings (name text primary key, value text not null);
create table if not exists challenges (
    token_hash text primary key, charge_id text not null, created integer not null,
    used integer not null default 0);
create index if not exists challenges_charge on challenges(charge_id);
"""

_THREEDS = {Scenario.THREEDS_ALWAYS, Scenario.THREEDS_UNLESS_SETUP, Scenario.THREEDS_THEN_DECLINE}
# payment_method_options[card][request_three_d_secure] values that force the challenge page
# on any card (``automatic`` challenges only the cards that require it).
_ASKS_3DS = frozenset({"any", "challenge"})
# What a challenge can be answered for: a payment, or the saving of a card.
_CHALLENGED = ("charge", "setup_attempt")
_DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "incorrect_zip": "Your card's zip code failed validation.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "fraudulent": "Your card was declined.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
    "authentication_failed": "The payer failed 3-D Secure authentication.",
}


class ProcessorError(Exception):
    """A request the processor refuses outright (our bug): unknown object, bad state, reused key."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _new_id(prefix: str) -> str:
    """Base62, as Stripe's ids are: hex ids held 13 digits in a row about once in 600, which
    the card-number guard rightly takes for a card number glued to letters. (paymux's own
    ids' maker, ``domain/ids.py``: one read of the OS's random source per id, where
    ``SystemRandom.choices`` made 20: two ids per payment, issue 10.)"""
    return new_id(f"{prefix}_sbx", 20)


def _dumps(obj: dict[str, Any]) -> str:
    """A stored object's JSON text: orjson's (about 1 us for a charge, where the standard
    library took 8, twice a payment; issue 10), the standard library's for what orjson
    refuses (an integer past 64 bits). Read back with ``json.loads`` either way. (The
    idempotency hash keeps ``json.dumps``: its text must not change for stored keys.)"""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return json.dumps(obj)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class _StoreLock:
    """The processor's lock; on release, counts the write commits made under it and, every
    ``CHECKPOINT_EVERY`` of them, checkpoints the store's WAL in the background.

    Why: the processor runs on paymux's event loop (the connector calls it inline), and
    SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages: it
    copies them and fsyncs the WAL and the file, 5 - 15 ms on this machine's disk, during
    which the loop serves nothing. With one client that stall hit about 1 request in 100,
    the sequential p99 of ``bench/payments.py`` on both databases (issue 10). So the
    automatic checkpoint is off on the processor's connection, and the checkpoint runs in a
    thread on a connection of its own (``sqlite_inline.checkpoint_in_background``: a
    PASSIVE one beside the processor's writes; once the WAL passes 32 MiB, a second one that
    holds this lock while it copies the few pages written meanwhile, so that the next write
    rewinds the WAL). Every access to the store holds this lock, so no write goes
    uncounted."""

    __slots__ = ("_commits", "_db", "_path", "_seen", "bare")

    def __init__(self, db: sqlite3.Connection, path: str | None) -> None:
        self.bare = threading.Lock()
        self._db = db
        self._path = path  # None: no WAL to checkpoint (an in-memory store)
        self._seen = db.total_changes
        self._commits = 0

    def __enter__(self) -> None:
        self.bare.acquire()

    def __exit__(self, *exc: object) -> None:
        due = False
        try:
            changes = self._db.total_changes
            if changes != self._seen and self._path is not None:
                self._seen = changes
                self._commits += 1
                if self._commits >= CHECKPOINT_EVERY:
                    self._commits = 0
                    due = True
        finally:
            self.bare.release()
        if due and self._path is not None:
            checkpoint_in_background(self._path, self.bare)


class SandboxProcessor:
    """Thread-safe; every public method is one short SQLite transaction."""

    def __init__(self, path: str, *, public_url: str = "http://127.0.0.1:8000") -> None:
        self.path = path
        self.public_url = public_url.rstrip("/")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            self._db.execute("pragma journal_mode=wal")
            # No checkpoint inside a commit, on the caller's thread (the event loop): see
            # _StoreLock, which runs them in the background instead.
            self._db.execute("pragma wal_autocheckpoint=0")
        self._lock = _StoreLock(self._db, None if path == ":memory:" else path)
        self._db.execute("pragma synchronous=normal")
        self._db.execute("pragma busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._fingerprint_key = self.setting("fingerprint_key", lambda: secrets.token_hex(16))

    def close(self) -> None:
        with self._lock.bare:  # nothing to count once closed
            self._db.close()

    # -- storage helpers ------------------------------------------------------------------
    def _get(self, object_id: str, kind: str | None = None) -> dict[str, Any]:
        row = self._db.execute(
            "select kind, data from objects where id = ?", (object_id,)
        ).fetchone()
        if row is None or (kind is not None and row[0] != kind):
            raise ProcessorError("resource_missing", f"No such {kind or 'object'}: {object_id}")
        data: dict[str, Any] = json.loads(row[1])
        return data

    def _put(self, obj: dict[str, Any]) -> None:
        self._db.execute(
            "insert into objects(id, kind, reference, data) values (?, ?, ?, ?) "
            "on conflict(id) do update set data = excluded.data, reference = excluded.reference",
            (obj["id"], obj["object"], obj.get("reference"), _dumps(obj)),
        )

    def _idempotent(
        self, key: str, operation: str, request: dict[str, Any], run: Any
    ) -> dict[str, Any]:
        """Run ``run()`` once per key; replay its stored response afterwards."""
        request_hash = hashlib.sha256(
            json.dumps([operation, request], sort_keys=True).encode()
        ).hexdigest()
        with self._lock:
            self._db.execute("begin immediate")
            try:
                row = self._db.execute(
                    "select request_hash, response from idempotency where key = ?", (key,)
                ).fetchone()
                if row is not None:
                    if row[0] != request_hash:
                        raise ProcessorError(
                            "idempotency_key_reused",
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with.",
                        )
                    self._db.execute("commit")
                    replay: dict[str, Any] = json.loads(row[1])
                    replay["idempotent_replay"] = True
                    return replay
                response: dict[str, Any] = run()
                if not response.get("transient"):
                    self._db.execute(
                        "insert into idempotency(key, operation, request_hash, object_id, "
                        "response, created) values (?, ?, ?, ?, ?, ?)",
                        (
                            key,
                            operation,
                            request_hash,
                            response.get("id"),
                            _dumps(response),
                            int(time.time()),
                        ),
                    )
                self._db.execute("commit")
                return response
            except BaseException:
                self._db.execute("rollback")
                raise

    # -- settings and faults ----------------------------------------------------------------
    def setting(self, name: str, default_factory: Any) -> str:
        with self._lock:
            row = self._db.execute("select value from settings where name = ?", (name,)).fetchone()
            if row is not None:
                return str(row[0])
            value = str(default_factory())
            self._db.execute(
                "insert or ignore into settings(name, value) values (?, ?)", (name, value)
            )
            row = self._db.execute("select value from settings where name = ?", (name,)).fetchone()
            return str(row[0])

    def webhook_secret(self) -> str:
        return self.setting("webhook_secret", lambda: "whsec_" + secrets.token_urlsafe(32))

    def add_fault(
        self, operation: str, mode: str, count: int = 1, retry_after: float | None = None
    ) -> None:
        with self._lock:
            self._db.execute(
                "insert into faults(operation, mode, remaining, retry_after) values (?, ?, ?, ?)",
                (operation, mode, count, retry_after),
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._db.execute("delete from faults")

    def take_fault(self, operation: str) -> tuple[str, float | None] | None:
        """Consume one injected fault for ``operation`` (or ``*``), oldest first."""
        with self._lock:
            row = self._db.execute(
                "select id, mode, remaining, retry_after from faults "
                "where operation in (?, '*') and remaining > 0 order by id limit 1",
                (operation,),
            ).fetchone()
            if row is None:
                return None
            self._db.execute("update faults set remaining = remaining - 1 where id = ?", (row[0],))
            return str(row[1]), row[3]

    # -- tokens -----------------------------------------------------------------------------
    def tokenize(self, number: str, exp_month: int, exp_year: int, postal_code: str | None) -> str:
        """Exchange card details for a token; the number is dropped right here."""
        card = card_for_number(number)
        fingerprint = self._fingerprint(number)
        token = {
            "id": _new_id("pm"),
            "object": "token",
            "card": self._card_json(card, exp_month, exp_year, fingerprint, bool(postal_code)),
            "postal_code_present": bool(postal_code),
            "customer": None,
            "off_session_ready": False,
        }
        with self._lock:
            self._put(token)
        return str(token["id"])

    def _fingerprint(self, number: str) -> str:
        """The card's fingerprint: one per number, keyed, whichever way the card came in."""
        return hmac.new(
            self._fingerprint_key.encode(), number.encode(), hashlib.sha256
        ).hexdigest()[:16]

    def mint(self, token_id: str) -> dict[str, Any] | None:
        """A fresh token of its own made from the shared test token ``token_id`` (stored, so
        it can be attached, set up for off-session use and detached like any other); None
        for anything else."""
        if token_id not in MAGIC_TOKENS:
            return None
        card = card_for_number(MAGIC_TOKENS[token_id])
        token = {
            "id": _new_id("pm"),
            "object": "token",
            "card": self._card_json(
                card, 12, time.gmtime().tm_year + 5, self._fingerprint(card.number)
            ),
            "postal_code_present": True,
            "customer": None,
            "off_session_ready": False,
            "test_token": token_id,
        }
        with self._lock:
            self._put(token)
        return token

    @staticmethod
    def _card_json(
        card: TestCard, exp_month: int, exp_year: int, fingerprint: str, postal: bool = True
    ) -> dict[str, Any]:
        """What the processor keeps of a card: never the number, but its BIN (the first 6
        digits) and last 4, which PCI DSS allows, and the checks made now (``checks``, as
        Stripe's: the postal code's only when one was given)."""
        return {
            "brand": card.brand,
            "bin": card.number[:6],
            "checks": {
                "cvc_check": card.cvc_check,
                "address_line1_check": card.address_line1_check,
                "address_postal_code_check": card.address_zip_check if postal else None,
            },
            "last4": card.number[-4:],
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": fingerprint,
            "country": card.country,
            "funding": card.funding,
            "scenario": str(card.scenario),
            "decline_code": card.decline_code,
            "risk_level": card.risk_level,
        }

    def _token(self, token_id: str) -> dict[str, Any] | None:
        if token_id in MAGIC_TOKENS:
            row = self._db.execute("select data from objects where id = ?", (token_id,)).fetchone()
            if row is not None:
                data: dict[str, Any] = json.loads(row[0])
                return data
            card = card_for_number(MAGIC_TOKENS[token_id])
            fingerprint = self._fingerprint(card.number)
            return {
                "id": token_id,
                "object": "token",
                "card": self._card_json(card, 12, time.gmtime().tm_year + 5, fingerprint),
                "customer": None,
                "off_session_ready": False,
            }
        try:
            return self._get(token_id, "token")
        except ProcessorError:
            return None

    def describe(self, token_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._token(token_id)

    # -- customers --------------------------------------------------------------------------
    def create_customer(self, key: str, reference: str, email: str | None) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            customer = {
                "id": _new_id("cus"),
                "object": "customer",
                "reference": reference,
                "email": email,
            }
            self._put(customer)
            return customer

        return self._idempotent(key, "create_customer", {"reference": reference}, run)

    def attach(self, key: str, token_id: str, customer_id: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            self._get(customer_id, "customer")
            token = self._token(token_id)
            if token is None:
                raise ProcessorError("resource_missing", f"No such token: {token_id}")
            if token.get("customer") not in (None, customer_id):
                raise ProcessorError(
                    "payment_method_unexpected_state", "The token is attached to another customer."
                )
            card = token["card"]
            if card["scenario"] == Scenario.DECLINE:
                return {
                    "id": token_id,
                    "object": "token",
                    "declined": True,
                    "decline_code": card["decline_code"],
                    "message": _DECLINE_MESSAGES.get(card["decline_code"], "Declined."),
                }
            token["customer"] = customer_id
            if token_id not in MAGIC_TOKENS:  # shared by every account: never stored
                self._put(token)
            return token

        return self._idempotent(key, "attach", {"token": token_id, "customer": customer_id}, run)

    def detach(self, key: str, token_id: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            token = self._token(token_id)
            if token is None:
                raise ProcessorError("resource_missing", f"No such token: {token_id}")
            token["customer"] = None
            if token_id not in MAGIC_TOKENS:
                self._put(token)
            return token

        return self._idempotent(key, "detach", {"token": token_id}, run)

    # -- charges ----------------------------------------------------------------------------
    def authorize(self, key: str, request: dict[str, Any]) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            token = self._token(request["token"])
            if token is None:
                raise ProcessorError("resource_missing", f"No such token: {request['token']}")
            card = token["card"]
            scenario = Scenario(card["scenario"])
            if scenario is Scenario.PROCESSING_ERROR:
                return {
                    "object": "charge",
                    "status": "failed",
                    "transient": True,
                    "decline_code": "processing_error",
                    "message": _DECLINE_MESSAGES["processing_error"],
                }
            charge: dict[str, Any] = {
                "id": _new_id("ch"),
                "object": "charge",
                "reference": request["reference"],
                "amount": request["amount"],
                "currency": request["currency"],
                "capture": request["capture"],
                "token": request["token"],
                "customer": request.get("customer"),
                "setup_future_usage": request.get("setup_future_usage"),
                "amount_authorized": 0,
                "amount_captured": 0,
                "amount_refunded": 0,
                "risk_level": card["risk_level"],
                "decline_code": None,
                "message": None,
                "next_action": None,
                # The challenge's outcome (Stripe's payment_method_details.card.three_d_secure)
                # once answered; the network's id of an approved charge; the earlier one a
                # merchant-initiated charge referenced.
                "three_d_secure": None,
                "network_transaction_id": None,
                "previous_network_transaction_id": request.get("network_transaction_id"),
                "created": int(time.time()),
            }
            needs_3ds = (
                scenario in _THREEDS or request.get("request_three_d_secure") in _ASKS_3DS
            ) and not (scenario is Scenario.THREEDS_UNLESS_SETUP and token.get("off_session_ready"))
            if scenario in (Scenario.DECLINE, Scenario.DECLINE_ON_CHARGE, Scenario.BLOCKED):
                self._fail(charge, card["decline_code"])
            elif needs_3ds and request.get("off_session"):
                self._fail(charge, "authentication_required")
            elif needs_3ds:
                charge["status"] = "requires_action"
                url = f"{self.public_url}/sandbox/3ds/{charge['id']}"
                charge["next_action"] = {
                    "type": "redirect_to_url",
                    "redirect_to_url": {"url": url, "return_url": request.get("return_url")},
                }
            else:
                self._approve(charge, token)
            self._put(charge)
            return charge

        return self._issue_challenge(self._idempotent(key, "authorize", request, run))

    # -- 3-D Secure challenges ----------------------------------------------------------------
    def _issue_challenge(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` as handed out: a charge waiting for the payer gets a fresh single-use token
        in its challenge URL (only the token's hash is stored)."""
        action = obj.get("next_action") or {}
        redirect = action.get("redirect_to_url") or {}
        if obj.get("object") not in _CHALLENGED or not redirect.get("url"):
            return obj
        with self._lock:
            row = self._db.execute(
                "select data from objects where id = ? and kind in ('charge', 'setup_attempt')",
                (obj.get("id"),),
            ).fetchone()
            if row is None or json.loads(row[0]).get("status") != "requires_action":
                return obj
            token = secrets.token_urlsafe(32)
            self._db.execute(
                "insert into challenges(token_hash, charge_id, created) values (?, ?, ?)",
                (_token_hash(token), obj["id"], int(time.time())),
            )
        bare = str(redirect["url"]).split("?", 1)[0]
        issued = dict(obj)
        issued["next_action"] = {
            **action,
            "redirect_to_url": {**redirect, "url": f"{bare}?{urlencode({'token': token})}"},
        }
        return issued

    def challenge(self, charge_id: str, token: str) -> dict[str, Any] | None:
        """The charge whose challenge ``token`` opens, if it is valid, unused and the charge
        still waits for the payer; else None. Uses nothing up."""
        with self._lock:
            return self._open_challenge(charge_id, token)

    def _open_challenge(self, charge_id: str, token: str) -> dict[str, Any] | None:
        if not token:
            return None
        row = self._db.execute(
            "select charge_id, used from challenges where token_hash = ?", (_token_hash(token),)
        ).fetchone()
        if row is None or row[1] or not hmac.compare_digest(str(row[0]), charge_id):
            return None
        try:
            charge = self._get(charge_id)
        except ProcessorError:
            return None
        if charge.get("object") not in _CHALLENGED:
            return None
        return charge if charge["status"] == "requires_action" else None

    def answered_challenge(self, charge_id: str, token: str) -> dict[str, Any] | None:
        """The charge as it stands, when ``token`` is one of its challenge tokens that can no
        longer answer (the challenge was answered, or the charge moved on); else None. Reads
        only: what a replayed answer is told."""
        if not token:
            return None
        with self._lock:
            row = self._db.execute(
                "select charge_id from challenges where token_hash = ?", (_token_hash(token),)
            ).fetchone()
            if row is None or not hmac.compare_digest(str(row[0]), charge_id):
                return None
            if self._open_challenge(charge_id, token) is not None:
                return None  # still open: not a replay
            try:
                found = self._get(charge_id)
            except ProcessorError:
                return None
            return found if found.get("object") in _CHALLENGED else None

    def answer_challenge(self, charge_id: str, token: str, success: bool) -> dict[str, Any] | None:
        """The payer's answer, once: ``token`` and every other token of the charge are used
        up. None (and no change) when the token is not valid, used, or the charge moved on."""
        with self._lock:
            self._db.execute("begin immediate")
            try:
                charge = self._open_challenge(charge_id, token)
                if charge is None:
                    self._db.execute("rollback")
                    return None
                self._db.execute("update challenges set used = 1 where charge_id = ?", (charge_id,))
                charge = self._complete_3ds(charge, success)
                self._db.execute("commit")
                return charge
            except BaseException:
                self._db.execute("rollback")
                raise

    @staticmethod
    def _fail(charge: dict[str, Any], decline_code: str) -> None:
        charge["status"] = "failed"
        charge["decline_code"] = decline_code
        charge["message"] = _DECLINE_MESSAGES.get(decline_code, "Your card was declined.")
        charge["next_action"] = None

    def _approve(self, charge: dict[str, Any], token: dict[str, Any]) -> None:
        charge["amount_authorized"] = charge["amount"]
        charge["next_action"] = None
        charge["network_transaction_id"] = "ntx_" + str(charge["id"]).removeprefix("ch_")
        if charge["capture"]:
            charge["status"] = "succeeded"
            charge["amount_captured"] = charge["amount"]
        else:
            charge["status"] = "requires_capture"
        if charge.get("setup_future_usage") and token["id"] not in MAGIC_TOKENS:
            token["off_session_ready"] = True
            self._put(token)

    def complete_3ds(self, charge_id: str, success: bool) -> dict[str, Any]:
        """The payer's answer, given directly (tests and the demo; the page checks a token)."""
        with self._lock:
            charge = self._get(charge_id)
            if charge.get("object") not in _CHALLENGED:
                raise ProcessorError("resource_missing", f"No such charge: {charge_id}")
            if charge["status"] != "requires_action":
                return charge
            self._db.execute("update challenges set used = 1 where charge_id = ?", (charge_id,))
            return self._complete_3ds(charge, success)

    def _complete_3ds(self, charge: dict[str, Any], success: bool) -> dict[str, Any]:
        token = self._token(charge["token"]) or {}
        if charge.get("object") == "setup_attempt":
            if success:
                self._setup_done(charge, token)
            else:
                self._fail(charge, "authentication_failed")
            self._put(charge)
            return charge
        charge["three_d_secure"] = {
            "authentication_flow": "challenge",
            "result": "authenticated" if success else "failed",
            "result_reason": None if success else "rejected",
            "version": "2.2.0",
        }
        if not success:
            self._fail(charge, "authentication_failed")
        elif token.get("card", {}).get("scenario") == Scenario.THREEDS_THEN_DECLINE:
            self._fail(charge, "insufficient_funds")
        else:
            self._approve(charge, token)
        self._put(charge)
        return charge

    # -- setups: saving a card without a charge ------------------------------------------------
    def setup(self, key: str, request: dict[str, Any]) -> dict[str, Any]:
        """Save the token for the customer (``usage`` off_session: ready for payments without
        the payer), challenging the payer first when the card asks for 3-D Secure."""

        def run() -> dict[str, Any]:
            customer_id = request["customer"]
            self._get(customer_id, "customer")
            token = self._token(request["token"])
            if token is None:
                raise ProcessorError("resource_missing", f"No such token: {request['token']}")
            if token.get("customer") not in (None, customer_id):
                raise ProcessorError(
                    "payment_method_unexpected_state", "The token is attached to another customer."
                )
            card = token["card"]
            scenario = Scenario(card["scenario"])
            if scenario is Scenario.PROCESSING_ERROR:
                return {
                    "object": "setup_attempt",
                    "status": "failed",
                    "transient": True,
                    "decline_code": "processing_error",
                    "message": _DECLINE_MESSAGES["processing_error"],
                }
            setup: dict[str, Any] = {
                "id": _new_id("seti"),
                "object": "setup_attempt",
                "reference": request["reference"],
                "token": request["token"],
                "customer": customer_id,
                "usage": request.get("usage") or "off_session",
                "card": card,
                "decline_code": None,
                "message": None,
                "next_action": None,
                "created": int(time.time()),
            }
            if scenario in (Scenario.DECLINE, Scenario.BLOCKED):
                self._fail(setup, card["decline_code"])
            elif scenario in _THREEDS and not token.get("off_session_ready"):
                setup["status"] = "requires_action"
                url = f"{self.public_url}/sandbox/3ds/{setup['id']}"
                setup["next_action"] = {
                    "type": "redirect_to_url",
                    "redirect_to_url": {"url": url, "return_url": request.get("return_url")},
                }
            else:
                self._setup_done(setup, token)
            self._put(setup)
            return setup

        return self._issue_challenge(self._idempotent(key, "setup", request, run))

    def _setup_done(self, setup: dict[str, Any], token: dict[str, Any]) -> None:
        setup["status"] = "succeeded"
        setup["next_action"] = None
        if token.get("id") and token["id"] not in MAGIC_TOKENS:  # shared ones are never stored
            token["customer"] = setup["customer"]
            if setup.get("usage") == "off_session":
                token["off_session_ready"] = True
            self._put(token)

    def capture(self, key: str, charge_id: str, amount: int) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            charge = self._get(charge_id, "charge")
            if charge["status"] != "requires_capture":
                raise ProcessorError(
                    "charge_unexpected_state",
                    f"Cannot capture a charge that is {charge['status']}.",
                )
            if amount > charge["amount_authorized"]:
                raise ProcessorError("amount_too_large", "Capture exceeds the authorization.")
            charge["status"] = "succeeded"
            charge["amount_captured"] = amount
            self._put(charge)
            return charge

        return self._idempotent(key, "capture", {"charge": charge_id, "amount": amount}, run)

    def void(self, key: str, charge_id: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            charge = self._get(charge_id, "charge")
            if charge["status"] not in ("requires_capture", "requires_action"):
                raise ProcessorError(
                    "charge_unexpected_state", f"Cannot void a charge that is {charge['status']}."
                )
            charge["status"] = "canceled"
            charge["next_action"] = None
            self._put(charge)
            return charge

        return self._idempotent(key, "void", {"charge": charge_id}, run)

    def refund(
        self,
        key: str,
        charge_id: str,
        amount: int,
        reason: str | None,
        our_id: str | None = None,
    ) -> dict[str, Any]:
        """Refund part or all of a captured charge. ``our_id`` (the caller's refund id) is kept
        on the refund, as a provider keeps metadata; it is not part of the keyed request (it
        comes from the key), so a retry made before it was sent still matches."""

        def run() -> dict[str, Any]:
            charge = self._get(charge_id, "charge")
            if charge["status"] != "succeeded":
                raise ProcessorError("charge_unexpected_state", "Only captured charges refund.")
            if charge["amount_refunded"] + amount > charge["amount_captured"]:
                raise ProcessorError("amount_too_large", "Refund exceeds the captured amount.")
            token = self._token(charge["token"]) or {}
            scenario = token.get("card", {}).get("scenario")
            status = "pending" if scenario == Scenario.REFUND_PENDING else "succeeded"
            refund = {
                "id": _new_id("re"),
                "object": "refund",
                "reference": charge["reference"],
                "charge": charge_id,
                "amount": amount,
                "reason": reason,
                "status": status,
                "then": {"refund_pending": "succeeded", "refund_fails": "failed"}.get(
                    str(scenario)
                ),
                "our_id": our_id,
            }
            charge["amount_refunded"] += amount
            self._put(charge)
            self._put(refund)
            return refund

        request = {"charge": charge_id, "amount": amount, "reason": reason}
        return self._idempotent(key, "refund", request, run)

    def settle_refund(self, refund_id: str) -> dict[str, Any]:
        """The asynchronous second half of a refund (pending -> succeeded, or -> failed)."""
        with self._lock:
            refund = self._get(refund_id, "refund")
            if refund.get("then"):
                refund["status"] = refund.pop("then")
                if refund["status"] == "failed":
                    refund["failure_reason"] = "expired_or_canceled_card"
                    charge = self._get(refund["charge"], "charge")
                    charge["amount_refunded"] -= refund["amount"]
                    self._put(charge)
                self._put(refund)
            return refund

    def retrieve(self, object_id: str) -> dict[str, Any]:
        with self._lock:
            found = self._get(object_id)
        return self._issue_challenge(found)

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The current state of the object a keyed request created, or None if it never ran."""
        with self._lock:
            row = self._db.execute(
                "select object_id, response from idempotency where key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            data: dict[str, Any] = json.loads(row[1])
            if row[0]:
                try:
                    data = self._get(row[0])
                except ProcessorError:
                    pass
        return self._issue_challenge(data)

    def lookup_reference(self, reference: str, key: str) -> dict[str, Any] | None:
        """The newest charge made for ``reference`` that no other authorize key claims: the
        charge a call with ``key`` made, when the key itself is not (or no longer) stored."""
        with self._lock:
            rows = self._db.execute(
                "select o.data from objects o where o.kind = 'charge' and o.reference = ? "
                "and not exists (select 1 from idempotency i where i.object_id = o.id "
                "and i.operation = 'authorize' and i.key <> ?) order by o.rowid desc limit 1",
                (reference, key),
            ).fetchone()
        if rows is None:
            return None
        data: dict[str, Any] = json.loads(rows[0])
        return self._issue_challenge(data)

    def refunds_for(self, charge_id: str) -> list[dict[str, Any]]:
        """A charge's refunds, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "select data from objects where kind = 'refund' "
                "and json_extract(data, '$.charge') = ? order by rowid",
                (charge_id,),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def charges_for(self, reference: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "select data from objects where kind = 'charge' and reference = ?", (reference,)
            ).fetchall()
        return [self._issue_challenge(json.loads(r[0])) for r in rows]

    def card_table(self) -> list[dict[str, Any]]:
        from paymux.gateways.sandbox.cards import TEST_CARDS

        return [asdict(card) for card in TEST_CARDS.values()]
