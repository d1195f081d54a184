"""A py-spy flame graph of paymux's payment path: create + confirm, driven with wrk.

Starts ``paymux serve`` (bench/common.py: its worker, the sandbox gateway at zero latency, log
level WARNING) on a fresh SQLite file or a throwaway PostgreSQL database, warms it up, then
records it with ``py-spy record`` (not a paymux dependency: ``.venv/bin/pip install py-spy``)
while wrk drives create + confirm payments (the Lua script of bench/payments.py) at
``--concurrency`` connections for ``--seconds``. Samples only threads on CPU. Writes the SVG
(``--out``) and the raw folded stacks (``--folded``, default in the temporary directory), and
prints the own time per library and the top frames by own time and by total time.

    .venv/bin/python bench/flamegraph.py [--backend sqlite|postgres] [--seconds 15]
        [--concurrency 16] [--out docs/flamegraph-payments-sqlite.svg] [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CpuMeter, databases, have_wrk, paymux_server, run_httpx, run_wrk
from payments import PAYMENTS_LUA, Side

from paymux.storage.migrate import upgrade


def top_frames(folded: Path, n: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """(frames by own samples, frames by samples anywhere on the stack, total samples)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        frames = stack.split(";")
        samples += k
        own[frames[-1]] += k
        for frame in set(frames):
            total[frame] += k
    return own.most_common(n), total.most_common(n), samples


_LIBRARIES = (
    "aiosqlite", "sqlalchemy", "asyncpg", "fastapi", "starlette", "uvicorn", "pydantic",
    "paymux", "asyncio", "json", "logging", "greenlet", "h11", "httptools", "uvloop",
)


def by_library(folded: Path) -> list[tuple[str, float]]:
    """Share of samples per library of the innermost frame (its own time), e.g. ``sqlalchemy``;
    frames of the standard library that are not named above count as ``other``."""
    counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        samples += k
        frame = stack.split(";")[-1]
        where = frame.rpartition("(")[2]
        name = next((lib for lib in _LIBRARIES if where.startswith(lib + "/")), None)
        if name is None:
            name = "event loop (select, self-pipe)" if "selector" in where else "other"
        counts[name] += k
    return [(name, k / samples * 100) for name, k in counts.most_common()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second (250)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--folded", type=Path, default=None, help="raw stacks (default: in /tmp)")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        parser.error("py-spy is not installed: .venv/bin/pip install py-spy")
    if not have_wrk():
        parser.error("wrk is not installed: apt-get install wrk")
    out = args.out or Path(f"docs/flamegraph-payments-{args.backend}.svg")
    folded = args.folded or Path(tempfile.gettempdir()) / (out.stem + ".txt")
    bench_args = argparse.Namespace(
        concurrency=args.concurrency, idempotency_keys=False, max_seconds=60.0
    )
    with databases([args.backend], prefix="paymux-flame-") as dbs:
        url = dbs.url(args.backend, "flame")
        upgrade(url)
        server = paymux_server(url, dbs.tmp, PAYMUX_RUN_WORKER="true")
        server.start()
        try:
            side = Side(server, bench_args, dbs.tmp)
            import asyncio

            asyncio.run(run_httpx(server.url, side._pair, connections=4, count=200))
            cmd = [py_spy, "record", "--pid", str(server.pid), "--rate", str(args.rate),
                   "--duration", str(round(args.seconds) + 2), "--subprocesses",
                   "--nonblocking"]
            svg = subprocess.Popen([*cmd, "--format", "flamegraph", "--output", str(out)])
            raw = subprocess.Popen([*cmd, "--format", "raw", "--output", str(folded)])
            time.sleep(1.0)
            cpu = CpuMeter(server.pid)
            load = run_wrk(
                server.url,
                PAYMENTS_LUA,
                seconds=args.seconds,
                connections=args.concurrency,
                threads=2,
                args=["/v1/payment_intents", "/v1/payment_intents/%s/confirm", side.key, "0"],
                tmp=dbs.tmp,
            )
            used = cpu.lap()
            svg.wait()
            raw.wait()
        finally:
            server.stop()
    paid = load.counters.get("succeeded", 0)
    print(f"{paid} payments in {load.seconds:.1f} s ({paid / load.seconds:.0f}/s), "
          f"server CPU {used / max(paid, 1) * 1000:.2f} ms/payment, errors {load.errors}")
    print(f"flame graph: {out}; folded stacks: {folded}")
    own, total, samples = top_frames(folded, args.top)
    print(f"\n{samples} samples (threads on CPU only; waiting threads are not sampled)")
    print("\nown time by library (the innermost frame's):")
    for name, share in by_library(folded):
        print(f"  {share:5.1f}%  {name}")
    print("\ntop frames by own time:")
    for frame, k in own:
        print(f"  {k / samples * 100:5.1f}%  {frame}")
    print("\ntop frames by total time (anywhere on the stack):")
    for frame, k in total:
        print(f"  {k / samples * 100:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
