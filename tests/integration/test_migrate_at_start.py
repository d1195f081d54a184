"""``paymux serve`` runs Alembic at start only when the schema is behind
(``storage/migrate.py: upgrade_if_behind``): at head, one SELECT of ``alembic_version``
against the head read from the migration files, and Alembic (its environment, its script
directory) does not run at all. Observed on Alembic's own logger, on SQLite and PostgreSQL.
Behind (a new database), it runs as before: every e2e test's ``paymux serve`` on an empty
database (tests/e2e/test_cli_messages.py, test_readme_walkthrough.py) creates the schema so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from conftest import migrated_database_url
from paymux.storage.migrate import alembic_config, schema_head, upgrade, upgrade_if_behind
from support.pgcluster import PgCluster


def _alembic_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("alembic")]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_start_with_the_schema_at_head_runs_no_migration(
    backend: str,
    tmp_path: Path,
    pg_cluster: PgCluster | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"start_at_head_{backend}")
    caplog.set_level(logging.INFO, logger="alembic")
    assert upgrade_if_behind(url) is False
    assert _alembic_records(caplog) == []
    # What a start did before: Alembic runs (and says so) even with nothing to do.
    upgrade(url)
    assert any("Context impl" in message for message in _alembic_records(caplog))


def test_the_head_read_from_the_files_is_alembics() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert schema_head() == script.get_current_head()


def _migration(folder: Path, name: str, revision: str, down: str) -> None:
    (folder / f"{name}.py").write_text(
        f'"""{name}\n\nRevision ID: {revision}\nRevises: x\n"""\n\n'
        f'revision = "{revision}"\ndown_revision = {down}\n'
        "branch_labels = None\ndepends_on = None\n"
    )


def test_the_head_of_a_merge_of_two_branches(tmp_path: Path) -> None:
    _migration(tmp_path, "a", "0001", "None")
    _migration(tmp_path, "b", "0002a", '"0001"')
    _migration(tmp_path, "c", "0002b", "'0001'")
    assert schema_head(tmp_path) is None  # two heads: only Alembic can say
    _migration(tmp_path, "d", "0003", '("0002a", "0002b")')
    assert schema_head(tmp_path) == "0003"
    # A file whose revision is not a plain line: not guessed.
    (tmp_path / "e.py").write_text('revision = make_revision()\ndown_revision = "0003"\n')
    assert schema_head(tmp_path) is None
