"""Subprocesses for tests and benchmarks: free ports, waiting, logged processes, ``paymux serve``.

One set of helpers for the crash tests (tests/integration/test_crash_recovery.py), the
benchmarks (bench/*.py) and the PostgreSQL cluster helper (support/pgcluster.py)::

    server = ServeProcess(tmp, db_url, api_key, PAYMUX_ATTEMPT_SETTLE_AFTER_SECONDS="0.5")
    server.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd"})
    server.kill9()                      # SIGKILL, as a crash
    server.restart()                    # same port, database, sandbox and log file
    wait_until("the intent to succeed", lambda: ..., timeout=15)
    server.stop()

- ``free_port()``; ``port_open`` / ``wait_for_port``; ``http_ok`` / ``wait_for_http``;
  ``wait_until(what, check, timeout=30)``: poll until true, else ``WaitTimeout``.
- ``LoggedProcess``: a subprocess whose stdout and stderr go to a log file (``output()``,
  ``tail()``), stopped with a signal then killed (``stop()``), or killed at once (``kill9()``).
  ``ServerProcess`` adds a port and waits for ``GET /health`` to answer 200.
- ``ServeProcess``: ``paymux serve`` (the venv's ``paymux`` script), configured only by
  PAYMUX_* variables (``paymux_env``: the caller's PAYMUX_*, STRIPE_* and proxy variables
  are dropped), with test-speed settings unless told otherwise, an httpx client holding the
  API key, and ``restart()``.
- ``python_answer(code, args, env, cwd)``: ``code`` run in a fresh interpreter, its last
  output line read as JSON.
- ``run_as(user, cmd)``: the command through ``runuser`` when we are root (PostgreSQL
  refuses to run as root); unchanged otherwise.
- ``cpu_seconds(pid)``: a process's user + system CPU time; ``child_pids(pid)``; and
  ``connection_owners(port, pids)``: which processes hold the server side of established
  connections on a port (which of several processes accepting on one socket served whom).

Waiting fails with ``WaitTimeout`` and a process that exits while waited for with
``ProcessExited`` (its log's tail in the message); both are AssertionErrors, so a test
reports them as failures.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx

__all__ = [
    "FAST_TEST_SETTINGS",
    "HOST",
    "PAYMUX",
    "LoggedProcess",
    "ProcessExited",
    "ServeProcess",
    "ServerProcess",
    "WaitTimeout",
    "child_pids",
    "clean_env",
    "connection_owners",
    "cpu_seconds",
    "free_port",
    "http_ok",
    "paymux_env",
    "port_open",
    "run_as",
    "wait_for_http",
    "wait_for_port",
    "wait_until",
]

HOST = "127.0.0.1"
PAYMUX = Path(sys.executable).with_name("paymux")  # the venv's console script

# What the crash tests run ``paymux serve`` with: background loops that notice things fast.
FAST_TEST_SETTINGS: Mapping[str, str] = {
    "PAYMUX_MAINTENANCE_INTERVAL": "0.2",
    "PAYMUX_WORKER_POLL_INTERVAL": "0.05",
    "PAYMUX_LOG_JSON": "false",
    "PAYMUX_LOG_LEVEL": "WARNING",
    # The tests inject faults and latency through /sandbox/_control.
    "PAYMUX_SANDBOX_CONTROLS": "true",
}


class WaitTimeout(AssertionError):
    """Something waited for did not happen in time."""


class ProcessExited(AssertionError):
    """A subprocess exited while we waited for it."""


# -- ports and waiting ---------------------------------------------------------------------
def free_port(host: str = HOST) -> int:
    """A TCP port free on ``host`` now (someone else may take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(
    what: str, check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.02
) -> None:
    """Call ``check`` until it returns true; ``WaitTimeout`` naming ``what`` after
    ``timeout`` seconds. Exceptions from ``check`` propagate (a process that died)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out waiting for {what}")
        time.sleep(interval)


def port_open(port: int, host: str = HOST) -> bool:
    """Does something accept TCP connections on host:port?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Does ``GET url`` answer 200 (no proxy)? False on any transport error."""
    try:
        return httpx.get(url, timeout=timeout, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _alive_check(proc: LoggedProcess | None, check: Callable[[], bool]) -> Callable[[], bool]:
    def checked() -> bool:
        if proc is not None:
            proc.check_alive()
        return check()

    return checked


# How long a started process may take to answer: far more than it needs on an idle machine
# (1-3 s), so a suite running two test processes on two busy cores never times out on it.
START_TIMEOUT = 120.0


def wait_for_port(
    port: int, host: str = HOST, timeout: float = START_TIMEOUT, proc: LoggedProcess | None = None
) -> None:
    """Until host:port accepts connections; ``ProcessExited`` if ``proc`` dies first."""
    wait_until(
        f"{host}:{port} to accept connections",
        _alive_check(proc, lambda: port_open(port, host)),
        timeout,
        interval=0.05,
    )


def wait_for_http(
    url: str, timeout: float = START_TIMEOUT, proc: LoggedProcess | None = None
) -> None:
    """Until ``GET url`` answers 200; ``ProcessExited`` if ``proc`` dies first."""
    wait_until(f"{url} to answer 200", _alive_check(proc, lambda: http_ok(url)), timeout, 0.05)


# -- environments and commands -------------------------------------------------------------
def clean_env(
    drop_prefixes: Sequence[str] = ("PAYMUX_", "STRIPE_"), **extra: str
) -> dict[str, str]:
    """This process's environment without variables starting with ``drop_prefixes`` nor any
    proxy variable, NO_PROXY set to loopback, then ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(tuple(drop_prefixes)) and "proxy" not in k.lower()
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def paymux_env(db_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a paymux subprocess: only PAYMUX_* (and STRIPE_*) variables given
    here configure it. Its sandbox keeps its own database in ``tmp/sandbox.db``."""
    return clean_env(PAYMUX_DATABASE_URL=db_url, PAYMUX_SANDBOX_DB=str(tmp / "sandbox.db"), **extra)


def python_answer(code: str, args: Sequence[str], env: Mapping[str, str], cwd: Path) -> Any:
    """Run ``code`` in a fresh interpreter (``python -c code args...``; what this test process
    has imported or changed does not reach it) and return its last line of output, read as
    JSON; its exit must be 0 (else its stderr's tail is the failure)."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_as(user: str, cmd: Sequence[str]) -> list[str]:
    """``cmd`` run as ``user`` through ``runuser`` when this process is root; unchanged
    otherwise (an unprivileged process runs it as itself)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *cmd]
    return list(cmd)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (0.0 where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The pids of process ``pid``'s children (from /proc; empty where there is none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def connection_owners(port: int, pids: Sequence[int]) -> dict[int, int]:
    """Of ``pids``, which hold established TCP connections on local ``port`` (IPv4), and how
    many: the server side of a connection belongs to the process that accepted it (with
    several processes accepting on one socket, the kernel's choice)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
            inodes.add(f"socket:[{fields[9]}]")
    owners: dict[int, int] = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                held = os.readlink(fd) in inodes
            except OSError:
                continue
            if held:
                owners[pid] = owners.get(pid, 0) + 1
    return owners


# -- processes -----------------------------------------------------------------------------
class LoggedProcess:
    """A subprocess whose stdout and stderr go to ``log`` (truncated at the first start
    unless ``append``; later starts append)."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        append: bool = False,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float = 15.0,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = dict(os.environ if env is None else env)
        self.log = log
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._append = append

    def spawn(self) -> Self:
        with self.log.open("ab" if self._append else "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
            )
        self._append = True
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """``ProcessExited`` (with the log's tail) unless the process runs."""
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            raise ProcessExited(f"{self.name} exited ({code}):\n{self.output()}")

    def output(self, chars: int = 4000) -> str:
        """The last ``chars`` characters of the log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.output(1_000_000).splitlines()[-lines:])

    def note(self, text: str) -> None:
        """Write a line of our own into the log (e.g. where a restart happened)."""
        with self.log.open("a") as out:
            out.write(f"\n--- {text} ---\n")

    def kill9(self) -> None:
        """SIGKILL, as a crash: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """``stop_signal``, then SIGKILL after ``stop_timeout`` seconds. Idempotent."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class ServerProcess(LoggedProcess):
    """A server subprocess on HOST:port, ready when ``GET health`` answers 200."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        port: int,
        log: Path,
        health: str = "/health",
        **kw: Any,
    ) -> None:
        super().__init__(name, cmd, log=log, **kw)
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.health = health

    def start(self, timeout: float = 60.0) -> Self:
        """Spawn and wait until healthy; on failure the process is stopped and the error
        (``ProcessExited`` / ``WaitTimeout``, with the log's tail) raised."""
        self.spawn()
        try:
            wait_for_http(self.url + self.health, timeout=timeout, proc=self)
        except WaitTimeout as exc:
            self.stop()
            raise WaitTimeout(f"{self.name} did not start in {timeout}s:\n{self.tail()}") from exc
        except BaseException:
            self.stop()
            raise
        return self


class ServeProcess(ServerProcess):
    """``paymux serve`` in a subprocess, configured only through PAYMUX_* variables.

    ``ServeProcess(tmp, db_url, api_key, **env)`` starts it (unless ``start=False``) on a
    free port, its sandbox database in ``tmp/sandbox.db``, its log in
    ``tmp/serve-<port>.log``, with ``settings`` (FAST_TEST_SETTINGS unless given) and then
    ``env`` on top. ``http`` is an httpx client with the API key."""

    def __init__(
        self,
        tmp: Path,
        db_url: str,
        api_key: str | None = None,
        *,
        command: Sequence[str] | None = None,
        settings: Mapping[str, str] = FAST_TEST_SETTINGS,
        port: int | None = None,
        log: Path | None = None,
        start: bool = True,
        timeout: float = START_TIMEOUT,
        name: str = "paymux serve",
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float = 15.0,
        cwd: Path | None = None,
        **env: str,
    ) -> None:
        self._port_chosen_here = port is None and "PAYMUX_PUBLIC_URL" not in env
        port = free_port() if port is None else port
        extra = {"PAYMUX_HOST": HOST, "PAYMUX_PORT": str(port), **settings, **env}
        if api_key is not None:
            extra["PAYMUX_API_KEY"] = api_key
        super().__init__(
            name,
            [str(PAYMUX), "serve"] if command is None else command,
            port=port,
            log=log or tmp / f"serve-{port}.log",
            env=paymux_env(db_url, tmp, **extra),
            cwd=cwd,
            stop_signal=stop_signal,
            stop_timeout=stop_timeout,
        )
        self.api_key = api_key
        self.timeout = timeout
        self.http = self._client()
        if start:
            self.start(timeout)

    def _client(self) -> httpx.Client:
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, trust_env=False)

    def start(self, timeout: float | None = None) -> Self:
        """Start and wait until healthy. On the first start, a port chosen here that another
        process took meanwhile (free_port() only finds one free *now*) is given up for
        another one, up to three times; a restart keeps its port."""
        tries = 3 if self._port_chosen_here and self.proc is None else 1
        for attempt in range(1, tries + 1):
            if self.http.is_closed:
                self.http = self._client()
            try:
                return super().start(self.timeout if timeout is None else timeout)
            except ProcessExited:
                if attempt == tries or not self._lost_its_port():
                    raise
                self.note(f"port {self.port} was taken: trying another")
                self._move_to(free_port())
        raise AssertionError("unreachable")

    def _lost_its_port(self) -> bool:
        said = self.output(2000)
        return f"port {self.port} on {HOST} is in use" in said or (
            "address already in use" in said.lower()
        )

    def _move_to(self, port: int) -> None:
        self.http.close()
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.env["PAYMUX_PORT"] = str(port)
        self.http = self._client()

    def ok(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        """The JSON of a request that must answer 200."""
        r = self.http.request(method, path, json=json)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def kill9(self) -> None:
        super().kill9()
        self.http.close()

    def stop(self) -> None:
        self.http.close()
        super().stop()

    def restart(self, **env: str | None) -> Self:
        """Stop it if it runs, then start it again: the same port, database, sandbox and log
        (appended), with ``env`` changed (a None value removes a variable)."""
        self.stop()
        for key, value in env.items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.note("restart")
        return self.start()
