"""The sandbox processor's store is checkpointed in the background, never inside a commit.

The processor runs on paymux's event loop (the sandbox connector calls it inline). SQLite's
automatic checkpoint would run inside the commit that crosses 1,000 WAL pages, copying and
fsyncing on the loop; so it is off on the processor's connection, and every
``CHECKPOINT_EVERY`` write commits a checkpoint runs in a thread on a connection of its own
(issue 10: the sequential p99). These tests state that: the automatic checkpoint is off, the
checkpoints ran and not on the caller's thread, and they kept the WAL from growing with every
commit (it was rewound). A real file store, on a real event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from pathlib import Path

import pytest

from paymux.gateways.sandbox import SandboxProcessor
from paymux.storage import sqlite_inline

WRITES = 1500  # each ``mint`` of a shared test token is one write commit (a new token row)
# The WAL's length past which a checkpoint holds the processor's lock to rewind it: 8,192
# frames in the server (sqlite_inline.WAL_REWIND_FRAMES, about 2,500 payments), lower here.
REWIND_FRAMES = 256


def test_the_processors_commits_do_not_checkpoint(tmp_path: Path) -> None:
    processor = SandboxProcessor(str(tmp_path / "sandbox.db"))
    try:
        automatic = processor._db.execute("pragma wal_autocheckpoint").fetchone()[0]
    finally:
        processor.close()
    assert automatic == 0


def test_the_wal_is_checkpointed_in_threads_and_rewound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "sandbox.db")
    ran_on: list[int] = []
    checkpoint = sqlite_inline._passive

    found: list[int] = []  # the WAL's frames each checkpoint found (-1: busy, not kept)

    def recorded(path: str, uri: bool) -> int:
        ran_on.append(threading.get_ident())
        frames = checkpoint(path, uri)
        if frames >= 0:
            found.append(frames)
        return frames

    monkeypatch.setattr(sqlite_inline, "_passive", recorded)
    monkeypatch.setattr(sqlite_inline, "WAL_REWIND_FRAMES", REWIND_FRAMES)
    processor = SandboxProcessor(path)

    async def write() -> None:
        for _ in range(WRITES):
            processor.mint("pm_card_visa")
            # The loop does other work between two sandbox calls, as in the server (a
            # payment's statements): the checkpoint's thread gets the lock in between.
            await asyncio.sleep(0.001)
        for _ in range(3000):  # the last background checkpoint ends (a condition, not a time)
            if path not in sqlite_inline._checkpointing:
                break
            await asyncio.sleep(0.01)
        assert path not in sqlite_inline._checkpointing

    try:
        asyncio.run(write())
        # The frames now in the WAL (since it was last rewound), read while the processor
        # still has the store open (the last connection to close empties the WAL). A WAL
        # never rewound would hold at least WRITES of them (about 5,000 here); rewound, it
        # holds what was written since (some hundreds, depending on when the threads ran).
        with sqlite3.connect(path) as conn:
            for _ in range(100):  # another checkpointer at work: -1 frames, so ask again
                busy, in_wal, _copied = conn.execute("pragma wal_checkpoint(passive)").fetchone()
                if not busy:
                    break
            assert not busy
    finally:
        processor.close()
    caller = threading.get_ident()
    assert ran_on, "no background checkpoint ran"
    assert caller not in ran_on
    # Rewound: a checkpoint found fewer frames than the one before it (between two rewinds
    # the WAL only grows), whenever the threads ran; how many frames are left at the end
    # depends on when they ran, so it is not bounded here beyond holding some.
    assert any(later < earlier for earlier, later in itertools.pairwise(found)), found
    assert in_wal > 0
