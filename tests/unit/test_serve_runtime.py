"""`paymux serve` runs on uvloop with the httptools parser (dependencies: uvicorn[standard]);
``--workers N`` (several API processes) is for PostgreSQL, and its processes get the flags
through PAYMUX_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from paymux.cli import _event_loop_and_parser, _flag_environment, _workers_refusal, cli
from paymux.config import Settings, get_settings


def test_serve_uses_uvloop_and_httptools_when_installed() -> None:
    assert _event_loop_and_parser() == ("uvloop", "httptools")


def test_several_api_processes_need_postgresql() -> None:
    sqlite = "sqlite+aiosqlite:///./paymux.db"
    postgres = "postgresql+asyncpg://paymux@db.internal:5432/paymux"
    assert _workers_refusal(1, sqlite) is None
    assert _workers_refusal(1, postgres) is None
    assert _workers_refusal(4, postgres) is None
    refusal = _workers_refusal(2, sqlite)
    assert refusal is not None
    assert refusal.startswith("--workers 2 needs PostgreSQL")


def test_serve_refuses_workers_on_sqlite_before_touching_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "paymux.db"
    monkeypatch.setenv("PAYMUX_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.setenv("PAYMUX_SANDBOX_DB", str(tmp_path / "sandbox.db"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", "--workers", "3", "--port", "9"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "--workers 3 needs PostgreSQL" in result.output
    assert not db.exists()  # no migration ran, no key was made


def test_the_flags_reach_the_api_processes_as_the_variables_settings_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _flag_environment({"run_worker": False, "host": "0.0.0.0", "port": 8080})
    assert env == {"PAYMUX_RUN_WORKER": "false", "PAYMUX_HOST": "0.0.0.0", "PAYMUX_PORT": "8080"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    read = Settings()
    assert (read.run_worker, read.host, read.port) == (False, "0.0.0.0", 8080)
