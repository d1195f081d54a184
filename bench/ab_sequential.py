"""Two versions of paymux side by side: sequential one-request payments, in alternating turns.

A change worth a tenth of a millisecond at the sequential p50 is smaller than the drift of
this shared machine from one run of bench/payments.py to the next (its bare endpoint's p50
moved by 2 ms between two sessions). Here both versions run at once, each a server of its
own on a database of its own in one PostgreSQL cluster (or SQLite files), and take turns of
``--seconds`` of one wrk connection (A B, B A, A B, ...), so both see the same machine.

Each version is a git revision, exported with ``git archive`` into a temporary directory and
put first on the server's ``PYTHONPATH`` (the bench scripts and the installed dependencies
are this checkout's). ``--b`` may be ``WORKTREE``: the files of this checkout as they are,
committed or not.

Prints, per turn, each version's p50 (wrk's, the median over its requests), its payments and
the server's CPU per payment; then each version's median p50 over its turns, its mean CPU
per payment, and how many turns B's p50 was below A's.

Run: ``python bench/ab_sequential.py [--a HEAD~1] [--b HEAD] [--backend postgres]
[--rounds 6] [--seconds 3] [--no-worker]``. Requires wrk.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, databases, have_wrk, loadavg, machine, paymux_server
from payments import Result, Side, warm_up

from paymux.storage.migrate import upgrade

WORKTREE = "WORKTREE"


def export(rev: str, into: Path) -> Path:
    """The source tree of ``rev`` (a git revision, or WORKTREE) under ``into``; returns its
    ``src`` directory."""
    into.mkdir(parents=True)
    if rev == WORKTREE:
        files = subprocess.run(
            ["git", "ls-files", "-z", "src"], cwd=ROOT, check=True, capture_output=True
        ).stdout.split(b"\0")
        with tarfile.open(into / "tree.tar", "w") as tar:
            for name in filter(None, files):
                tar.add(ROOT / name.decode(), arcname=name.decode())
    else:
        with (into / "tree.tar").open("wb") as out:
            subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True, stdout=out)
    with tarfile.open(into / "tree.tar") as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def imported_from(src: Path) -> str:
    """Where a server started with ``src`` first on PYTHONPATH imports paymux from."""
    return subprocess.run(
        [sys.executable, "-c", "import paymux; print(paymux.__file__)"],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default="HEAD~1", help="git revision of A")
    parser.add_argument("--b", default="HEAD", help=f"git revision of B, or {WORKTREE}")
    parser.add_argument("--backend", default="postgres", choices=["postgres", "sqlite"])
    parser.add_argument("--rounds", type=int, default=6, help="turns of each version")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of one turn")
    parser.add_argument("--no-worker", action="store_true", help="PAYMUX_RUN_WORKER=false")
    args = parser.parse_args()
    if not have_wrk():
        sys.exit("ab_sequential.py needs wrk (apt install wrk)")
    print(machine())
    labels = ("A", "B")
    revs = dict(zip(labels, (args.a, args.b), strict=True))
    with (
        tempfile.TemporaryDirectory(prefix="paymux-ab-") as trees,
        databases([args.backend], prefix="paymux-ab-") as dbs,
    ):
        sources = {v: export(revs[v], Path(trees) / v) for v in labels}
        for v in labels:
            print(f"{v}: {revs[v]} -> {imported_from(sources[v])}")
        urls = {v: dbs.url(args.backend, f"ab_{v.lower()}") for v in labels}
        for url in urls.values():
            upgrade(url)  # this checkout's migrations: give both versions the same schema
        servers = [
            paymux_server(
                urls[v],
                dbs.tmp,
                name=f"paymux-{v}",
                PYTHONPATH=str(sources[v]),
                PAYMUX_RUN_WORKER="false" if args.no_worker else "true",
            )
            for v in labels
        ]
        for server in servers:
            server.start()
        try:
            options = argparse.Namespace(
                concurrency=1,
                idempotency_keys=False,
                warmup=200,
                chunk=250,
                n=200,
                max_seconds=60.0,
            )
            sides = [Side(server, options, dbs.tmp) for server in servers]
            for side in sides:
                side.one, side.connections = True, 1
            warm_up(sides, options)
            turns: dict[str, list[Result]] = {v: [] for v in labels}
            print(f"{args.backend}, one connection, {args.rounds} turns of {args.seconds:g} s each")
            for i in range(args.rounds):
                for k in (0, 1) if i % 2 == 0 else (1, 0):
                    result = Result(labels[k])
                    sides[k].wrk_run(args.seconds, result)
                    turns[labels[k]].append(result)
                    print(
                        f"  turn {i + 1} {labels[k]}: p50 {result.p50:.3f} ms, "
                        f"{result.done} payments, CPU {result.cpu_ms:.3f} ms/payment, "
                        f"load {loadavg():.2f}",
                        flush=True,
                    )
            for v in labels:
                print(
                    f"{v}: median p50 {statistics.median(r.p50 for r in turns[v]):.3f} ms, "
                    f"CPU {statistics.mean(r.cpu_ms for r in turns[v]):.3f} ms/payment, "
                    f"{sum(r.done for r in turns[v])} payments"
                )
            below = sum(b.p50 < a.p50 for a, b in zip(turns["A"], turns["B"], strict=True))
            print(f"B's p50 below A's in {below} of {args.rounds} turns")
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
