"""Throwaway PostgreSQL clusters for tests.

``PgCluster().start()`` runs ``initdb`` into a fresh temp dir under /tmp and starts a
``postgres`` listening on 127.0.0.1 only, with durability switched off (fsync,
synchronous_commit, full_page_writes) so it is fast.  PostgreSQL refuses to run as root,
so when the test process is root the server binaries are run as the ``postgres`` OS user
via ``runuser``.

Environment:

* ``PAYMUX_PG_BINDIR`` -- directory holding ``initdb``/``pg_ctl``/``postgres``; otherwise
  ``pg_config --bindir``, then ``initdb`` on PATH (symlinks resolved), then the newest
  ``/usr/lib/postgresql/*/bin``.
* ``PAYMUX_TEST_POSTGRES`` -- ``required`` (missing PostgreSQL is a failure), ``skip``
  (never start one) or unset/anything else (``auto``: start when available, else skip).
  ``CI=true``/``CI=1`` forces ``required``; see :func:`require_mode`.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from support.processes import free_port, run_as

__all__ = [
    "PgCluster",
    "PgClusterError",
    "find_bindir",
    "postgres_available",
    "require_mode",
]

PG_OS_USER = "postgres"
DB_SUPERUSER = "postgres"
HOST = "127.0.0.1"
_SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Throwaway settings: nothing here needs to survive a crash.
_SERVER_SETTINGS = (
    "-F",  # fsync=off
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
    "-c max_connections=200",
)


def _remove_later(directory: Path) -> None:
    """Take ``directory`` away now (renamed) and delete it in the background.

    A test session's cluster ends up holding hundreds of databases (about 600 files and 13 MB
    each): deleting them took 10-15 s, which the last test of each xdist worker waited for in
    its teardown. The rename is instant (the path is gone when this returns); ``rm`` then
    runs detached (``sh`` puts it in the background and exits at once, so nothing is left for
    this process to wait for)."""
    doomed = directory.with_name(directory.name + ".removing")
    try:
        directory.rename(doomed)
    except OSError:
        shutil.rmtree(directory, ignore_errors=True)
        return
    rm = shutil.which("rm")
    if rm is None:
        shutil.rmtree(doomed, ignore_errors=True)
        return
    subprocess.run(
        ["sh", "-c", '"$0" -rf -- "$1" </dev/null >/dev/null 2>&1 &', rm, str(doomed)],
        check=False,
        timeout=30,
    )


class PgClusterError(RuntimeError):
    """Starting, stopping or using a throwaway cluster failed."""


def require_mode() -> str:
    """How tests should treat a missing PostgreSQL: ``required``, ``skip`` or ``auto``.

    ``required`` when PAYMUX_TEST_POSTGRES=required or under CI (CI=true/1, which wins
    over PAYMUX_TEST_POSTGRES=skip so CI can never silently skip); ``skip`` when
    PAYMUX_TEST_POSTGRES=skip; otherwise ``auto`` (run if the binaries exist, else skip).
    """
    setting = os.environ.get("PAYMUX_TEST_POSTGRES", "").strip().lower()
    ci = os.environ.get("CI", "").strip().lower()
    if setting == "required" or ci in ("true", "1"):
        return "required"
    if setting == "skip":
        return "skip"
    return "auto"


def _is_server_bindir(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return all(os.access(p / prog, os.X_OK) for prog in _SERVER_PROGRAMS)


def _bindir_from_pg_config() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    # libpq-dev's pg_config reports /usr/bin, which has no initdb: only accept a
    # directory that really holds the server programs.
    return Path(out) if out and _is_server_bindir(out) else None


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_bindir() -> Path | None:
    """Directory holding initdb, pg_ctl and postgres, or None if there is none."""
    env = os.environ.get("PAYMUX_PG_BINDIR", "").strip()
    if env:
        # An explicit setting that is wrong should not be silently replaced.
        return Path(env) if _is_server_bindir(env) else None
    found = _bindir_from_pg_config()
    if found is not None:
        return found
    initdb = shutil.which("initdb")
    if initdb is not None:
        real = Path(initdb).resolve().parent
        if _is_server_bindir(real):
            return real
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if _is_server_bindir(candidate):
            return Path(candidate)
    return None


def _running_as_root() -> bool:
    return os.geteuid() == 0


def postgres_available(bindir: str | os.PathLike[str] | None = None) -> str | None:
    """None if a throwaway cluster can be started here, else the reason it cannot."""
    env = os.environ.get("PAYMUX_PG_BINDIR", "").strip()
    if bindir is not None:
        if not _is_server_bindir(bindir):
            return f"{bindir} does not contain {', '.join(_SERVER_PROGRAMS)}"
    elif find_bindir() is None:
        if env:
            return f"PAYMUX_PG_BINDIR={env} does not contain {', '.join(_SERVER_PROGRAMS)}"
        return (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: set "
            "PAYMUX_PG_BINDIR or install the Debian package 'postgresql'"
        )
    if _running_as_root():
        try:
            pwd.getpwnam(PG_OS_USER)
        except KeyError:
            return f"running as root but there is no {PG_OS_USER!r} OS user to run PostgreSQL"
        if shutil.which("runuser") is None:
            return "running as root but 'runuser' is not available to drop privileges"
    return None


def _clean_env() -> dict[str, str]:
    # Stray PGDATA/PGPORT/PGHOST/... from the caller must not redirect our tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    env.pop("LANGUAGE", None)
    return env


class PgCluster:
    """One throwaway PostgreSQL cluster.

    Usage::

        cluster = PgCluster()
        url = cluster.start()          # postgresql+asyncpg://postgres@127.0.0.1:PORT/postgres
        db_url = cluster.create_database("paymux_test")
        ...
        cluster.stop()

    It is also a context manager (``with PgCluster() as cluster:``).  ``stop()`` is
    idempotent and is also registered with atexit in case a test run forgets it.
    """

    def __init__(self, bindir: str | os.PathLike[str] | None = None) -> None:
        self._bindir: Path | None = Path(bindir) if bindir is not None else None
        self.port: int | None = None
        self.tmpdir: Path | None = None
        self.startup_seconds: float | None = None

    # -- paths and URLs -------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
            if self._bindir is None:
                raise PgClusterError(postgres_available() or "PostgreSQL binaries not found")
        return self._bindir

    @property
    def datadir(self) -> Path:
        return self._require_tmpdir() / "data"

    @property
    def logfile(self) -> Path:
        return self._require_tmpdir() / "postgres.log"

    @property
    def running(self) -> bool:
        return self.port is not None

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy asyncpg URL for a database in this cluster."""
        return f"postgresql+asyncpg://{DB_SUPERUSER}@{HOST}:{self._require_port()}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """Plain libpq-style DSN (for ``asyncpg.connect``)."""
        return f"postgresql://{DB_SUPERUSER}@{HOST}:{self._require_port()}/{dbname}"

    def _require_port(self) -> int:
        if self.port is None:
            raise PgClusterError("cluster is not running; call start() first")
        return self.port

    def _require_tmpdir(self) -> Path:
        if self.tmpdir is None:
            raise PgClusterError("cluster has no directory; call start() first")
        return self.tmpdir

    # -- running the server programs ----------------------------------------------

    def _server_cmd(self, program: str, *args: str) -> list[str]:
        # PostgreSQL refuses to run as root: as root, drop to the postgres OS user.
        return run_as(PG_OS_USER, [str(self.bindir / program), *args])

    def _run(self, cmd: list[str], what: str, timeout: float = 120) -> None:
        try:
            proc = subprocess.run(
                cmd,
                cwd=self.tmpdir,  # the postgres user may not be able to enter our cwd
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PgClusterError(f"{what} timed out after {timeout}s: {cmd}") from exc
        if proc.returncode != 0:
            raise PgClusterError(
                f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                f"{proc.stdout}{proc.stderr}{self._log_tail()}"
            )

    def _log_tail(self, lines: int = 30) -> str:
        if self.tmpdir is None:
            return ""
        try:
            text = (self.tmpdir / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- postgres.log (tail) ---\n{tail}" if tail else ""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> str:
        """initdb + start; returns the asyncpg SQLAlchemy URL of the ``postgres`` db."""
        if self.running:
            return self.url()
        reason = postgres_available(self._bindir)
        if reason is not None:
            raise PgClusterError(reason)
        began = time.monotonic()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="paymux-pg-", dir="/tmp"))
        atexit.register(self.stop)
        try:
            if _running_as_root():
                pw = pwd.getpwnam(PG_OS_USER)
                os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
            self._run(
                self._server_cmd(
                    "initdb",
                    "-D",
                    str(self.datadir),
                    "-U",
                    DB_SUPERUSER,
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ),
                "initdb",
            )
            self._start_server()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self.url()

    def _start_server(self, attempts: int = 3) -> None:
        # The free port can be taken between probing and binding; retry with a new one.
        for attempt in range(1, attempts + 1):
            port = free_port(HOST)
            options = " ".join((f"-h {HOST}", f"-p {port}", f"-k {self.tmpdir}", *_SERVER_SETTINGS))
            try:
                self._run(
                    self._server_cmd(
                        "pg_ctl",
                        "-D",
                        str(self.datadir),
                        "-l",
                        str(self.logfile),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        options,
                        "start",
                    ),
                    "pg_ctl start",
                )
            except PgClusterError:
                if attempt == attempts or "could not bind" not in self._log_tail(200):
                    raise
                continue
            self.port = port
            return

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete its directory. Idempotent."""
        tmpdir, self.tmpdir = self.tmpdir, None
        self.port = None
        atexit.unregister(self.stop)
        if tmpdir is None:
            return
        data = tmpdir / "data"
        if (data / "postmaster.pid").exists():
            self.tmpdir = tmpdir  # for _run's cwd and log tail
            try:
                self._run(
                    self._server_cmd("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"),
                    "pg_ctl stop",
                    timeout=60,
                )
            except PgClusterError:
                self._kill_postmaster(data)
            finally:
                self.tmpdir = None
        _remove_later(tmpdir)

    @staticmethod
    def _kill_postmaster(data: Path) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, 9)

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases -------------------------------------------------------------------

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (owned by postgres), a copy of database ``template`` if
        given (nobody may be connected to it); returns its asyncpg SQLAlchemy URL."""
        for checked in (name, template):
            if checked is not None and not _DB_NAME_RE.fullmatch(checked):
                raise ValueError(
                    f"invalid database name {checked!r} (use [A-Za-z_][A-Za-z0-9_]*)"
                )
        port = self._require_port()
        createdb = self.bindir / "createdb"
        if not os.access(createdb, os.X_OK):
            found = shutil.which("createdb")
            if found is None:
                raise PgClusterError("createdb not found in bindir or on PATH")
            createdb = Path(found)
        # createdb is only a client: no need to drop to the postgres OS user (trust auth).
        self._run(
            [
                str(createdb), "-h", HOST, "-p", str(port), "-U", DB_SUPERUSER,
                *(("-T", template) if template is not None else ()), name,
            ],
            f"createdb {name}",
            timeout=60,
        )
        return self.url(name)
