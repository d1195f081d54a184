"""The cyclic garbage collector of a long-running paymux process (``paymux serve``, each of
``serve --workers N``'s processes, ``paymux worker``).

A full collection walks every object the collector tracks. A started API process holds about
240,000 of them (modules, FastAPI's routes and models, SQLAlchemy's mappers and compiled
statements) that live as long as the process, and walking them took 55-70 ms on the
benchmark machine, with the event loop stopped: every request in flight waited, and the p99
of 16 concurrent clients was that pause (bench/payments.py; docs/benchmarks.md, "The
collector").

``settle()``, once start-up is done:

- collects, then freezes what survived (``gc.freeze``): those objects move to the permanent
  generation, which no collection walks. They are still freed by reference counting; a cycle
  among them is kept for the life of the process, which start-up's are anyway;
- raises the youngest generation's threshold from 700 to ``YOUNG_THRESHOLD`` allocations:
  a payment allocates thousands of container objects, nearly all freed by reference counting
  before any collection, so fewer passes find as much garbage. Not higher: every tenth young
  pass is also a pass over what the last ten kept, and at 10,000 those pauses reached the
  p99 of one client's payments (bench/payments.py, sequential: 8.3-9.2 ms at
  10,000, 7.1-8.5 ms at 3,000 and at 700; 16 clients: 385-390 payments/s at 10,000 and at
  3,000, 375-378 at 700; docs/benchmarks.md).

Not done in tests and the library (``create_app`` without ``settle_heap``): a process that
builds many apps would keep each one's cycles.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["YOUNG_THRESHOLD", "settle"]

YOUNG_THRESHOLD: Final = 3_000


def settle() -> None:
    """Start-up's objects out of every later collection, and fewer young collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
