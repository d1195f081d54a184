"""A fourth gateway, installed as a plugin, needs no change to paymux (SQLite and PostgreSQL).

The connector ``tests/fixtures/acme_connector`` (distribution ``paymux-acme``, package
``paymux_acme``) is installed the way pip installs it, ``pip install --no-deps --target``,
into a directory outside paymux's tree and venv, which is then the PYTHONPATH of a real
``paymux serve`` subprocess. Its provider, "Acme Payments", is faked here at the HTTP seam on
127.0.0.1 (``AcmeProvider``). Over HTTP only: a connection for it is created through the API,
a payment made through it (create + confirm), refunded, the refund settled by Acme's signed
webhook at ``/webhooks/{connection_id}``, and a decline answered with the code rows the plugin
brought. No file under src/ names the connector.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import subprocess
import sys
import threading
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import migrated_database_url
from paymux.security.envelope import generate_key_entry
from support.pgcluster import PgCluster
from support.processes import ServeProcess, wait_until

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "acme_connector"
SRC = Path(__file__).resolve().parents[2] / "src"
API_KEY = "acme_sk_" + secrets.token_hex(12)
WEBHOOK_SECRET = "acme_whsec_" + secrets.token_hex(12)
# Acme's test sources: the card behind each, and what a charge with it does.
SOURCES: dict[str, dict[str, Any]] = {
    "acme_src_visa": {"brand": "visa", "last4": "4242", "decline": None},
    "acme_src_nsf": {"brand": "visa", "last4": "9995", "decline": "ACME-51"},
    "acme_src_stolen": {"brand": "mastercard", "last4": "9979", "decline": "ACME-43"},
}
_ids = itertools.count(1)


@dataclass
class AcmeProvider:
    """Acme Payments' API (tests/fixtures/acme_connector/README.md), in memory, on 127.0.0.1:
    charges, refunds (pending until ``settle_refund``), idempotency keys, signed webhooks."""

    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, auth
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> AcmeProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(*provider.handle("GET", self.path, self.headers, {}))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                self._answer(*provider.handle("POST", self.path, self.headers, body))

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method: str, path: str, headers: Any, body: dict[str, Any]
               ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            auth = headers.get("authorization")
            self.requests.append((method, path, auth))
            if auth != f"Bearer {API_KEY}":
                return 401, {"code": "unauthorized"}
            key = headers.get("idempotency-key")
            if method == "POST" and key in self.keys:
                return self.keys[key]
            answer = self._route(method, path, body)
            if method == "POST" and key:
                self.keys[key] = answer
            return answer

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.split("?")[0].strip("/").split("/")
        if method == "GET" and parts[:2] == ["v1", "sources"] and len(parts) == 3:
            source = SOURCES.get(parts[2])
            if source is None:
                return 404, {"code": "no_such_source"}
            return 200, {"id": parts[2], "brand": source["brand"], "last4": source["last4"],
                         "exp_month": 12, "exp_year": 2034, "fingerprint": "fp_" + parts[2],
                         "country": "US", "funding": "credit"}
        if method == "POST" and parts == ["v1", "charges"]:
            return self._charge(body)
        if method == "GET" and parts == ["v1", "charges"]:
            reference = path.partition("reference=")[2]
            return 200, {"data": [c for c in self.charges.values()
                                  if c["reference"] == reference]}
        if len(parts) >= 3 and parts[:2] == ["v1", "charges"] and parts[2] in self.charges:
            charge = self.charges[parts[2]]
            if method == "GET" and len(parts) == 3:
                return 200, charge
            if method == "POST" and parts[3:] == ["refunds"]:
                return self._refund(charge, body)
        return 404, {"code": "not_found"}

    def _charge(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        source = SOURCES.get(str(body.get("source")))
        if source is None:
            return 400, {"code": "no_such_source"}
        charge_id = f"ach_{next(_ids)}"
        decline = source["decline"]
        charge = {"id": charge_id, "amount": int(body["amount"]), "currency": body["currency"],
                  "reference": body["reference"], "source": body["source"], "refunds": [],
                  "status": "declined" if decline else "captured",
                  "amount_captured": 0 if decline else int(body["amount"]),
                  "decline_code": decline, "message": "Declined by Acme." if decline else None}
        self.charges[charge_id] = charge
        return 200, charge

    def _refund(self, charge: dict[str, Any], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        refunded = sum(r["amount"] for r in charge["refunds"])
        if int(body["amount"]) > charge["amount_captured"] - refunded:
            return 400, {"code": "amount_too_large"}
        refund = {"id": f"arf_{next(_ids)}", "charge": charge["id"], "status": "pending",
                  "amount": int(body["amount"]), "reference": body.get("reference"),
                  "reason": body.get("reason")}
        charge["refunds"].append(refund)
        return 200, refund

    def settle_refund(self, refund_id: str, webhook_url: str) -> httpx.Response:
        """Acme settles the refund and tells the connection, signed with its secret."""
        with self.lock:
            refund = next(r for c in self.charges.values() for r in c["refunds"]
                          if r["id"] == refund_id)
            refund["status"] = "succeeded"
            event = {"id": f"aev_{next(_ids)}", "type": "refund.updated", "data": dict(refund)}
        body = json.dumps(event).encode()
        return httpx.post(webhook_url, content=body, timeout=10,
                          headers={"content-type": "application/json",
                                   "acme-signature": acme_signature(body, WEBHOOK_SECRET)})

    def money(self, reference: str) -> tuple[int, int, int]:
        """(charges for our intent, amount captured, amount refunded and settled)."""
        with self.lock:
            mine = [c for c in self.charges.values() if c["reference"] == reference]
            captured = sum(c["amount_captured"] for c in mine)
            refunded = sum(r["amount"] for c in mine for r in c["refunds"]
                           if r["status"] == "succeeded")
            return len(mine), captured, refunded


def acme_signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """Acme's published scheme, computed here: t=<unix>,v1=hex HMAC-SHA256 of "<t>.<body>"."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def build_wheel(project: Path, out: Path) -> Path:
    """The fixture project as a wheel (what ``pip wheel`` makes of it): its package, and a
    dist-info with METADATA, WHEEL, entry_points.txt (from pyproject.toml) and RECORD. Built
    here because the venv has no ``wheel`` package for setuptools' bdist_wheel, and no index."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    name, version = meta["name"].replace("-", "_"), meta["version"]
    info = f"{name}-{version}.dist-info"
    groups = meta["entry-points"]
    files: dict[str, bytes] = {
        str(path.relative_to(project)): path.read_bytes()
        for path in sorted((project / "paymux_acme").rglob("*.py"))
    }
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {version}\n"
        f"Summary: {meta['description']}\n").encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: paymux-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n")
    files[f"{info}/entry_points.txt"] = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
        for group, entries in groups.items()).encode()

    def digest(data: bytes) -> str:
        raw = hashlib.sha256(data).digest()
        return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    record = "".join(f"{path},{digest(data)},{len(data)}\n" for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed by pip (``pip install --no-deps --target``) into a directory of
    its own, outside paymux's tree and venv."""
    tmp = tmp_path_factory.mktemp("acme-plugin")
    target = tmp / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(build_wheel(FIXTURE, tmp))],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return target


