"""Migrated test databases made by copying a migrated template instead of migrating each one.

Running every migration (``paymux.storage.migrate.upgrade``) costs about 1 s of CPU on SQLite
and 0.5 s on PostgreSQL, and the suite makes hundreds of fresh databases. The result of the
migrations is the same bytes every time (no migration writes anything random or dated), so
each test process migrates ONE template per backend and copies it:

- SQLite: a template file migrated once, then copied (``shutil.copyfile``; nobody holds it
  open, the migration's engine is disposed);
- PostgreSQL: a template database migrated once per cluster, then
  ``CREATE DATABASE ... TEMPLATE`` (``createdb -T``), a file-level copy.

The template is keyed by a fingerprint of the migration files (names, sizes, mtimes): a
migration added or edited while a session runs gets a new template, never a stale one.

PAYMUX_TEST_DB_TEMPLATE=off migrates each database instead (to compare, or to rule the
templates out when a test fails).

The migrations themselves stay tested by running them for real where that is the claim
(tests/integration/test_migrations.py, test_migration_0010.py, the ``paymux migrate`` CLI
tests, and every ``paymux serve`` start that migrates an empty database).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from paymux.storage import migrate
from paymux.storage.migrate import upgrade
from support.pgcluster import PgCluster

__all__ = ["migrated_pg_database", "migrated_sqlite_file", "migrations_fingerprint"]

_VERSIONS = Path(migrate.__file__).parent / "migrations" / "versions"
_lock = threading.Lock()
_sqlite_templates: dict[str, Path] = {}
_pg_templates: dict[tuple[int, str], str] = {}
_template_dir: Path | None = None


def migrations_fingerprint() -> str:
    """A digest of the migration files as they are now (name, size, mtime)."""
    digest = hashlib.sha256()
    for path in sorted(_VERSIONS.glob("*.py")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:12]


def _templates_on() -> bool:
    return os.environ.get("PAYMUX_TEST_DB_TEMPLATE", "").strip().lower() != "off"


def _dir() -> Path:
    global _template_dir
    if _template_dir is None:
        _template_dir = Path(tempfile.mkdtemp(prefix="paymux-dbtemplate-"))
    return _template_dir


def migrated_sqlite_file(target: Path) -> str:
    """``target`` made a migrated SQLite database (a copy of this process's template);
    returns its URL. ``target`` must not exist yet."""
    if target.exists():
        raise FileExistsError(f"{target} exists: a template copy goes only to a new file")
    if not _templates_on():
        upgrade(f"sqlite+aiosqlite:///{target}")
        return f"sqlite+aiosqlite:///{target}"
    fingerprint = migrations_fingerprint()
    with _lock:
        template = _sqlite_templates.get(fingerprint)
        if template is None:
            template = _dir() / f"template-{fingerprint}.db"
            template.unlink(missing_ok=True)
            upgrade(f"sqlite+aiosqlite:///{template}")
            _sqlite_templates[fingerprint] = template
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


def migrated_pg_database(pg: PgCluster, name: str) -> str:
    """A new database ``name`` in ``pg``, created from the cluster's migrated template;
    returns its URL."""
    assert pg.port is not None, "the cluster is not running"
    if not _templates_on():
        url = pg.create_database(name)
        upgrade(url)
        return url
    fingerprint = migrations_fingerprint()
    key = (pg.port, fingerprint)
    with _lock:
        template = _pg_templates.get(key)
        if template is None:
            template = f"paymux_template_{fingerprint}"
            upgrade(pg.create_database(template))
            _pg_templates[key] = template
        return pg.create_database(name, template=template)
