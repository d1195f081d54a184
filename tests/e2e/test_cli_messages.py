"""What `paymux migrate` and `paymux serve` tell the operator: which migration ran, and a
port already taken as a plain message before anything else is printed."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from support.commands import fresh_env, paymux_command


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*paymux_command(), *args],
        cwd=cwd,
        env=fresh_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_migrate_says_whether_it_created_upgraded_or_left_the_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'paymux.db'}"
    first = run(tmp_path, "migrate", PAYMUX_DATABASE_URL=url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("created the schema at revision 0"), first.stdout
    assert "up to date" not in first.stdout
    second = run(tmp_path, "migrate", PAYMUX_DATABASE_URL=url)
    assert second.returncode == 0, second.stderr
    head = first.stdout.split()[5]
    assert second.stdout.startswith(f"the schema is already at revision {head} "), second.stdout

    from paymux.storage.migrate import upgrade

    old = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    upgrade(old, "0003")
    upgraded = run(tmp_path, "migrate", PAYMUX_DATABASE_URL=old)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith(f"upgraded the schema from revision 0003 to {head} "), (
        upgraded.stdout
    )


def test_serve_on_a_port_in_use_says_so_plainly_and_prints_no_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            tmp_path,
            "serve",
            PAYMUX_PORT=str(port),
            PAYMUX_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'paymux.db'}",
            PAYMUX_SANDBOX_DB=str(tmp_path / "sandbox.db"),
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert done.stdout == ""  # no "paymux on ..." banner, no key shown (and lost)
    assert "{" not in done.stderr  # a plain line, not a JSON log record