@pytest.fixture(scope="module")
def provider() -> Iterator[AcmeProvider]:
    running = AcmeProvider().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None, site: Path,
) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp(f"acme-serve-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"acme_{request.param}")
    running = ServeProcess(
        tmp, url, "sk_test_" + secrets.token_hex(16),
        PYTHONPATH=str(site),
        PAYMUX_ENCRYPTION_KEYS=generate_key_entry("k1"),
        PAYMUX_ALLOWED_GATEWAY_HOSTS="127.0.0.1",
    )
    try:
        yield running
    except BaseException:
        print(running.output())
        raise
    finally:
        running.stop()


@pytest.fixture(scope="module")
def connection(server: ServeProcess, provider: AcmeProvider) -> dict[str, Any]:
    made = server.ok("POST", "/v1/connections", {"gateway": "acme", "credentials": {
        "api_key": API_KEY, "merchant_id": "m_acme_1", "webhook_secret": WEBHOOK_SECRET,
        "api_base": provider.url}})
    return made


def test_the_plugin_is_installed_as_pip_installs_and_src_never_names_it(site: Path) -> None:
    info = site / "paymux_acme-0.1.0.dist-info"
    assert (info / "entry_points.txt").read_text().split() == [
        "[paymux.connectors]", "acme", "=", "paymux_acme:CONNECTOR"]
    assert (info / "INSTALLER").read_text().strip() == "pip"
    assert (site / "paymux_acme" / "__init__.py").is_file()
    naming = [
        str(path.relative_to(SRC)) for path in SRC.rglob("*")
        if path.is_file() and path.suffix in {".py", ".toml", ".txt", ".cfg", ".html", ".md"}
        and ("acme" in path.read_text(errors="replace").lower())
    ]
    assert naming == []


def test_a_connection_for_the_plugin_is_made_through_the_api_its_secrets_masked(
    server: ServeProcess, provider: AcmeProvider, connection: dict[str, Any]
) -> None:
    assert connection["gateway"] == "acme" and connection["id"].startswith("conn_")
    assert connection["webhook_url"] == f"{server.url}/webhooks/{connection['id']}"
    shown = json.dumps(connection)
    assert API_KEY not in shown and WEBHOOK_SECRET not in shown
    # Every credential field of the plugin's model, shown as a masked hint (last 4) only.
    assert connection["credentials"] == {
        "api_key": "••••" + API_KEY[-4:], "merchant_id": "••••", "api_base": "••••" + provider.url[-4:],
        "webhook_secret": "••••" + WEBHOOK_SECRET[-4:]}
    listed = server.ok("GET", "/v1/connections")["data"]
    assert connection["id"] in [c["id"] for c in listed]
    assert API_KEY not in json.dumps(listed)


def test_a_payment_through_the_plugin_is_charged_refunded_and_settled_by_its_webhook(
    server: ServeProcess, provider: AcmeProvider, connection: dict[str, Any]
) -> None:
    pi = server.ok("POST", "/v1/payment_intents", {
        "amount": 2500, "currency": "usd", "gateway": connection["id"]})
    paid = server.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                     {"payment_method": "acme_src_visa"})
    assert (paid["status"], paid["amount_received"]) == ("succeeded", 2500)
    assert (paid["gateway"], paid["connection"]) == ("acme", connection["id"])
    assert provider.money(pi["id"]) == (1, 2500, 0)
    charge = next(c for c in provider.charges.values() if c["reference"] == pi["id"])
    assert paid["gateway_reference"] == charge["id"]
    # Every call to Acme carried the connection's key, and its charge an idempotency key.
    assert {auth for _, _, auth in provider.requests} == {f"Bearer {API_KEY}"}
    [charge_key] = [k for k, (_, body) in provider.keys.items() if body["id"] == charge["id"]]
    assert pi["id"] in charge_key  # derived from our object and step

    refund = server.ok("POST", "/v1/refunds", {"payment_intent": pi["id"], "amount": 1000})
    assert (refund["status"], refund["amount"]) == ("pending", 1000)
    at_acme = charge["refunds"]
    assert [(r["amount"], r["status"], r["reference"]) for r in at_acme] == [
        (1000, "pending", refund["id"])]

    # A webhook that is not Acme's (wrong secret) is refused and changes nothing.
    body = json.dumps({"id": "aev_forged", "type": "refund.updated",
                       "data": {**at_acme[0], "status": "succeeded"}}).encode()
    forged = httpx.post(connection["webhook_url"], content=body, timeout=10, headers={
        "content-type": "application/json",
        "acme-signature": acme_signature(body, "acme_whsec_not_the_secret")})
    assert forged.status_code == 400, forged.text
    assert server.ok("GET", f"/v1/refunds/{refund['id']}")["status"] == "pending"

    delivered = provider.settle_refund(at_acme[0]["id"], connection["webhook_url"])
    assert delivered.status_code == 200, delivered.text
    wait_until("the refund to settle from Acme's webhook", lambda: server.ok(
        "GET", f"/v1/refunds/{refund['id']}")["status"] == "succeeded", timeout=15)
    assert provider.money(pi["id"]) == (1, 2500, 1000)
    types = [e["type"] for e in server.ok("GET", f"/v1/events?object_id={refund['id']}")["data"]]
    assert sorted(types) == ["refund.created", "refund.updated"]


def test_a_decline_through_the_plugin_is_answered_with_the_plugins_code_rows(
    server: ServeProcess, provider: AcmeProvider, connection: dict[str, Any]
) -> None:
    for source, decline_code, gateway_code in [
        ("acme_src_nsf", "insufficient_funds", "ACME-51"),
        ("acme_src_stolen", "stolen_card", "ACME-43"),
    ]:
        r = server.http.post("/v1/payment_intents", json={
            "amount": 1200, "currency": "usd", "gateway": connection["id"],
            "payment_method": source, "confirm": True})
        assert r.status_code == 402, r.text
        error = r.json()["error"]
        assert (error["type"], error["code"], error["decline_code"]) == (
            "card_error", "card_declined", decline_code)
        assert (error["gateway"], error["gateway_code"]) == ("acme", gateway_code)
        pi = error["payment_intent"]
        assert pi["status"] == "requires_payment_method"
        assert pi["last_payment_error"]["decline_code"] == decline_code
        assert provider.money(pi["id"]) == (1, 0, 0)
    # And its logs never held the connection's secrets.
    log = server.output(chars=10_000_000)
    assert API_KEY not in log and WEBHOOK_SECRET not in log
