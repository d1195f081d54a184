"""Run Alembic migrations programmatically (``paymux migrate``, and ``paymux serve`` at
start when the schema is behind).

Alembic (with Mako and Pygments, which it imports: about 10 MiB of a process's resident
memory) is imported where a migration runs, not with this module: an API process whose schema
is at head, and its health check (``release_revisions``), never load it (issue 10's memory
figures in docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "alembic_config",
    "current_revision",
    "release_revisions",
    "schema_head",
    "upgrade",
    "upgrade_if_behind",
]

_HERE = Path(__file__).parent / "migrations"
# A migration file's own lines: ``revision = "0036"``, ``down_revision = "0035"`` (or a tuple
# of revisions for a merge, or None for the first).
_REVISION = re.compile(r"^revision(?:\s*:[^=]*)?\s*=\s*[\"']([^\"']+)[\"']\s*$", re.M)
_DOWN_REVISION = re.compile(r"^down_revision(?:\s*:[^=]*)?\s*=\s*(.+)$", re.M)
_VERSION_TABLE = "alembic_version"
_VERSIONS = text("SELECT version_num FROM alembic_version")
_QUOTED = re.compile(r"[\"']([^\"']+)[\"']")


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # heavy, for migrations only: see the module's doc

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``. Call it outside any running event loop."""
    from alembic import command  # heavy, for migrations only: see the module's doc

    command.upgrade(alembic_config(url), revision)


def schema_head(versions: Path = _HERE / "versions") -> str | None:
    """This release's newest migration, read from the migration files' ``revision`` and
    ``down_revision`` lines without running them (Alembic's script directory imports every
    file, which costs more CPU than the rest of a start's check). None when the files don't
    say it plainly (a line not found, or not one head): then only Alembic knows."""
    plain = _plain_revisions(versions)
    return plain[0] if plain is not None else None


def release_revisions() -> tuple[str | None, frozenset[str]]:
    """This release's head and every revision it has (what the health check compares the
    database's with): read from the migration files as ``schema_head`` reads them, or from
    Alembic's script directory when the files don't say it plainly."""
    plain = _plain_revisions(_HERE / "versions")
    if plain is not None:
        return plain
    from alembic.script import ScriptDirectory  # heavy: see the module's doc

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head(), frozenset(rev.revision for rev in script.walk_revisions())


def _plain_revisions(versions: Path) -> tuple[str, frozenset[str]] | None:
    """The one head and every revision of the files in ``versions``; None unless plain."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN_REVISION.search(text)
        if revision is None or down is None:
            return None
        revisions.add(revision[1])
        parents.update(_QUOTED.findall(down[1]))
    heads = revisions - parents
    return (next(iter(heads)), frozenset(revisions)) if len(heads) == 1 else None


def upgrade_if_behind(url: str) -> bool:
    """``upgrade`` unless the database is at this release's head already (one SELECT of
    ``alembic_version``): what ``paymux serve`` runs at every start. True if Alembic ran.
    Behind, unknown (a newer release's revision) or not plain from the files: Alembic runs,
    as ``paymux migrate`` does. Call it outside any running event loop."""
    head = schema_head()
    if head is not None and current_revision(url) == head:
        return False
    upgrade(url)
    return True


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None before any migration ran (no schema,
    or no database file yet). Read from ``alembic_version`` directly, not through Alembic's
    migration context: no Alembic machinery runs for it. Call it outside any running event
    loop."""

    def read(connection: Connection) -> str | None:
        if not inspect(connection).has_table(_VERSION_TABLE):
            return None
        found = connection.execute(_VERSIONS)
        versions = list(found.scalars())
        if len(versions) > 1:  # branches: Alembic's own message for it
            from alembic.runtime.migration import MigrationContext  # see the module's doc

            return MigrationContext.configure(connection).get_current_revision()
        return versions[0] if versions else None

    async def main() -> str | None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(main())
