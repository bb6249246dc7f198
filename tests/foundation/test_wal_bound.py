"""The WAL stays bounded under a steady stream of commits. The checkpointer beside the writer cannot restart it
while commits keep coming (every commit in between spoils a restart), so before Journal._finish_checkpoint the
WAL grew without end at full rate (bench.journal_append: 225 MB after 3 s), and the WAL counts against the
storage cap. Here the limit is made small so that a short stream crosses it many times."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.domain.change import Change
from gateway.journal import Journal, store

LIMIT = 256 * 1024
SLACK = 1024 * 1024  # one batch may lengthen the file past the limit before the writer restarts it
DATA = {"pad": "x" * 2000}
SAFETY_S = 30


def wal_size(j: Journal) -> int:
    try:
        return os.stat(str(j.path) + "-wal").st_size
    except FileNotFoundError:
        return 0


async def stream(j: Journal, producers: int, per_producer: int) -> None:
    async def producer(k: int) -> None:
        for i in range(per_producer):
            ch = Change()
            ch.emit("test.event", DATA, f"O-{k}-{i}")
            await j.submit(ch)
    await asyncio.gather(*(producer(k) for k in range(producers)))


async def largest_wal_of(j: Journal, producers: int, per_producer: int) -> int:
    """Stream changes into `j`; the largest WAL file seen after any commit."""
    largest = 0

    def watch(_: object) -> None:
        nonlocal largest
        largest = max(largest, wal_size(j))
    j.on_commit(watch)
    await stream(j, producers, per_producer)
    return largest


@pytest.fixture
def small_wal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "WAL_LIMIT_BYTES", LIMIT)


async def test_a_steady_stream_of_commits_keeps_the_wal_near_its_limit(tmp_path: Path, small_wal: None) -> None:
    j = await Journal.open(tmp_path / "j.db", site="dc1", gateway="zone-a", clock=ManualClock())
    try:
        largest = await largest_wal_of(j, producers=32, per_producer=100)  # ~7 MB of WAL written, 25x the limit
        assert j.last_seq == 3200
        assert largest <= LIMIT + SLACK, largest  # without the writer's checkpoints: over 8 MB
        assert j.finished_checkpoints >= 3
        rows = await j.read_events(1, limit=10_000)
        assert [r.seq for r in rows] == list(range(1, 3201))
    finally:
        await j.close()
    conn = sqlite3.connect(j.path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (3200,)
    finally:
        conn.close()


async def test_the_checkpointer_beside_running_often_does_not_keep_the_writer_from_finishing(
        tmp_path: Path, small_wal: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite answers a second checkpoint busy at once, so a writer whose finishing copy met one beside it put the
    finish off 16 batches, again and again (CI, a slow disk: 2.7 MB; here, beside every 16 KB: 5-12 MB)."""
    monkeypatch.setattr(store, "CHECKPOINT_WAL_BYTES", 16 * 1024)
    j = await Journal.open(tmp_path / "j.db", site="dc1", gateway="zone-a", clock=ManualClock())
    try:
        largest = await largest_wal_of(j, producers=32, per_producer=100)
        assert j.last_seq == 3200
        assert largest <= LIMIT + SLACK, largest
        assert j.checkpoints >= 1  # the one beside did run
    finally:
        await j.close()


async def test_a_reader_holding_an_old_snapshot_delays_the_restart_and_stops_nothing(
        tmp_path: Path, small_wal: None) -> None:
    j = await Journal.open(tmp_path / "j.db", site="dc1", gateway="zone-a", clock=ManualClock())
    reader = sqlite3.connect(j.path, isolation_level=None)
    try:
        await stream(j, producers=4, per_producer=5)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM events").fetchone() == (20,)  # holds this snapshot
        await stream(j, producers=32, per_producer=30)  # commits go on; the WAL may not restart under the reader
        assert j.last_seq == 980
        assert wal_size(j) > LIMIT + SLACK  # the frames the reader may still need are kept
        assert reader.execute("SELECT count(*) FROM events").fetchone() == (20,)  # its snapshot is intact
        reader.execute("COMMIT")
        await stream(j, producers=32, per_producer=30)  # the writer tries again and restarts the WAL
        after_release = []
        j.on_commit(lambda _: after_release.append(wal_size(j)))
        await stream(j, producers=8, per_producer=10)
        assert max(after_release) <= LIMIT + SLACK, after_release
        assert j.last_seq == 2020
    finally:
        reader.close()
        await j.close()


async def until(cond: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(SAFETY_S):
        while not cond():
            await asyncio.sleep(0.01)
    assert cond(), what


async def test_the_checkpointer_copies_once_enough_was_written_and_not_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "CHECKPOINT_WAL_BYTES", 64 * 1024)
    j = await Journal.open(tmp_path / "j.db", site="dc1", gateway="zone-a", clock=ManualClock())
    try:
        await stream(j, producers=4, per_producer=5)  # ~45 KB of rows
        await asyncio.sleep(0.2)
        assert j.checkpoints == 0  # nothing due: an idle or quiet gateway runs no checkpoints
        await stream(j, producers=4, per_producer=5)  # past 64 KB: the writer wakes the checkpointer
        await until(lambda: j.checkpoints == 1, "a checkpoint beside the writer")
    finally:
        await j.close()

