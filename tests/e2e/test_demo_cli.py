"""`paymux demo`: the scripted tour prints one table per scenario with the right outcomes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from support.commands import fresh_env, paymux_command

TITLES = (
    "1. A successful payment (pm_card_visa)",
    "2. A decline (insufficient funds)",
    "3. 3-D Secure: challenge, approve, signed webhook",
    "4. Manual capture of less than authorized",
    "5. A partial refund",
)
COLUMNS = ["step", "status", "amount", "capturable", "received", "refunded", "error / next action"]


def tables(output: str) -> dict[str, list[dict[str, str]]]:
    """Each table's title -> its body rows as {column: cell} (rich box drawing, no wrapping)."""
    found: dict[str, list[dict[str, str]]] = {}
    rows: list[dict[str, str]] | None = None
    for line in output.splitlines():
        if line in TITLES:
            rows = found.setdefault(line, [])
        elif line.startswith("│") and rows is not None:
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            assert len(cells) == len(COLUMNS), line
            rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    cwd = tmp_path_factory.mktemp("demo")
    # Wide enough that rich neither wraps nor truncates a cell ("requires_…" at 80 columns).
    result = subprocess.run(
        [*paymux_command(), "demo"], cwd=cwd, env=fresh_env(COLUMNS="200"),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    return result, cwd


def test_the_demo_exits_0_quietly_and_leaves_no_files(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, cwd = demo
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert list(cwd.iterdir()) == [], "the demo must use a throwaway database, not ./paymux.db"


def test_each_scenario_prints_its_table_and_outcome(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, _ = demo
    assert result.returncode == 0, result.stdout + result.stderr
    found = tables(result.stdout)
    assert list(found) == list(TITLES), result.stdout

    success = found[TITLES[0]]
    assert [r["step"] for r in success] == ["create", "confirm"]
    assert success[0]["status"] == "requires_payment_method"
    assert (success[1]["status"], success[1]["received"]) == ("succeeded", "2000")

    decline = found[TITLES[1]][-1]
    assert decline["status"] == "requires_payment_method" and decline["received"] == "0"
    assert decline["error / next action"] == (
        "card_declined / insufficient_funds -> use_another_method"
    )

    challenged, approved = found[TITLES[2]]
    assert challenged["status"] == "requires_action"
    assert challenged["error / next action"] == "redirect_to_url"
    assert (approved["status"], approved["received"]) == ("succeeded", "4500")

    held, captured = found[TITLES[3]]
    assert (held["status"], held["capturable"]) == ("requires_capture", "10000")
    assert captured["step"] == "capture 7500"
    assert (captured["status"], captured["received"], captured["capturable"]) == (
        "succeeded", "7500", "0",
    )

    [refunded] = found[TITLES[4]]
    assert re.fullmatch(r"refund re_\w+\.\. succeeded", refunded["step"])
    assert (refunded["status"], refunded["received"], refunded["refunded"]) == (
        "succeeded", "7500", "2500",
    )

    events = re.search(r"^(\d+) events written, e\.g\. (.*)$", result.stdout, re.MULTILINE)
    assert events, result.stdout
    assert int(events.group(1)) >= 10
    for kind in ("payment_intent.requires_action", "charge.refunded", "refund.created"):
        assert kind in events.group(2)
