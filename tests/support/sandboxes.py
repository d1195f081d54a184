"""The gateway sandboxes from ../shared/gateway-sandboxes, started on free loopback ports.

localstripe (GPL) is a separate process from its own venv under $SANDBOX_HOME (installed by
``start-sandboxes.sh install``, which .ci/run runs); it is never imported or bundled.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import httpx

__all__ = ["LocalStripe", "Prism", "find_shared", "sandbox_home", "violations"]


def find_shared() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "gateway-sandboxes"
        if candidate.is_dir():
            return candidate.parent
    return None


def sandbox_home() -> Path:
    return Path(os.environ.get("SANDBOX_HOME") or
                Path(os.environ.get("TMPDIR", "/tmp")) / "gateway-sandboxes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalStripe:
    """One localstripe server on 127.0.0.1, empty at start."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def unavailable() -> str | None:
        shared = find_shared()
        if shared is None:
            return "../shared/gateway-sandboxes not found"
        python = sandbox_home() / "venv" / "bin" / "python"
        if not python.exists():
            return f"localstripe venv missing at {python} (run start-sandboxes.sh install)"
        return None

    def start(self) -> LocalStripe:
        shared = find_shared()
        assert shared is not None
        python = sandbox_home() / "venv" / "bin" / "python"
        launcher = shared / "gateway-sandboxes" / "localstripe_loopback.py"
        self._log = open(sandbox_home() / f"localstripe-{self.port}.log", "wb")
        self._proc = subprocess.Popen(
            [str(python), str(launcher), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/v1/customers",
                          headers={"authorization": "Bearer sk_test_probe"}, timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("localstripe did not start")

    def register_webhook(self, url: str, secret: str, name: str = "paymux") -> None:
        response = httpx.post(f"{self.url}/_config/webhooks/{name}",
                              data={"url": url, "secret": secret}, timeout=5)
        response.raise_for_status()

    def authenticate(self, pi_id: str, client_secret: str, success: bool = True) -> dict:
        response = httpx.post(
            f"{self.url}/v1/payment_intents/{pi_id}/_authenticate",
            data={"client_secret": client_secret, "success": "true" if success else "false"},
            headers={"authorization": "Bearer sk_test_paymux"}, timeout=5,
        )
        response.raise_for_status()
        data: dict = response.json()
        return data

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
            self._log.close()


class Prism:
    """Prism mocking one prepared spec (``paypal`` or ``square``) on a free 127.0.0.1 port.

    Prism validates every request against the provider's official OpenAPI spec: an invalid
    request gets 422 with the reasons in the ``sl-violations`` header."""

    def __init__(self, spec: str, paths: Iterable[str] | None = None) -> None:
        """``paths``: serve only these paths of the spec (each with every component it refers
        to, unchanged): Prism reads a whole spec at start, and Square's 240 paths take it
        about 25 s where the handful a test uses take a second or two."""
        self.spec = spec
        self.paths = None if paths is None else tuple(paths)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def unavailable(spec: str) -> str | None:
        home = sandbox_home()
        if not (home / "node" / "node_modules" / ".bin" / "prism").exists():
            return f"prism missing under {home} (run start-sandboxes.sh install)"
        if not (home / "specs" / f"{spec}.json").exists():
            return f"prepared spec {spec}.json missing under {home}/specs"
        return None

    def start(self, timeout: float = 120) -> Prism:
        home = sandbox_home()
        spec_file = home / "specs" / f"{self.spec}.json"
        if self.paths is not None:
            spec_file = _only_paths(spec_file, self.paths, home / f"{self.spec}-{self.port}.json")
        self._log = open(home / f"prism-{self.spec}-{self.port}.log", "wb")
        self._proc = subprocess.Popen(
            [str(home / "node" / "node_modules" / ".bin" / "prism"), "mock",
             str(spec_file), "-h", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prism ({self.spec}) exited; see {self._log.name}")
            try:
                httpx.get(f"{self.url}/__health", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prism ({self.spec}) did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
            self._log.close()


def _only_paths(source: Path, paths: tuple[str, ...], target: Path) -> Path:
    """A copy of the OpenAPI document ``source`` with only ``paths`` (each exactly as in the
    spec) and the components their ``$ref``s reach, directly or through other components;
    everything kept is the published text unchanged."""
    import json

    spec = json.loads(source.read_text())
    missing = [p for p in paths if p not in spec["paths"]]
    if missing:
        raise KeyError(f"not in {source.name}: {missing}")
    kept = {p: spec["paths"][p] for p in paths}
    components = spec.get("components", {})
    seen: set[str] = set()
    todo: list[object] = [kept]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/") and ref not in seen:
                seen.add(ref)
                kind, name = ref.split("/")[2:4]
                todo.append(components[kind][name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    trimmed = {
        kind: (
            {n: v for n, v in entries.items() if f"#/components/{kind}/{n}" in seen}
            if kind in ("schemas", "parameters", "responses", "requestBodies", "headers",
                        "examples")
            else entries
        )
        for kind, entries in components.items()
    }
    target.write_text(json.dumps({**spec, "paths": kept, "components": trimmed}))
    return target


def violations(response: httpx.Response) -> list[dict]:
    """Prism's request violations for a response (response-side ones are Prism's own)."""
    import json

    raw = response.headers.get("sl-violations")
    if not raw:
        return []
    start = raw.find("[")  # Prism may prefix "Too many violations! " and cut the list short
    try:
        items = json.loads(raw[start:]) if start >= 0 else []
    except ValueError:
        # Cut-off JSON: count every request-side entry we can still see.
        import re

        return [{"location": ["request"], "message": m}
                for m in re.findall(r'"location":\["request"[^\]]*\][^}]*"message":"([^"]*)"', raw)]
    return [v for v in items if str(v.get("location", ["request"])[0]) == "request"]
