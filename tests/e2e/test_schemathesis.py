"""Schemathesis against a live ``paymux serve``: every operation in the server's own
/openapi.json, valid and invalid requests, checked against what the document promises.

No 5xx, every status documented, the documented content type, bodies that match the
documented schemas (the error shape included) and documented headers. The /v1 operations
are called with a fresh account's secret key, /v1/admin with PAYMUX_ADMIN_KEY, and
/webhooks/{gateway} with no key at all (their unsigned bodies are 400s, which are
documented). Rate limiting is off, so a 429 never hides an answer. SQLite and PostgreSQL.

Bounded and reproducible: a fixed seed, derandomized generation, a few examples per
operation and phase, no deadline, no example database.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import BACKENDS, migrated_database_url
from paymux.api.app import create_app
from paymux.config import Settings
from paymux.services import Paymux
from support.pgcluster import PgCluster
from support.processes import ServeProcess

pytestmark = pytest.mark.slow

ADMIN_KEY = "adm_" + secrets.token_hex(16)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Examples per operation for the fuzzing phase; the examples and coverage phases add their
# own (finite, deterministic) cases on top. Small enough for the file to run in about a
# minute on two cores for both databases.
MAX_EXAMPLES = 8
SEED = 20240601
HYPOTHESIS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same examples on every run, in CI too
    deadline=None,
    database=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking on a live server
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.filter_too_much],
    print_blob=False,
)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(METHOD, path) of every operation in the document the app builds (no server needed):
    one test per operation; the live document is checked to hold exactly these."""
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]


def _negatable(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """Operations with a body or a query parameter: the ones an invalid request can be built
    for. The others take only path segments and headers that accept any string (the key is
    fixed here), so negative generation has nothing to break: they run positive cases only."""
    return {
        (m.upper(), p)
        for p, ops in spec["paths"].items()
        for m, op in ops.items()
        if "requestBody" in op or any(x["in"] == "query" for x in op.get("parameters", []))
    }


# Built once (each test process collects this file: the document takes ~0.5 s to build).
_SPEC = create_app(Settings(database_url="sqlite+aiosqlite://")).openapi()
OPERATIONS = _operations(_SPEC)
NEGATABLE = _negatable(_SPEC)
CASES = [
    pytest.param(m, p, mode, id=f"{m} {p}-{mode.value}")
    for m, p in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or (m, p) in NEGATABLE
]


@dataclass(frozen=True)
class Live:
    server: ServeProcess
    secret_key: str

    @property
    def url(self) -> str:
        return self.server.url


def fresh_account_key(url: str, tmp: Path) -> str:
    """A new account and its sk_test_ key, written to the database before the server starts."""

    async def make() -> str:
        app = Paymux(Settings(database_url=url, sandbox_db=str(tmp / "sandbox.db")))
        try:
            return (await app.accounts.create_key()).key
        finally:
            await app.close()

    return asyncio.run(make())


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp(f"schemathesis-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"schemathesis_{request.param}")
    key = fresh_account_key(url, tmp)
    server = ServeProcess(
        tmp,
        url,
        PAYMUX_ADMIN_KEY=ADMIN_KEY,
        PAYMUX_RATE_LIMIT_REQUESTS="0",
        PAYMUX_DEFAULT_GATEWAY="sandbox",
    )
    try:
        yield Live(server, key)
    except BaseException:
        print(server.tail(80))
        raise
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(live: Live) -> BaseSchema:
    """The document the live server serves, as schemathesis reads it."""
    return schemathesis.openapi.from_url(
        f"{live.url}/openapi.json", config=schemathesis.Config(seed=SEED)
    )


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False  # loopback only: no proxy from the environment
    try:
        yield s
    finally:
        s.close()


def auth_headers(path: str, live: Live) -> dict[str, str]:
    if path.startswith("/v1/admin/"):
        return {"authorization": f"Bearer {ADMIN_KEY}"}
    if path.startswith("/v1/"):
        return {"authorization": f"Bearer {live.secret_key}"}
    return {}  # /webhooks/{gateway}: the provider's signature, never a key


def test_the_live_document_has_the_operations_tested_here(api_schema: BaseSchema) -> None:
    live_operations = set()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        live_operations.add((operation.method.upper(), operation.path))
    assert live_operations == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_every_operation_keeps_to_the_openapi_document(
    method: str,
    path: str,
    mode: GenerationMode,
    live: Live,
    api_schema: BaseSchema,
    session: requests.Session,
) -> None:
    operation = api_schema[path][method]
    headers = auth_headers(path, live)

    @hypothesis.given(case=operation.as_strategy(mode, headers=headers or None))
    @HYPOTHESIS
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=live.url, session=session, headers=headers, checks=CHECKS, timeout=30
        )

    run()
