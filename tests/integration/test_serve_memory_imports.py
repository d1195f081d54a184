"""An API process whose schema is at head never imports Alembic (issue 10, memory): Alembic,
with the Mako it imports, was about 10 MiB of ``paymux serve``'s resident memory (139 MiB
ready, 143 MiB after its first payments, against 132 and 136 MiB without; docs/benchmarks.md).
``storage/migrate.py`` imports it where a migration runs, and the health check reads this
release's revisions from the migration files (``release_revisions``). Nor the ``stripe`` SDK,
with the ``requests`` it probes for (4.8 MiB), while no Stripe connection is built: the
connector's module is imported by ``spec.build`` (paymux.gateways.stripe).

The import claim needs a fresh interpreter (this test process has imported Alembic already):
one subprocess does what ``paymux serve`` does at head, then answers ``/health/ready``.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic.script import ScriptDirectory

from conftest import migrated_database_url
from paymux.storage.migrate import alembic_config, release_revisions
from support.keys import random_token
from support.processes import python_answer

_SERVE_AT_HEAD = """
import asyncio, json, sys

import httpx

import paymux.cli  # the command that serves
from paymux.api.app import create_app
from paymux.config import Settings
from paymux.storage.migrate import upgrade_if_behind

url, sandbox, key = sys.argv[1:4]
ran = upgrade_if_behind(url)  # what `paymux serve` runs at start


async def ready() -> int:
    settings = Settings(database_url=url, api_key=key, sandbox_db=sandbox, run_worker=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://paymux") as client:
            return (await client.get("/health/ready")).status_code


status = asyncio.run(ready())
loaded = sorted(
    m for m in sys.modules if m.split(".")[0] in {"alembic", "mako", "stripe", "requests"}
)
print(json.dumps({"ran": ran, "ready": status, "loaded": loaded}))
"""


def test_the_revisions_read_from_the_files_are_alembics() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head, known = release_revisions()
    assert head == script.get_current_head()
    assert known == {rev.revision for rev in script.walk_revisions()}
    assert {"0001", "0034", "0035"} <= known  # the first, and two of this release's last


def test_an_api_process_at_head_never_imports_alembic(tmp_path: Path) -> None:
    url = migrated_database_url("sqlite", tmp_path, None, "serve_imports")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMUX_")}
    args = [url, str(tmp_path / "sandbox.db"), random_token("sk_test_", 24)]
    answer = python_answer(_SERVE_AT_HEAD, args, env, tmp_path)
    assert answer == {"ran": False, "ready": 200, "loaded": []}
