"""The ``paymux`` command run inside the test process: typer's CliRunner on ``paymux.cli.cli``.

A ``paymux`` subprocess costs 1.4 s of CPU before it does anything (it imports the whole
service layer), 3 s and more on a busy two-core machine; a CLI test making eight calls spent
most of its time starting interpreters. Where a test's claim is what a command does (its
options, output, exit status and the rows it writes), not that it runs as a separate process,
it calls the command here::

    done = paymux_cli("keys", "list", "--account", acct, env={"PAYMUX_DATABASE_URL": url})
    assert done.returncode == 0 and acct in done.stdout

The answer is a ``subprocess.CompletedProcess`` as ``subprocess.run(..., text=True)`` gives:
``returncode`` is the exit status the process would have had (typer.Exit codes, 2 for a usage
error), ``stdout`` and ``stderr`` apart. An exception the command does not handle is exit
status 1 with its traceback in ``stderr``, as the interpreter would print it, so a test's
``"Traceback" not in stderr`` still catches one.

The command reads its settings from the environment (``get_settings()``, cached): ``env`` is
set for the call only (a None value removes a variable; ``clean=True`` removes every PAYMUX_*
variable of this process first, as a fresh shell would have none), and the settings cache is
cleared before and after. COLUMNS defaults to 200 (rich's tables wrap at 80 otherwise).

The process itself (the console script, its start-up, its exit status) stays tested where a
test starts it: tests/e2e/test_cli_messages.py, test_readme_walkthrough.py, test_demo_cli.py,
and one subprocess call kept in each CLI test file that needs another process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from rich.console import Console
from typer.testing import CliRunner

from paymux.cli import cli
from paymux.config import get_settings

__all__ = ["paymux_cli"]


@contextmanager
def _console_width(columns: str | None) -> Iterator[None]:
    """The CLI modules' rich consoles as wide as ``columns`` for the call.

    A rich Console reads COLUMNS when it is made (at import) and then keeps that width, and
    pytest-xdist's workers run with COLUMNS=80: a process started with COLUMNS=200 would make
    its consoles 200 wide, so these are set so too, and put back afterwards."""
    consoles = [
        value
        for name, module in list(sys.modules.items())
        if name == "paymux.cli" or name.startswith("paymux.cli_")
        for value in vars(module).values()
        if isinstance(value, Console)
    ]
    saved = [(c._width, c._height) for c in consoles]  # rich has no public reset
    try:
        if columns is not None and columns.isdigit():
            for console in consoles:
                console.width = int(columns)
        yield
    finally:
        for console, (width, height) in zip(consoles, saved, strict=True):
            console._width, console._height = width, height


def paymux_cli(
    *args: str, env: Mapping[str, str | None] | None = None, clean: bool = False
) -> subprocess.CompletedProcess[str]:
    """``paymux *args`` in this process with ``env`` set for the call; see the module doc."""
    environ: dict[str, str | None] = {"COLUMNS": "200"}
    if clean:
        environ.update({k: None for k in os.environ if k.startswith("PAYMUX_")})
    environ.update(env or {})
    get_settings.cache_clear()
    try:
        with _console_width(environ["COLUMNS"]):
            result = CliRunner().invoke(cli, list(args), env=environ, catch_exceptions=True)
    finally:
        get_settings.cache_clear()
    stderr = result.stderr
    error = result.exception
    if error is not None and not isinstance(error, SystemExit):
        printed = "".join(traceback.format_exception(error))
        if not printed.startswith("Traceback"):
            printed = "Traceback (most recent call last):\n" + printed
        stderr += printed
    return subprocess.CompletedProcess(["paymux", *args], result.exit_code, result.stdout, stderr)
