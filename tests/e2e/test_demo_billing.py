"""`paymux demo billing`: a year of a monthly subscription on a test clock prints its 13
invoices with the amounts worked out by hand below.

The script (src/paymux/billing/demo.py): Basic $10.00 then Pro $25.00 a month, API calls at
1 cent each billed in arrears, a 14-day trial from 2026-01-01 (renewals on the 15th), 20 % off
for 3 months (until 2026-04-01), 10 % exclusive tax. Expected figures, by hand:

- trial invoice: 0.
- Jan 15: Basic 1000; discount 200; tax 10 % of 800 = 80; total 880.
- Feb 15: usage 1200 + Basic 1000 = 2200; discount 440; tax 176; total 1936.
- Mar 15: upgrade on Mar 1, half of the 28-day period Feb 15 - Mar 15 left: unused Basic
  -1000/2 = -500, remaining Pro +2500/2 = +1250; + usage 1500 + Pro 2500: subtotal 4750. The
  discount spares proration items (Stripe: not discountable): 20 % of 4000 = 800; tax 10 % of
  3950 = 395; total 4345.
- then Pro 2500 + the previous month's usage, plus 10 % tax, no discount (Apr 15 on).
- Jul 15 fails (the card declines), dunning's retry on Jul 16 fails, a new card pays: 3 attempts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from support.commands import fresh_env, paymux_command

TITLE = re.compile(
    r"^Invoice (\S+)  (\d{4}-\d\d-\d\d) -> (\d{4}-\d\d-\d\d)  (\w+), attempts (\d+)$"
)
X = "\u00d7"  # the multiplication sign of "1 x Basic"
USAGE = (1200, 1500, 900, 2100, 1800, 1350, 2400, 1650, 1950, 2250, 3000)


def invoices(output: str) -> list[dict[str, object]]:
    """Each printed invoice: its title's fields and its rows {first cell: (period, amount)}."""
    found: list[dict[str, object]] = []
    for line in output.splitlines():
        title = TITLE.match(line)
        if title:
            number, start, end, status, attempts = title.groups()
            found.append(
                {
                    "number": number,
                    "period": (start, end),
                    "status": status,
                    "attempts": int(attempts),
                    "rows": [],
                }
            )
        elif line.startswith("│") and found:
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            assert len(cells) == 3, line
            rows = found[-1]["rows"]
            assert isinstance(rows, list)
            rows.append(tuple(cells))
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    cwd = tmp_path_factory.mktemp("demo_billing")
    result = subprocess.run(
        [*paymux_command(), "demo", "billing"],
        cwd=cwd,
        env=fresh_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return result, cwd


def totals(rows: list[tuple[str, str, str]]) -> dict[str, str]:
    return {r[0]: r[2] for r in rows if r[0] in ("subtotal", "discount", "tax", "total", "paid")}


def lines(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [r for r in rows if r[0] not in ("subtotal", "discount", "tax", "total", "paid")]


def test_the_demo_exits_0_quietly_and_leaves_no_files(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, cwd = demo
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert list(cwd.iterdir()) == []


def test_a_year_prints_13_invoices_numbered_in_order(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, _ = demo
    found = invoices(result.stdout)
    assert len(found) == 13, result.stdout
    numbers = [str(i["number"]) for i in found]
    prefix = numbers[0].rsplit("-", 1)[0]
    assert numbers == [f"{prefix}-{n:04d}" for n in range(1, 14)]
    assert [i["period"] for i in found] == [("2026-01-01", "2026-01-15")] + [
        (f"2026-{m:02d}-15", f"{2026 + m // 12}-{m % 12 + 1:02d}-15") for m in range(1, 13)
    ]
    assert all(i["status"] == "paid" for i in found)
    assert [i["attempts"] for i in found] == [0, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1]


def test_the_trial_invoice_is_zero(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    trial = invoices(demo[0].stdout)[0]
    rows = trial["rows"]
    assert isinstance(rows, list)
    assert lines(rows) == [
        ("Trial period for API calls", "2026-01-01 -> 2026-01-15", "$0.00"),
        ("Trial period for Basic", "2026-01-01 -> 2026-01-15", "$0.00"),
    ]
    assert totals(rows) == {
        "subtotal": "$0.00",
        "discount": "$0.00",
        "tax": "$0.00",
        "total": "$0.00",
        "paid": "$0.00",
    }


def test_discounted_months_and_the_upgrade_prorations(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    found = invoices(demo[0].stdout)
    jan, feb, mar = (found[i]["rows"] for i in (1, 2, 3))
    assert isinstance(jan, list) and isinstance(feb, list) and isinstance(mar, list)
    assert lines(jan) == [(f"1 {X} Basic", "2026-01-15 -> 2026-02-15", "$10.00")]
    assert totals(jan) == {
        "subtotal": "$10.00",
        "discount": "-$2.00",
        "tax": "$0.80",
        "total": "$8.80",
        "paid": "$8.80",
    }
    assert lines(feb) == [
        (f"1200 {X} API calls (usage)", "2026-01-15 -> 2026-02-15", "$12.00"),
        (f"1 {X} Basic", "2026-02-15 -> 2026-03-15", "$10.00"),
    ]
    assert totals(feb) == {
        "subtotal": "$22.00",
        "discount": "-$4.40",
        "tax": "$1.76",
        "total": "$19.36",
        "paid": "$19.36",
    }
    assert lines(mar) == [
        (f"1500 {X} API calls (usage)", "2026-02-15 -> 2026-03-15", "$15.00"),
        (f"Unused time on 1 {X} Basic", "2026-03-01 -> 2026-03-15", "-$5.00"),
        (f"Remaining time on 1 {X} Pro", "2026-03-01 -> 2026-03-15", "$12.50"),
        (f"1 {X} Pro", "2026-03-15 -> 2026-04-15", "$25.00"),
    ]
    assert totals(mar) == {
        "subtotal": "$47.50",
        "discount": "-$8.00",
        "tax": "$3.95",
        "total": "$43.45",
        "paid": "$43.45",
    }


def test_later_months_bill_pro_plus_usage_with_tax_and_the_failed_one_is_recovered(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    found = invoices(demo[0].stdout)
    for n, invoice in enumerate(found[4:], start=4):
        rows = invoice["rows"]
        assert isinstance(rows, list)
        used = USAGE[n - 2]
        usage_line = lines(rows)[0]
        assert usage_line[0] == f"{used} {X} API calls (usage)"
        assert usage_line[2] == f"${used // 100}.{used % 100:02d}"
        subtotal = 2500 + used
        total = subtotal + subtotal // 10  # multiples of 50: the 10 % tax is exact
        shown = totals(rows)
        assert shown["subtotal"] == f"${subtotal // 100}.{subtotal % 100:02d}"
        assert shown["discount"] == "$0.00"
        assert shown["total"] == shown["paid"] == f"${total // 100}.{total % 100:02d}"
    july = found[7]
    assert (july["period"], july["status"], july["attempts"]) == (
        ("2026-07-15", "2026-08-15"),
        "paid",
        3,
    )
    rows = july["rows"]
    assert isinstance(rows, list)
    assert totals(rows)["paid"] == "$42.35"  # 2500 + 1350 + 385 tax


def test_the_summary_adds_the_year_up(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    # 0 + 880 + 1936 + 4345 + 3740 + 5060 + 4730 + 4235 + 5390 + 4565 + 4895 + 5225 + 6050
    assert demo[0].stdout.splitlines()[-1] == (
        "13 invoices, 13 paid; billed $510.51, collected $510.51; "
        "2 failed attempts recovered by dunning; subscription active"
    )
