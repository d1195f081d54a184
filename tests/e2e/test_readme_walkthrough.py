"""The README's walkthrough, run word for word against `paymux serve` started as `make run` does.

`make run` ends with `.venv/bin/paymux migrate` and `.venv/bin/paymux serve` in the checkout,
with no PAYMUX_* variables set. Here both run in a fresh temp directory (so a fresh SQLite
file) with only PAYMUX_PORT set to a free port. The key comes from the server's own
`export PAYMUX_KEY=...` line. The README's walkthrough bash blocks run in order in one bash
process with `set -euo pipefail`; the only change is the one `BASE=http://127.0.0.1:8000`
line, pointed at the test server's port. Any README edit that breaks a command fails here.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from support.commands import fresh_env, paymux_command

README = Path(__file__).resolve().parents[2] / "README.md"
START_MARKER = "<!-- walkthrough"
END_MARKER = "<!-- /walkthrough -->"
BASE_LINE = "BASE=http://127.0.0.1:8000"
CARD_NUMBER_FORMS = ("4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242")

pytestmark = pytest.mark.slow


def walkthrough_blocks(text: str) -> list[str]:
    assert text.count(START_MARKER) == 1, f"README needs exactly one {START_MARKER!r} marker"
    assert text.count(END_MARKER) == 1, f"README needs exactly one {END_MARKER!r} marker"
    start = text.index(START_MARKER)
    end = text.index(END_MARKER)
    assert start < end, "the walkthrough end marker comes before its start"
    blocks = re.findall(r"^```bash\n(.*?)^```", text[start:end], re.DOTALL | re.MULTILINE)
    assert blocks, "no ```bash blocks between the walkthrough markers"
    return list(blocks)


def walkthrough_script(base: str) -> str:
    blocks = walkthrough_blocks(README.read_text(encoding="utf-8"))
    lines = "\n".join(blocks).splitlines()
    assert lines.count(BASE_LINE) == 1, f"the walkthrough must set {BASE_LINE!r} exactly once"
    body = "\n".join(f"BASE={base}" if line == BASE_LINE else line for line in lines)
    return "set -euo pipefail\n" + body + "\n"


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str
    cwd: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    @property
    def key(self) -> str:
        found = re.search(r"^\s*export PAYMUX_KEY=(\S+)\s*$", self.stdout, re.MULTILINE)
        assert found, f"no `export PAYMUX_KEY=...` line in the server output:\n{self.stdout}"
        return found.group(1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    cwd = tmp_path_factory.mktemp("make-run")
    port = free_port()
    env = fresh_env(PAYMUX_PORT=str(port))
    migrate = subprocess.run(
        [*paymux_command(), "migrate"], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert re.search(r"^created the schema at revision \w+ ", migrate.stdout, re.MULTILINE), (
        migrate.stdout
    )
    assert (cwd / "paymux.db").exists(), "paymux migrate did not create ./paymux.db"

    out, err = cwd / "serve.stdout", cwd / "serve.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*paymux_command(), "serve"], cwd=cwd, env=env, stdout=stdout, stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    server = Served(proc, f"http://127.0.0.1:{port}", cwd, out, err)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"paymux serve exited with {proc.returncode}:\n"
                            f"{server.stdout}\n{server.stderr[-4000:]}")
            try:
                health = httpx.get(f"{server.base}/health", timeout=2, trust_env=False)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"paymux serve did not answer /health:\n{server.stdout}\n"
                            f"{server.stderr[-4000:]}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl+C, as a `make run` user stops it
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@dataclass
class Walkthrough:
    returncode: int
    stdout: str
    stderr: str

    def line(self, pattern: str) -> re.Match[str]:
        found = re.search(pattern, self.stdout, re.MULTILINE)
        assert found, f"no line matching {pattern!r} in the walkthrough output:\n{self.stdout}"
        return found


@pytest.fixture(scope="module")
def walkthrough(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Walkthrough:
    script = walkthrough_script(served.base)
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path_factory.mktemp("walkthrough"),
        env=fresh_env(PAYMUX_KEY=served.key), capture_output=True, text=True, timeout=180,
        stdin=subprocess.DEVNULL,
    )
    return Walkthrough(result.returncode, result.stdout, result.stderr)


def test_the_walkthrough_runs_word_for_word_and_exits_0(walkthrough: Walkthrough) -> None:
    assert walkthrough.returncode == 0, (
        f"the README walkthrough failed ({walkthrough.returncode}):\n"
        f"--- stdout\n{walkthrough.stdout}\n--- stderr\n{walkthrough.stderr}"
    )


def test_the_walkthrough_shows_each_outcome(walkthrough: Walkthrough) -> None:
    pi = walkthrough.line(r"^created (pi_\w+)$").group(1)
    walkthrough.line(r"(?i)^idempotent-replayed: true")
    walkthrough.line(rf"^{pi} succeeded 2000$")
    hold = walkthrough.line(r"^(pi_\w+) requires_capture 10000$").group(1)
    walkthrough.line(rf"^{hold} succeeded 7500 0$")
    walkthrough.line(r"^re_\w+ refund succeeded 2500$")
    walkthrough.line(rf"^{hold} succeeded 7500 2500$")
    walkthrough.line(r"^HTTP/1\.1 402 ")
    error = json.loads(walkthrough.line(r'^\{"error": .*$').group(0))["error"]
    assert error["type"] == "card_error"
    assert error["code"] == "card_declined" and error["decline_code"] == "generic_decline"
    declined = error["payment_intent"]["id"]
    walkthrough.line(rf"^{declined} requires_payment_method card_declined$")
    walkthrough.line(r"^invalid_request_error card_number_not_allowed description$")
    events = walkthrough.line(r"^[a-z_.]+(,[a-z_.]+)+$").group(0).split(",")
    assert events == sorted(set(events))
    for kind in ("payment_intent.created", "payment_intent.succeeded", "charge.refunded",
                 "payment_intent.payment_failed"):
        assert kind in events


def test_the_walkthrough_left_exactly_what_it_describes(
    served: Served, walkthrough: Walkthrough
) -> None:
    assert walkthrough.returncode == 0
    auth = {"authorization": f"Bearer {served.key}"}

    def get(path: str, **params: object) -> dict:
        response = httpx.get(f"{served.base}{path}", params=params, headers=auth, timeout=10,
                             trust_env=False)
        assert response.status_code == 200, response.text
        data: dict = response.json()
        return data

    paid_id = walkthrough.line(r"^created (pi_\w+)$").group(1)
    hold_id = walkthrough.line(r"^(pi_\w+) requires_capture").group(1)
    declined_id = walkthrough.line(r"^(pi_\w+) requires_payment_method").group(1)
    paid = get(f"/v1/payment_intents/{paid_id}")
    assert paid["status"] == "succeeded" and paid["amount_received"] == 2000
    assert paid["description"] == "Order 1001"
    hold = get(f"/v1/payment_intents/{hold_id}")
    assert hold["capture_method"] == "manual"
    assert (hold["status"], hold["amount_received"], hold["amount_capturable"],
            hold["amount_refunded"]) == ("succeeded", 7500, 0, 2500)
    refunds = get("/v1/refunds", payment_intent=hold["id"])["data"]
    assert [(r["amount"], r["status"]) for r in refunds] == [(2500, "succeeded")]
    declined = get(f"/v1/payment_intents/{declined_id}")
    assert declined["last_payment_error"]["decline_code"] == "generic_decline"
    # The replayed create and the refused card number made nothing more.
    intents = get("/v1/payment_intents", limit=100)["data"]
    assert sorted(pi["id"] for pi in intents) == sorted([paid["id"], hold["id"], declined["id"]])


def test_the_server_logs_hold_no_key_and_no_card_number(
    served: Served, walkthrough: Walkthrough
) -> None:
    assert walkthrough.returncode == 0
    logs = served.stderr
    assert "uvicorn.access" in logs, "expected JSON access log lines on stderr"
    for line in logs.splitlines():
        json.loads(line)  # production logging: one JSON object per line
    assert served.key not in logs
    assert served.key.split("_")[-1] not in logs
    for form in CARD_NUMBER_FORMS:
        assert form not in logs


def test_the_server_prints_its_key_and_the_docs_url_and_serves_them(served: Served) -> None:
    out = served.stdout
    assert re.fullmatch(r"sk_test_[A-Za-z0-9]{20,}", served.key)
    assert f"paymux on {served.base}" in out
    assert "Your test API key (shown once, stored hashed)" in out
    assert f"API docs: {served.base}/docs" in out
    assert f"OpenAPI: {served.base}/openapi.json" in out
    assert f"Sandbox card form: {served.base}/sandbox/elements" in out

    docs = httpx.get(f"{served.base}/docs", timeout=10, trust_env=False)
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text.lower() and "/openapi.json" in docs.text
    spec = httpx.get(f"{served.base}/openapi.json", timeout=10, trust_env=False)
    assert spec.status_code == 200
    schema = spec.json()
    assert schema["info"]["title"] == "paymux"
    for path in ("/v1/payment_intents", "/v1/payment_intents/{pi_id}/confirm",
                 "/v1/payment_intents/{pi_id}/capture", "/v1/refunds"):
        assert path in schema["paths"]


# Named by the README but written by other work; tolerated while missing (nothing else is).
PENDING_FILES = {"docs/benchmarks.md"}


def test_the_readme_names_only_real_settings_test_cards_commands_and_files() -> None:
    from pydantic import AliasChoices

    from paymux.cli import cli
    from paymux.config import Settings
    from paymux.gateways.sandbox.cards import MAGIC_TOKENS

    text = README.read_text(encoding="utf-8")
    env_names = set()
    for name, field in Settings.model_fields.items():
        env_names.add(f"PAYMUX_{name.upper()}")
        if isinstance(field.validation_alias, AliasChoices):
            env_names |= {str(a) for a in field.validation_alias.choices}
    documented = set(
        re.findall(r"`((?:PAYMUX|STRIPE|PAYPAL|SQUARE)_[A-Z_*]+)", text)
    ) - {"PAYMUX_KEY"}
    for gateway in ("STRIPE", "PAYPAL", "SQUARE"):  # every connector's settings are listed
        assert any(v.startswith(f"{gateway}_") for v in documented), gateway
    for variable in documented:
        pattern = re.compile(variable.replace("*", "[A-Z_]+"))
        assert any(pattern.fullmatch(name) for name in env_names), f"no setting {variable}"

    rows = re.findall(
        r"^\| `(pm_card_\w+)` \| (?:`(tok_\w+)`|-) \| ([\d ]+) \|", text, re.MULTILINE
    )
    assert len(rows) >= 5
    for token, twin, number in rows:
        assert MAGIC_TOKENS.get(token) == number.replace(" ", ""), token
        if twin:
            assert MAGIC_TOKENS.get(twin) == number.replace(" ", ""), twin
    assert {"tok_visa", "tok_chargeDeclined"} <= {twin for _, twin, _ in rows}

    commands = {c.name or (c.callback.__name__ if c.callback else "")
                for c in cli.registered_commands} | {g.name for g in cli.registered_groups}
    listed = set(re.findall(r"^\| `paymux (\w+)", text, re.MULTILINE))
    assert listed == commands, "the README's `paymux` command table is out of date"

    root = README.parent
    named = re.findall(r"\]\(((?:docs|src|tests|bench)/[^)#]+)\)", text)
    named += re.findall(r"`((?:src|tests|bench|docs)/[\w/.]+\.(?:py|md))`", text)
    missing = {path for path in named if not (root / path).exists()} - PENDING_FILES
    assert not missing, f"the README names missing files: {sorted(missing)}"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "sk_test_NotAKeyOfThisServer0000000",
            "Invalid API Key provided: sk_test_**********************0000",
        ),
        ("", "Invalid Authorization header"),
    ],
    ids=["wrong-key", "missing-key"],
)
def test_with_a_wrong_or_missing_key_step_1_prints_the_apis_401_error(
    served: Served, tmp_path: Path, key: str, message: str
) -> None:
    result = subprocess.run(
        ["bash", "-c", walkthrough_script(served.base)], cwd=tmp_path,
        env=fresh_env(PAYMUX_KEY=key), capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "KeyError" not in result.stderr, result.stderr
    assert f"error: invalid_request_error api_key_invalid: {message}" in result.stderr
    assert "created" not in result.stdout  # it stopped at step 1


def test_every_walkthrough_step_shows_what_it_prints() -> None:
    text = README.read_text(encoding="utf-8")
    walk = text[text.index(START_MARKER):text.index(END_MARKER) + len(END_MARKER)]
    pieces = re.split(r"^```bash\n.*?^```\n", walk, flags=re.DOTALL | re.MULTILINE)
    # pieces[0] is the intro, pieces[1] follows the helper block; from step 1 on, the text
    # after each block shows its output: an output block, or a sentence with a literal one.
    for after in pieces[2:]:
        assert re.search(r"^```\n.+?^```|`[^`]+`", after, re.DOTALL | re.MULTILINE), after[:200]
    assert "print(json.load(sys.stdin)" not in walk  # no bare KeyError on an error answer


def test_the_readme_layout_names_every_gateway_package_and_links_operations() -> None:
    text = README.read_text(encoding="utf-8")
    layout = text[text.index("## Layout"):]
    for package in ("sandbox/", "stripe/", "paypal/", "square/"):
        assert package in layout, package
    for module in ("connector.py", "transformers.py", "webhooks.py", "credentials.py",
                   "errors.py", "spec.py"):
        assert module in layout, module
    assert "(docs/operations.md)" in text


def test_the_readme_layout_names_every_package_module_and_doc() -> None:
    """Every package and top-level module of src/paymux and every page of docs/ is in the
    Layout section, so a new one cannot land without saying where it sits."""
    text = README.read_text(encoding="utf-8")
    layout = text[text.index("## Layout"):text.index("## Benchmarks")]
    root = README.parent
    src = root / "src" / "paymux"
    packages = {f"{p.name}/" for p in src.iterdir() if (p / "__init__.py").exists()}
    modules = {p.name for p in src.glob("*.py") if p.name != "__init__.py"}
    docs = {p.name for p in (root / "docs").glob("*.md")}
    assert {"billing/", "web/", "api/"} <= packages and "cli_connections.py" in modules
    assert {"billing.md", "stripe-compatibility.md"} <= docs
    missing = {name for name in packages | modules | docs if name not in layout}
    assert not missing, f"the README's Layout leaves out {sorted(missing)}"


def test_no_committed_file_is_ignored_by_gitignore() -> None:
    root = README.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-ci", "--exclude-standard"], cwd=root, capture_output=True,
        text=True, timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == ""


def test_the_stripe_python_example_prints_what_the_readme_says(served: Served) -> None:
    """The README's stripe-python block, saved as pay.py and run as written."""
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- stripe-python:", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    printed = re.search(r"It prints:\n\n```\n(.*?)```", section, re.DOTALL)
    assert code and printed, "the README's stripe-python example is missing"
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)], env=fresh_env(
            PAYMUX_KEY=served.key, BASE=served.base), capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == printed.group(1)
    assert printed.group(1) == "succeeded 4242\ncard_declined insufficient_funds\n"
