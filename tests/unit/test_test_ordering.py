"""support/ordering.py: the long files go to the xdist processes first, the rest by size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from support.ordering import LONG_FILES, order_files


@dataclass
class _Item:
    nodeid: str


def test_long_files_first_then_by_number_of_tests_each_file_kept_together() -> None:
    small, big = "tests/unit/test_a.py", "tests/unit/test_b.py"
    first, second = LONG_FILES[0], LONG_FILES[1]
    items = [
        _Item(f"{small}::t1"),
        _Item(f"{second}::x"),
        _Item(f"{big}::t1"),
        _Item(f"{big}::t2"),
        _Item(f"{big}::t3"),
        _Item(f"{first}::y"),
        _Item(f"{first}::z"),
    ]
    order_files(cast(Any, items))
    assert [i.nodeid for i in items] == [
        f"{first}::y",
        f"{first}::z",
        f"{second}::x",
        f"{big}::t1",
        f"{big}::t2",
        f"{big}::t3",
        f"{small}::t1",
    ]
