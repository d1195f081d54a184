"""An API process of ``paymux serve``, and ``paymux worker``, take their start-up's objects
out of the garbage collector's passes once started (``paymux/heap.py``): a full collection walked about 240,000
of them, 55-70 ms with the event loop stopped (issue 10: the p99 of 16 concurrent clients).

Each case runs in a fresh interpreter: freezing this test process's heap would reach every
test after it. The app is the one ``serve`` hands uvicorn (``_run_uvicorn``, given a stand-in
for the uvicorn module that keeps the app instead of serving it; ``--workers N``: the factory
each process calls), started with its lifespan, as uvicorn starts it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import migrated_database_url
from support.keys import random_token
from support.processes import python_answer

_STARTED = """
import asyncio, gc, json, sys, types

import httpx

from paymux.api.app import create_app, create_app_from_environment
from paymux.cli import _run_uvicorn
from paymux.config import Settings

how, url, sandbox, key = sys.argv[1:5]
settings = Settings(database_url=url, api_key=key, sandbox_db=sandbox, run_worker=False)
if how == "serve":  # what `paymux serve` (one process) gives uvicorn
    kept = {}
    _run_uvicorn(types.SimpleNamespace(run=lambda app, **_: kept.update(app=app)), settings, 1,
                 "asyncio", "h11")
    app = kept["app"]
elif how == "serve --workers":  # what each process of `serve --workers N` makes
    app = create_app_from_environment()
else:  # the library's and the tests' app
    app = create_app(settings)


async def started() -> dict:
    before = {"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://paymux") as client:
            ready = (await client.get("/health/ready")).status_code
        return {
            "before": before,
            "frozen": gc.get_freeze_count(),
            "tracked": len(gc.get_objects()),  # what a full collection walks
            "young_threshold": gc.get_threshold()[0],
            "ready": ready,
        }


print(json.dumps(asyncio.run(started())))
"""


def _started(tmp_path: Path, how: str) -> dict[str, object]:
    url = migrated_database_url("sqlite", tmp_path, None, "serve_heap")
    key = random_token("sk_test_", 24)
    sandbox = str(tmp_path / "sandbox.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMUX_")}
    env.update(
        PAYMUX_DATABASE_URL=url,
        PAYMUX_API_KEY=key,
        PAYMUX_SANDBOX_DB=sandbox,
        PAYMUX_RUN_WORKER="false",
    )
    answer: dict[str, object] = python_answer(_STARTED, [how, url, sandbox, key], env, tmp_path)
    return answer


@pytest.mark.parametrize("how", ["serve", "serve --workers"])
def test_a_served_app_freezes_start_up_out_of_the_collectors_passes(
    tmp_path: Path, how: str
) -> None:
    started = _started(tmp_path, how)
    assert started["ready"] == 200
    before, frozen, tracked = started["before"], started["frozen"], started["tracked"]
    assert isinstance(before, dict) and before["frozen"] == 0
    # Start-up's objects (modules, routes, mappers: well over 100,000) are frozen ...
    assert isinstance(frozen, int) and frozen > 100_000
    # ... so a full collection walks a small part of what it would: what the first request
    # made after the freeze (its routes' and statements' caches, mostly).
    assert isinstance(tracked, int) and tracked * 4 < frozen
    assert started["young_threshold"] == 3_000


def test_the_librarys_app_leaves_the_collector_alone(tmp_path: Path) -> None:
    started = _started(tmp_path, "library")
    assert started["ready"] == 200
    assert started["frozen"] == 0
    assert isinstance(started["tracked"], int) and started["tracked"] > 100_000
    assert started["young_threshold"] == 700  # Python's default


_WORKER = """
import gc, json, os, signal, threading

from paymux.cli import cli

before = gc.get_freeze_count()
# SIGTERM once the worker runs: it stops as an operator's stop would (the job in hand done).
threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
cli(["worker"], standalone_mode=False)
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(),
                  "young_threshold": gc.get_threshold()[0]}))
"""


def test_paymux_worker_freezes_start_up_out_of_the_collectors_passes(tmp_path: Path) -> None:
    url = migrated_database_url("sqlite", tmp_path, None, "worker_heap")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMUX_")}
    env.update(PAYMUX_DATABASE_URL=url, PAYMUX_SANDBOX_DB=str(tmp_path / "sandbox.db"))
    answer = python_answer(_WORKER, [], env, tmp_path)
    assert answer["before"] == 0
    assert answer["frozen"] > 50_000  # the worker's start-up: modules, mappers, settings
    assert answer["young_threshold"] == 3_000
