"""The dashboard calls services, never the database: no module of src/paymux/dashboard/
imports SQLAlchemy or the storage models (issue 15, "How it is built")."""

from __future__ import annotations

import ast
from pathlib import Path

import paymux.dashboard

_FORBIDDEN = ("sqlalchemy", "paymux.storage")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_dashboard_module_imports_the_database() -> None:
    package = Path(paymux.dashboard.__file__).parent
    modules = sorted(package.rglob("*.py"))
    assert len(modules) > 10  # the package's own modules, not an empty glob
    offending = {
        str(path.relative_to(package)): sorted(
            name for name in _imports(path) if name.startswith(_FORBIDDEN)
        )
        for path in modules
    }
    assert {k: v for k, v in offending.items() if v} == {}
