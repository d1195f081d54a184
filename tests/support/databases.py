"""The migrated-database fixture that test modules running paymux in-process share: a new
database at the head revision for each test, once on SQLite and once on PostgreSQL (copied
from the template migrated once per process: support/dbtemplate.py).

A module makes its fixture by naming it::

    db = migrated_database_fixture("outbound")      # tests then take ``db: str`` (a URL)
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import BACKENDS, migrated_database_url
from support.pgcluster import PgCluster

__all__ = ["migrated_database_fixture"]


def migrated_database_fixture(prefix: str, backends: list[str] | None = None) -> Any:
    """A fixture giving a new migrated database's URL, parametrized over both backends (or
    over ``backends``: a test whose claim holds on one of them only);
    ``prefix`` starts the database's name (it says which tests made it)."""

    @pytest.fixture(params=BACKENDS if backends is None else backends)
    def database(
        request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
    ) -> str:
        backend = str(request.param)
        name = f"{prefix}_{backend}_{uuid.uuid4().hex[:12]}"
        return migrated_database_url(backend, tmp_path, pg_cluster, name)

    return database
