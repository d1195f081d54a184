"""Imports point down (docs ARCHITECTURE: "a function-level import that dodges a cycle is a
sign the layer is wrong: move the code"): no module of src/paymux imports paymux code inside
a function, but for the places listed below by hand, each with its reason. The composition
root (``paymux.root``) sits above services/ and the packages that import services, so it
imports them all at its top.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import paymux

# Whole modules whose imports are lazy on purpose: the ``paymux`` command loads what its
# subcommand needs only (``paymux --help`` and a typo's message stay instant; each command
# pays for its own imports only), and the demo is one of its subcommands.
LAZY_MODULES = {
    "cli.py": "the paymux command: each subcommand imports what it needs (start-up time)",
    "cli_connections.py": "paymux connections: as cli.py",
    "cli_outbound.py": "paymux webhooks / listen: as cli.py",
    "cli_users.py": "paymux users: as cli.py",
    "billing/demo.py": "paymux demo (a cli.py subcommand): as cli.py",
}

# (module, what it imports inside a function): why it stays so.
ALLOWED = {
    ("services/__init__.py", "paymux.root"): (
        "the documented compatibility path: `from paymux.services import Paymux` (users' "
        "code, tests) loads the composition root on first use (PEP 562 __getattr__)"
    ),
    ("__init__.py", "paymux.root"): (
        "the library face `from paymux import Paymux` (ARCHITECTURE.md): the root on first "
        "use, since importing it at `import paymux` would import every package"
    ),
    ("web/invoices.py", "paymux.billing.pdf"): (
        "ReportLab (about 6 MiB of every API process) loaded only when a PDF is drawn"
    ),
    ("gateways/stripe/spec.py", "paymux.gateways.stripe.connector"): (
        "the stripe SDK with the requests it probes for (about 4.8 MiB of every API process) "
        "loaded only when a Stripe connection is built"
    ),
    ("gateways/stripe/__init__.py", "paymux.gateways.stripe.connector"): (
        "`from paymux.gateways.stripe import StripeGateway` loads the SDK on first use (PEP "
        "562 __getattr__), as spec.py"
    ),
    ("gateways/sandbox/processor.py", "paymux.gateways.sandbox.cards"): (
        "the sandbox's test card table, loaded for its page only"
    ),
    ("services/context.py", "paymux.services.events"): (
        "a cycle inside services/ (events.py imports context.py): events' reads to move "
        "down into context.py or a module both import"
    ),
    ("billing/clocks.py", "paymux.billing.subscription_changes"): "a cycle inside billing/",
    ("billing/invoice_payments.py", "paymux.billing.balance"): "a cycle inside billing/",
    ("billing/subscription_due.py", "paymux.domain.errors"): "within billing's own rules",
    ("billing/subscriptions.py", "paymux.storage.models"): "within billing's own rules",
}


class _Imports(ast.NodeVisitor):
    """The paymux modules a module imports inside a function (or a method): one walk."""

    def __init__(self) -> None:
        self.depth = 0  # functions we are inside
        self.found: set[str] = set()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Import(self, node: ast.Import) -> None:
        if self.depth:
            self._add(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if self.depth and node.module and node.level == 0:
            self._add([node.module])

    def _add(self, names: Iterable[str]) -> None:
        self.found.update(n for n in names if n == "paymux" or n.startswith("paymux."))


# An indented import naming paymux: only a module with one can import it inside a function
# (the others are not parsed: parsing all of src/ costs seconds on a loaded machine).
_INDENTED_IMPORT = re.compile(r"^[ \t]+(?:from|import)\b.*\bpaymux\b", re.M)


def _function_level_imports(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    if not _INDENTED_IMPORT.search(text):
        return set()
    imports = _Imports()
    imports.visit(ast.parse(text, str(path)))
    return imports.found


def _offending(package: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        if name in LAZY_MODULES:
            continue
        bad = sorted(m for m in _function_level_imports(path) if (name, m) not in ALLOWED)
        if bad:
            out[name] = bad
    return out


def test_no_function_level_import_of_paymux_outside_the_allow_list() -> None:
    package = Path(paymux.__file__).parent
    assert len(list(package.rglob("*.py"))) > 100  # the package itself, not an empty glob
    assert _offending(package) == {}


def test_the_allow_list_names_only_imports_that_exist() -> None:
    """An entry whose import has gone (moved to the top, or its module deleted) is struck
    off, so the list never keeps a door open that nobody uses."""
    package = Path(paymux.__file__).parent
    stale = [
        entry
        for entry in ALLOWED
        if not (package / entry[0]).exists()
        or entry[1] not in _function_level_imports(package / entry[0])
    ]
    assert stale == []
    assert [m for m in LAZY_MODULES if not (package / m).exists()] == []


def test_the_checker_sees_an_import_inside_a_method(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "thing.py").write_text(
        "from paymux.domain.errors import PaymuxError\n\n"
        "class Thing:\n"
        "    async def run(self) -> None:\n"
        "        from paymux.billing.invoices import InvoicesService\n\n"
        "def plain() -> None:\n"
        "    import paymux.fraud.rules\n"
        "    from . import sibling\n"
    )
    assert _offending(tmp_path) == {
        "services/thing.py": ["paymux.billing.invoices", "paymux.fraud.rules"]
    }


def test_the_library_face_is_the_composition_root() -> None:
    """ARCHITECTURE.md's `from paymux import Paymux`, and the older `paymux.services` path,
    are both the root's class."""
    import paymux
    import paymux.services
    from paymux.root import Paymux

    assert paymux.Paymux is Paymux
    assert paymux.services.Paymux is Paymux
