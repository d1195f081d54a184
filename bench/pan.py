"""The card-number guard on inputs built to make a backtracking matcher explode: the time
``mask_pans`` and ``looks_like_pan`` take on each (the test suite checks only what they
answer, tests/unit/test_pan.py; a speed figure is printed here, never asserted).

    .venv/bin/python bench/pan.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import loadavg, machine

from paymux.security.pan import looks_like_pan, mask_pans

INPUTS = {
    '"4 " * 20_000': "4 " * 20_000,
    '"4242 " * 20_000': "4242 " * 20_000,
    '"4242\\u00a0" * 20_000': "4242\u00a0" * 20_000,
    '"4242%20" * 20_000': "4242%20" * 20_000,
    '"\\uff14\\u200b" * 20_000': "\uff14\u200b" * 20_000,
    '"1" + " \\t._/-" * 20_000 + "1"': "1" + " \t._/-" * 20_000 + "1",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"# {machine()}, load {loadavg():.1f}")
    print(f"{'input':<34} {'chars':>8} {'mask_pans ms':>13} {'looks_like_pan ms':>18}")
    for name, text in INPUTS.items():
        mask = look = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            mask_pans(text)
            mask = min(mask, time.perf_counter() - started)
            started = time.perf_counter()
            looks_like_pan(text)
            look = min(look, time.perf_counter() - started)
        print(f"{name:<34} {len(text):>8} {mask * 1000:>13.1f} {look * 1000:>18.1f}")


if __name__ == "__main__":
    main()
